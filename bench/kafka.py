"""Rows 8-14: the event log on Kafka (relay, projector, end to end, lag, client ceiling, rebuild,
engine throughput with the relay in process), against the real broker of
infrastructure/kafka.sh, with each Kafka client installed (infrastructure/kafka_clients.py:
kafka-python, and confluent when confluent-kafka is importable).

Every run uses fresh topics (``marketlog-bench-<uuid>-*``, deleted at the end) and fresh data
directories. One SQLite store is built first by the engine on the bench workload (the mix of
bench/workload.py over trading days, as bench/restart.py does: each close expires the day's
resting orders); it feeds rows 8-10, 12 and 13:

* 8  relay: ``Relay.publish_available()`` over the first N events of the store, 8 partitions;
* 9  projector: ``KafkaProjectionRunner(group=None)`` from offset zero until its watermark
  reaches N, into a fresh SQLite (and PostgreSQL) read-model database, all views and the
  positions view only;
* 10 end to end: relay and projector at once on the pre-filled store (one process, two
  threads, as ``marketlog serve`` runs them; and two processes, as ``marketlog relay`` +
  ``marketlog project``); events/s from the start to the watermark reaching N;
* 11 lag under steady load: ``bootstrap`` with Kafka settings (engine + in-process relay +
  Kafka projector), a paced open-loop submitter; lag = commit of position P (the engine's
  ``on_commit``) -> the projector's watermark reaching P;
* 12 the client alone, through the client port the relay and projector use: producer with the
  relay's configuration and the same record bytes, keys, headers and partitions; group-less
  consumer with the projector's;
* 13 rebuild: the whole store from Kafka offset zero into a fresh SQLite read-model DB, and
  from the store (projections.rebuild.rebuild) for comparison; the digests must agree;
* 14 durable throughput on SQLite (bench/durable.py) with the relay in process vs without.

Each result carries the CPU it used: "py" = this process's CPU time / wall time (one core =
1.0; the GIL keeps pure-Python threads near 1.0 together; librdkafka's threads count too),
"broker" = the broker JVM's (when its process is visible), "machine" = busy cores of the whole
VM (anything else running included) over the same interval.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import importlib.util
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa

from bench import durable
from bench.http import config_toml
from bench.workload import (
    ACCOUNTS,
    BENCH_CONFIG,
    SIM_NS_PER_ORDER,
    SimClock,
    bench_config,
    commands,
    order_fields,
    percentiles,
)
from commands.engine import EngineBusy
from commands.models import CloseTradingDay, OpenTradingDay, SubmitOrder
from infrastructure import codec, kafka_clients
from infrastructure.bootstrap import bootstrap as bootstrap_system
from infrastructure.bootstrap import build_engine, read_models_engine
from infrastructure.event_store import EventStore
from infrastructure.kafka_log import FIRM_KEY, Topics, event_headers, key_of, partition_for
from infrastructure.kafka_projector import KafkaProjectionRunner
from infrastructure.kafka_service import admin_client, bootstrap_from_env, wait_until_ready
from infrastructure.relay import Relay
from infrastructure.settings import Settings
from projections.rebuild import digest, rebuild
from projections.runner import select_views
from projections.schema import migrate

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 8
BATCH = 5000  # relay and projector batch (Settings.projection_batch's default)
BUILD_BUDGET_S = 180.0  # building the store stops after this long (said in the notes)
CLIENT_MODULES = {"kafka-python": "kafka", "confluent": "confluent_kafka"}
Row = tuple[str, ...]
Log = Callable[[str], None]
Record = tuple[bytes, bytes, list[tuple[str, bytes]], int]  # value, key, headers, partition


class NoKafka(RuntimeError):
    pass


def broker(timeout: float = 10.0) -> str:
    """The shared broker's bootstrap address, answering; NoKafka otherwise."""
    found = bootstrap_from_env()
    if not found:
        raise NoKafka("MARKETLOG_TEST_KAFKA_BOOTSTRAP is not set and .state/kafka.env does not "
                      "define it (start it with `bash infrastructure/kafka.sh`)")
    try:
        wait_until_ready(found, timeout=timeout)
    except TimeoutError as exc:
        raise NoKafka(f"the broker at {found} does not answer: {exc}") from exc
    return found


def installed_clients() -> list[str]:
    """The Kafka clients of infrastructure/kafka_clients.py whose library is importable."""
    return [c for c in kafka_clients.CLIENTS
            if importlib.util.find_spec(CLIENT_MODULES.get(c, c)) is not None]


# ----------------------------------------------------------------------------- measuring


@dataclass
class Usage:
    """Wall time, and over it: this process's CPU, the broker's and the machine's busy cores."""

    seconds: float = 0.0
    py_cores: float = 0.0
    broker_cores: float | None = None
    machine_cores: float = 0.0

    def note(self) -> str:
        broker = "" if self.broker_cores is None else f", broker {self.broker_cores:.2f}"
        return f"py {self.py_cores:.2f} cores{broker}, machine {self.machine_cores:.2f} busy"


