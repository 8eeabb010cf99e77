"""Tampering with the real stores, SQLite files and PostgreSQL: what the database refuses, and
what ``verify`` reports by name when someone with the owner's rights goes around it
(issue 5, item 6; ARCHITECTURE rule 5).

Each test writes real events (from the real BookOfRecord) through ``EventStore.append`` in
several transactions, so the chain-head anchor file holds several heads, then tampers as the
owner would: on SQLite by dropping the triggers, on PostgreSQL as the owner role with the
tables' triggers disabled (the engine's role cannot do either: test_store_roles.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from api.cli import app
from commands.ports import ChainBroken
from infrastructure import codec
from infrastructure.event_store import EventStore
from infrastructure.settings import Settings
from projections.rebuild import rebuild
from tests import builders as b

pytestmark = pytest.mark.timeout(120)

EVENTS = 60
BATCH = 20  # three transactions: heads 20, 40 and 60 are anchored


def make_events(n: int) -> list[Any]:
    book = b.book()
    return [b.submit(book, quantity=1 + i % 3) for i in range(n)]


class Tamperer:
    """Raw SQL on the store as its owner, guards off: what an insider with the keys can do."""

    def __init__(self, settings: Settings, owner_url: str | None) -> None:
        self.settings = settings
        self.pg = settings.uses_postgres
        self.owner_url = owner_url
        self.pos = "notification_id" if self.pg else "rowid"

    @contextmanager
    def _cursor(self, guards_off: bool) -> Iterator[Any]:
        if self.pg:
            assert self.owner_url
            with psycopg.connect(self.owner_url) as conn:
                if guards_off:
                    conn.execute("ALTER TABLE stored_events DISABLE TRIGGER USER")
                yield conn.cursor()
                if guards_off:
                    conn.execute("ALTER TABLE stored_events ENABLE TRIGGER USER")
        else:
            conn = sqlite3.connect(self.settings.sqlite_store_path, isolation_level=None)
            try:
                conn.execute("BEGIN")
                if guards_off:
                    for name in ("no_update", "no_delete", "append_only"):
                        conn.execute(f"DROP TRIGGER IF EXISTS stored_events_{name}")
                yield conn.cursor()
                conn.execute("COMMIT")
            finally:
                conn.close()

    def run(self, sql: str, params: Sequence[Any] = (), *, guards_off: bool = True) -> None:
        sql = sql.replace("{pos}", self.pos)
        if self.pg:
            sql = sql.replace("?", "%s")
        with self._cursor(guards_off) as curs:
            curs.execute(sql, params)

    def row(self, position: int) -> tuple[str, Any, int, bytes]:
        with self._cursor(False) as curs:
            curs.execute(("SELECT topic, originator_id, originator_version, state FROM "
                          f"stored_events WHERE {self.pos} = " + ("%s" if self.pg else "?")),
                         (position,))
            topic, oid, version, state = curs.fetchone()
            return topic, oid, version, bytes(state)

    def set_state(self, position: int, state: bytes) -> None:
        self.run("UPDATE stored_events SET state = ? WHERE {pos} = ?", (state, position))


@pytest.fixture
def owner_url(backend: Settings, request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("pg_owner_url") if backend.uses_postgres else None


@pytest.fixture
def written(backend: Settings) -> Iterator[tuple[EventStore, list[Any]]]:
    """A store holding EVENTS events, appended BATCH at a time by a claimed writer."""
    store = EventStore.open(backend)
    store.claim_writer()
    events = make_events(EVENTS)
    for i in range(0, EVENTS, BATCH):
        store.append(events[i:i + BATCH])
    assert store.verify().ok
    yield store, events
    store.close()


@pytest.fixture
def tamper(backend: Settings, owner_url: str | None) -> Tamperer:
    return Tamperer(backend, owner_url)


def fresh_check(settings: Settings) -> Any:
    """What a separate verifier process sees (``marketlog verify`` opens its own store)."""
    store = EventStore.open(settings, reader=True)
    try:
        return store.verify()
    finally:
        store.close()


def cli_verify(settings: Settings) -> Any:
    env = {"MARKETLOG_DATA_DIR": str(settings.data_dir),
           "MARKETLOG_DATABASE_URL": settings.database_url or "",
           "MARKETLOG_READER_DATABASE_URL": settings.reader_database_url or ""}
    return CliRunner().invoke(app, ["verify"], env={k: v for k, v in env.items() if v} | {
        k: None for k, v in env.items() if not v})


# ------------------------------------------------------------------- refused outright


def test_insert_or_replace_cannot_rewrite_an_event(
        written: tuple[EventStore, list[Any]], backend: Settings, tamper: Tamperer) -> None:
    """Issue 5, item 6: on SQLite INSERT OR REPLACE rewrote an event without firing the DELETE
    trigger and verify said OK. Every way of replacing or squeezing in a row is refused."""
    store, _ = written
    topic, oid, version, state = tamper.row(22)
    forged = state.replace(b'"quantity":', b'"quantity":9')
    oid_param = oid  # as stored: hex text on SQLite, uuid on PostgreSQL
    attempts = [
        # same originator id and version, no position: the library's own insert shape
        ("INSERT INTO stored_events (originator_id, originator_version, topic, state) "
         "VALUES (?, ?, ?, ?)", (oid_param, version, topic, forged)),
        # the same position again
        ("INSERT INTO stored_events ({pos}, originator_id, originator_version, topic, state) "
         "VALUES (?, ?, ?, ?, ?)", (22, oid_param, 999, topic, forged)),
    ]
    gap = ("INSERT INTO stored_events ({pos}, originator_id, originator_version, topic, state) "
           "VALUES (?, ?, ?, ?, ?)", (EVENTS + 2, oid_param, 999, topic, forged))
    if backend.uses_postgres:
        attempts.append((
            "INSERT INTO stored_events ({pos}, originator_id, originator_version, topic, state) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (originator_id, originator_version) "
            "DO UPDATE SET state = EXCLUDED.state", (EVENTS + 1, oid, version, topic, forged)))
    else:
        attempts += [
            gap,  # SQLite refuses a gap after the head at once (its BEFORE INSERT trigger)
            ("INSERT OR REPLACE INTO stored_events (originator_id, originator_version, topic, "
             "state) VALUES (?, ?, ?, ?)", (oid_param, version, topic, forged)),
            ("INSERT OR REPLACE INTO stored_events (rowid, originator_id, originator_version, "
             "topic, state) VALUES (?, ?, ?, ?, ?)", (22, oid_param, version, topic, forged)),
            ("REPLACE INTO stored_events (rowid, originator_id, originator_version, topic, "
             "state) VALUES (?, ?, ?, ?, ?)", (EVENTS + 1, oid_param, version, topic, forged)),
            ("INSERT INTO stored_events (rowid, originator_id, originator_version, topic, "
             "state) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET state = excluded.state",
             (EVENTS + 1, oid_param, version, topic, forged)),
        ]
    error = psycopg.Error if backend.uses_postgres else sqlite3.DatabaseError
    for sql, params in attempts:
        with pytest.raises(error, match=r"immutable|duplicate key"):
            tamper.run(sql, params, guards_off=False)
    assert tamper.row(22)[3] == state
    assert store.verify().ok
    assert fresh_check(backend).ok
    assert store.append(make_events(1)) == EVENTS + 1  # the writer is unaffected


def test_a_record_squeezed_in_after_the_head_is_caught(
        written: tuple[EventStore, list[Any]], backend: Settings, tamper: Tamperer) -> None:
    """PostgreSQL takes the insert (a contiguity trigger cost 15-25% of durable throughput),
    but nothing built on it passes: verify names the gap, and the writer, finding the head
    moved behind its back, refuses to extend the chain (SQLite refuses the insert itself)."""
    store, _ = written
    topic, oid, _, state = tamper.row(22)
    squeeze = ("INSERT INTO stored_events ({pos}, originator_id, originator_version, topic, "
               "state) VALUES (?, ?, ?, ?, ?)", (EVENTS + 2, oid, 999, topic, state))
    if not backend.uses_postgres:
        with pytest.raises(sqlite3.DatabaseError, match="immutable"):
            tamper.run(*squeeze, guards_off=False)
        assert store.append(make_events(1)) == EVENTS + 1
        return
    tamper.run(*squeeze, guards_off=False)
    check = fresh_check(backend)
    assert not check.ok and check.first_broken_position is not None
    with pytest.raises(ChainBroken):
        store.append(make_events(1))


# -------------------------------------------------------------- named by verify


def test_an_edit_of_event_22_names_record_22(
        written: tuple[EventStore, list[Any]], backend: Settings, tamper: Tamperer) -> None:
    """It used to be reported as a break at 23, with 22 counted as verified."""
    store, _ = written
    state = tamper.row(22)[3]
    tamper.set_state(22, state.replace(b'"quantity":', b'"quantity":7', 1))
    for check in (store.verify(), fresh_check(backend)):
        assert not check.ok
        assert check.first_broken_position == 22
        assert [p.kind for p in check.problems] == ["changed"]
        assert "record 22 was changed" in check.problem
    result = cli_verify(backend)
    assert result.exit_code == 1, result.output
    assert "BROKEN at position 22" in result.output
    assert "record 22 was changed" in result.output


def test_a_changed_topic_is_named_and_rebuild_fails_clearly(
        written: tuple[EventStore, list[Any]], backend: Settings, tamper: Tamperer,
        tmp_path: Any) -> None:
    store, _ = written
    tamper.run("UPDATE stored_events SET topic = ? WHERE {pos} = ?",
               ("domain.events:Forged", 22))
    tamper.run("UPDATE stored_events SET topic = ? WHERE {pos} = ?",
               (codec.TOPIC_PREFIX + "OrderCanceled", 31))
    check = fresh_check(backend)
    assert [(p.kind, p.position) for p in check.problems] == [("changed", 22), ("changed", 31)]
    assert "topic was changed to 'domain.events:Forged'" in check.problems[0].detail
    assert "topic" in check.problems[1].detail
    # Replaying the log names the record instead of crashing with a KeyError.
    with pytest.raises(codec.UndecodableEvent, match="position 22"):
        list(store.read())
    with pytest.raises(codec.UndecodableEvent, match="position 22"):
        rebuild(store, f"sqlite:///{tmp_path / 'rebuilt.sqlite'}")


def test_a_changed_originator_version_is_named(
        written: tuple[EventStore, list[Any]], backend: Settings, tamper: Tamperer) -> None:
    assert written
    tamper.run("UPDATE stored_events SET originator_version = ? WHERE {pos} = ?", (5, 22))
    check = fresh_check(backend)
    assert check.first_broken_position == 22
    assert "originator version column 5 differs from the body's version 1" in check.problem
    assert len(check.problems) == 1


def test_a_self_consistent_replacement_names_the_replaced_record(
        written: tuple[EventStore, list[Any]], backend: Settings, tamper: Tamperer) -> None:
    """A forger who re-hashes record 22 itself still breaks record 23's link to it."""
    _, events = written
    prev = codec.stored_hash(tamper.row(21)[3])
    forged = events[21]._replace(quantity=5000, limit_price=Decimal("1.00"))
    tamper.set_state(22, codec.encode(forged, 22, prev))
    check = fresh_check(backend)
    assert [(p.kind, p.position) for p in check.problems] == [("replaced", 22)]
    assert "record 22 was replaced" in check.problem


