"""One writer per store, guaranteed by the store itself (issue 5, item 7; ARCHITECTURE rule 3).

The writer lock (advisory lock / lock file) is a side channel and can vanish: a PostgreSQL
restart ends the session holding it; deleting ``data/engine.lock`` lets a second process lock
a new file. These tests do exactly that, for real (a private PostgreSQL cluster is restarted;
the shared one never is), and check that the second writer's claim fences the first at its
next append, that the log holds one writer's events after the other's, never interleaved,
and that the chain verifies. Snapshot storage for the engine's recovery is here too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from commands.ports import WriterFenced
from infrastructure.event_store import EventStore
from infrastructure.postgres_admin import (
    TemporaryCluster,
    temporary_cluster,
    throwaway_store,
    with_database,
)
from infrastructure.settings import Settings
from infrastructure.writer_lock import (
    HELD,
    LOCK_KEY,
    LOST,
    AnotherWriterRunning,
    WriterLock,
)
from tests import builders as b

pytestmark = pytest.mark.timeout(180)


def events(n: int) -> list[Any]:
    book = b.book()
    return [b.submit(book, quantity=1) for _ in range(n)]


def originators(store: EventStore) -> list[Any]:
    return [e[0] for _, e in store.read()]


@pytest.fixture(scope="module")
def cluster() -> Iterator[TemporaryCluster]:
    """A private PostgreSQL server that this module may restart."""
    with temporary_cluster() as c:
        yield c


@pytest.fixture
def cluster_settings(cluster: TemporaryCluster, tmp_path: Path) -> Iterator[Settings]:
    with throwaway_store(cluster.admin, engine=cluster.engine, reader=cluster.reader) as urls:
        yield Settings(data_dir=tmp_path / "data", database_url=urls.engine,
                       reader_database_url=urls.reader, read_database_url=None,
                       database_owner_url=None, chain_anchor_file=None)


def fenced_then_verify(first: EventStore, second: EventStore, settings: Settings,
                       first_events: list[Any], second_events: list[Any]) -> None:
    """The first writer's next append fails; the log is first's events then second's."""
    late = events(3)
    with pytest.raises(WriterFenced, match="superseded by epoch 2"):
        first.append(late)
    with pytest.raises(WriterFenced):  # halted for good: nothing slips in later
        first.append(late)
    reader = EventStore.open(settings, reader=True)
    try:
        logged = originators(reader)
        assert logged == [e[0] for e in first_events + second_events]
        assert not {e[0] for e in late} & set(logged)
        check = reader.verify()
        assert check.ok, check
        assert check.events == len(first_events) + len(second_events)
    finally:
        reader.close()


# ------------------------------------------------------------------------ PostgreSQL


def test_postgres_restart_second_writer_fences_the_first(cluster: TemporaryCluster,
                                                         cluster_settings: Settings) -> None:
    """Issue 5, item 7: after a PostgreSQL restart the advisory lock was gone and a second
    engine started beside the first; both wrote and the chain broke."""
    settings = cluster_settings
    lock_a = WriterLock(settings, watch=False)
    first = EventStore.open(settings)
    second: EventStore | None = None
    lock_b: WriterLock | None = None
    try:
        assert first.claim_writer() == 1
        before = events(10)
        first.append(before[:5])
        first.append(before[5:])

        cluster.restart()  # every session ends, the advisory lock with it

        lock_b = WriterLock(settings, watch=False)  # the side channel no longer refuses
        second = EventStore.open(settings.model_copy(
            update={"data_dir": settings.data_dir.parent / "other"}))
        assert second.claim_writer() == 2
        after = events(4)
        assert second.append(after) == 14

        fenced_then_verify(first, second, settings, before, after)
        # The first engine's watchdog sees its lock gone and taken by someone else.
        assert lock_a.check() == LOST
        assert lock_a.lost and "another engine took" in (lock_a.lost_reason or "")
        assert lock_b.check() == HELD
    finally:
        for closeable in (first, second, lock_a, lock_b):
            if closeable is not None:
                getattr(closeable, "close", getattr(closeable, "release", None))()


