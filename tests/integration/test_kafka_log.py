"""The event log on Kafka against a real broker: relay, record format, exactly-once projector.

Invariants, not happy paths. Every test publishes to throwaway topics (a uuid prefix) and
throwaway data directories / databases; the shared broker of infrastructure/kafka.sh is
required (the test FAILS, never skips, when it does not answer); the outage test runs a
private broker (infrastructure/kafka_service.temporary_broker) that it may kill.

* every journaled event is on ``<prefix>.events`` exactly once (no crash), verbatim, on the
  partition murmur2(key) names, in order per partition with a consistent ``prev`` chain, and
  every checkpoint tells the truth about what is on the topic;
* a broker killed and restarted mid-run: nothing acknowledged is lost, the Kafka-fed read
  models equal a rebuild from the store;
* ``marketlog relay`` and ``marketlog project`` SIGKILLed at random moments while events are
  committed: the read models still count every event once and equal both a rebuild from the
  store and ``marketlog replay`` from offset zero;
* ``replay --until`` equals positions computed from the journal prefix;
* a malformed record stops the projector at its offset, again after a restart;
* the relay's re-published tail and stray copies of a failed send are applied once;
* ``marketlog verify`` catches a truncated store through the checkpoints topic alone, and a
  relay does not publish a fork of a store that no longer holds its last checkpoint.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from typer.testing import CliRunner

from api.cli import app
from commands.engine import EngineBusy
from commands.models import SubmitOrder
from domain.events import OrderAccepted, OrderFilled, OrderRejected
from domain.values import signed_quantity
from infrastructure import codec, kafka_clients
from infrastructure.bootstrap import System, bootstrap
from infrastructure.event_store import EventStore
from infrastructure.kafka_clients import CLIENTS, KafkaSendError
from infrastructure.kafka_log import (
    FIRM_KEY,
    Checkpoint,
    Topics,
    event_headers,
    key_of,
    partition_for,
    read_checkpoints,
)
from infrastructure.kafka_projector import KafkaProjectionRunner, ProjectorHalted
from infrastructure.kafka_service import (
    admin_client,
    temporary_broker,
)
from infrastructure.postgres_admin import StoreUrls, throwaway_database
from infrastructure.relay import Relay, RelayError, last_checkpoint
from infrastructure.settings import Settings
from infrastructure.store_schema import EVENTS_TABLE
from projections import offsets
from projections.rebuild import digest, digests, rebuild
from projections.schema import migrate
from projections.tables import audit_trail, positions_view

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = ("ACC-ALPHA", "ACC-BETA", "ACC-GAMMA", "ACC-DELTA")
T0 = 1_699_920_000_000_000_000 + 3_600_000_000_000  # 2023-11-14T01:00:00Z
CLI = CliRunner()


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def kafka(kafka_bootstrap: str) -> str:
    """The shared broker (tests/conftest.py: missing or not answering => FAIL)."""
    return kafka_bootstrap


@pytest.fixture
def prefix(kafka: str) -> Iterator[str]:
    """A throwaway topic prefix on the shared broker; its topics are deleted afterwards."""
    name = f"mltest-{uuid.uuid4().hex[:12]}"
    yield name
    delete_topics(kafka, name)


def delete_topics(kafka: str, *prefixes: str) -> None:
    with contextlib.suppress(Exception):
        admin = admin_client(kafka)
        try:
            admin.delete_topics([f"{p}.{kind}" for p in prefixes
                                 for kind in ("events", "checkpoints")],
                                timeout_ms=10_000, raise_errors=False)
        finally:
            admin.close()


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    """Both Kafka clients of infrastructure/kafka_clients.py: same records, same rules."""
    return str(request.param)


def make_settings(data_dir: Path, *, kafka: str | None = None, prefix: str = "unused",
                  partitions: int = 3, read_url: str | None = None, batch: int = 5000,
                  relay: bool = True, client: str = "kafka-python") -> Settings:
    # Explicit values: nothing of the developer's MARKETLOG_* environment leaks in.
    return Settings(data_dir=data_dir, database_url=None, read_database_url=read_url,
                    database_owner_url=None, reader_database_url=None,
                    chain_anchor_file=None, kafka_bootstrap=kafka, kafka_topic_prefix=prefix,
                    kafka_partitions=partitions, kafka_relay=relay,
                    kafka_consumer_group=f"g-{prefix}"[:64], projection_batch=batch,
                    kafka_client=client)


class Clock:
    """Deterministic engine clock: every reading 1 ms later (timestamps are whole ms)."""

    def __init__(self, start: int = T0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            self.now += 1_000_000
            return self.now


def order(n: int, tag: str = "o") -> SubmitOrder:
    """Order n of a stream: four accounts crossing each other on two symbols (fills), some
    rejected (max quantity), some market IOC."""
    symbol = ("AAPL", "MSFT")[(n // 7) % 2]
    reference = 190 if symbol == "AAPL" else 410
    fields: dict[str, Any] = {
        "client_order_id": f"{tag}-{n:06d}", "account_id": ACCOUNTS[n % len(ACCOUNTS)],
        "symbol": symbol, "side": "buy" if (n // 4) % 2 == 0 else "sell",
        "quantity": 1 + (n * 7) % 50, "order_type": "limit",
        "limit_price": Decimal(f"{reference - 1 + (n * 13) % 200 / 100:.2f}"),
        "time_in_force": "day", "actor": "tester",
    }
    if n % 10 == 3:
        fields["quantity"] = 20_000  # max order quantity: rejected
    elif n % 10 == 9:
        fields.update(order_type="market", limit_price=None, time_in_force="ioc")
    return SubmitOrder(**fields)


def fill_store(settings: Settings, orders: range, *, tag: str = "o",
               clock: Callable[[], int] | None = None, per_cycle: int = 8) -> None:
    """Journal ``orders`` with a real engine (no threads), ``per_cycle`` per decision cycle."""
    system = bootstrap(settings, start=False, clock=clock or Clock())
    try:
        numbers = list(orders)
        for i in range(0, len(numbers), per_cycle):
            system.engine.execute([order(n, tag) for n in numbers[i:i + per_cycle]])
    finally:
        system.close()


@dataclass(frozen=True)
class Journal:
    """A store journaled once per module (read only for the tests that share it)."""

    settings: Settings
    head: int
    reference_digest: str

    def open(self) -> EventStore:
        return EventStore.open(self.settings, reader=True)


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Journal:
    data_dir = tmp_path_factory.mktemp("journal") / "data"
    settings = make_settings(data_dir)
    fill_store(settings, range(480), tag="j")
    store = EventStore.open(settings, reader=True)
    try:
        head = store.stored_head()
        ref = rebuild(store, f"sqlite:///{data_dir.parent / 'reference.sqlite'}")
    finally:
        store.close()
    assert head > 800
    return Journal(settings, head, ref)


class Prefix:
    """The store's notification log as it was when it ended at ``upto``."""

    def __init__(self, store: EventStore, upto: int) -> None:
        self.store, self.upto, self.store_id = store, upto, store.store_id

    def select(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        return [r for r in self.store.select(after, limit) if r[0] <= self.upto]


# ------------------------------------------------------------------------ reading back


@dataclass(frozen=True)
class Rec:
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: dict[str, bytes]

    @property
    def position(self) -> int:
        return int(self.headers["position"])

    @property
    def prev(self) -> int:
        return int(self.headers["prev"])


def read_topic(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Rec]:
    """Every record of every partition, with a plain group-less kafka-python consumer."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False)
    try:
        deadline = time.monotonic() + timeout
        while not (parts := consumer.partitions_for_topic(topic)):
            assert time.monotonic() < deadline, f"topic {topic} does not exist"
            time.sleep(0.1)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[Rec] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"reading {topic} timed out"
            for tp, records in consumer.poll(timeout_ms=200).items():
                out.extend(Rec(tp.partition, r.offset, r.key, r.value, dict(r.headers or ()))
                           for r in records if r.offset < ends[tp])
        return sorted(out, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        return {tp.partition: o for tp, o in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def all_checkpoints(bootstrap: str, topics: Topics) -> list[Checkpoint]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False)
    try:
        return list(read_checkpoints(consumer, topics.checkpoints, timeout_s=30))
    finally:
        consumer.close()


def account_key(topic: str, state: bytes, position: int) -> bytes:
    """The key the record must have, from the DECODED event (not from key_of)."""
    account = getattr(codec.decode(topic, state, position), "account_id", None)
    return (account or FIRM_KEY).encode()


def check_topic(recs: list[Rec], rows: list[tuple[int, str, bytes]], partitions: int, *,
                duplicates_allowed: bool) -> Counter[int]:
    """The events topic against the store: every position there, verbatim, on its
    partition, with the right headers; the copies of each partition, read in offset order
    with the consumer's rule (apply when prev == last applied), give exactly the store's
    events of that partition in log order. Returns how often each position is on the topic."""
    assert [p for p, _, _ in rows] == list(range(1, len(rows) + 1)), "store positions have holes"
    state = {p: s for p, _, s in rows}
    topic_of = {p: t for p, t, _ in rows}
    part_of: dict[int, int] = {}
    expected_prev: dict[int, int] = {}
    last: dict[int, int] = {}
    for p, t, s in rows:
        part = partition_for(account_key(t, s, p), partitions)
        part_of[p], expected_prev[p], last[part] = part, last.get(part, 0), p
    seen: Counter[int] = Counter()
    for r in recs:
        where = f"[{r.partition}]@{r.offset}"
        pos = r.position
        assert pos in state, f"{where}: position {pos} is not in the store"
        assert r.value == state[pos], f"{where}: value differs from the stored record {pos}"
        assert r.key == account_key(topic_of[pos], state[pos], pos), f"{where}: key {r.key!r}"
        assert r.key == key_of(r.value)
        assert r.partition == part_of[pos] == partition_for(r.key, partitions), (
            f"{where}: position {pos} belongs on partition {part_of[pos]}")
        assert r.headers["type"].decode() == codec.name_of_topic(topic_of[pos]), where
        assert r.headers["hash"].decode() == codec.stored_hash(state[pos]), where
        assert r.prev == expected_prev[pos], (
            f"{where}: prev {r.prev} of position {pos}, expected {expected_prev[pos]}")
        seen[pos] += 1
    missing = sorted(set(state) - set(seen))
    assert not missing, f"{len(missing)} events never reached the topic: {missing[:20]}"
    if not duplicates_allowed:
        twice = sorted(p for p, n in seen.items() if n > 1)
        assert not twice, f"published more than once without a crash: {twice[:20]}"
        assert len(recs) == len(rows)
    by_part: dict[int, list[Rec]] = defaultdict(list)
    for r in recs:
        by_part[r.partition].append(r)
    for part in set(part_of.values()) | set(by_part):
        applied, last_applied = [], 0
        for r in by_part[part]:
            if r.position > last_applied and r.prev == last_applied:
                applied.append(r.position)
                last_applied = r.position
        expected = [p for p, _, _ in rows if part_of[p] == part]
        assert applied == expected, f"partition {part}: the prev chain does not give the log"
        if not duplicates_allowed:
            assert [r.position for r in by_part[part]] == expected
    return seen


def check_checkpoints(cps: list[Checkpoint], recs: list[Rec], rows: list[tuple[int, str, bytes]],
                      store_id: str, partitions: int) -> None:
    """Every checkpoint tells the truth: everything up to its position is on the topic below
    its next_offsets, its hash is the stored record's, last_positions are right."""
    assert cps, "no checkpoint was written"
    state = {p: s for p, _, s in rows}
    first_offset: dict[int, int] = {}
    for r in recs:  # offset of the first copy of each position
        first_offset.setdefault(r.position, r.offset)
    part_of = {r.position: r.partition for r in recs}
    for cp in cps:
        assert cp.store_id == store_id and cp.partitions == partitions
        assert cp.hash == codec.stored_hash(state[cp.position]), cp
        for pos in range(1, cp.position + 1):
            part = part_of[pos]
            assert first_offset[pos] < cp.next_offsets.get(part, 0), (
                f"checkpoint at {cp.position} claims partition {part} ends at "
                f"{cp.next_offsets.get(part, 0)}, but position {pos} is at "
                f"{first_offset[pos]}")
        want_last: dict[int, int] = {}
        for pos in range(1, cp.position + 1):
            want_last[part_of[pos]] = pos
        assert cp.last_positions == want_last, cp
    positions = [cp.position for cp in cps]
    assert positions == sorted(positions), f"checkpoints go backwards: {positions}"
    assert cps[-1].position == len(rows)


def store_rows(settings: Settings) -> tuple[list[tuple[int, str, bytes]], list[tuple[int, Any]],
                                            str]:
    store = EventStore.open(settings, reader=True)
    try:
        rows = store.select(0, 10**9)
        return rows, list(store.read()), store.store_id
    finally:
        store.close()


def reference_digest(settings: Settings, url: str) -> str:
    store = EventStore.open(settings, reader=True)
    try:
        return rebuild(store, url)
    finally:
        store.close()


def with_engine(url: str, fn: Callable[[sa.Connection], Any]) -> Any:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return fn(conn)
    finally:
        engine.dispose()


def digest_of(url: str) -> str:
    return str(with_engine(url, digest))


def audit_positions(url: str) -> list[int]:
    return with_engine(url, lambda c: list(c.execute(
        sa.select(audit_trail.c.position).order_by(audit_trail.c.position)).scalars()))


def view_positions(url: str) -> dict[tuple[str, str], int]:
    return with_engine(url, lambda c: {
        (a, s): int(q) for a, s, q in c.execute(sa.select(
            positions_view.c.account_id, positions_view.c.symbol, positions_view.c.quantity))})


def journal_positions(events: list[tuple[int, Any]],
                      until_ns: int | None = None) -> dict[tuple[str, str], int]:
    """Net quantity per (account, symbol) straight from the journal's OrderFilled events."""
    net: Counter[tuple[str, str]] = Counter()
    for _, e in events:
        if isinstance(e, OrderFilled) and (until_ns is None or e.ts_ns <= until_ns):
            net[(e.account_id, e.symbol)] += signed_quantity(e.side, e.fill_quantity)
    return dict(net)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.1)


