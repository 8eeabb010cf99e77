"""The one place that builds real adapters and wires them together (cosmicpython's bootstrap).

Tests, the CLI, the API and the benchmarks all come through here, so the embedded default
and PostgreSQL differ only in the settings passed in (ARCHITECTURE rule 7).
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from commands.engine import Engine
from commands.ports import StoreHalted
from domain.book_of_record import BookOfRecord
from domain.nbbo_reference import MarketDataBoard
from infrastructure.clock import utc_now_ns
from infrastructure.config import FirmConfig, load_config
from infrastructure.event_store import EventStore
from infrastructure.ids import id_factory
from infrastructure.kafka_log import Topics
from infrastructure.kafka_projector import KafkaProjectionRunner
from infrastructure.relay import Relay
from infrastructure.settings import Settings
from infrastructure.venue import SimulatedVenue, SyntheticLiquidity
from infrastructure.writer_lock import WriterLock
from projections.runner import ProjectionRunner, Projector
from projections.schema import migrate


@dataclass
class ReadSide:
    """The store and the read models without an engine: what queries, audits and replays
    need, safe to open beside a running engine (it never writes to the store)."""

    settings: Settings
    store: EventStore
    read_models: sa.Engine
    projections: Projector

    def close(self) -> None:
        self.projections.stop()
        self.read_models.dispose()
        self.store.close()


@dataclass
class System:
    settings: Settings
    config: FirmConfig
    store: EventStore
    engine: Engine
    read_models: sa.Engine
    projections: Projector
    writer_lock: WriterLock
    relay: Relay | None = None  # with Kafka configured and kafka_relay on
    strategies: Any = None  # the paper-trading desk (infrastructure/strategy_desk.py)
    feed: Any = None  # a recorded feed played live (infrastructure/feed_player.py)
    time_checker: Any = None  # with a time reference (infrastructure/time_reference.py)
    _threads: bool = field(default=False, repr=False)

    def start(self) -> None:
        self.engine.start()
        if self.relay is not None:
            self.relay.start()
        self.projections.start()
        self._threads = True
        if self.time_checker is not None:
            self.time_checker.start()
        if self.feed is not None:
            self.feed.start()
        if self.strategies is not None:
            self.strategies.start_configured()

    def close(self) -> None:
        if self.strategies is not None:
            self.strategies.stop_all()  # before the engine: their last orders get answers
        if self.feed is not None:
            self.feed.stop()
        if self.time_checker is not None:
            self.time_checker.stop()  # before the engine: its last check gets an answer
        if self._threads:
            self.engine.stop()
            if self.relay is not None:
                self.relay.stop()
            self.projections.stop()
            self._threads = False
        elif self.relay is not None:
            self.relay.stop()
        self.projections.stop()
        self.read_models.dispose()
        self.store.close()
        self.writer_lock.release()


def build_engine(settings: Settings, config: FirmConfig, store: Any,
                 clock: Callable[[], int] = utc_now_ns,
                 market_data: MarketDataBoard | None = None) -> Engine:
    """``market_data``: a board a feed thread writes (domain/nbbo_reference.py); without
    one, references come from the venue's own prints as before."""
    def new_book() -> BookOfRecord:
        return BookOfRecord(config.instruments, config.new_accounts(), config.firm,
                            users=config.new_users(),
                            symbol_limits=config.new_symbol_limits())

    def new_venue(book: BookOfRecord) -> SimulatedVenue:
        liquidity = (SyntheticLiquidity(book.instruments, settings.liquidity_seed)
                     if settings.liquidity_provider else None)
        return SimulatedVenue(book.instruments, liquidity, lambda: book.priority_seq)

    engine = Engine(new_book, new_venue, store, clock, id_factory(), settings.batch_max,
                    calendar=config.calendar, queue_max=settings.engine_queue_max,
                    snapshot_every=settings.snapshot_every, market_data=market_data,
                    clock_tolerance_ns=settings.clock_tolerance_ms * 1_000_000)
    engine.recover()
    gc.freeze()  # the recovered book is long-lived (commands/garbage_collection.py)
    return engine


READ_CONNECT_TIMEOUT_S = 2  # libpq's and psycopg's minimum
READ_STATEMENT_TIMEOUT_MS = 10_000
READ_POOL_TIMEOUT_S = 5.0