_broker_process: list[psutil.Process] = []  # the broker's JVM, when found (run() looks)


def find_broker_process(bootstrap: str) -> psutil.Process | None:
    """The local process listening on the bootstrap port (to report its CPU), if visible."""
    port = int(bootstrap.split(",", maxsplit=1)[0].rsplit(":", 1)[1])
    try:
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                return psutil.Process(c.pid)
    except (psutil.Error, OSError):
        pass
    return None


def _cpu_of(process: psutil.Process | None) -> float | None:
    if process is None:
        return None
    try:
        t = process.cpu_times()
        return float(t.user + t.system)
    except psutil.Error:
        return None


@contextlib.contextmanager
def measured() -> Iterator[Usage]:
    usage = Usage()
    broker = _broker_process[0] if _broker_process else None
    b0 = _cpu_of(broker)
    cpu0, sys0, t0 = time.process_time(), psutil.cpu_times(), time.perf_counter()
    try:
        yield usage
    finally:
        usage.seconds = time.perf_counter() - t0
        cpu1, sys1, b1 = time.process_time(), psutil.cpu_times(), _cpu_of(broker)
        busy = ((sum(sys1) - sys1.idle - getattr(sys1, "iowait", 0.0))
                - (sum(sys0) - sys0.idle - getattr(sys0, "iowait", 0.0)))
        if usage.seconds:
            usage.py_cores = (cpu1 - cpu0) / usage.seconds
            usage.machine_cores = busy / usage.seconds
            if b0 is not None and b1 is not None:
                usage.broker_cores = (b1 - b0) / usage.seconds


def rate(n: float, seconds: float) -> str:
    return f"{n / seconds:,.0f}" if seconds > 0 else "inf"