class OrderStream:
    """Threads submitting orders to a running engine; keeps every acknowledged outcome."""

    def __init__(self, system: System, threads: int = 3, tag: str = "s",
                 pause: float = 0.0) -> None:
        self.system, self.tag, self.pause = system, tag, pause
        self.numbers = itertools.count()
        self.lock = threading.Lock()
        self.acknowledged: dict[str, Any] = {}  # client_order_id -> Outcome
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True, name=f"orders-{i}")
                        for i in range(threads)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)

    def stop(self) -> None:
        self._stop.set()
        for t in self.threads:
            t.join(60)
        assert not any(t.is_alive() for t in self.threads), "order threads hung"
        assert not self.errors, self.errors[:3]

    def _run(self) -> None:
        while not self._stop.is_set():
            with self.lock:
                n = next(self.numbers)
            command = order(n, self.tag)
            try:
                outcome = self.system.engine.submit(command).result(timeout=60)
            except EngineBusy:
                time.sleep(0.01)
                continue
            except BaseException as exc:
                with self.lock:
                    self.errors.append(exc)
                return
            with self.lock:
                self.acknowledged[command.client_order_id] = outcome
            if self.pause:
                time.sleep(self.pause)


def decisions(events: list[tuple[int, Any]]) -> Counter[str]:
    return Counter(e.client_order_id for _, e in events
                   if isinstance(e, OrderAccepted | OrderRejected))