def test_postgres_restart_watchdog_reacquires_the_lock(cluster: TemporaryCluster,
                                                       cluster_settings: Settings) -> None:
    settings = cluster_settings
    lost: list[str] = []
    lock = WriterLock(settings, watch=False, on_lost=lost.append)
    store = EventStore.open(settings)
    try:
        store.claim_writer()
        store.append(events(2))
        cluster.restart()
        assert lock.check() == HELD  # nobody else had it: taken again
        with pytest.raises(AnotherWriterRunning):
            WriterLock(settings, watch=False)
        assert store.append(events(2)) == 4  # a dead pooled connection is retried safely
        assert not lost
    finally:
        store.close()
        lock.release()


def test_writer_lock_watchdog_thread_reports_a_lost_lock(cluster: TemporaryCluster,
                                                         cluster_settings: Settings) -> None:
    """The watchdog thread itself: the lock's session is killed and another engine takes the
    lock before the watchdog's next look; the watchdog reports it lost through ``on_lost``."""
    settings = cluster_settings.model_copy(update={"writer_lock_check_seconds": 0.05})
    lost = threading.Event()
    lock = WriterLock(settings, on_lost=lambda _reason: lost.set())
    other: WriterLock | None = None
    try:
        with lock._mutex:  # hold the watchdog off while the lock changes hands
            with psycopg.connect(with_database(cluster.admin, "postgres"),
                                 autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE "
                              "locktype = 'advisory' AND objid = %s", (LOCK_KEY,))
            for _ in range(100):  # the terminated backend releases its locks as it exits
                try:
                    other = WriterLock(settings, watch=False)
                    break
                except AnotherWriterRunning:
                    time.sleep(0.02)
            assert other is not None
        assert lost.wait(10), "the watchdog did not report the lost lock"
        assert lock.lost and lock.state == LOST
    finally:
        lock.release()
        if other is not None:
            other.release()


# ---------------------------------------------------------------------------- SQLite


def test_sqlite_deleted_lock_file_second_writer_fences_the_first(tmp_path: Path) -> None:
    """Issue 5, item 7: deleting data/engine.lock let a second engine start beside the first."""
    settings = Settings(data_dir=tmp_path / "data", database_url=None,
                        read_database_url=None, chain_anchor_file=None)
    lock_a = WriterLock(settings, watch=False)
    first = EventStore.open(settings)
    second = None
    lock_b = None
    try:
        first.claim_writer()
        before = events(6)
        first.append(before)
        (settings.data_dir / "engine.lock").unlink()

        lock_b = WriterLock(settings, watch=False)  # locks a new file
        second = EventStore.open(settings)
        assert second.claim_writer() == 2
        after = events(5)
        second.append(after)

        fenced_then_verify(first, second, settings, before, after)
        assert lock_a.check() == LOST
        assert "deleted or replaced" in (lock_a.lost_reason or "")
    finally:
        for closeable in (first, second, lock_a, lock_b):
            if closeable is not None:
                getattr(closeable, "close", getattr(closeable, "release", None))()


def test_sqlite_deleted_lock_file_is_locked_again_when_nobody_took_it(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=None, read_database_url=None)
    lock = WriterLock(settings, watch=False)
    try:
        (settings.data_dir / "engine.lock").unlink()
        assert lock.check() == HELD
        assert (settings.data_dir / "engine.lock").exists()
        with pytest.raises(AnotherWriterRunning):
            WriterLock(settings, watch=False)
    finally:
        lock.release()


# ------------------------------------------------------------------ both backends


