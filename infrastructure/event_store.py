"""The event store: the eventsourcing library's events table and notification log, SQLite or
PostgreSQL, appended to by exactly one writer and verifiable record by record.

What the records rules ask for (SEC 17a-4 as amended; ARCHITECTURE rules 3, 5, 11):
  * positions are assigned by the store itself, contiguously (head+1 ... head+n), under its
    serialisation lock (PostgreSQL: a transaction advisory lock; SQLite: BEGIN IMMEDIATE) and
    inserted explicitly, so a hole in the log is always a removal;
  * each record carries the hash of the whole record and of its predecessor
    (infrastructure/codec.py): ``verify`` names the changed, replaced or missing record
    (infrastructure/chain.py);
  * every committed head is also recorded outside the database (infrastructure/anchors.py),
    so a deleted tail or a recomputed chain is caught;
  * fencing (issue 5, item 7): a writer first claims the store (``claim_writer``: a new row
    in ``writer_epochs``), and every append checks, in its own transaction and under the
    same lock, that no newer writer has claimed the store (else ``WriterFenced``) and that
    the stored head is the one this writer committed last (else ``ChainBroken``). One writer
    per store is thus guaranteed by the store itself, whatever happened to the side-channel
    WriterLock (a PostgreSQL restart, a deleted lock file);
  * the database refuses UPDATE/DELETE/replacement (infrastructure/store_schema.py), and on
    PostgreSQL the engine's role cannot switch that off (checked at ``claim_writer``).
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from eventsourcing.persistence import ApplicationRecorder
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

from commands.ports import ChainBroken, StoreHalted, WriterFenced
from infrastructure import codec
from infrastructure.anchors import AnchorEntry, ChainAnchor, FileAnchor
from infrastructure.chain import ChainCheck, ChainProblem, ChainStatus, ChainWalker
from infrastructure.settings import Settings
from infrastructure.store_schema import (
    EVENTS_TABLE,
    IMMUTABLE_MESSAGE,
    StoreNotInitialised,
    check_engine_role,
    install_postgres,
    install_sqlite,
    role_of,
    store_exists,
)

__all__ = ["EVENTS_TABLE", "IMMUTABLE_MESSAGE", "ChainCheck", "ChainStatus", "EventStore"]

log = logging.getLogger(__name__)

# Transaction-scoped advisory lock serialising appends and claims (PostgreSQL). Not
# ``LOCK TABLE ... IN EXCLUSIVE MODE``: an INSERT/SELECT-only role may not take it (rule 11).
# Distinct from the WriterLock's session key, or an engine would wait on its own lock.
APPEND_LOCK_KEY = 0x6D6C5F617070  # "ml_app"

_PG_HEAD = (
    "SELECT (SELECT max(epoch) FROM writer_epochs) AS epoch, h.notification_id AS position, "
    "substring(h.state FROM octet_length(h.state) - 65 FOR 64) AS hash "
    "FROM (SELECT 1) AS one LEFT JOIN LATERAL (SELECT notification_id, state FROM "
    f"{EVENTS_TABLE} ORDER BY notification_id DESC LIMIT 1) AS h ON true")
_SQLITE_HEAD = (
    "SELECT (SELECT max(epoch) FROM writer_epochs), h.rowid, substr(h.state, -66, 64) "
    f"FROM (SELECT 1) LEFT JOIN (SELECT rowid, state FROM {EVENTS_TABLE} "
    "ORDER BY rowid DESC LIMIT 1) AS h")


def _text(value: Any) -> str:
    if value is None:
        return codec.GENESIS_HASH
    return bytes(value).decode("ascii", "replace") if not isinstance(value, str) else value



def _install_sqlite_store(path: Path, wait_s: float = 30.0) -> str:
    """Put the SQLite file in WAL mode and install the store (idempotent); its store id.

    Done on a connection of its own before any pool connects, because two processes (or
    threads) opening a fresh store together otherwise fail one of them with "database is
    locked": switching the journal mode needs the file to itself and SQLite answers busy at
    once instead of waiting, and a deferred transaction that reads the schema and then
    writes cannot be upgraded while another writer is in. BEGIN IMMEDIATE takes the write
    lock first (waiting on the busy handler); the mode switch is retried until set.
    """
    deadline = time.monotonic() + wait_s
    conn = sqlite3.connect(str(path), timeout=wait_s, isolation_level=None)
    try:
        while True:
            try:
                if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() == "wal":
                    break
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.01)
        conn.execute("BEGIN IMMEDIATE")
        try:
            install_sqlite(conn, uuid.uuid4().hex, time.time_ns())
            store_id = str(conn.execute("SELECT store_id FROM store_meta").fetchone()[0])
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return store_id
    finally:
        conn.close()


class EventStore:
    """Appends events in one transaction per call and reads them back in log order."""

    def __init__(self, recorder: ApplicationRecorder, datastore: Any, dialect: str, *,
                 anchors: Sequence[ChainAnchor] = (), store_id: str = "",
                 writable: bool = True) -> None:
        self.recorder = recorder
        self.datastore = datastore
        self.dialect = dialect
        self.anchors = list(anchors)
        self.store_id = store_id
        self.writable = writable
        self.epoch: int | None = None  # this writer's claim; None until claim_writer
        self.halted: StoreHalted | None = None  # set once fenced or the chain broke
        self.head_position, self.head_hash = self._db_head()[1:]
        self.chain_status = ChainStatus(ok=True, verified_position=0,
                                        head_position=self.head_position)
        self._verify_lock = threading.Lock()
        self._verified: tuple[int, str, int] | None = None  # (position, hash, records)
        self._anchor_cursors: list[int] = [0] * len(self.anchors)
        if dialect == "postgresql":
            self._lock_and_head = (f"SELECT pg_advisory_xact_lock({APPEND_LOCK_KEY}); "
                                   f"NOTIFY {EVENTS_TABLE}; {_PG_HEAD}")

    # ----------------------------------------------------------------- opening

    @classmethod
    def open(cls, settings: Settings, *, reader: bool = False) -> EventStore:
        """The configured store. ``reader=True``: the SELECT-only role of
        ``reader_database_url`` when set (verify and audit tools), and the anchor file is only
        read. With ``database_owner_url`` set (and not a reader) the owner role first creates
        or upgrades the schema and grants the engine and reader roles (rule 11)."""
        anchor_path = settings.anchor_file
        if settings.database_url:
            url = settings.database_url
            if reader and settings.reader_database_url:
                url = settings.reader_database_url
            if settings.database_owner_url and not reader:
                readers = ((role_of(settings.reader_database_url),)
                           if settings.reader_database_url else ())
                install_postgres(settings.database_owner_url, role_of(settings.database_url),
                                 readers)
            datastore: Any = _pg_datastore(url)
            recorder: ApplicationRecorder = PostgresApplicationRecorder(
                datastore, events_table_name=EVENTS_TABLE)
            try:
                with datastore.get_connection() as conn:
                    if not store_exists(conn):
                        raise StoreNotInitialised(
                            f"database {urlsplit(url).path.lstrip('/')!r} holds no marketlog "
                            "event store: run `marketlog db init` (or start the engine) with "
                            "MARKETLOG_DATABASE_OWNER_URL set to the owner role")
                    row = conn.execute("SELECT store_id FROM store_meta").fetchone()
                    store_id = str(row["store_id"])
            except BaseException:
                datastore.close()
                raise
            dialect = "postgresql"
        else:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            store_id = _install_sqlite_store(settings.sqlite_store_path)
            datastore = SQLiteDatastore(str(settings.sqlite_store_path))
            recorder = SQLiteApplicationRecorder(datastore, events_table_name=EVENTS_TABLE)
            dialect = "sqlite"
        anchors = [FileAnchor(anchor_path, store_id, writable=not reader)]
        return cls(recorder, datastore, dialect, anchors=anchors, store_id=store_id,
                   writable=not reader)

    # ------------------------------------------------------------ single writer

    def claim_writer(self, *, verify_tail: bool = True) -> int:
        """Claim the store for this writer: returns its epoch (max + 1).

        Every other writer is fenced from its next append on (newest claimant wins). On
        PostgreSQL it first refuses a role that could switch tamper protection off
        (``InsecureStoreRole``). With ``verify_tail`` the chain from the last anchored head
        (or the last verified position) to the stored head is verified; a break leaves the
        store halted with ``ChainBroken`` (every append raises it) and ``chain_status`` says
        why, so the engine can come up, refuse to write and report it in /health.
        """
        if not self.writable:
            raise PermissionError("this store was opened for reading")
        host, pid = socket.gethostname(), os.getpid()
        if self.dialect == "postgresql":
            with self.datastore.get_connection() as conn:
                check_engine_role(conn)
                with conn.transaction(), conn.cursor() as curs:
                    curs.execute(f"SELECT pg_advisory_xact_lock({APPEND_LOCK_KEY})")
                    curs.execute(
                        "INSERT INTO writer_epochs (epoch, host, pid, head_position) "
                        "SELECT coalesce(max(epoch), 0) + 1, %s, %s, (SELECT coalesce("
                        f"max(notification_id), 0) FROM {EVENTS_TABLE}) FROM writer_epochs "
                        "RETURNING epoch, head_position", (host, pid))
                    row = curs.fetchone()
                    epoch, head = int(row["epoch"]), int(row["head_position"])
        else:
            with self.datastore.get_connection(commit=True) as conn:
                curs = conn.cursor()
                curs.execute("BEGIN IMMEDIATE")
                try:
                    curs.execute(
                        "INSERT INTO writer_epochs (epoch, claimed_at_ns, host, pid, "
                        "head_position) SELECT coalesce(max(epoch), 0) + 1, ?, ?, ?, "
                        f"(SELECT coalesce(max(rowid), 0) FROM {EVENTS_TABLE}) "
                        "FROM writer_epochs RETURNING epoch, head_position",
                        (time.time_ns(), host, pid))
                    epoch, head = (int(v) for v in curs.fetchone())
                    conn.commit()
                except BaseException:
                    conn.rollback()
                    raise
        self.epoch, self.halted = epoch, None
        log.info("claimed the event store as writer epoch %d at position %d", epoch, head)
        if verify_tail:
            self._verify_tail()
        else:
            self.head_position, self.head_hash = self._db_head()[1:]
        return epoch

    def _verify_tail(self) -> None:
        """From the last anchored (or verified) head to the stored head: the start-up check."""
        _, db_head, _ = self._db_head()
        start, start_hash = 0, codec.GENESIS_HASH
        last = max((e for a in self.anchors if (e := a.last()) is not None),
                   key=lambda e: e.position, default=None)
        walker_problems: list[ChainProblem] = []
        if self._verified is not None and self._verified[0] <= db_head:
            start, start_hash = self._verified[:2]
        if last is not None:
            if last.position > db_head:
                walker_problems.append(ChainProblem(
                    "truncated", db_head + 1,
                    f"the log ends at position {db_head} but position {last.position} was "
                    f"committed ({last.at_ns} ns, per {self.anchors[0].name}): the tail "
                    "was deleted"))
            elif last.position > start:
                problems = self._check_known(last.position, last.hash, "anchored")
                if problems:
                    walker_problems.extend(problems)
                else:
                    start, start_hash = last.position, last.hash
        walker = ChainWalker(start, start_hash)
        if not walker_problems:
            if start == 0 and db_head > 0:
                log.warning("no chain-head anchor for this store: verifying all %d events",
                            db_head)
            walker.feed(self._rows(start, None))
        walker.problems[:0] = walker_problems
        check = walker.result(start)
        if check.ok:
            self.head_position, self.head_hash = walker.position, walker.hash
            if last is None or (last.position, last.hash) != (walker.position, walker.hash):
                self._anchor(walker.position, walker.hash)
            self._set_status(ChainStatus(True, walker.position, walker.position))
        else:
            self._break(check.problem or "chain broken", walker.position)

    def _check_known(self, position: int, expected: str, how: str) -> list[ChainProblem]:
        """The record at a known-good point (an anchored or earlier verified head): still
        there, intact (its own hash), and still the one whose hash was recorded then."""
        walker = ChainWalker(position - 1, "")
        walker.feed(self._rows(position - 1, position))
        if not walker.count:
            return [ChainProblem("missing", position,
                                 f"record {position}, {how} earlier, is missing", position)]
        changed = [p for p in walker.problems if p.kind == "changed"]
        if changed:
            return changed
        if walker.hash != expected:
            return [ChainProblem(
                "rewritten", position,
                f"record {position} differs from the head {how} when it was committed: the "
                "chain was rewritten from here or earlier")]
        return []

    # ----------------------------------------------------------------- writing

    def append(self, events: Sequence[Any]) -> int:
        """Journal events in one transaction; returns the position of the last one.

        The chain head only advances once the transaction committed, so a failed append
        leaves the store and this object exactly as they were. Raises ``WriterFenced`` when
        a newer writer claimed the store and ``ChainBroken`` when the stored head is not the
        one this writer committed last; both are terminal (``halted``).
        """
        if self.halted is not None:
            raise self.halted
        if self.epoch is None:
            self.claim_writer()  # a writer that never claimed (tools, benchmarks)
            if self.halted is not None:
                raise self.halted
        head, head_hash = self.head_position, self.head_hash
        position, prev = head, head_hash
        rows = []
        encode = codec.encode_record
        for event in events:
            position += 1
            topic, state, prev = encode(event, position, prev)
            rows.append((position, event[0], event[1], topic, state))
        if not rows:
            return head
        if self.dialect == "postgresql":
            # A pooled connection that died before this transaction sent anything (a server
            # restart) wrote nothing: trying again on the next connection is safe.
            for _ in range(_PG_POOL_MAX):
                try:
                    self._insert_pg(rows, head, head_hash)
                    break
                except _DeadConnection:
                    continue
            else:
                self._insert_pg(rows, head, head_hash, retry=False)
        else:
            self._insert_sqlite(rows, head, head_hash)
        self.head_position, self.head_hash = position, prev
        self._anchor(position, prev)
        self.chain_status = ChainStatus(True, position, position)
        return position

    def _check_head(self, epoch: Any, position: Any, stored: Any, head: int,
                    head_hash: str) -> None:
        """Under the serialisation lock: still the newest writer, on the head it wrote."""
        if epoch != self.epoch:
            who = self._claimant(epoch)
            self.halted = WriterFenced(
                f"writer epoch {self.epoch} of this engine was superseded by epoch {epoch}"
                f"{who}: another engine now writes to this event store; this one stops "
                "writing (ARCHITECTURE rule 3, one writer per store)")
            raise self.halted
        position = int(position or 0)
        stored_hash = _text(stored)
        if position != head or stored_hash != head_hash:
            detail = (f"the store's head is position {position} (hash {stored_hash[:16]}...) "
                      f"but this writer committed position {head} (hash {head_hash[:16]}...) "
                      "last: events were removed, replaced or added behind its back; refusing "
                      "to extend the chain")
            self._break(detail, min(position, head))
            assert self.halted is not None
            raise self.halted

    def _claimant(self, epoch: Any) -> str:
        try:
            if self.dialect == "postgresql":
                with self.datastore.get_connection() as conn:
                    r = conn.execute("SELECT host, pid, claimed_at FROM writer_epochs WHERE "
                                     "epoch = %s", (epoch,)).fetchone()
                    return f" (host {r['host']}, pid {r['pid']}, at {r['claimed_at']})"
            with self.datastore.transaction(commit=False) as curs:
                curs.execute("SELECT host, pid, claimed_at_ns FROM writer_epochs WHERE "
                             "epoch = ?", (epoch,))
                r = curs.fetchone()
                return f" (host {r[0]}, pid {r[1]}, at {r[2]} ns)"
        except Exception:  # only decoration of the message
            return ""

    def _insert_pg(self, rows: list[tuple[int, Any, int, str, bytes]], head: int,
                   head_hash: str, *, retry: bool = True) -> None:
        with self.datastore.get_connection() as conn:
            if retry and conn.closed:
                raise _DeadConnection
            try:
                conn.execute("BEGIN")
            except psycopg.OperationalError:
                if retry:
                    raise _DeadConnection from None
                raise
            try:
                self._insert_pg_in(conn, rows, head, head_hash)
            except BaseException:
                if not conn.closed:
                    conn.rollback()
                raise
            conn.commit()

    def _insert_pg_in(self, conn: Any, rows: list[tuple[int, Any, int, str, bytes]],
                      head: int, head_hash: str) -> None:
        with conn.cursor() as curs:
            # One round trip: the lock, the library's NOTIFY (readers tail the log) and the
            # fencing check; each statement takes its snapshot after the previous one, so the
            # check sees every transaction committed before the lock was granted.
            curs.execute(self._lock_and_head)
            curs.nextset()
            curs.nextset()
            r = curs.fetchone()
            self._check_head(r["epoch"], r["position"], r["hash"], head, head_hash)
            with curs.copy(
                    f"COPY {EVENTS_TABLE} (notification_id, originator_id, originator_version, "
                    "topic, state) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "uuid", "int8", "text", "bytea"])
                for row in rows:
                    copy.write_row(row)

    def _insert_sqlite(self, rows: list[tuple[int, Any, int, str, bytes]], head: int,
                       head_hash: str) -> None:
        params = [(p, oid.hex, v, t, s) for p, oid, v, t, s in rows]
        with self.datastore.get_connection(commit=True) as conn:
            curs = conn.cursor()
            curs.execute("BEGIN IMMEDIATE")  # the write lock first: check and insert atomic
            try:
                curs.execute(_SQLITE_HEAD)
                epoch, position, stored = curs.fetchone()
                self._check_head(epoch, position, stored, head, head_hash)
                curs.executemany(
                    f"INSERT INTO {EVENTS_TABLE} (rowid, originator_id, originator_version, "
                    "topic, state) VALUES (?, ?, ?, ?, ?)", params)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise

    def reset_head(self) -> None:
        """Re-read the chain head from the database (after a failed or unknown append).

        An append whose commit outcome was unknown may have committed: the records between
        this writer's head and the stored head are verified before they are adopted.
        """
        epoch, position, stored = self._db_head()
        if self.epoch is None or self.halted is not None:
            self.head_position, self.head_hash = position, stored
            return
        if epoch != self.epoch:
            self._check_head(epoch, position, stored, self.head_position, self.head_hash)
        if position == self.head_position and stored == self.head_hash:
            return
        if position < self.head_position:
            self._check_head(epoch, position, stored, self.head_position, self.head_hash)
        walker = ChainWalker(self.head_position, self.head_hash)
        walker.feed(self._rows(self.head_position, None))
        check = walker.result(self.head_position)
        if not check.ok:
            self._break(check.problem or "chain broken", self.head_position)
            return
        self.head_position, self.head_hash = walker.position, walker.hash
        self._anchor(walker.position, walker.hash)

    def _anchor(self, position: int, head_hash: str) -> None:
        if not self.writable or position == 0:
            return
        now = time.time_ns()
        for anchor in self.anchors:
            try:
                anchor.record(position, head_hash, now)
            except OSError:  # the commit stands; the next line anchors a later head
                log.exception("could not record the chain head in %s", anchor.name)

    def _break(self, problem: str, verified_position: int) -> None:
        self.chain_status = ChainStatus(False, verified_position, self.head_position, problem,
                                        time.time_ns())
        if self.writable and self.halted is None:
            self.halted = ChainBroken(f"hash chain broken: {problem}")
            log.error("event store halted: %s", problem)

    def _set_status(self, status: ChainStatus) -> None:
        self.chain_status = status

    # ---------------------------------------------------------------- snapshots

    def save_snapshot(self, position: int, state: bytes) -> None:
        """Store the engine's state as of log position ``position`` (append-only; a second
        snapshot at the same position is ignored). The snapshot is tied to the chain: it
        records the hash of the record at ``position``, and ``latest_snapshot`` only returns
        snapshots whose record is still there with that hash."""
        if position == 0:
            head_hash = codec.GENESIS_HASH
        elif position == self.head_position:
            head_hash = self.head_hash
        else:
            found = self._stored_hashes([position]).get(position)
            if found is None:
                raise ValueError(f"no event at position {position} to snapshot")
            head_hash = found
        digest = codec.state_hash(state)
        if self.dialect == "postgresql":
            with self.datastore.transaction(commit=True) as curs:
                curs.execute(
                    "INSERT INTO snapshots (position, head_hash, state, state_sha256) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (position) DO NOTHING",
                    (position, head_hash, state, digest))
        else:
            with self.datastore.transaction(commit=True) as curs:
                curs.execute(
                    "INSERT INTO snapshots (position, head_hash, state, state_sha256, "
                    "created_at_ns) SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM "
                    "snapshots WHERE position = ?)",
                    (position, head_hash, state, digest, time.time_ns(), position))

    def latest_snapshot(self) -> tuple[int, bytes] | None:
        """(position, state) of the newest snapshot that still matches the log, or None."""
        after: int | None = None
        while True:
            row = self._snapshot_below(after)
            if row is None:
                return None
            position, head_hash, state, digest = row
            state = bytes(state)
            expected = (codec.GENESIS_HASH if position == 0
                        else self._stored_hashes([position]).get(position))
            if codec.state_hash(state) == digest and expected == head_hash:
                return position, state
            log.warning("ignoring the snapshot at position %d: it no longer matches the log",
                        position)
            after = position

    def _snapshot_below(self, below: int | None) -> tuple[int, str, bytes, str] | None:
        limit = 2**62 if below is None else below
        if self.dialect == "postgresql":
            with self.datastore.transaction(commit=False) as curs:
                curs.execute("SELECT position, head_hash, state, state_sha256 FROM snapshots "
                             "WHERE position < %s ORDER BY position DESC LIMIT 1", (limit,))
                r = curs.fetchone()
                return None if r is None else (r["position"], r["head_hash"], r["state"],
                                               r["state_sha256"])
        with self.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT position, head_hash, state, state_sha256 FROM snapshots "
                         "WHERE position < ? ORDER BY position DESC LIMIT 1", (limit,))
            r = curs.fetchone()
            return None if r is None else (r[0], r[1], r[2], r[3])

    # ----------------------------------------------------------------- reading

    def select(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        """(position, topic, state) after a position: the projections' notification source.

        A plain query rather than the library's ``select_notifications``, which also builds a
        UUID and a Notification per row that nobody here reads (a third of a restart's replay).
        """
        if self.dialect == "postgresql":
            with self.datastore.get_connection() as conn:
                rows = conn.execute(
                    f"SELECT notification_id, topic, state FROM {EVENTS_TABLE} "
                    "WHERE notification_id > %s ORDER BY notification_id LIMIT %s",
                    (after, limit)).fetchall()
                return [(r["notification_id"], r["topic"], bytes(r["state"])) for r in rows]
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(f"SELECT rowid, topic, state FROM {EVENTS_TABLE} "
                         "WHERE rowid > ? ORDER BY rowid LIMIT ?", (after, limit))
            return [(r[0], r[1], r[2]) for r in curs.fetchall()]

    def read(self, after: int = 0, batch: int = 10_000) -> Iterator[tuple[int, Any]]:
        """Every event after a position, decoded, in log order."""
        while True:
            rows = self.select(after, batch)
            if not rows:
                return
            for position, topic, state in rows:
                yield position, codec.decode(topic, state, position)
            after = rows[-1][0]

    def _rows(self, after: int, stop: int | None,
              batch: int = 10_000) -> Iterator[tuple[int, str, Any, int, bytes]]:
        """Whole records (position, topic, originator id, version, state) in log order."""
        while True:
            notes = self.recorder.select_notifications(
                start=after, limit=batch, stop=stop, inclusive_of_start=False)
            if not notes:
                return
            for n in notes:
                yield n.id, n.topic, n.originator_id, n.originator_version, n.state
            after = notes[-1].id

    def stored_head(self) -> int:
        """The head position in the database now (another process may be the writer)."""
        return self._db_head()[1]

    def _db_head(self) -> tuple[int | None, int, str]:
        """(newest writer epoch, stored head position, hash stored in the head record)."""
        if self.dialect == "postgresql":
            with self.datastore.get_connection() as conn:
                r = conn.execute(_PG_HEAD).fetchone()
                epoch, position, stored = r["epoch"], r["position"], r["hash"]
        else:
            with self.datastore.transaction(commit=False) as curs:
                curs.execute(_SQLITE_HEAD)
                epoch, position, stored = curs.fetchone()
        return epoch, int(position or 0), _text(stored)

    def _stored_hashes(self, positions: Iterable[int]) -> dict[int, str]:
        wanted = sorted(set(positions))
        out: dict[int, str] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            if self.dialect == "postgresql":
                with self.datastore.get_connection() as conn:
                    rows = conn.execute(
                        "SELECT notification_id AS p, substring(state FROM octet_length(state) "
                        f"- 65 FOR 64) AS h FROM {EVENTS_TABLE} WHERE notification_id = "
                        "ANY(%s)", (chunk,)).fetchall()
                    out.update((r["p"], _text(r["h"])) for r in rows)
            else:
                with self.datastore.transaction(commit=False) as curs:
                    curs.execute(
                        f"SELECT rowid, substr(state, -66, 64) FROM {EVENTS_TABLE} WHERE "
                        f"rowid IN ({','.join('?' * len(chunk))})", chunk)
                    out.update((r[0], _text(r[1])) for r in curs.fetchall())
        return out

    # ------------------------------------------------------------- verification

    def verify(self, batch: int = 10_000, *, incremental: bool = False) -> ChainCheck:
        """Verify the hash chain (17a-4: completeness and accuracy) and the chain-head anchors.

        Full: every record from position 1. ``incremental``: only records after the last
        verified position (whose record must still hold the hash verified then) and anchor
        entries recorded since; what ``/audit/verify`` calls. An in-place edit of a record
        verified earlier is found by the next full verification (``marketlog verify``).
        """
        with self._verify_lock:
            if incremental and self._verified is not None:
                start, start_hash, before = self._verified
                cursors = list(self._anchor_cursors)
            else:
                start, start_hash, before = 0, codec.GENESIS_HASH, 0
                cursors = [0] * len(self.anchors)
            entries: list[AnchorEntry] = []
            for i, anchor in enumerate(self.anchors):
                new, cursors[i] = _read_anchor(anchor, cursors[i])
                entries.extend(new)
            walker = ChainWalker(start, start_hash)
            walker.wanted = {e.position for e in entries}
            if start:
                for problem in self._check_known(start, start_hash, "verified"):
                    walker.problem(problem)
            walker.feed(self._rows(start, None, batch))
            earlier = [e.position for e in entries
                       if e.position not in walker.seen and 0 < e.position <= walker.position]
            walker.finish_anchors(entries, walker.position, self._stored_hashes(earlier))
            check = walker.result(start)
            check = ChainCheck(**{**check.__dict__, "events": before + check.events})
            if check.ok:
                self._verified = (check.head_position, check.head_hash, check.events)
                self._anchor_cursors = cursors
                if self.halted is None:
                    self._set_status(ChainStatus(True, check.head_position,
                                                 max(self.head_position, check.head_position),
                                                 None, time.time_ns()))
            else:
                # A writer must not extend a chain found broken (issue 5, item 8).
                self._break(check.problem or "chain broken",
                            (check.first_broken_position or 1) - 1)
            return check

    def close(self) -> None:
        for anchor in self.anchors:
            anchor.close()
        self.datastore.close()


class _DeadConnection(Exception):
    """The pooled connection was dead before a transaction started (nothing was sent)."""


def _read_anchor(anchor: ChainAnchor, cursor: int) -> tuple[list[AnchorEntry], int]:
    return anchor.read(cursor)


_PG_POOL_SIZE, _PG_POOL_OVERFLOW = 2, 2
_PG_POOL_MAX = _PG_POOL_SIZE + _PG_POOL_OVERFLOW


def _pg_datastore(url: str) -> PostgresDatastore:
    parts = urlsplit(url)
    return PostgresDatastore(
        dbname=parts.path.lstrip("/") or "postgres",
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        pool_size=_PG_POOL_SIZE,
        max_overflow=_PG_POOL_OVERFLOW,
    )