# ===================================================================== 1. the record format


def test_every_event_once_verbatim_in_order_on_its_murmur2_partition(
        kafka: str, prefix: str, client: str, tmp_path: Path) -> None:
    """An engine with the relay and the Kafka projector in process, orders from threads:
    the topic holds each event exactly once, as stored, where murmur2(key) says, in log
    order per partition; every checkpoint is true; the Kafka-fed views equal a rebuild."""
    settings = make_settings(tmp_path / "data", kafka=kafka, prefix=prefix, partitions=3,
                             batch=64, client=client)
    system = bootstrap(settings)
    try:
        stream = OrderStream(system, threads=4, tag="t1")
        stream.start()
        wait_until(lambda: stream.count() >= 600, 60, "600 acknowledged orders")
        stream.stop()
        head = system.store.stored_head()
        assert system.relay is not None
        assert system.relay.wait_for(head, 60), system.relay.last_error
        assert system.projections.wait_for(head, 30), system.projections.lag()  # type: ignore[attr-defined]
        lag = system.projections.lag()  # type: ignore[attr-defined]
        assert lag["lag_events"] == 0 and all(p["lag_records"] == 0 for p in lag["partitions"])
    finally:
        system.close()

    rows, events, store_id = store_rows(settings)
    topics = Topics.with_prefix(prefix)
    recs = read_topic(kafka, topics.events)
    check_topic(recs, rows, 3, duplicates_allowed=False)
    assert len({r.partition for r in recs}) == 3, "the keys should spread over the partitions"
    cps = all_checkpoints(kafka, topics)
    check_checkpoints(cps, recs, rows, store_id, 3)
    ends = end_offsets(kafka, topics.events)
    assert cps[-1].next_offsets == {p: o for p, o in ends.items() if o}
    assert len(cps) >= len(rows) // 64, "batches of at most 64 events, one checkpoint each"
    assert all(n == 1 for n in decisions(events).values())
    assert set(stream.acknowledged) <= set(decisions(events))
    ref = reference_digest(settings, f"sqlite:///{tmp_path / 'reference.sqlite'}")
    assert digest_of(settings.read_models_url) == ref


# ================================================================ 2. broker outage mid-run