class CappedLog:
    """The store's notification log up to ``cap`` (the relay publishes "the whole store";
    this makes the first ``cap`` events the whole store for one measurement)."""

    def __init__(self, store: EventStore, cap: int) -> None:
        self.store, self.cap, self.store_id = store, cap, store.store_id

    def select(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        if after >= self.cap:
            return []
        return self.store.select(after, min(limit, self.cap - after))


@dataclass
class Topicset:
    """Every topic this run made, deleted at the end."""

    bootstrap: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    made: list[str] = field(default_factory=list)

    def prefix(self, what: str) -> Topics:
        topics = Topics.with_prefix(f"marketlog-bench-{self.run_id}-{what}")
        self.made += [topics.events, topics.checkpoints]
        return topics

    def raw(self, what: str, partitions: int) -> str:
        from kafka.admin import NewTopic

        name = f"marketlog-bench-{self.run_id}-{what}"
        admin = admin_client(self.bootstrap)
        try:
            admin.create_topics([NewTopic(name, partitions, 1)], timeout_ms=10_000)
        finally:
            admin.close()
        self.made.append(name)
        return name

    def delete(self) -> str:
        if not self.made:
            return "no topics made"
        try:
            admin = admin_client(self.bootstrap)
            try:
                gone = sorted(set(self.made) & set(admin.list_topics()))
                if gone:
                    admin.delete_topics(gone, timeout_ms=30_000)
            finally:
                admin.close()
        except Exception as exc:  # a leftover topic is not worth failing the table for
            return f"could not delete the topics marketlog-bench-{self.run_id}-* ({exc!r})"
        return f"its {len(gone)} topics (marketlog-bench-{self.run_id}-*) deleted afterwards"


# ----------------------------------------------------------------------------- the store


@dataclass
class BuiltStore:
    store: EventStore
    data_dir: Path
    events: int
    orders: int
    days: int
    seconds: float
    cut_by_budget: bool


def build_store(data_dir: Path, events: int, batch: int = 2000,
                budget_s: float = BUILD_BUDGET_S) -> BuiltStore:
    """A SQLite store of at least ``events`` events, decided by the engine on the bench mix
    (group commits of ``batch``, simulated clock), trading days of ``events``/8 orders; stops
    early when building takes longer than ``budget_s``."""
    settings = Settings(data_dir=data_dir, batch_max=batch)
    store = EventStore.open(settings)
    store.claim_writer()
    clock = SimClock()
    engine = build_engine(settings, bench_config(), store, clock)
    engine.run_batch([])
    per_day = max(10_000, events // 8)  # ~2.8 events per order once the day closes
    fields = order_fields(10 * events, seed=11, prefix="K")
    first = date.fromisoformat(engine.book.day.date or "2025-06-15")
    orders = days = 0
    cut = False
    t0 = time.perf_counter()
    while store.head_position < events:
        today = 0
        while today < per_day and store.head_position < events:
            chunk = [SubmitOrder(**f) for _, f in zip(range(batch), fields, strict=False)]
            clock.now += len(chunk) * SIM_NS_PER_ORDER
            engine.execute(chunk)
            today += len(chunk)
            if time.perf_counter() - t0 > budget_s:
                cut = True
                break
        orders += today
        days += 1
        if cut or store.head_position >= events:
            break
        engine.execute([
            CloseTradingDay(actor="bench", reason="bench"),
            OpenTradingDay(actor="bench", reason="bench",
                           trading_date=(first + timedelta(days=days)).isoformat())])
    seconds = time.perf_counter() - t0
    engine.book = engine.venue = None  # type: ignore[assignment]
    del engine
    gc.unfreeze()
    gc.collect()
    return BuiltStore(store, data_dir, store.head_position, orders, days, seconds, cut)


# ----------------------------------------------------------------------------- 8. relay


def relay_run(source: Any, bootstrap: str, topics: Topics, client: str
              ) -> tuple[Relay, Usage, int]:
    relay = Relay(source, bootstrap, topics, partitions=PARTITIONS, batch_size=BATCH,
                  client=client)
    start = relay.position
    with measured() as usage:
        reached = relay.publish_available()
    return relay, usage, reached - start


# ----------------------------------------------------------------------------- 12. client alone


def raw_records(store: EventStore, n: int, partitions: int) -> list[Record]:
    """The relay's records for the first ``n`` events: (value, key, headers, partition)."""
    out: list[Record] = []
    last: dict[int, int] = {}
    after = 0
    while after < n:
        rows = store.select(after, min(10_000, n - after))
        if not rows:
            break
        for position, topic, state in rows:
            key = key_of(state)
            p = partition_for(key, partitions)
            out.append((state, key, event_headers(codec.name_of_topic(topic), position,
                                                   last.get(p, 0), codec.stored_hash(state)), p))
            last[p] = position
        after = rows[-1][0]
    return out


def raw_producer(client: str, bootstrap: str, topic: str, records: Sequence[Record]) -> Usage:
    """The relay's producer (client port, its configuration) sending the records alone."""
    producer = kafka_clients.producer(client, bootstrap, client_id="marketlog-bench")
    try:
        # Connected, metadata and producer id before the clock starts (one extra record).
        v, k, h, p = records[0]
        producer.send(topic, p, k, v, h)
        producer.flush(30)
        send = producer.send
        with measured() as usage:
            for v, k, h, p in records:
                send(topic, p, k, v, h)
            producer.flush(300)
    finally:
        producer.close()
    return usage


def raw_consumer(client: str, bootstrap: str, topic: str, n: int) -> tuple[Usage, int]:
    """The projector's consumer (client port, its configuration) reading ``n`` records."""
    consumer = kafka_clients.consumer(client, bootstrap, None, BATCH)
    try:
        consumer.assign(topic, dict.fromkeys(consumer.partitions_for(topic), 0))
        got = 0
        deadline = time.monotonic() + 300
        with measured() as usage:
            while got < n and time.monotonic() < deadline:
                for records in consumer.poll(200, BATCH).values():
                    got += len(records)
    finally:
        consumer.close()
    return usage, got


# ----------------------------------------------------------------------------- 9. projector


@contextlib.contextmanager
def read_models(url: str) -> Iterator[sa.Engine]:
    migrate(url)
    engine = read_models_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def project(engine: sa.Engine, bootstrap: str, topics: Topics, target: int, client: str,
            views: Sequence[Any] | None = None, timeout_s: float = 900.0
            ) -> tuple[Usage, int, int]:
    """Step a group-less projector from offset zero until its watermark reaches ``target``:
    (usage, events applied, position reached). Consumers are opened before the clock."""
    runner = KafkaProjectionRunner(engine, bootstrap, topics, group=None, batch_size=BATCH,
                                   views=views, client=client)
    applied = 0
    try:
        runner._open()  # connections and metadata outside the timing
        deadline = time.monotonic() + timeout_s
        with measured() as usage:
            while runner.position < target:
                applied += runner.step()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"projector at {runner.position} of {target}")
    finally:
        runner.stop()
    return usage, applied, runner.position


# ----------------------------------------------------------------------------- 10. end to end


def end_to_end_threads(store: EventStore, cap: int, bootstrap: str, topics: Topics,
                       url: str, client: str) -> tuple[Usage, float]:
    """Relay thread + projector thread in this process: (usage to the watermark reaching
    ``cap``, seconds the relay took to publish everything)."""
    relay = Relay(CappedLog(store, cap), bootstrap, topics, partitions=PARTITIONS,
                  batch_size=BATCH, client=client)
    with read_models(url) as engine:
        runner = KafkaProjectionRunner(engine, bootstrap, topics, group=None,
                                       batch_size=BATCH, client=client)
        relay_done: list[float] = []

        def watch_relay() -> None:
            if relay.wait_for(cap, 900):
                relay_done.append(time.perf_counter())

        watcher = threading.Thread(target=watch_relay, daemon=True)
        try:
            with measured() as usage:
                t0 = time.perf_counter()
                relay.start()
                runner.start()
                watcher.start()
                if not runner.wait_for(cap, 900):
                    raise TimeoutError(f"end to end: projector at {runner.position} of {cap}")
            watcher.join(5)
        finally:
            relay.stop()
            runner.stop()
    return usage, (relay_done[0] - t0) if relay_done else float("nan")


def _relay_process(data_dir: str, cap: int, bootstrap: str, prefix: str, client: str) -> None:
    """The relay of the two-process end-to-end run, in its own interpreter (no shared GIL):
    says "ready" once set up, publishes on a line from stdin, says "done <seconds>"."""
    store = EventStore.open(Settings(data_dir=Path(data_dir)), reader=True)
    try:
        relay = Relay(CappedLog(store, cap), bootstrap, Topics.with_prefix(prefix),
                      partitions=PARTITIONS, batch_size=BATCH, client=client)
        relay._new_producer()
        print("ready", flush=True)
        sys.stdin.readline()
        t0 = time.perf_counter()
        relay.publish_available()
        print(f"done {time.perf_counter() - t0:.3f}", flush=True)
        relay.stop()
    finally:
        store.close()


def end_to_end_processes(data_dir: Path, cap: int, bootstrap: str, topics: Topics,
                         url: str, client: str) -> tuple[Usage, float]:
    """(usage of this process, the projector, to the watermark reaching ``cap``; seconds the
    relay process took to publish everything)."""
    prefix = topics.events.removesuffix(".events")
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.kafka", "relay", str(data_dir), str(cap), bootstrap,
         prefix, client], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    try:
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the relay process failed to start (exit {child.wait(30)})")
        with read_models(url) as engine:
            runner = KafkaProjectionRunner(engine, bootstrap, topics, group=None,
                                           batch_size=BATCH, head=lambda: cap, client=client)
            try:
                runner._open()
                child.stdin.write("go\n")
                child.stdin.flush()
                with measured() as usage:
                    runner.catch_up(timeout=900)
            finally:
                runner.stop()
        done = child.stdout.readline().split()
        child.wait(60)
    finally:
        if child.poll() is None:
            child.terminate()
            child.wait(10)
    return usage, float(done[1]) if len(done) == 2 else float("nan")


