"""API keys for tests: issued through the engine like any key (an ``ApiKeyIssued`` event),
the token kept by the test. Users come from tests/config/test.toml (the default firm plus
the test actors), or are created by a test as an admin would."""

from __future__ import annotations

from typing import Any

from commands.models import IssueApiKey
from infrastructure.credentials import new_key


def issue_token(system: Any, username: str) -> str:
    """A new key for ``username`` (issued by the system actor); the bearer token."""
    key = new_key()
    command = IssueApiKey(username=username, key_id=key.key_id, key_sha256=key.sha256,
                          actor="system", source="system", reason="test key")
    engine = system.engine
    outcome = (engine.submit(command).result(timeout=30) if engine.running
               else engine.execute([command])[0])
    assert not isinstance(outcome, BaseException) and outcome.kind == "done", outcome
    return key.token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(client: Any, username: str = "tester") -> str:
    """Make ``client`` (a TestClient of a started app) act as ``username``; the token."""
    token = issue_token(client.app.state.system, username)
    client.headers["Authorization"] = f"Bearer {token}"
    return token


def headers_for(client: Any, username: str) -> dict[str, str]:
    """Headers that act as ``username`` for one request (the client's own stay)."""
    return bearer(issue_token(client.app.state.system, username))