def read_models_engine(url: str) -> sa.Engine:
    """The read models' SQLAlchemy engine (API and CLI queries, the projection runner).

    On PostgreSQL nothing waits without bound: a server that is down or unreachable fails
    the connection within READ_CONNECT_TIMEOUT_S, a runaway statement or lock wait is ended
    by the server, a peer that vanished mid-connection is dropped by TCP within seconds, and
    a request waits at most READ_POOL_TIMEOUT_S for a pooled connection. The API turns each
    of these into a 503; without them a read during an outage held its thread for minutes.
    Pooled connections are pinged on checkout, so one cut by a restart is replaced, not used.
    """
    if sa.make_url(url).get_backend_name() == "postgresql":
        connect_args = {
            "connect_timeout": READ_CONNECT_TIMEOUT_S,
            "options": f"-c statement_timeout={READ_STATEMENT_TIMEOUT_MS} "
                       f"-c lock_timeout={READ_STATEMENT_TIMEOUT_MS // 2}",
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": READ_STATEMENT_TIMEOUT_MS,
        }
        return sa.create_engine(url, pool_pre_ping=True, pool_timeout=READ_POOL_TIMEOUT_S,
                                connect_args=connect_args)
    engine = sa.create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        # WAL: API readers don't wait for the projection runner's commits, nor it for them.
        @sa.event.listens_for(engine, "connect")
        def _wal(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA journal_mode=WAL")

    return engine


def open_read_side(settings: Settings) -> ReadSide:
    store = EventStore.open(settings)
    url = settings.read_models_url
    if url.startswith("sqlite:///"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(url)
    read_models = read_models_engine(url)
    runner: Projector
    if settings.kafka_bootstrap:
        # The read models follow Kafka (ARCHITECTURE rule 7: configuration, not code paths).
        runner = KafkaProjectionRunner(
            read_models, settings.kafka_bootstrap, kafka_topics(settings),
            group=settings.kafka_group, batch_size=settings.projection_batch,
            head=store.stored_head, client=settings.kafka_client)
    else:
        runner = ProjectionRunner(read_models, store, settings.projection_batch)
    return ReadSide(settings, store, read_models, runner)


def caught_up_read_side(settings: Settings, position: int | None = None,
                        attempts: int = 50) -> ReadSide:
    """The read side with its read models brought up to ``position`` (default: the head),
    for a command-line reader.

    A serving engine's projector may be writing the same read models: this process's
    catch-up then meets their positions moving (``ConcurrentProjectionError``), and the
    answer is to start again from where that projector got to, not to fail. After
    ``attempts`` the read side is returned as it is; the caller reports how far it got."""
    from projections.runner import ConcurrentProjectionError

    for _ in range(attempts):
        read = open_read_side(settings)
        try:
            read.projections.catch_up()
        except ConcurrentProjectionError:
            read.close()
            time.sleep(0.05)
            continue
        if position is None or read.projections.position >= position:
            return read
        read.close()
        time.sleep(0.05)
    return open_read_side(settings)


def kafka_topics(settings: Settings) -> Topics:
    return Topics.with_prefix(settings.kafka_topic_prefix)


def open_relay(settings: Settings, store: EventStore, *, connect: bool = True) -> Relay:
    if not settings.kafka_bootstrap:
        raise ValueError("MARKETLOG_KAFKA_BOOTSTRAP is not set: there is no Kafka to relay to")
    return Relay(store, settings.kafka_bootstrap, kafka_topics(settings),
                 partitions=settings.kafka_partitions, replication=settings.kafka_replication,
                 batch_size=settings.projection_batch, client=settings.kafka_client,
                 connect=connect)


def bootstrap(settings: Settings | None = None, *, start: bool = True,
              clock: Callable[[], int] = utc_now_ns,
              market_data: MarketDataBoard | None = None) -> System:
    """The whole system, engine included; refuses if another engine writes to the store.

    The writer lock is the friendly gate (``AnotherWriterRunning`` at start, a watchdog
    after); the store's own fencing is the guarantee: ``claim_writer`` fences every older
    engine before this one recovers, and verifies the chain's tail (rules 3 and 5).
    """
    settings = settings or Settings()
    config = load_config(settings.config_file)
    feed = None
    if settings.market_data_file is not None and market_data is None:
        from infrastructure.feed_player import FeedPlayer
        from infrastructure.market_data_files import market_data as read_market_data

        market_data = MarketDataBoard()
        feed = FeedPlayer(read_market_data(settings.market_data_file,
                                           settings.market_data_itch_date),
                          market_data, settings.market_data_speed)
    lock = WriterLock(settings)
    read: ReadSide | None = None
    try:
        read = open_read_side(settings)
        read.store.claim_writer()
        engine = build_engine(settings, config, read.store, clock, market_data)
    except BaseException:
        if read is not None:
            read.close()
        lock.release()
        raise
    runner = read.projections
    relay: Relay | None = None
    if settings.kafka_bootstrap and settings.kafka_relay:
        # Not connected yet: an engine starts and trades while Kafka is down; the relay
        # connects and catches up in its thread (its error shows in /health meanwhile).
        relay = open_relay(settings, read.store, connect=False)
        if isinstance(runner, KafkaProjectionRunner):
            runner.before_catch_up = relay.publish_available

        def committed(_position: int) -> None:
            relay.notify()
            runner.notify()

        engine.on_commit = committed
    else:
        engine.on_commit = lambda _position: runner.notify()
    store = read.store
    if store.halted is not None:  # a broken chain found at start: up, but never writing
        engine.halted = f"{type(store.halted).__name__}: {store.halted}"
    else:
        # The calendar's trading day, if due, opens with the engine; a store that refuses
        # this writer is recorded on engine.halted, which /health reports.
        with contextlib.suppress(StoreHalted):
            engine.run_batch([])
    lock.on_lost = lambda reason: engine.refuse(f"writer lock lost: {reason}")
    system = System(settings, config, read.store, engine, read.read_models, runner, lock,
                    relay)
    system.feed = feed
    if settings.time_reference:
        from infrastructure.time_reference import TimeReferenceChecker

        system.time_checker = TimeReferenceChecker(settings.time_reference, engine.submit,
                                                   settings.time_check_seconds, clock)
    from infrastructure.strategy_desk import StrategyDesk

    system.strategies = StrategyDesk(system, settings.strategies, settings.strategy_poll_seconds)
    if start:
        system.start()
    return system