# ----------------------------------------------------------------------------- 11. lag


@dataclass
class LagResult:
    client: str
    target_rate: float
    seconds: float  # submission window
    submitted: int
    busy: int  # EngineBusy at submit (the queue was full)
    acked: int
    ack_seconds: float  # first submit -> last acknowledgement
    commits: int
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    relay_p50_ms: float  # commit of P -> the relay's checkpoint covering P (on Kafka)
    relay_p99_ms: float
    drain_s: float  # last submission -> watermark at the last commit
    usage: Usage
    role: str = "target"  # or "keeps up" (half the rate achieved), "light" (a tenth)

    @property
    def achieved(self) -> float:
        return self.acked / self.ack_seconds if self.ack_seconds else 0.0

    @property
    def sustained(self) -> bool:
        return self.busy == 0 and self.achieved >= 0.95 * self.target_rate


def lag_run(bootstrap: str, topics: Topics, client: str, target_rate: float, seconds: float,
            cmds: Sequence[SubmitOrder]) -> LagResult:
    with tempfile.TemporaryDirectory(prefix="marketlog-bench-kafka-") as tmp:
        config = Path(tmp) / "firm.toml"
        config.write_text(config_toml(BENCH_CONFIG))
        prefix = topics.events.removesuffix(".events")
        settings = Settings(data_dir=Path(tmp) / "data", config_file=config,
                            kafka_bootstrap=bootstrap, kafka_topic_prefix=prefix,
                            kafka_partitions=PARTITIONS, kafka_consumer_group=prefix[-64:],
                            kafka_client=client)  # type: ignore[arg-type]
        system = bootstrap_system(settings, start=False)
        pc = time.perf_counter_ns
        commits: list[tuple[int, int]] = []
        marks: list[tuple[int, int]] = []
        relayed: list[tuple[int, int]] = []
        inner = system.engine.on_commit
        assert inner is not None

        def on_commit(position: int) -> None:
            commits.append((position, pc()))
            inner(position)

        system.engine.on_commit = on_commit
        runner, relay = system.projections, system.relay
        assert relay is not None
        stop = threading.Event()

        def watch(follow: Any, out: list[tuple[int, int]]) -> None:
            seen = follow.position
            while not stop.is_set():
                if follow.wait_for(seen + 1, 0.2):
                    seen = follow.position
                    out.append((seen, pc()))

        watchers = [threading.Thread(target=watch, args=(runner, marks), daemon=True,
                                     name="bench-watermark"),
                    threading.Thread(target=watch, args=(relay, relayed), daemon=True,
                                     name="bench-relay-watch")]
        try:
            system.start()
            for w in watchers:
                w.start()
            # Warm-up: one order through the whole path (consumer group joined, producer up).
            warm = order_fields(1, seed=99, prefix="W")
            system.engine.submit(SubmitOrder(**next(warm))).result(30)
            if not runner.wait_for(system.engine.committed_position, 60):
                raise TimeoutError("the projector never caught up with the warm-up order")
            warm_commits = len(commits)
            n = min(len(cmds), int(target_rate * seconds))
            futures = []
            busy = 0
            submit = system.engine.submit
            interval = 1e9 / target_rate
            with measured() as usage:
                t0 = pc()
                i = 0
                while i < n:
                    due = min(n, int((pc() - t0) / interval) + 1)
                    while i < due:
                        try:
                            futures.append(submit(cmds[i]))
                        except EngineBusy:
                            busy += 1
                        i += 1
                    time.sleep(0.0005)
                t_sent = pc()
                acked = sum(1 for f in futures if f.exception(120) is None)
                t_acked = pc()
                runner.wait_for(system.engine.committed_position, 300)
                t_drained = pc()
        finally:
            stop.set()
            for w in watchers:
                w.join(2)
            system.close()
        lags = _lags(commits[warm_commits:], marks)
        p50, p99, pmax = percentiles(lags, 50, 99, 100)
        r50, r99 = percentiles(_lags(commits[warm_commits:], relayed), 50, 99)
        return LagResult(client, target_rate, (t_sent - t0) / 1e9, n, busy, acked,
                         (t_acked - t0) / 1e9, len(lags), p50, p99, pmax, r50, r99,
                         (t_drained - t_sent) / 1e9, usage)


