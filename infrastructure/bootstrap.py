"""The one place that builds real adapters and wires them together (cosmicpython's bootstrap).

Tests, the CLI, the API and the benchmarks all come through here, so the embedded default
and PostgreSQL differ only in the settings passed in (ARCHITECTURE rule 7).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from commands.engine import Engine
from domain.book_of_record import BookOfRecord
from infrastructure.clock import utc_now_ns
from infrastructure.config import FirmConfig, load_config
from infrastructure.event_store import EventStore
from infrastructure.ids import id_factory
from infrastructure.settings import Settings
from infrastructure.venue import SimulatedVenue, SyntheticLiquidity
from projections.runner import ProjectionRunner
from projections.schema import migrate


@dataclass
class System:
    settings: Settings
    config: FirmConfig
    store: EventStore
    engine: Engine
    read_models: sa.Engine
    projections: ProjectionRunner
    _threads: bool = field(default=False, repr=False)

    def start(self) -> None:
        self.engine.start()
        self.projections.start()
        self._threads = True

    def close(self) -> None:
        if self._threads:
            self.engine.stop()
            self.projections.stop()
            self._threads = False
        self.read_models.dispose()
        self.store.close()


def build_engine(settings: Settings, config: FirmConfig, store: EventStore,
                 clock: Callable[[], int] = utc_now_ns) -> Engine:
    def new_book() -> BookOfRecord:
        return BookOfRecord(config.instruments, config.new_accounts(), config.firm)

    def new_venue(book: BookOfRecord) -> SimulatedVenue:
        liquidity = (SyntheticLiquidity(book.instruments, settings.liquidity_seed)
                     if settings.liquidity_provider else None)
        return SimulatedVenue(book.instruments, liquidity)

    engine = Engine(new_book, new_venue, store, clock, id_factory(), settings.batch_max)
    engine.recover()
    gc.freeze()  # the recovered book is long-lived (commands/garbage_collection.py)
    return engine


def read_models_engine(url: str) -> sa.Engine:
    engine = sa.create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        # WAL: API readers don't wait for the projection runner's commits, nor it for them.
        @sa.event.listens_for(engine, "connect")
        def _wal(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA journal_mode=WAL")

    return engine


def bootstrap(settings: Settings | None = None, *, start: bool = True,
              clock: Callable[[], int] = utc_now_ns) -> System:
    settings = settings or Settings()
    config = load_config(settings.config_file)
    store = EventStore.open(settings)
    engine = build_engine(settings, config, store, clock)
    url = settings.read_models_url
    if url.startswith("sqlite:///"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(url)
    read_models = read_models_engine(url)
    runner = ProjectionRunner(read_models, store, settings.projection_batch)
    engine.on_commit = lambda _position: runner.notify()
    system = System(settings, config, store, engine, read_models, runner)
    if start:
        system.start()
    return system
