"""One engine per event store (ARCHITECTURE rule 3, single writer).

Two engines on one store would each accept the same client_order_id, interleave the hash
chain and race the venue. The engine process therefore holds an exclusive lock for as long
as it runs: a PostgreSQL session advisory lock on the store's database, or an OS file lock
next to the SQLite file. Both vanish with the process, however it dies (SIGKILL included),
so a restart never waits for a stale lock.
"""

from __future__ import annotations

import fcntl
import os
import zlib
from typing import Any

import psycopg

from infrastructure.settings import Settings

# Advisory lock key: a stable number derived from the name, the same in every process.
LOCK_KEY = zlib.crc32(b"marketlog.engine.single-writer")


class AnotherWriterRunning(RuntimeError):
    """Another marketlog engine already writes to this event store."""


class WriterLock:
    def __init__(self, settings: Settings) -> None:
        self._connection: psycopg.Connection[Any] | None = None
        self._fd: int | None = None
        if settings.database_url:
            self._connection = psycopg.connect(settings.database_url, autocommit=True)
            row = self._connection.execute(
                "SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
            if not row or not row[0]:
                self.release()
                raise AnotherWriterRunning(
                    "another marketlog engine holds this PostgreSQL event store; "
                    "run one engine per store (shard accounts across stores to scale out)")
        else:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            path = settings.data_dir / "engine.lock"
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.release()
                raise AnotherWriterRunning(
                    f"another marketlog engine holds {path.resolve()}; "
                    "run one engine per store") from None

    def release(self) -> None:
        if self._connection is not None:
            self._connection.close()  # ends the session, and with it the advisory lock
            self._connection = None
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