def _lags(commits: Sequence[tuple[int, int]], marks: Sequence[tuple[int, int]]
          ) -> list[float]:
    """Per commit (position, ns): ms until the first mark (position, ns) at or past it."""
    positions = [p for p, _ in marks]
    out = []
    for position, at in commits:
        k = bisect.bisect_left(positions, position)
        if k < len(marks):
            out.append(max(0, marks[k][1] - at) / 1e6)
    return out


# ----------------------------------------------------------------------------- 14. durable


class NotifyingStore:
    """The store as the engine sees it, telling the relay of each commit (as bootstrap's
    on_commit does)."""

    def __init__(self, store: EventStore, relay: Relay) -> None:
        self.store, self.relay = store, relay

    @property
    def head_position(self) -> int:
        return self.store.head_position

    def append(self, events: Any) -> int:
        position = self.store.append(events)
        self.relay.notify()
        return position

    def read(self, after: int = 0) -> Any:
        return self.store.read(after)

    def reset_head(self) -> None:
        self.store.reset_head()


def durable_run(cmds: list[SubmitOrder], window: int, batch_max: int,
                relay_to: tuple[str, Topics, str] | None
                ) -> tuple[durable.DurableResult, float]:
    """(result, seconds the relay needed after the last ack to publish everything)."""
    with tempfile.TemporaryDirectory(prefix="marketlog-bench-kafka-") as tmp:
        store = EventStore.open(Settings(data_dir=Path(tmp)))
        relay = None
        try:
            target: Any = store
            if relay_to is not None:
                bootstrap, topics, client = relay_to
                relay = Relay(store, bootstrap, topics, partitions=PARTITIONS,
                              batch_size=BATCH, client=client)
                relay.start()
                target = NotifyingStore(store, relay)
            r = durable.run_closed_loop(target, "SQLite", cmds, window, batch_max)
            tail = 0.0
            if relay is not None:
                t0 = time.perf_counter()
                relay.wait_for(store.head_position, 300)
                tail = time.perf_counter() - t0
        finally:
            if relay is not None:
                relay.stop()
            store.close()
    return r, tail


# ----------------------------------------------------------------------------- the rows


@dataclass
class KafkaOptions:
    events: int  # N: rows 8, 9, 10, 12
    rebuild_events: int  # row 13
    durable_orders: int  # row 14
    window: int
    batch_max: int
    lag_rate: float = 20_000.0
    lag_seconds: float = 15.0
    pg_url: str | None = None
    clients: Sequence[str] | None = None  # None: every installed client


@dataclass
class KafkaReport:
    rows: list[Row]
    conditions: list[tuple[str, str]]
    notes: list[str]


def conditions(bootstrap: str, clients: Sequence[str]) -> list[tuple[str, str]]:
    import kafka

    versions = [f"kafka-python {kafka.__version__}"]
    if "confluent" in clients:
        import confluent_kafka

        versions.append(f"confluent-kafka {confluent_kafka.version()[0]} (librdkafka "
                        f"{confluent_kafka.libversion()[0]})")
    try:
        import crc32c  # noqa: F401
        crc = "crc32c present (kafka-python's CRC-32C in C)"
    except ImportError:
        crc = "crc32c NOT installed (kafka-python computes CRC-32C in pure Python)"
    keys = [*ACCOUNTS, FIRM_KEY]
    per: dict[int, int] = {}
    for k in keys:
        p = partition_for(k.encode(), PARTITIONS)
        per[p] = per.get(p, 0) + 1
    pc = kafka_clients.kafka_python_producer_config(bootstrap)
    return [
        ("Kafka", f"broker {bootstrap} (single-node KRaft on this machine, sharing its 2 "
                  f"cores); clients measured: {', '.join(clients)}; {'; '.join(versions)}; "
                  f"{crc}"),
        ("Kafka topics", f"{PARTITIONS} partitions, replication 1, fresh per run; keys: "
                         f"{len(ACCOUNTS)} accounts + {FIRM_KEY} -> {len(per)} of {PARTITIONS} "
                         f"partitions used (keys per partition {dict(sorted(per.items()))})"),
        ("Kafka clients", f"as infrastructure/kafka_clients.py configures them; kafka-python "
                          f"producer acks={pc['acks']}, idempotent, linger_ms="
                          f"{pc['linger_ms']}, batch_size={pc['batch_size'] // 1024} KiB, "
                          f"in-flight {pc['max_in_flight_requests_per_connection']}; relay and "
                          f"projector batch {BATCH:,} events"),
    ]


