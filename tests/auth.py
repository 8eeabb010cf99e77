"""API keys for tests: issued through the engine like any key (an ``ApiKeyIssued`` event),
the token kept by the test. Users come from tests/config/test.toml (the default firm plus
the test actors), or are created by a test as an admin would."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from commands.models import GrantLocate, IssueApiKey, RequestLocate
from infrastructure.credentials import new_key

LOCATE_GRANTER = "rose"  # a risk officer of tests/config/test.toml
DAY_NS = 86_400 * 1_000_000_000


def _system(client_or_system: Any) -> Any:
    """The System behind a TestClient of a started app, or the System itself."""
    app = getattr(client_or_system, "app", None)
    return app.state.system if app is not None else client_or_system


def _run(system: Any, command: Any) -> Any:
    engine = system.engine
    outcome = (engine.submit(command).result(timeout=30) if engine.running
               else engine.execute([command])[0])
    assert not isinstance(outcome, BaseException) and outcome.kind == "done", outcome
    return outcome


def issue_token(system: Any, username: str) -> str:
    """A new key for ``username`` (issued by the system actor); the bearer token."""
    key = new_key()
    _run(_system(system), IssueApiKey(username=username, key_id=key.key_id,
                                      key_sha256=key.sha256, actor="system",
                                      source="system", reason="test key"))
    return key.token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(client: Any, username: str = "tester") -> str:
    """Make ``client`` (a TestClient of a started app) act as ``username``; the token."""
    token = issue_token(client.app.state.system, username)
    client.headers["Authorization"] = f"Bearer {token}"
    return token


def headers_for(client: Any, username: str) -> dict[str, str]:
    """Headers that act as ``username`` for one request (the client's own stays)."""
    return bearer(issue_token(client.app.state.system, username))


def grant_locates(client_or_system: Any, accounts: str | Iterable[str],
                  symbols: str | Iterable[str], quantity: int,
                  expires_in_s: float = 86_400) -> list[UUID]:
    """Locates for short sales (Reg SHO 203(b)(1)): for every account and symbol one of
    ``quantity`` shares, requested and granted by the risk officer ``rose`` through the
    engine (``LocateRequested`` / ``LocateGranted`` events); valid ``expires_in_s`` from now.
    Takes a TestClient of a started app or a System; the locate ids."""
    system = _system(client_or_system)
    accounts = [accounts] if isinstance(accounts, str) else list(accounts)
    symbols = [symbols] if isinstance(symbols, str) else list(symbols)
    expires_ns = time.time_ns() + int(expires_in_s * 1_000_000_000)
    granted: list[UUID] = []
    for account_id in accounts:
        for symbol in symbols:
            requested = _run(system, RequestLocate(
                account_id=account_id, symbol=symbol, quantity=quantity,
                actor=LOCATE_GRANTER, source="cli", reason="test locate"))
            locate_id = UUID(requested.detail["id"])
            _run(system, GrantLocate(locate_id=locate_id, quantity=quantity,
                                     expires_at_ns=expires_ns, actor=LOCATE_GRANTER,
                                     source="cli", reason="test locate"))
            granted.append(locate_id)
    return granted


def user_headers(client: Any, username: str) -> dict[str, str]:
    """Headers acting as ``username``, one key per client and user: issued (an event) on
    the first call, reused after, so a test can take them before it counts the log."""
    tokens: dict[str, str] = client.__dict__.setdefault("_test_tokens", {})
    if username not in tokens:
        tokens[username] = issue_token(client.app.state.system, username)
    return bearer(tokens[username])
