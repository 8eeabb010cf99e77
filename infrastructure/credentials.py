"""API keys: made here, shown once, stored only as a SHA-256 in the event log.

A token is ``mlk_<key id>_<secret>``: the key id is public (it names the key in lists and
revocations), the secret is 256 random bits. A fast hash is the right one for a random
256-bit secret (nothing to brute-force, unlike a password), and it costs ~1 µs per request.

On first run ``serve`` and ``demo`` issue one key per configured user that has none and
write it to ``<data dir>/credentials/<user>.token`` (mode 0600): the keys are generated on
the machine, never kept in the repository.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import Any, NamedTuple

from domain.book_of_record import SYSTEM_ACTOR
from domain.values import Source

PREFIX = "mlk_"


class NewKey(NamedTuple):
    key_id: str
    token: str
    sha256: str


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_key() -> NewKey:
    key_id = secrets.token_hex(6)
    token = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return NewKey(key_id, token, token_sha256(token))


def credentials_dir(data_dir: Path) -> Path:
    return data_dir / "credentials"


def write_token(data_dir: Path, username: str, token: str) -> Path:
    """The token in a file only its owner can read (replacing an earlier one)."""
    folder = credentials_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{username}.token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    os.chmod(path, 0o600)
    return path


def issue_missing_keys(system: Any, actor: str = SYSTEM_ACTOR, source: str = Source.SYSTEM
                       ) -> dict[str, Path]:
    """First run: a key for every active user without one, each written to its file.

    Runs through the engine (each key an ``ApiKeyIssued`` event) before the API serves."""
    from commands.models import IssueApiKey

    gov = system.engine.book.gov
    with_keys = {user for _, user in gov.keys.values()}
    written: dict[str, Path] = {}
    for username, user in sorted(gov.users.items()):
        if not user.active or username in with_keys:
            continue
        key = new_key()
        command = IssueApiKey(username=username, key_id=key.key_id, key_sha256=key.sha256,
                              actor=actor, source=source,
                              reason="first run: a key for each configured user")
        engine = system.engine
        outcome: Any = (engine.submit(command).result(timeout=30) if engine.running
                        else engine.execute([command])[0])
        if isinstance(outcome, BaseException) or outcome.kind != "done":
            raise RuntimeError(f"issuing a key for {username} failed: {outcome}")
        written[username] = write_token(system.settings.data_dir, username, key.token)
    return written