def test_removed_records_are_named_as_missing_positions(
        written: tuple[EventStore, list[Any]], backend: Settings, tamper: Tamperer) -> None:
    assert written
    tamper.run("DELETE FROM stored_events WHERE {pos} BETWEEN ? AND ?", (40, 45))
    check = fresh_check(backend)
    assert [(p.kind, p.position, p.last_position) for p in check.problems] == [
        ("missing", 40, 45)]
    assert "positions 40-45 missing" in check.problem
    assert check.head_position == EVENTS


def test_a_deleted_tail_is_caught_by_the_anchor(
        written: tuple[EventStore, list[Any]], backend: Settings, tamper: Tamperer) -> None:
    """Issue 5, item 6: deleting the tail after dropping the trigger used to verify OK. The
    chain that is left is intact; only the heads recorded outside the database show the cut."""
    tamper.run("DELETE FROM stored_events WHERE {pos} > ?", (50,))
    check = fresh_check(backend)
    assert not check.ok
    assert [(p.kind, p.last_position) for p in check.problems] == [("truncated", EVENTS)]
    assert f"the log ends at position 50 but position {EVENTS} was committed" in check.problem
    # Without its anchor file the same store verifies: the anchor is what catches it.
    blind = backend.model_copy(update={"chain_anchor_file": backend.data_dir / "none.jsonl"})
    assert fresh_check(blind).ok
    # The writer finds it too, and refuses to extend the cut chain.
    writer = EventStore.open(backend)
    try:
        writer.claim_writer()
        assert not writer.chain_status.ok
        assert "tail was deleted" in (writer.chain_status.problem or "")
        with pytest.raises(ChainBroken, match="tail was deleted"):
            writer.append(make_events(1))
    finally:
        writer.close()