def test_broker_killed_and_restarted_while_the_engine_commits(tmp_path: Path) -> None:
    with temporary_broker() as broker:
        settings = make_settings(tmp_path / "data", kafka=broker.bootstrap, prefix="outage",
                                 partitions=3, batch=100)
        system = bootstrap(settings)
        stream = OrderStream(system, threads=3, tag="t2", pause=0.005)
        try:
            assert system.relay is not None
            relay = system.relay
            stream.start()
            wait_until(lambda: relay.position >= 300, 60, "the relay to publish 300 events")
            broker.kill()
            during_from, outage_head = stream.count(), system.store.stored_head()
            time.sleep(2.5)  # the engine must keep committing with Kafka gone
            acknowledged_in_outage = stream.count() - during_from
            broker.start()
            time.sleep(1.0)
            stream.stop()
            head = system.store.stored_head()
            assert acknowledged_in_outage > 50, (
                f"only {acknowledged_in_outage} orders acknowledged while Kafka was down: the "
                "engine must not depend on the broker")
            assert head > outage_head
            wait_until(lambda: relay.position >= head, 120,
                       f"the relay to catch up to {head} (last error {relay.last_error!r})")
            projections = system.projections
            assert projections.wait_for(head, 120), projections.lag()  # type: ignore[attr-defined]
        finally:
            stream._stop.set()
            system.close()

        rows, events, _ = store_rows(settings)
        topics = Topics.with_prefix("outage")
        recs = read_topic(broker.bootstrap, topics.events)
    seen = check_topic(recs, rows, 3, duplicates_allowed=True)
    assert len(seen) == len(rows) == head
    journaled = decisions(events)
    lost = sorted(set(stream.acknowledged) - set(journaled))
    assert not lost, f"acknowledged but not journaled: {lost[:10]}"
    assert all(n == 1 for n in journaled.values())
    ref = reference_digest(settings, f"sqlite:///{tmp_path / 'reference.sqlite'}")
    assert digest_of(settings.read_models_url) == ref
    assert audit_positions(settings.read_models_url) == list(range(1, head + 1))


# ============================================ 3. SIGKILL the relay and projector processes


