"""Row 2: durable throughput through the engine thread (group commit), SQLite and PostgreSQL.

A client thread keeps ``window`` futures in flight (closed loop): it submits until the
window is full, then waits for the oldest future (the engine answers in submission order).
Ack latency is submit -> future done; "done" is stamped by a done-callback, which runs in
the engine thread right after the cycle's commits. Orders/s counts from the first submit
to the last acknowledgement, so every event of every order is committed.
"""

from __future__ import annotations

import gc
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

from bench.workload import bench_config, commands, percentiles
from commands.models import SubmitOrder
from infrastructure.bootstrap import build_engine
from infrastructure.codec import GENESIS_HASH, encode_record
from infrastructure.event_store import EVENTS_TABLE, EventStore
from infrastructure.settings import Settings


@dataclass
class DurableResult:
    backend: str
    window: int
    orders: int
    seconds: float
    events: int
    batches: int
    ack_p50_ms: float
    ack_p99_ms: float
    ack_max_ms: float
    failures: int
    append_ms_p50: float = float("nan")
    append_ms_p99: float = float("nan")
    append_share: float = float("nan")

    @property
    def orders_per_s(self) -> float:
        return self.orders / self.seconds

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def avg_batch(self) -> float:
        return self.orders / self.batches if self.batches else float("nan")


class TimedStore:
    """Wraps a store's ``append`` to time each group commit (the engine thread's I/O)."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.append_ns: list[int] = []

    def append(self, events: Any) -> int:
        t0 = time.perf_counter_ns()
        position = self.store.append(events)
        self.append_ns.append(time.perf_counter_ns() - t0)
        return position

    def read(self, after: int = 0) -> Any:
        return self.store.read(after)

    def reset_head(self) -> None:
        self.store.reset_head()


def open_pg_store(url: str, *, library_recorder: bool = False) -> Any:
    """EventStore.open for PostgreSQL (``url``: the engine role), or, for comparison, the
    library's recorder as shipped (an array of composites rendered as text by psycopg;
    ``url``: the owner role, as it draws positions from the table's sequence)."""
    anchor = Path(tempfile.mkdtemp(prefix="marketlog-bench-")) / "chain-heads.jsonl"
    if not library_recorder:
        return EventStore.open(Settings(database_url=url, chain_anchor_file=anchor))
    return LibraryRecorderStore(url)


class LibraryRecorderStore:
    """Appends through the eventsourcing recorder's own insert (benchmark comparison only: no
    fencing, no anchor; the records are chained as the store chains them)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.datastore = PostgresDatastore(
            dbname=parts.path.lstrip("/"), host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432, user=unquote(parts.username or ""),
            password=unquote(parts.password or ""), pool_size=2, max_overflow=2,
        )
        self.recorder = PostgresApplicationRecorder(self.datastore,
                                                    events_table_name=EVENTS_TABLE)
        self.recorder.create_table()
        self.head_position, self.head_hash = 0, GENESIS_HASH

    def append(self, events: Any) -> int:
        position, prev, stored = self.head_position, self.head_hash, []
        for event in events:
            position += 1
            topic, state, prev = encode_record(event, position, prev)
            stored.append(StoredEvent(event[0], event[1], topic, state))
        ids = self.recorder.insert_events(stored)
        assert ids and ids[-1] == position
        self.head_position, self.head_hash = position, prev
        return position

    def read(self, after: int = 0) -> Any:
        return iter(())

    def reset_head(self) -> None:
        pass

    def close(self) -> None:
        self.datastore.close()


def run_closed_loop(store: Any, backend: str, cmds: list[SubmitOrder], window: int,
                    batch_max: int) -> DurableResult:
    timed = TimedStore(store)
    with tempfile.TemporaryDirectory(prefix="marketlog-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp), batch_max=batch_max)
        engine = build_engine(settings, bench_config(), timed)  # type: ignore[arg-type]
    engine.run_batch([])  # the calendar's trading day opens (orders need one)
    start_position = store.head_position
    n = len(cmds)
    sent = [0] * n
    done = [0] * n
    failures = [0]
    pc = time.perf_counter_ns

    def stamp(i: int) -> Callable[[Future[Any]], None]:
        def on_done(future: Future[Any]) -> None:
            done[i] = pc()
            if future.exception() is not None:
                failures[0] += 1
        return on_done

    def client() -> None:
        submit = engine.submit
        inflight: deque[Future[Any]] = deque()
        for i, cmd in enumerate(cmds):
            if len(inflight) >= window:
                inflight.popleft().exception()  # wait for the oldest
                while inflight and inflight[0].done():
                    inflight.popleft()
            sent[i] = pc()
            future = submit(cmd)
            future.add_done_callback(stamp(i))
            inflight.append(future)
        for future in inflight:
            future.exception()

    engine.start()
    t0 = time.perf_counter()
    thread = threading.Thread(target=client, name="bench-client")
    thread.start()
    thread.join()
    seconds = time.perf_counter() - t0
    engine.stop()
    acks = [(d - s) / 1e6 for s, d in zip(sent, done, strict=True)]
    p50, p99, pmax = percentiles(acks, 50, 99, 100)
    appends = [a / 1e6 for a in timed.append_ns]
    a50, a99 = percentiles(appends, 50, 99)
    result = DurableResult(
        backend, window, n, seconds, store.head_position - start_position, engine.batches,
        p50, p99, pmax, failures[0], a50, a99, sum(appends) / 1000 / seconds)
    engine.book = engine.venue = None  # type: ignore[assignment]
    gc.unfreeze()
    gc.collect()
    return result


def append_micro(store: Any, batches: int, size: int, seed: int) -> tuple[float, float]:
    """Direct group-commit cost: events of ``size`` decided orders appended per transaction.

    Returns (p50 ms per append, events/s over all appends)."""
    from bench.workload import NullJournal, SimClock, bench_config

    clock = SimClock()
    with tempfile.TemporaryDirectory(prefix="marketlog-bench-") as tmp:
        engine = build_engine(Settings(data_dir=Path(tmp)), bench_config(), NullJournal(), clock)
    engine.run_batch([])
    cmds = commands(batches * size, seed=seed, crossing_pct=0.0, prefix=f"M{seed}-")
    event_batches = []
    for b in range(batches):
        clock.now += size * 20_000
        events: list[Any] = []
        for cmd in cmds[b * size:(b + 1) * size]:
            engine.decide(cmd, events, [])
        event_batches.append(events)
    took = []
    for events in event_batches:
        t0 = time.perf_counter_ns()
        store.append(events)
        took.append(time.perf_counter_ns() - t0)
    gc.unfreeze()
    total_events = sum(len(e) for e in event_batches)
    return percentiles(took, 50)[0] / 1e6, total_events / (sum(took) / 1e9)
