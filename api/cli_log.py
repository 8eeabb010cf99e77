"""CLI commands of the event log's distribution: relay, project, replay, digest.

``marketlog relay`` publishes the store to Kafka; ``marketlog project`` keeps the read models
up to date (from Kafka when MARKETLOG_KAFKA_BOOTSTRAP is set, else from the store);
``marketlog replay`` rebuilds read models from offset zero (optionally as of a point in time)
into a fresh database for auditors; ``marketlog digest`` prints each read model's digest, so
two rebuilds, or a rebuild and the live models, can be compared.
"""

from __future__ import annotations

import signal
import threading
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from api.cli import (
    _console,
    _fail,
    _new_read_models_target,
    _open_store,
    _redacted,
    _settings,
)
from infrastructure.clock import epoch_ns
from infrastructure.settings import Settings


def _until_ns(text: str | None) -> int | None:
    """ISO 8601 (UTC when no offset is given) -> ns since the epoch."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(f"--until {text!r} is not an ISO 8601 timestamp "
                    "(e.g. 2026-11-26T15:30:00Z)", 2) from None
    return epoch_ns(when)


def _stop_on_signals(stop: threading.Event) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())


def relay() -> None:
    """Publish every event of the store to Kafka, in log order, until stopped (SIGTERM).

    One record per event on <prefix>.events (key = account), a checkpoint per batch on
    <prefix>.checkpoints; resumes after the last checkpoint, so it may be killed at any time.
    Needs MARKETLOG_KAFKA_BOOTSTRAP. `marketlog serve` runs it in process unless
    MARKETLOG_KAFKA_RELAY=false.
    """
    from infrastructure.bootstrap import open_relay

    settings = _settings()
    if not settings.kafka_bootstrap:
        raise _fail("MARKETLOG_KAFKA_BOOTSTRAP is not set: there is no Kafka to relay to", 2)
    store = _open_store(settings)
    try:
        publisher = open_relay(settings, store)
    except Exception as exc:
        store.close()
        raise _fail(f"relay cannot start: {exc}") from None
    stop = threading.Event()
    _stop_on_signals(stop)
    _console().print(f"relay: {publisher.topics.events} ({publisher.partitions} partitions) "
                     f"from log position {publisher.position + 1}")
    publisher.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        publisher.stop()
        store.close()
    _console().print(f"relay stopped at log position {publisher.position}")


def project() -> None:
    """Keep the read models up to date until stopped (SIGTERM).

    From Kafka when MARKETLOG_KAFKA_BOOTSTRAP is set (consumer group
    MARKETLOG_KAFKA_CONSUMER_GROUP, offsets stored with the read models), else from the
    store's notification log. Exits 1 when a record cannot be applied, naming it.
    """
    from infrastructure.bootstrap import open_read_side
    from infrastructure.kafka_projector import KafkaProjectionRunner

    settings = _settings()
    read = open_read_side(settings)
    stop = threading.Event()
    _stop_on_signals(stop)
    runner = read.projections
    origin = f"Kafka {settings.kafka_bootstrap}" if settings.kafka_bootstrap else "the store"
    _console().print(f"projecting into {_redacted(settings.read_models_url)} from {origin}")
    runner.start()
    try:
        while not stop.wait(0.5):
            if isinstance(runner, KafkaProjectionRunner) and runner.halted is not None:
                raise _fail(f"projection stopped: {runner.halted}")
    finally:
        read.close()


def replay(
    into: Annotated[str, typer.Option(
        "--into", help="SQLAlchemy URL of an EMPTY database for the read models, e.g. "
        "sqlite:///replay.sqlite or postgresql+psycopg://user:pw@host/db.")],
    from_beginning: Annotated[bool, typer.Option(
        "--from-beginning/--no-from-beginning",
        help="From offset zero (the only mode: a replay rebuilds, it does not resume).")] = True,
    until: Annotated[str | None, typer.Option(
        "--until", help="Only events stamped at or before this time (ISO 8601, UTC unless "
        "an offset is given): the read models as of then.")] = None,
    projection: Annotated[list[str] | None, typer.Option(
        "--projection", help="Only this read model (repeatable): orders, positions, audit, "
        "control_stats.")
    ] = None,
) -> None:
    """Rebuild read models from the start of the log into a fresh database, with progress.

    From Kafka when MARKETLOG_KAFKA_BOOTSTRAP is set (every partition of the events topic
    from offset zero), else from the store. Prints each read model's digest at the end.
    """
    from infrastructure.as_of import PrefixJournal, cut_at
    from infrastructure.bootstrap import kafka_topics, read_models_engine
    from infrastructure.kafka_log import MalformedRecord
    from infrastructure.kafka_projector import KafkaProjectionRunner, ProjectorHalted
    from infrastructure.relay import last_checkpoint
    from projections.rebuild import digests
    from projections.runner import ProjectionRunner, select_views
    from projections.schema import migrate
    from projections.tables import projection_offsets, projection_positions

    if not from_beginning:
        raise _fail("a replay always starts from the beginning (into an empty database)", 2)
    settings = _settings()
    until_ns = _until_ns(until)
    try:
        views = select_views(projection)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    _new_read_models_target(into, settings)
    migrate(into)
    engine = read_models_engine(into)
    with engine.connect() as conn:
        used = sum(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() or 0
                   for t in (projection_positions, projection_offsets))
    if used:
        engine.dispose()
        raise _fail(f"{_redacted(into)} already holds read models; a replay needs an empty "
                    "database", 2)
    console = _console()
    progress = Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("events"), TimeElapsedColumn(), console=console)
    try:
        if settings.kafka_bootstrap:
            topics = kafka_topics(settings)
            checkpoint = last_checkpoint(settings.kafka_bootstrap, topics)
            total = checkpoint.position if checkpoint else 0
            runner = KafkaProjectionRunner(engine, settings.kafka_bootstrap, topics, group=None,
                                           batch_size=settings.projection_batch, views=views,
                                           until_ns=until_ns, consumer_name="replay",
                                           client=settings.kafka_client)
            source = f"Kafka {topics.events}"
            with progress:
                task = progress.add_task("replay", total=total)
                while runner.position < total:
                    try:
                        runner.step(200)
                    except MalformedRecord as exc:
                        raise ProjectorHalted(str(exc)) from exc
                    progress.update(task, completed=runner.position)
            runner.stop()
        else:
            store = _open_store(settings)
            total = store.stored_head()
            source = "the event store"
            feed: Any = store
            if until_ns is not None:
                # The log ends, for this replay, at the last event stamped by then (log order
                # is time order): read up to it, not the rest. Filtering by time alone left
                # the views' positions behind a batch wholly after it: the loop never ended.
                total = cut_at(store, until_ns).position
                feed = PrefixJournal(store, total)
            store_runner = ProjectionRunner(engine, feed, settings.projection_batch,
                                            views=views, until_ns=until_ns)
            try:
                with progress:
                    task = progress.add_task("replay", total=total)
                    while store_runner.position < total:
                        count = store_runner.apply_next_batch()
                        progress.update(task, completed=store_runner.position)
                        if count == 0:
                            break
            finally:
                store.close()
        with engine.connect() as conn:
            found = digests(conn)
    except Exception as exc:
        raise _fail(f"replay failed: {exc}") from None
    finally:
        engine.dispose()
    console.print(f"replayed {total:,} events from {source} into {_redacted(into)}"
                  + (f" as of {until}" if until else ""))
    _print_digests(found, {v.name for v in views})


TABLE_OF_VIEW = {"orders": "orders_view", "positions": "positions_view", "audit": "audit_trail",
                 "control_stats": "control_stats"}  # the digest of all its tables


def _print_digests(found: dict[str, str], views: set[str] | None = None) -> None:
    console = _console()
    for view, table in TABLE_OF_VIEW.items():
        if views is None or view in views:
            console.print(f"{view:<13} {found[table]}")


def digest(
    url: Annotated[str | None, typer.Option(
        "--url", help="Read-model database to digest; default the live one.")] = None,
) -> None:
    """Print every read model's deterministic digest (SHA-256 over its rows in key order).

    Two rebuilds, or a rebuild and the live read models, hold the same rows exactly when
    their digests are equal.
    """
    from infrastructure.bootstrap import read_models_engine
    from projections.rebuild import digests

    settings: Settings = _settings()
    engine = read_models_engine(url or settings.read_models_url)
    try:
        with engine.connect() as conn:
            found = digests(conn)
    except sa.exc.SQLAlchemyError as exc:
        raise _fail(f"cannot read {_redacted(url or settings.read_models_url)}: {exc}") from None
    finally:
        engine.dispose()
    _print_digests(found)


def register(app: typer.Typer) -> None:
    """Called by api/cli.py with ITS app: under ``python -m api.cli`` that module is
    ``__main__``, and commands put on an imported ``api.cli.app`` would never be seen."""
    for command in (relay, project, replay, digest):
        app.command()(command)