def marketlog_env(settings: Settings, kafka: str, prefix: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETLOG_")}
    env.update({
        "MARKETLOG_DATA_DIR": str(settings.data_dir),
        "MARKETLOG_KAFKA_BOOTSTRAP": kafka,
        "MARKETLOG_KAFKA_TOPIC_PREFIX": prefix,
        "MARKETLOG_KAFKA_PARTITIONS": "3",
        "MARKETLOG_KAFKA_CONSUMER_GROUP": f"g-{prefix}",
        "MARKETLOG_PROJECTION_BATCH": "40",
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    })
    if settings.database_url:
        env["MARKETLOG_DATABASE_URL"] = settings.database_url
    if settings.reader_database_url:
        env["MARKETLOG_READER_DATABASE_URL"] = settings.reader_database_url
    env.update(extra)
    return env


def marketlog_command() -> list[str]:
    script = Path(sys.executable).with_name("marketlog")
    return [str(script)] if script.exists() else [sys.executable, "-c",
                                                  "from api.cli import app; app()"]


class Proc:
    """A ``marketlog`` subprocess that may be SIGKILLed and started again."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.args, self.env, self.log_dir = name, args, env, log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def start(self) -> None:
        self.starts += 1
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen([*marketlog_command(), *self.args], cwd=ROOT,
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def assert_running(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, (
            f"{self.name} exited by itself ({self.proc and self.proc.returncode}):\n"
            f"{self.log()}")

    def kill(self) -> None:
        self.assert_running()
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self.kills += 1

    def terminate(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"{self.name} ignored SIGTERM:\n{self.log()}") from None

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*marketlog_command(), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def printed_digests(output: str) -> dict[str, str]:
    names = {"orders": "orders_view", "positions": "positions_view", "audit": "audit_trail",
             "control_stats": "control_stats"}
    out = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in names and len(parts[1]) == 64:
            out[names[parts[0]]] = parts[1]
    return out


MIGRATIONS = threading.Lock()


def kill_scenario(kafka: str, prefix: str, backend: Settings, projector_db: str, work: Path,
                  client: str, seed: int) -> str:
    """Engine in this process (no Kafka) committing from threads; ``marketlog relay`` and
    ``marketlog project`` processes SIGKILLed and restarted; then the invariants."""
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    # The writer: an engine WITHOUT Kafka in this process, on the same store.
    store_settings = backend.model_copy(update={"kafka_bootstrap": None})
    with MIGRATIONS:  # alembic's migration context is process-global: one at a time
        writer = bootstrap(store_settings)
    stream = OrderStream(writer, threads=2, tag="t3", pause=0.002)
    env = marketlog_env(backend, kafka, prefix, MARKETLOG_KAFKA_CLIENT=client)
    relay = Proc("relay", ["relay"], env, work)
    projector = Proc("project", ["project"],
                     {**env, "MARKETLOG_READ_DATABASE_URL": projector_db}, work)
    topics = Topics.with_prefix(prefix)
    began = time.monotonic()
    phases: list[str] = []

    def phase(what: str) -> None:
        phases.append(f"{time.monotonic() - began:.1f}s {what}")

    try:
        stream.start()
        relay.start()
        projector.start()
        wait_until(lambda: (cp := last_checkpoint(kafka, topics)) is not None
                   and cp.position > 100, 60, "the relay process to publish")
        phase("first checkpoint")
        # Each SIGKILLed projector leaves its consumer-group member behind until the session
        # times out (kafka-python's default: 45 s), and its restart gets no partitions until
        # then; so the projector is killed once, mid-apply, together with the relay.
        plan = ["relay", "relay", "both", "relay"]
        victims = {"relay": (relay,), "projector": (projector,), "both": (relay, projector)}

        def published() -> int:
            cp = last_checkpoint(kafka, topics)
            return cp.position if cp else 0

        def applied() -> int:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                return len(audit_positions(projector_db))
            return 0

        progress = {"relay": published, "projector": applied}
        for victim in plan:
            # Kill while it is working: once it made progress since its (re)start, at a
            # random moment after that.
            for proc in victims[victim]:
                name = "relay" if proc is relay else "projector"
                start = progress[name]()
                wait_until(lambda n=name, s=start: progress[n]() > s, 60,
                           f"the {name} to make progress (seed {seed})")
            time.sleep(rng.uniform(0.05, 0.8))
            for proc in victims[victim]:
                proc.kill()
                proc.start()
            phase(f"killed {victim}")
        phase("kills done")
        time.sleep(1.0)
        stream.stop()
        head = writer.store.stored_head()
        relay.assert_running()
        projector.assert_running()
        wait_until(lambda: (cp := last_checkpoint(kafka, topics)) is not None
                   and cp.position >= head, 90, f"the relay to publish up to {head} "
                   f"(seed {seed})")
        phase("relay caught up")
        wait_until(lambda: len(audit_positions(projector_db)) >= head, 120,
                   f"the projector to apply {head} events (seed {seed})")
        phase("projector caught up")
        assert relay.terminate() == 0, relay.log()
        assert projector.terminate() == 0, projector.log()
    finally:
        stream._stop.set()
        relay.cleanup()
        projector.cleanup()
        writer.close()

    assert relay.kills >= 3 and projector.kills >= 1
    rows, events, _ = store_rows(backend)
    assert len(rows) == head
    # Every event counted exactly once, whatever the topic holds.
    assert audit_positions(projector_db) == list(range(1, head + 1)), f"seed {seed}"
    assert view_positions(projector_db) == journal_positions(events), f"seed {seed}"
    with MIGRATIONS:
        ref = reference_digest(backend, f"sqlite:///{work / 'reference.sqlite'}")
    live = with_engine(projector_db, digests)
    assert digest_of(projector_db) == ref, f"seed {seed}"
    recs = read_topic(kafka, topics.events)
    seen = check_topic(recs, rows, 3, duplicates_allowed=True)
    # The CLI: digest of the live views, and a replay from offset zero into a fresh db.
    printed = run_cli({**env, "MARKETLOG_READ_DATABASE_URL": projector_db}, "digest")
    assert printed.returncode == 0, printed.stderr
    assert printed_digests(printed.stdout) == live
    replay = run_cli(env, "replay", "--into", f"sqlite:///{work / 'replayed.sqlite'}")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert printed_digests(replay.stdout) == live, replay.stdout
    assert digest_of(f"sqlite:///{work / 'replayed.sqlite'}") == ref
    phase("checked")
    return (f"{client}, seed {seed}: {head} events, {len(recs)} records "
            f"({sum(n - 1 for n in seen.values())} re-published copies); {phases}")




def test_relay_and_projector_sigkilled_at_random_moments(
        kafka: str, pg_store: StoreUrls, pg_admin_url: str, tmp_path: Path) -> None:
    """On SQLite (kafka-python client) and PostgreSQL (confluent client) at once: each
    scenario mostly waits for its killed projector's group member to time out."""
    seed = random.randrange(1 << 30)
    prefixes = [f"mltest-{uuid.uuid4().hex[:12]}" for _ in range(2)]
    sqlite_settings = make_settings(tmp_path / "sqlite" / "data")
    pg_settings = Settings(data_dir=tmp_path / "pg" / "data", database_url=pg_store.engine,
                           read_database_url=None, database_owner_url=None,
                           reader_database_url=pg_store.reader, chain_anchor_file=None,
                           kafka_bootstrap=None)
    results: dict[str, str | BaseException] = {}
    try:
        with throwaway_database(pg_admin_url, "mlkproj") as url:
            pg_views = "postgresql+psycopg://" + url.split("://", 1)[1]
            runs = {
                "sqlite": (kafka, prefixes[0], sqlite_settings,
                           f"sqlite:///{tmp_path / 'sqlite' / 'projector.sqlite'}",
                           tmp_path / "sqlite", "kafka-python", seed),
                "postgres": (kafka, prefixes[1], pg_settings, pg_views, tmp_path / "pg",
                             "confluent", seed + 1),
            }

            def run(name: str) -> None:
                try:
                    results[name] = kill_scenario(*runs[name])
                except BaseException as exc:
                    results[name] = exc

            threads = [threading.Thread(target=run, args=(n,), name=f"scenario-{n}")
                       for n in runs]
            for t in threads:
                t.start()
            for t in threads:
                t.join(220)
            assert not any(t.is_alive() for t in threads), "a scenario hung"
    finally:
        delete_topics(kafka, *prefixes)
    for name, result in results.items():
        print(f"{name}: {result}")
    for name, result in results.items():
        if isinstance(result, BaseException):
            raise AssertionError(f"{name} scenario (seed {seed}) failed: {result}") from result


# =================================================================== 4. replay --until


def iso(ns: int, tz: timezone = UTC) -> str:
    assert ns % 1000 == 0
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
            ).astimezone(tz).isoformat()


def cli_env(settings: Settings, **extra: str | None) -> dict[str, str | None]:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("MARKETLOG_")}
    env.update({"MARKETLOG_DATA_DIR": str(settings.data_dir), "COLUMNS": "200",
                "NO_COLOR": "1"})
    env.update(extra)
    return env