def run(bootstrap: str, opts: KafkaOptions, log: Log) -> KafkaReport:
    clients = list(opts.clients or installed_clients())
    topicset = Topicset(bootstrap)
    _broker_process[:] = [p for p in [find_broker_process(bootstrap)] if p is not None]
    rows: list[Row] = []
    notes: list[str] = []
    load = os.getloadavg()
    conds = conditions(bootstrap, clients)
    conds.append(("Load before Kafka rows", f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
                                            "(1/5/15 min)"))
    try:
        with tempfile.TemporaryDirectory(prefix="marketlog-bench-kafka-") as tmp:
            _store_rows(Path(tmp), bootstrap, topicset, clients, opts, log, rows, notes)
        _lag_rows(bootstrap, topicset, clients, opts, log, rows)
        _durable_rows(bootstrap, topicset, clients, opts, log, rows)
    finally:
        notes.append(f"Kafka rows: {topicset.delete()}")
    return KafkaReport(rows, conds, notes)


def _store_rows(tmp: Path, bootstrap: str, topicset: Topicset, clients: list[str],
                opts: KafkaOptions, log: Log, rows: list[Row], notes: list[str]) -> None:
    size = max(opts.events, opts.rebuild_events)
    log(f"8-13/14 Kafka: building a SQLite store of {size:,} events with the engine")
    built = build_store(tmp / "store", size)
    store = built.store
    try:
        total = built.events
        n = min(opts.events, total)
        notes.append(
            f"Kafka rows: the store was built by the engine in {built.seconds:.0f} s: "
            f"{built.orders:,} orders over {built.days} trading days -> {total:,} events "
            f"({total / built.seconds:,.0f} events/s)"
            + (f"; building stopped at the {BUILD_BUDGET_S:.0f} s budget, short of {size:,}"
               if built.cut_by_budget else ""))
        records = raw_records(store, n, PARTITIONS)
        mean_bytes = sum(len(v) for v, *_ in records) / len(records)

        relays: dict[str, tuple[Relay, CappedLog, Topics]] = {}
        for client in clients:
            # 12. the client alone -------------------------------------------------------------
            log(f"12/14 [{client}] producer and consumer alone, {n:,} records")
            raw_topic = topicset.raw(f"raw-{client}", PARTITIONS)
            produced = raw_producer(client, bootstrap, raw_topic, records)
            consumed, got = raw_consumer(client, bootstrap, raw_topic, n)

            # 8. relay ---------------------------------------------------------------------------
            log(f"8/14 [{client}] relay: {n:,} events to Kafka")
            topics = topicset.prefix(f"relay-{client}")
            capped = CappedLog(store, n)
            relay, relay_use, relayed = relay_run(capped, bootstrap, topics, client)
            relays[client] = (relay, capped, topics)
            rows.append((
                "8", f"Relay [{client}]: SQLite store -> Kafka, publish_available() over "
                     f"{relayed:,} events",
                f"{rate(relayed, relay_use.seconds)} events/s ({relay_use.seconds:.1f} s; "
                f"{relay_use.note()})", "-", "-"))
            rows.append((
                "12", f"Client alone [{client}]: producer and consumer, {n:,} of the relay's "
                      f"records ({mean_bytes:,.0f} B)",
                f"producer (relay's config: acks=all, idempotent; same value, key, headers, "
                f"partition) {rate(n, produced.seconds)} msg/s ({produced.note()}); group-less "
                f"consumer (projector's config) "
                f"{rate(got, consumed.seconds)} msg/s ({consumed.note()}); the relay takes "
                f"{_times(relay_use.seconds / relayed, produced.seconds / n)} the producer's "
                "time per event", "(reference)", "-"))

            # 9. projector -----------------------------------------------------------------------
            backends: list[tuple[str, Callable[[], contextlib.AbstractContextManager[str]]]] = [
                ("SQLite", lambda: _sqlite_url(tmp))]
            if opts.pg_url and client == clients[-1]:  # the views cost the same either way
                backends.append(("PostgreSQL", lambda: _pg_url(opts.pg_url)))
            for backend, url_of in backends:
                for label, views in (("all views", None),
                                     ("positions view only", select_views(["positions"]))):
                    log(f"9/14 [{client}] projector: {n:,} events into {backend}, {label}")
                    with url_of() as url, read_models(url) as engine:
                        use, applied, _ = project(engine, bootstrap, topics, n, client, views)
                    rows.append((
                        "9", f"Projector [{client}]: Kafka -> {backend}, {label}, from offset "
                             f"0 to position {n:,}",
                        f"{rate(applied, use.seconds)} events/s ({applied:,} applied in "
                        f"{use.seconds:.1f} s by KafkaProjectionRunner(group=None); "
                        f"{use.note()})", "-", "-"))
        del records

        # The whole store on one topic for the rebuild (the last client's relay: the fastest).
        relay, capped, topics = relays[clients[-1]]
        if total > n:
            log(f"13/14 [{clients[-1]}] relay: the rest of the store for the rebuild, "
                f"{total - n:,} events")
            capped.cap = total
            with measured() as rest:
                reached = relay.publish_available()
            notes.append(f"Relay [{clients[-1]}] over the rest of the store (for row 13): "
                         f"{reached - n:,} events at {rate(reached - n, rest.seconds)} "
                         "events/s")
        for r, _, _ in relays.values():
            r.stop()

        # 13. rebuild ---------------------------------------------------------------------------
        log(f"13/14 rebuild: {total:,} events from the store into SQLite")
        with _sqlite_url(tmp) as url, measured() as store_use:
            store_digest = rebuild(store, url, BATCH)
        for client in clients:
            log(f"13/14 [{client}] rebuild: {total:,} events from Kafka offset 0 into SQLite")
            with _sqlite_url(tmp) as url, read_models(url) as engine:
                runner = KafkaProjectionRunner(engine, bootstrap, topics, group=None,
                                               batch_size=BATCH, head=lambda: total,
                                               client=client)
                try:
                    with measured() as kafka_use:
                        reached = runner.catch_up(timeout=1800)
                finally:
                    runner.stop()
                with engine.connect() as conn:
                    t0 = time.perf_counter()
                    kafka_digest = digest(conn)
                    digest_s = time.perf_counter() - t0
            same = "digest equal to the store's" if kafka_digest == store_digest else \
                "DIGEST DIFFERS from the store's"
            rows.append((
                "13", f"Rebuild [{client}]: {total:,} events from Kafka offset 0 into a fresh "
                      "SQLite read-model DB",
                f"{kafka_use.seconds:.1f} s = {rate(total, kafka_use.seconds)} events/s "
                f"(all views, catch_up to the last checkpoint {reached:,}; {kafka_use.note()}; "
                f"{same}); from the store "
                f"(projections.rebuild.rebuild, incl. its ~{digest_s:.1f} s digest): "
                f"{store_use.seconds:.1f} s = {rate(total, store_use.seconds)} events/s"
                + ("" if total >= 1_000_000 else
                   f"; at this rate 1,000,000 events from Kafka take "
                   f"{kafka_use.seconds * 1_000_000 / total:.0f} s"),
                "<= 10 s for 1,000,000 events",
                verdict(kafka_use.seconds <= 10 and kafka_digest == store_digest,
                        total >= 1_000_000)))

        # 10. end to end ------------------------------------------------------------------------
        for client in clients:
            log(f"10/14 [{client}] end to end: relay + projector threads, {n:,} events")
            with _sqlite_url(tmp) as url:
                e2e, relay_s = end_to_end_threads(store, n, bootstrap,
                                                  topicset.prefix(f"e2e-{client}"), url, client)
            log(f"10/14 [{client}] end to end: relay process + projector process, {n:,} "
                "events")
            with _sqlite_url(tmp) as url:
                e2e_proc, relay_proc_s = end_to_end_processes(
                    built.data_dir, n, bootstrap, topicset.prefix(f"e2e-proc-{client}"), url,
                    client)
            best = max(n / e2e.seconds, n / e2e_proc.seconds)
            rows.append((
                "10", f"End to end [{client}]: store -> relay -> Kafka -> projector -> SQLite "
                      f"(all views), {n:,} events",
                f"pre-filled store, relay and projector started at once; one process (relay + "
                f"projector threads, as `serve`): {rate(n, e2e.seconds)} "
                f"events/s ({e2e.seconds:.1f} s; relay done after {relay_s:.1f} s; "
                f"{e2e.note()}); two processes (`relay` + `project`): "
                f"{rate(n, e2e_proc.seconds)} events/s ({e2e_proc.seconds:.1f} s; relay "
                f"process done after {relay_proc_s:.1f} s; projector process: "
                f"{e2e_proc.note()})",
                ">= 100,000 events/s", verdict(best >= 100_000)))
    finally:
        store.close()


