"""One engine per event store (ARCHITECTURE rule 3, single writer): the friendly start-time gate.

Two engines on one store would each accept the same client_order_id, interleave the hash
chain and race the venue. The engine process therefore holds an exclusive lock for as long
as it runs: a PostgreSQL session advisory lock on the store's database, or an OS file lock
next to the SQLite file. Both vanish with the process, however it dies (SIGKILL included),
so a restart never waits for a stale lock, and a second engine is refused at start with
``AnotherWriterRunning``.

The lock is a side channel, and side channels fail: a PostgreSQL restart ends the session
that held the advisory lock; deleting ``data/engine.lock`` lets a second process lock a new
file. Safety therefore does NOT rest on this lock but on the store's fencing (writer epochs
checked in every append's transaction, infrastructure/event_store.py): a second engine's
claim fences the first at its next append. This lock's watchdog only keeps the gate honest:
it re-acquires a lock that vanished, or, when another engine got it first, reports it lost
(``lost`` / ``lost_reason`` / ``on_lost``) so the engine can say so in /health and stop.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import zlib
from collections.abc import Callable
from typing import Any

import psycopg

from infrastructure.settings import Settings

log = logging.getLogger(__name__)

# Advisory lock key: a stable number derived from the name, the same in every process.
LOCK_KEY = zlib.crc32(b"marketlog.engine.single-writer")

HELD, REACQUIRING, LOST = "held", "reacquiring", "lost"


class AnotherWriterRunning(RuntimeError):
    """Another marketlog engine already writes to this event store."""


class WriterLock:
    """Held from construction until ``release``; watched every ``check_seconds``.

    ``state``: "held", "reacquiring" (PostgreSQL unreachable: the lock is gone with the
    session and will be taken again when the server is back) or "lost" (another engine
    holds it now). ``on_lost(reason)`` is called once when it is lost.
    """

    def __init__(self, settings: Settings, *, watch: bool = True,
                 on_lost: Callable[[str], None] | None = None) -> None:
        self._url = settings.database_url
        self._path = settings.data_dir / "engine.lock"
        self._connection: psycopg.Connection[Any] | None = None
        self._fd: int | None = None
        self.state = HELD
        self.lost_reason: str | None = None
        self.on_lost = on_lost
        self._stop = threading.Event()
        self._mutex = threading.Lock()
        if self._url:
            if not self._try_pg():
                self.release()
                raise AnotherWriterRunning(
                    "another marketlog engine holds this PostgreSQL event store; "
                    "run one engine per store (shard accounts across stores to scale out)")
        else:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            if not self._try_file():
                self.release()
                raise AnotherWriterRunning(
                    f"another marketlog engine holds {self._path.resolve()}; "
                    "run one engine per store")
        self._thread: threading.Thread | None = None
        if watch:
            self._thread = threading.Thread(
                target=self._watch, args=(settings.writer_lock_check_seconds,),
                name="marketlog-writer-lock", daemon=True)
            self._thread.start()

    @property
    def lost(self) -> bool:
        return self.state == LOST

    # -------------------------------------------------------------- acquiring

    def _try_pg(self) -> bool:
        assert self._url
        conn = psycopg.connect(self._url, autocommit=True, connect_timeout=5)
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        if row and row[0]:
            self._connection = conn
            return True
        conn.close()
        return False

    def _try_file(self) -> bool:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    # -------------------------------------------------------------- watching

    def _watch(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.check()
            except Exception:  # the watchdog must outlive any surprise
                log.exception("writer lock check failed")

    def check(self) -> str:
        """Check the lock now (the watchdog does this every few seconds); returns ``state``."""
        with self._mutex:
            if self._stop.is_set() or self.state == LOST:
                return self.state
            if self._url:
                self._check_pg()
            else:
                self._check_file()
            return self.state

    def _check_pg(self) -> None:
        conn = self._connection
        if conn is not None:
            try:
                row = conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND pid = pg_backend_pid() AND objid = %s", (LOCK_KEY & 0xFFFFFFFF,)
                ).fetchone()
                if row and row[0]:
                    self.state = HELD
                    return
            except psycopg.Error:
                pass
            # The session (and with it the lock) is gone: a server restart or a cut connection.
            self._close_connection()
        try:
            if self._try_pg():
                if self.state != HELD:
                    log.warning("writer lock re-acquired after its session ended")
                self.state = HELD
            else:
                self._lose("another engine took this store's writer lock after this engine's "
                           "database session ended (server restart?)")
        except psycopg.OperationalError:
            self.state = REACQUIRING  # the server is not back yet

    def _check_file(self) -> None:
        fd = self._fd
        try:
            mine = os.fstat(fd).st_ino if fd is not None else None
            current = os.stat(self._path).st_ino
        except FileNotFoundError:
            current = None
        if mine is not None and mine == current:
            self.state = HELD
            return
        # The lock file was deleted or replaced: our flock guards nothing any more.
        if fd is not None:
            os.close(fd)
            self._fd = None
        if self._try_file():
            log.warning("writer lock file %s was deleted or replaced; locked it again",
                        self._path)
            self.state = HELD
        else:
            self._lose(f"{self._path} was deleted or replaced and another engine locked it")

    def _lose(self, reason: str) -> None:
        self.state, self.lost_reason = LOST, reason
        log.error("writer lock lost: %s", reason)
        if self.on_lost is not None:
            self.on_lost(reason)

    # -------------------------------------------------------------- releasing

    def _close_connection(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()  # ends the session, and with it the advisory lock
            finally:
                self._connection = None

    def release(self) -> None:
        self._stop.set()
        with self._mutex:
            self._close_connection()
            if self._fd is not None:
                os.close(self._fd)  # closing the descriptor drops the flock
                self._fd = None
        thread = getattr(self, "_thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