def test_replay_until_equals_positions_from_the_journal_prefix(
        kafka: str, prefix: str, client: str, journal: Journal, tmp_path: Path) -> None:
    topics = Topics.with_prefix(prefix)
    store = journal.open()
    try:
        Relay(store, kafka, topics, partitions=3, batch_size=100, client=client
              ).publish_available()
        events = list(store.read())
    finally:
        store.close()
    fills = [e for _, e in events if isinstance(e, OrderFilled)]
    until_ns = fills[len(fills) // 2].ts_ns
    expected = journal_positions(events, until_ns)
    assert expected != journal_positions(events), "there must be fills after the cut-off"
    stamped = [p for p, e in events if e.ts_ns <= until_ns]

    kafka_env = cli_env(journal.settings, MARKETLOG_KAFKA_BOOTSTRAP=kafka,
                        MARKETLOG_KAFKA_TOPIC_PREFIX=prefix, MARKETLOG_KAFKA_CLIENT=client)
    out = {}
    for name, env, when in (
            ("kafka", kafka_env, iso(until_ns)),
            ("kafka-offset", kafka_env, iso(until_ns, timezone(timedelta(hours=5, minutes=30)))),
            ("store", cli_env(journal.settings), iso(until_ns))):
        url = f"sqlite:///{tmp_path / f'{name}.sqlite'}"
        result = CLI.invoke(app, ["replay", "--into", url, "--until", when], env=env)
        assert result.exit_code == 0, (name, result.output)
        assert view_positions(url) == expected, name
        assert audit_positions(url) == stamped, name
        out[name] = digest_of(url)
    assert out["kafka"] == out["kafka-offset"] == out["store"]

    # The runner itself, as of one nanosecond before the cut-off: that fill is out.
    url = f"sqlite:///{tmp_path / 'runner.sqlite'}"
    migrate(url)
    engine = sa.create_engine(url)
    runner = KafkaProjectionRunner(engine, kafka, topics, group=None, until_ns=until_ns - 1,
                                   client=client)
    try:
        runner.catch_up(timeout=60)
    finally:
        runner.stop()
        engine.dispose()
    assert view_positions(url) == journal_positions(events, until_ns - 1)
    assert audit_positions(url) == [p for p, e in events if e.ts_ns < until_ns]


# ================================================================ 5. malformed records


def tampered(state: bytes) -> bytes:
    """The same record with one field changed and its stored hash kept."""
    changed = state.replace(b'"actor":"', b'"actor":"X', 1)
    assert changed != state and codec.stored_hash(changed) == codec.stored_hash(state)
    return changed


@pytest.mark.parametrize("kind", ["garbage_value", "no_headers", "hash_mismatch"])
def publish_with_a_bad_record(kafka: str, topics: Topics, journal: Journal, kind: str,
                              client: str, cut: int = 300) -> tuple[int, int]:
    """The journal on 2 partitions with one bad record where event ``cut + 1`` belongs
    (the real one follows it); (partition, offset) of the bad record."""
    store = journal.open()
    try:
        rows = store.select(0, 10**9)
        first = Relay(Prefix(store, cut), kafka, topics, partitions=2, batch_size=50,
                      client=client)
        first.publish_available()
        position, topic, state = rows[cut]  # the next event, cut + 1
        assert position == cut + 1
        key = key_of(state)
        part = partition_for(key, 2)
        prev = first.checkpoint.last_positions.get(part, 0)
        headers = event_headers(codec.name_of_topic(topic), position, prev,
                                codec.stored_hash(state))
        value = {"garbage_value": b"\x00\xff not a record", "no_headers": state,
                 "hash_mismatch": tampered(state)}[kind]
        producer = KafkaProducer(bootstrap_servers=kafka.split(","), acks="all")
        try:
            bad = producer.send(topics.events, key=key, value=value, partition=part,
                                headers=[] if kind == "no_headers" else headers
                                ).get(timeout=30)
        finally:
            producer.close()
        Relay(store, kafka, topics, partitions=2, batch_size=50, client=client
              ).publish_available()
    finally:
        store.close()
    return part, bad.offset


@pytest.mark.parametrize("kind", ["garbage_value", "no_headers", "hash_mismatch"])
def test_a_malformed_record_halts_the_projector_at_its_offset(
        kind: str, kafka: str, prefix: str, client: str, journal: Journal,
        tmp_path: Path) -> None:
    topics = Topics.with_prefix(prefix)
    cut = 300
    part, bad_offset = publish_with_a_bad_record(kafka, topics, journal, kind, client, cut)
    where = f"{topics.events}[{part}]@{bad_offset}"
    url = f"sqlite:///{tmp_path / 'views.sqlite'}"
    migrate(url)
    engine = sa.create_engine(url)

    def halt_once() -> str:
        runner = KafkaProjectionRunner(engine, kafka, topics, group=None, consumer_name="p",
                                       batch_size=5000, client=client)
        try:
            with pytest.raises(ProjectorHalted) as raised:
                runner.catch_up(timeout=30)
            assert where in str(raised.value), (where, str(raised.value))
            assert runner.halted is not None and where in str(runner.halted)
            with pytest.raises(ProjectorHalted):  # halted stays halted
                runner.catch_up(timeout=5)
        finally:
            runner.stop()
        with engine.connect() as conn:
            stored = offsets.load(conn, "p", topics.events)
        assert stored.get(part, offsets.START).next_offset <= bad_offset, stored
        return str(runner.halted)

    try:
        first_halt = halt_once()
        stored_before = with_engine(url, lambda c: offsets.load(c, "p", topics.events))
        second_halt = halt_once()  # a restart stops at the same record again
        assert second_halt == first_halt
        assert with_engine(url, lambda c: offsets.load(c, "p", topics.events)) == stored_before
        assert cut + 1 not in audit_positions(url)
        # The records before it in its partition are applied.
        before = [r.position for r in read_topic(kafka, topics.events)
                  if r.partition == part and r.offset < bad_offset]
        applied = set(audit_positions(url))
        missing = [p for p in before if p not in applied]
        assert not missing, (
            f"the projector halted at {where} but {len(missing)} valid records before it "
            f"in that partition were never applied (first {missing[:5]}); stored offsets "
            f"{stored_before}")
    finally:
        engine.dispose()


def test_marketlog_project_and_replay_exit_1_naming_a_malformed_record(
        kafka: str, prefix: str, journal: Journal, tmp_path: Path) -> None:
    topics = Topics.with_prefix(prefix)
    part, offset = publish_with_a_bad_record(kafka, topics, journal, "hash_mismatch",
                                             "kafka-python")
    where = f"{topics.events}[{part}]@{offset}"
    env = marketlog_env(journal.settings, kafka, prefix,
                        MARKETLOG_READ_DATABASE_URL=f"sqlite:///{tmp_path / 'live.sqlite'}")
    project = run_cli(env, "project")
    assert project.returncode == 1, project.stdout + project.stderr
    assert where in " ".join(project.stderr.split()), project.stderr
    replay = run_cli(env, "replay", "--into", f"sqlite:///{tmp_path / 'replay.sqlite'}")
    assert replay.returncode == 1, replay.stdout + replay.stderr
    assert where in " ".join(replay.stderr.split()), replay.stderr


def test_a_projector_whose_start_fails_leaves_no_consumer_holding_the_partitions(
        kafka: str, prefix: str, client: str, journal: Journal, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """KafkaProjectionRunner._open subscribes the events consumer, then reads the end of the
    checkpoints topic; if that fails (a topic just created: "Unknown partition"), the run
    loop retries with NEW consumers. The first must not stay in the group holding every
    partition (librdkafka joins and heartbeats in the background), or the projector stalls
    until that member's max.poll.interval (5 minutes)."""
    topics = Topics.with_prefix(prefix)
    store = journal.open()
    try:
        Relay(store, kafka, topics, partitions=3, batch_size=1000, client=client
              ).publish_available()
    finally:
        store.close()
    consumer_class: Any = {"kafka-python": kafka_clients.KafkaPythonConsumer,
                           "confluent": kafka_clients.ConfluentConsumer}[client]
    real_end_offset = consumer_class.end_offset
    failures = [RuntimeError("injected: Failed to get watermark offsets: Unknown partition")]

    def end_offset(self: Any, topic: str, partition: int) -> int:
        if failures:
            raise failures.pop()
        return int(real_end_offset(self, topic, partition))

    monkeypatch.setattr(consumer_class, "end_offset", end_offset)
    url = f"sqlite:///{tmp_path / 'views.sqlite'}"
    migrate(url)
    engine = sa.create_engine(url)
    runner = KafkaProjectionRunner(engine, kafka, topics, group=f"g-{prefix}", client=client)
    runner.start()
    try:
        assert runner.wait_for(journal.head, 20), (
            f"no progress 20 s after one failed start: {runner.lag()}")
        assert not failures, "the injected failure was never hit"
    finally:
        runner.stop()
        engine.dispose()
    assert digest_of(url) == journal.reference_digest


# ======================================================== 6. re-published tail, stray copies


class FlakyProducer:
    """The relay's real producer (infrastructure/kafka_clients.py), except that the
    checkpoint send fails, or one event record is never acknowledged (the others of its
    batch are: stray copies on the topic, out of sequence)."""

    def __init__(self, inner: Any, topics: Topics, *, fail_checkpoint: bool = False,
                 drop_position: int | None = None) -> None:
        self.inner, self.topics = inner, topics
        self.fail_checkpoint, self.drop_position = fail_checkpoint, drop_position
        self.dropped = False

    def send(self, topic: str, partition: int, key: bytes, value: bytes,
             headers: list[tuple[str, bytes]] | None = None) -> None:
        if topic == self.topics.checkpoints and self.fail_checkpoint:
            raise KafkaSendError("injected: the relay died between a batch and its checkpoint")
        if (topic == self.topics.events and self.drop_position is not None
                and int(dict(headers or ())["position"]) == self.drop_position):
            self.dropped = True
            return
        self.inner.send(topic, partition, key, value, headers)

    def flush(self, timeout: float) -> dict[tuple[str, int], int]:
        ends = self.inner.flush(timeout)
        if self.dropped:
            self.dropped = False
            raise KafkaSendError(f"injected: record {self.drop_position} was not acknowledged")
        return ends

    def close(self) -> None:
        self.inner.close()


def flaky_relay(source: Any, kafka: str, topics: Topics, client: str, **faults: Any) -> Relay:
    relay = Relay(source, kafka, topics, partitions=3, batch_size=40, client=client)

    def new_producer() -> Any:
        relay._producer = FlakyProducer(kafka_clients.producer(client, kafka), topics,
                                        **faults)
        return relay._producer

    relay._new_producer = new_producer  # type: ignore[method-assign]
    return relay


def drain(runner: KafkaProjectionRunner, kafka: str, topics: Topics,
          timeout: float = 30) -> None:
    """Step until every record now on the topic has been read (applied or skipped)."""
    ends = end_offsets(kafka, topics.events)
    deadline = time.monotonic() + timeout
    while not all(runner.applied.get(p, offsets.START).next_offset >= o
                  for p, o in ends.items()):
        assert time.monotonic() < deadline, (runner.applied, ends)
        runner.step(100)


def test_republished_tail_and_stray_copies_are_applied_once(
        kafka: str, prefix: str, client: str, journal: Journal, tmp_path: Path) -> None:
    topics = Topics.with_prefix(prefix)
    url = f"sqlite:///{tmp_path / 'live.sqlite'}"
    migrate(url)
    engine = sa.create_engine(url)
    live = KafkaProjectionRunner(engine, kafka, topics, group=None, consumer_name="live",
                                 batch_size=30, client=client)
    store = journal.open()
    try:
        rows = store.select(0, 10**9)
        Relay(Prefix(store, 100), kafka, topics, partitions=3, batch_size=40, client=client
              ).publish_available()
        drain(live, kafka, topics)
        assert audit_positions(url) == list(range(1, 101))

        # A relay that dies between its batch (101..140, acknowledged) and the checkpoint.
        dying = flaky_relay(Prefix(store, 180), kafka, topics, client, fail_checkpoint=True)
        with pytest.raises(KafkaSendError):
            dying.publish_available()
        assert last_checkpoint(kafka, topics).position == 100  # type: ignore[union-attr]
        drain(live, kafka, topics)
        assert audit_positions(url) == list(range(1, 141))  # the copies without checkpoint

        # The next relay re-publishes 101..140, then loses record 150 of its next batch:
        # 141..149 and 151..180 are on the topic, out of sequence in 150's partition.
        losing = flaky_relay(Prefix(store, 180), kafka, topics, client, drop_position=150)
        with pytest.raises(KafkaSendError):
            losing.publish_available()
        assert last_checkpoint(kafka, topics).position == 140  # type: ignore[union-attr]
        drain(live, kafka, topics)
        gap_part = partition_for(key_of(rows[149][2]), 3)
        blocked = {p for p, _, s in rows[149:180] if partition_for(key_of(s), 3) == gap_part}
        assert audit_positions(url) == [p for p in range(1, 181) if p not in blocked], (
            "only the events behind the lost record in its own partition may wait")

        # A healthy relay publishes the rest from the last checkpoint.
        Relay(store, kafka, topics, partitions=3, batch_size=40, client=client
              ).publish_available()
        drain(live, kafka, topics)
        assert live.catch_up(timeout=30) == journal.head
    finally:
        live.stop()
        store.close()
    assert audit_positions(url) == list(range(1, journal.head + 1))
    assert digest_of(url) == journal.reference_digest
    engine.dispose()

    recs = read_topic(kafka, topics.events)
    seen = check_topic(recs, rows, 3, duplicates_allowed=True)
    assert {p for p, n in seen.items() if n > 1} == set(range(101, 181)) - {150}
    # And a replay from offset zero over all those copies.
    replayed = f"sqlite:///{tmp_path / 'replayed.sqlite'}"
    migrate(replayed)
    engine = sa.create_engine(replayed)
    fresh = KafkaProjectionRunner(engine, kafka, topics, group=None, client=client)
    try:
        assert fresh.catch_up(timeout=60) == journal.head
    finally:
        fresh.stop()
        engine.dispose()
    assert digest_of(replayed) == journal.reference_digest


# =================================================== 7. truncation caught by the checkpoints


def cut_sqlite_tail(settings: Settings, rows_to_delete: int) -> None:
    """What an attacker with the file does: drop the append-only triggers, delete the tail,
    and remove the anchor file so that only Kafka can tell."""
    settings.anchor_file.unlink()
    with contextlib.closing(sqlite3.connect(settings.sqlite_store_path)) as db:
        triggers = [name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type='trigger'")]
        assert triggers, "the store should forbid DELETE with triggers"
        for name in triggers:
            db.execute(f'DROP TRIGGER "{name}"')
        head = db.execute(f"SELECT max(rowid) FROM {EVENTS_TABLE}").fetchone()[0]
        db.execute(f"DELETE FROM {EVENTS_TABLE} WHERE rowid > ?", (head - rows_to_delete,))
        db.commit()


def test_verify_catches_a_truncated_store_through_the_checkpoints_topic(
        kafka: str, prefix: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    fill_store(settings, range(120), tag="t7")
    store = EventStore.open(settings)
    try:
        head = store.stored_head()
        Relay(store, kafka, Topics.with_prefix(prefix), partitions=3,
              batch_size=50).publish_available()
    finally:
        store.close()
    plain = cli_env(settings)
    with_kafka = cli_env(settings, MARKETLOG_KAFKA_BOOTSTRAP=kafka,
                         MARKETLOG_KAFKA_TOPIC_PREFIX=prefix)
    intact = CLI.invoke(app, ["verify"], env=with_kafka)
    assert intact.exit_code == 0, intact.output
    assert "Kafka topic" in intact.output

    cut_sqlite_tail(settings, rows_to_delete=7)
    alone = CLI.invoke(app, ["verify"], env=plain)
    assert alone.exit_code == 0, (
        "without the anchor file the store alone cannot tell (else this test proves "
        f"nothing):\n{alone.output}")
    caught = CLI.invoke(app, ["verify"], env=with_kafka)
    assert caught.exit_code == 1, caught.output
    text = " ".join(caught.output.split())
    assert f"the log ends at position {head - 7} but position {head} was committed" in text
    assert "tail was deleted" in text

    # Regrown past the old head by a new engine: now a rewrite, still caught by Kafka only.
    fill_store(settings, range(1000, 1040), tag="t7b", clock=Clock(T0 + 10**12))
    assert CLI.invoke(app, ["verify"], env=plain).exit_code == 0
    rewritten = CLI.invoke(app, ["verify"], env=with_kafka)
    assert rewritten.exit_code == 1, rewritten.output
    assert "rewritten" in rewritten.output


def test_relay_refuses_a_store_that_no_longer_holds_its_last_checkpoint(
        kafka: str, prefix: str, tmp_path: Path) -> None:
    """The relay resumes after its last checkpoint by POSITION; a store truncated (anchor
    file gone) and regrown by a new engine holds other events at those positions. Resuming
    there publishes a fork: the new events up to the old head are never published, the ones
    after it are, and the Kafka-fed views silently differ from the store."""
    settings = make_settings(tmp_path / "data")
    topics = Topics.with_prefix(prefix)
    fill_store(settings, range(120), tag="t8")
    store = EventStore.open(settings)
    try:
        Relay(store, kafka, topics, partitions=3, batch_size=50).publish_available()
    finally:
        store.close()
    cut_sqlite_tail(settings, rows_to_delete=30)
    fill_store(settings, range(1000, 1060), tag="t8b", clock=Clock(T0 + 10**12))
    store = EventStore.open(settings)
    try:
        checkpoint = last_checkpoint(kafka, topics)
        assert checkpoint is not None
        assert store.stored_head() > checkpoint.position
        stored_hash = codec.stored_hash(store.select(checkpoint.position - 1, 1)[0][2])
        assert stored_hash != checkpoint.hash  # the store forked below the checkpoint
        try:
            relay = Relay(store, kafka, topics, partitions=3, batch_size=50)
            relay.publish_available()
        except RelayError:
            return  # refused: what it should do
        published = last_checkpoint(kafka, topics)
        pytest.fail(
            f"the relay resumed after checkpoint {checkpoint.position} (hash "
            f"{checkpoint.hash[:12]}) although the store's record there has hash "
            f"{stored_hash[:12]}; it published up to {published and published.position}: "
            f"the topic now holds a fork of the store")
    finally:
        store.close()