def test_two_writers_racing_never_both_commit_on_the_same_head(backend: Settings) -> None:
    """Two writers in two threads keep re-claiming the store and appending as fast as they
    can: every successful append starts exactly at the head the previous one ended on."""
    rounds = 25
    results: list[tuple[str, int, int]] = []  # (writer, first position, last position)
    fenced = {"a": 0, "b": 0}
    mutex = threading.Lock()
    start = threading.Barrier(2)

    def writer(name: str) -> None:
        store = EventStore.open(backend)  # same store; one anchor file, appended by both
        try:
            start.wait()
            for _ in range(rounds):
                store.claim_writer()
                for _ in range(3):
                    batch = events(2)
                    try:
                        last = store.append(batch)
                    except WriterFenced:
                        with mutex:
                            fenced[name] += 1
                        break
                    with mutex:
                        results.append((name, last - len(batch) + 1, last))
        finally:
            store.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    spans = sorted(results, key=lambda r: r[1])
    expected = 1
    for _, first, last in spans:
        assert first == expected, spans  # no overlap, no gap: never two on one head
        expected = last + 1
    store = EventStore.open(backend, reader=True)
    try:
        check = store.verify()
        assert check.ok, check
        assert check.events == expected - 1 == sum(last - first + 1 for _, first, last in spans)
    finally:
        store.close()
    assert {name for name, _, _ in spans} == {"a", "b"}
    assert sum(fenced.values()) > 0  # the writers really did fence each other


def test_snapshots_are_stored_tied_to_the_chain(backend: Settings,
                                               request: pytest.FixtureRequest) -> None:
    store = EventStore.open(backend)
    try:
        assert store.latest_snapshot() is None
        store.claim_writer()
        store.save_snapshot(0, b"empty book")
        store.append(events(5))
        store.save_snapshot(5, b"state after five")
        store.append(events(5))
        store.save_snapshot(3, b"state after three")  # older position, stored later
        store.save_snapshot(5, b"ignored: position 5 already has one")
        assert store.latest_snapshot() == (5, b"state after five")
        with pytest.raises(ValueError, match="no event at position 99"):
            store.save_snapshot(99, b"beyond the head")
        big = bytes(range(256)) * 40_000  # ~10 MB
        store.save_snapshot(10, big)
        assert store.latest_snapshot() == (10, big)
    finally:
        store.close()
    # A snapshot whose record no longer matches the log is skipped, not trusted.
    if backend.uses_postgres:
        import psycopg

        with psycopg.connect(request.getfixturevalue("pg_owner_url")) as conn:
            conn.execute("ALTER TABLE snapshots DISABLE TRIGGER USER")
            conn.execute("UPDATE snapshots SET head_hash = 'forged' WHERE position = 10")
            conn.execute("ALTER TABLE snapshots ENABLE TRIGGER USER")
    else:
        import sqlite3

        conn = sqlite3.connect(backend.sqlite_store_path)
        with conn:
            conn.execute("DROP TRIGGER snapshots_no_update")
            conn.execute("UPDATE snapshots SET head_hash = 'forged' WHERE position = 10")
        conn.close()
    store = EventStore.open(backend)
    try:
        assert store.latest_snapshot() == (5, b"state after five")
    finally:
        store.close()


def test_processes_opening_a_fresh_sqlite_store_together_all_get_it(tmp_path: Path) -> None:
    """Switching a new file to WAL needs it to itself and SQLite does not wait for that: the
    second opener got "database is locked" (seen in CI). Every opener must succeed."""
    settings = Settings(data_dir=tmp_path / "data", database_url=None, read_database_url=None)
    openers = 8
    start = threading.Barrier(openers)
    failures: list[BaseException] = []

    def open_store() -> None:
        start.wait()
        try:
            EventStore.open(settings).close()
        except BaseException as error:
            failures.append(error)

    for _ in range(20):  # a fresh file each round
        (tmp_path / "data").mkdir(exist_ok=True)
        for f in (tmp_path / "data").iterdir():
            f.unlink()
        threads = [threading.Thread(target=open_store) for _ in range(openers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert failures == []