def _lag_rows(bootstrap: str, topicset: Topicset, clients: list[str], opts: KafkaOptions,
              log: Log, rows: list[Row]) -> None:
    n = int(opts.lag_rate * opts.lag_seconds)
    log(f"11/14 lag: generating {n:,} orders")
    cmds = commands(n, seed=13, prefix="L")
    tried: list[LagResult] = []
    for client in clients:
        # The target; when not kept, half the rate achieved (about what this machine keeps up
        # with) and a tenth of it (light load: the pipeline's own latency, without queueing).
        rates = [(opts.lag_rate, "target")]
        while rates:
            rate_, role = rates.pop(0)
            log(f"11/14 [{client}] lag: engine + relay + projector, open loop at "
                f"{rate_:,.0f} orders/s for {opts.lag_seconds:.0f} s")
            r = lag_run(bootstrap, topicset.prefix(f"lag{len(tried)}"), client, rate_,
                        opts.lag_seconds, cmds)
            r.role = role
            tried.append(r)
            if role == "target" and not r.sustained:
                rates = [(max(500.0, round(0.5 * r.achieved, -2)), "keeps up"),
                         (max(200.0, round(0.1 * r.achieved, -2)), "light")]
    del cmds
    for r in tried:
        at_target = r.role == "target" and r.target_rate >= 20_000
        rows.append((
            "11", f"Lag [{r.client}]: engine + relay + projector (bootstrap, SQLite), open "
                  f"loop at {r.target_rate:,.0f} orders/s for {r.seconds:.0f} s",
            f"achieved {r.achieved:,.0f} orders/s ({r.acked:,} acked of {r.submitted:,}; "
            f"{r.busy:,} EngineBusy){'' if r.sustained else ' NOT SUSTAINED'}; lag (commit "
            f"of P -> projector watermark >= P) p50 "
            f"{r.lag_p50_ms:,.0f} ms, p99 {r.lag_p99_ms:,.0f} ms, max {r.lag_max_ms:,.0f} ms "
            f"over {r.commits:,} commits (of which commit -> relay checkpoint p50 "
            f"{r.relay_p50_ms:,.0f} ms, p99 {r.relay_p99_ms:,.0f} ms); drained "
            f"{r.drain_s:.1f} s after the last submit; {r.usage.note()}",
            "p99 <= 250 ms at 20,000 orders/s" if at_target else {
                "light": "(light load: the pipeline's own latency)",
                "keeps up": "(about what this machine keeps up with)"}.get(r.role, "-"),
            verdict(r.sustained and r.lag_p99_ms <= 250) if at_target else "-"))