def test_a_recomputed_chain_is_caught_by_the_anchor(
        written: tuple[EventStore, list[Any]], backend: Settings, tamper: Tamperer) -> None:
    """Rewrite record 30 and re-hash everything after it: every link verifies, but the heads
    anchored at 40 and 60 no longer match."""
    _, events = written
    prev = codec.stored_hash(tamper.row(29)[3])
    for position in range(30, EVENTS + 1):
        event = events[position - 1]
        if position == 30:
            event = event._replace(quantity=4000)
        state = codec.encode(event, position, prev)
        tamper.set_state(position, state)
        prev = codec.stored_hash(state)
    check = fresh_check(backend)
    assert [(p.kind, p.position) for p in check.problems] == [("rewritten", 40),
                                                              ("rewritten", EVENTS)]
    assert "chain was rewritten from here or earlier" in check.problem


def test_an_edit_after_the_last_anchor_check_is_found_at_writer_start(
        written: tuple[EventStore, list[Any]], backend: Settings, tamper: Tamperer) -> None:
    """The start-up check covers the anchored head record itself and everything after it."""
    store, _ = written
    store.close()
    state = tamper.row(EVENTS)[3]
    tamper.set_state(EVENTS, state.replace(b'"quantity":', b'"quantity":8', 1))
    writer = EventStore.open(backend)
    try:
        writer.claim_writer()
        assert not writer.chain_status.ok
        assert f"record {EVENTS} was changed" in (writer.chain_status.problem or "")
        with pytest.raises(ChainBroken):
            writer.append(make_events(1))
    finally:
        writer.close()


