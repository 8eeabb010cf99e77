"""Experiment: ways to insert one group commit of stored events into PostgreSQL.

Same table, lock and RETURNING contract as the eventsourcing recorder; only the wire
encoding differs. Run: ``python -m bench.pg_insert`` (uses a throwaway database).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
from eventsourcing.persistence import StoredEvent

from bench.durable import open_pg_store
from bench.pg import admin_url, throwaway_database
from bench.workload import NullJournal, SimClock, bench_config, commands
from infrastructure.codec import GENESIS_HASH, encode_record

TABLE = "stored_events"
LOCK = f"LOCK TABLE {TABLE} IN EXCLUSIVE MODE"


def stored_batches(batches: int, size: int) -> list[list[StoredEvent]]:
    import tempfile
    from pathlib import Path

    from infrastructure.bootstrap import build_engine
    from infrastructure.settings import Settings

    clock = SimClock()
    with tempfile.TemporaryDirectory() as tmp:
        engine = build_engine(Settings(data_dir=Path(tmp)), bench_config(), NullJournal(), clock)
    engine.run_batch([])
    cmds = commands(batches * size, seed=99, crossing_pct=0.0, prefix="X")
    out = []
    prev, position = GENESIS_HASH, 0
    for b in range(batches):
        clock.now += size * 20_000
        events: list[Any] = []
        for cmd in cmds[b * size:(b + 1) * size]:
            engine.decide(cmd, events, [])
        stored = []
        for e in events:
            position += 1
            topic, state, prev = encode_record(e, position, prev)
            stored.append(StoredEvent(e.order_id, e.version, topic, state))
        out.append(stored)
    return out


def via_recorder(store: Any) -> Callable[[list[StoredEvent]], list[int]]:
    return lambda batch: list(store.recorder.insert_events(batch))


def via_typed_arrays(conn: psycopg.Connection[Any]) -> Callable[[list[StoredEvent]], list[int]]:
    """INSERT ... SELECT FROM unnest(uuid[], bigint[], text[], bytea[]), binary parameters."""
    statement = (
        f"INSERT INTO {TABLE} (originator_id, originator_version, topic, state) "
        "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
        "RETURNING notification_id")

    def insert(batch: list[StoredEvent]) -> list[int]:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(LOCK)
            cur.execute(statement, (
                [s.originator_id for s in batch], [s.originator_version for s in batch],
                [s.topic for s in batch], [s.state for s in batch]), prepare=True)
            return [r[0] for r in cur.fetchall()]
    return insert


def via_copy(conn: psycopg.Connection[Any]) -> Callable[[list[StoredEvent]], list[int]]:
    """COPY ... FROM STDIN (binary) under the table lock; ids from the sequence (contiguous
    because the EXCLUSIVE lock serialises writers)."""
    def insert(batch: list[StoredEvent]) -> list[int]:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(LOCK)
            with cur.copy(f"COPY {TABLE} (originator_id, originator_version, topic, state) "
                          "FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["uuid", "int8", "text", "bytea"])
                for s in batch:
                    copy.write_row((s.originator_id, s.originator_version, s.topic, s.state))
            cur.execute(f"SELECT currval(pg_get_serial_sequence('{TABLE}', 'notification_id'))")
            last = cur.fetchone()[0]  # type: ignore[index]
            return list(range(last - len(batch) + 1, last + 1))
    return insert


def run(batches: int = 8, size: int = 4000) -> list[tuple[str, float, float]]:
    """(method, ms per append of ``size`` events (median), events/s)."""
    data = stored_batches(batches * 4, size)
    results = []
    url = admin_url()
    methods = ("recorder (composite[] text, pipeline)", "recorder + enable_db_functions",
               "unnest(typed arrays), binary", "COPY binary")
    for m, name in enumerate(methods):
        with throwaway_database(url) as db:
            store = open_pg_store(db, db_functions=(m == 1))
            conn = psycopg.connect(db, autocommit=True)
            insert = (via_recorder(store) if m < 2 else
                      via_typed_arrays(conn) if m == 2 else via_copy(conn))
            took = []
            for batch in data[m * batches:(m + 1) * batches]:
                t0 = time.perf_counter_ns()
                ids = insert(batch)
                took.append(time.perf_counter_ns() - t0)
                assert len(ids) == len(batch)
            conn.close()
            store.close()
        took.sort()
        results.append((name, took[len(took) // 2] / 1e6, batches * size / (sum(took) / 1e9)))
    return results


if __name__ == "__main__":
    for name, ms, eps in run():
        print(f"{name:42s} {ms:8.1f} ms/4000 events {eps:10,.0f} events/s")