def _durable_rows(bootstrap: str, topicset: Topicset, clients: list[str], opts: KafkaOptions,
                  log: Log, rows: list[Row]) -> None:
    log(f"14/14 durable with/without the relay: generating {opts.durable_orders:,} orders")
    cmds = commands(opts.durable_orders, seed=3)
    without: list[durable.DurableResult] = []
    log("14/14 durable SQLite without the relay")
    without.append(durable_run(cmds, opts.window, opts.batch_max, None)[0])
    with_relay = []
    for client in clients:
        log(f"14/14 [{client}] durable SQLite with the relay in process")
        with_relay.append((client, *durable_run(
            cmds, opts.window, opts.batch_max,
            (bootstrap, topicset.prefix(f"durable-{client}"), client))))
    log("14/14 durable SQLite without the relay (again: the VM is noisy)")
    without.append(durable_run(cmds, opts.window, opts.batch_max, None)[0])
    base = sum(w.orders_per_s for w in without) / len(without)
    for client, r, tail in with_relay:
        ratio = r.orders_per_s / base
        rows.append((
            "14", f"Durable SQLite (W={opts.window}, {opts.durable_orders:,} orders), relay "
                  f"[{client}] in process vs none",
            f"with relay {r.orders_per_s:,.0f} orders/s (ack p99 {r.ack_p99_ms:.0f} ms; relay "
            f"caught up {tail:.1f} s after the last ack); without (before and after) "
            f"{', '.join(f'{w.orders_per_s:,.0f}' for w in without)} orders/s (ack p99 "
            f"{', '.join(f'{w.ack_p99_ms:.0f}' for w in without)} ms); with/without = "
            f"{ratio:.0%}",
            "no worse (>= 95% of without)", verdict(ratio >= 0.95)))


def verdict(ok: bool, applicable: bool = True) -> str:
    if not applicable:
        return "-"
    return "PASS" if ok else "FAIL"


def _times(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b > 0 else "n/a"


@contextlib.contextmanager
def _sqlite_url(tmp: Path) -> Iterator[str]:
    d = Path(tempfile.mkdtemp(prefix="rm-", dir=tmp))
    yield f"sqlite:///{(d / 'read_models.sqlite').as_posix()}"


@contextlib.contextmanager
def _pg_url(admin: str | None) -> Iterator[str]:
    from bench.pg import throwaway_database

    assert admin is not None
    with throwaway_database(admin) as url:
        yield "postgresql+psycopg://" + url.split("://", 1)[1]


if __name__ == "__main__":
    if sys.argv[1:2] != ["relay"] or len(sys.argv) != 7:
        sys.exit("usage: python -m bench.kafka relay DATA_DIR CAP BOOTSTRAP PREFIX CLIENT "
                 "(the relay process of row 10; the rows run with python -m bench)")
    _relay_process(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6])