def test_the_writer_notices_a_cut_tail_at_its_next_append(
        written: tuple[EventStore, list[Any]], tamper: Tamperer) -> None:
    """The continuous check (issue 5, item 8): every append compares the stored head with the
    one this writer committed last, in the append's own transaction."""
    store, _ = written
    tamper.run("DELETE FROM stored_events WHERE {pos} > ?", (EVENTS - 3,))
    with pytest.raises(ChainBroken, match=f"head is position {EVENTS - 3}"):
        store.append(make_events(2))
    assert not store.chain_status.ok
    assert store.halted is not None
    with pytest.raises(ChainBroken):  # halted: no later append either
        store.append(make_events(1))


def test_incremental_verification_checks_only_what_is_new(
        written: tuple[EventStore, list[Any]], backend: Settings, tamper: Tamperer) -> None:
    store, _ = written
    full = store.verify()
    first = store.verify(incremental=True)  # nothing verified incrementally yet: full
    assert first == full and first.events == EVENTS
    store.append(make_events(5))
    later = store.verify(incremental=True)
    assert later.ok and later.events == EVENTS + 5 and later.checked_from == EVENTS
    assert store.verify(incremental=True).checked_from == EVENTS + 5
    # A rewrite of the record it last verified is still caught incrementally ...
    state = tamper.row(EVENTS + 5)[3]
    tamper.set_state(EVENTS + 5, state.replace(b'"quantity":', b'"quantity":6', 1))
    broken = store.verify(incremental=True)
    assert not broken.ok and broken.first_broken_position == EVENTS + 5
    assert not store.chain_status.ok
    # ... and an in-place edit of an older record by the next full verification.
    tamper.set_state(10, tamper.row(10)[3].replace(b'"quantity":', b'"quantity":6', 1))
    assert [p.position for p in store.verify().problems] == [10, EVENTS + 5]
