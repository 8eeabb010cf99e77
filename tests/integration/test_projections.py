"""Read models against SQLite and PostgreSQL: one behaviour suite for both footprints.

Events come from the real BookOfRecord (tests/builders.py) and are stored with the real codec,
so the views see exactly what the engine journals.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from domain.book_of_record import BookOfRecord
from domain.events import OrderAccepted, OrderRejected
from domain.values import Side, Source
from infrastructure.codec import GENESIS_HASH, decode_body, encode_record, stored_hash
from infrastructure.postgres_admin import throwaway_database
from projections import queries
from projections.audit import AuditView
from projections.rebuild import digest, rebuild
from projections.runner import ConcurrentProjectionError, ProjectionRunner
from projections.schema import migrate
from projections.tables import audit_trail, metadata, projection_positions
from tests import builders
from tests.builders import ACCOUNT, ACTOR, OTHER_ACCOUNT, T0

ORDER_KEYS = {
    "order_id", "client_order_id", "account_id", "symbol", "side", "quantity", "order_type",
    "limit_price", "time_in_force", "status", "filled_quantity", "average_fill_price", "reject",
}  # fmt: skip


class ListSource:
    """The store's notification log in a list: positions 1..n, hash-chained like the store."""

    def __init__(self) -> None:
        self.entries: list[tuple[int, str, bytes]] = []
        self._head = GENESIS_HASH

    def append(self, *events: Any) -> None:
        for event in events:
            position = len(self.entries) + 1
            topic, state, self._head = encode_record(event, position, self._head)
            self.entries.append((position, topic, state))

    def select(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        return self.entries[after : after + limit]

    def first(self, count: int) -> ListSource:
        prefix = ListSource()
        prefix.entries = self.entries[:count]
        return prefix


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def read_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'read_models.sqlite'}"
        return
    # An empty database: these tests compare its tables with the read models' metadata
    # (``pg_url`` holds an event store too).
    with throwaway_database(request.getfixturevalue("pg_admin_url"), "mlread") as url:
        yield "postgresql+psycopg://" + url.split("://", 1)[1]


@pytest.fixture
def engine(read_url: str) -> Iterator[sa.Engine]:
    migrate(read_url)
    engine = sa.create_engine(read_url)
    yield engine
    engine.dispose()


def reference_digest(source: ListSource, tmp_path: Path) -> str:
    """One-shot replay into SQLite: every backend and every batching must match it."""
    return rebuild(source, f"sqlite:///{tmp_path / 'reference.sqlite'}")


def current_digest(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return digest(conn)


def submitted(b: BookOfRecord, source: ListSource, **overrides: Any) -> Any:
    event = builders.submit(b, **overrides)
    source.append(event)
    return event


def trade(
    b: BookOfRecord,
    source: ListSource,
    side: str,
    quantity: int,
    price: str,
    *,
    account_id: str = ACCOUNT,
) -> None:
    """An order for ``quantity`` at ``price``, filled in full at that price."""
    event = submitted(
        b, source, account_id=account_id, side=side, quantity=quantity, limit_price=price
    )
    assert isinstance(event, OrderAccepted), event
    source.append(builders.fill(b, b.orders[event.order_id], price=price))


def mixed_log() -> ListSource:
    """Every event type, two accounts, several symbols: the log for replay comparisons."""
    b, source = builders.book(), ListSource()
    for n in range(6):
        account = (ACCOUNT, OTHER_ACCOUNT)[n % 2]
        side = (Side.BUY, Side.SELL, Side.SELL_SHORT)[n % 3]
        trade(b, source, side, 10 * (n + 1), f"{190 + n % 3}.{n}5", account_id=account)
        partial = submitted(b, source, account_id=account, quantity=100, limit_price="189.00")
        order = b.orders[partial.order_id]
        source.append(builders.fill(b, order, 30 + n, "188.99"))
        source.append(b.request_replace(order, 90, Decimal("189.10"), ACTOR, Source.API,
                                        builders.ts()),
                      b.confirm_replace(order, builders.ts()))
        source.append(b.request_cancel(order, ACTOR, Source.API, builders.ts()),
                      b.confirm_cancel(order, builders.ts()))
        source.append(b.request_cancel(b.finished[order.order_id], ACTOR, Source.API,
                                       builders.ts()))
        submitted(b, source, account_id=account, quantity=5_000)  # max_qty rejects it
        live = submitted(
            b, source, account_id=account, symbol="MSFT", quantity=5, limit_price="410.00"
        )
        if isinstance(live, OrderAccepted):  # ACC-B may not trade MSFT
            source.append(b.request_replace(b.orders[live.order_id], 9_000, None, ACTOR,
                                            Source.API, builders.ts()))
    closed, cancels = b.close_day("system", Source.SYSTEM, builders.ts(), "test")
    source.append(closed, *cancels)
    source.append(*(b.confirm_cancel(b.orders[c.order_id], builders.ts()) for c in cancels))
    source.append(b.open_day("2023-11-15", "system", Source.SYSTEM, builders.ts(), None, "t"))
    return source


# --------------------------------------------------------------------------------- schema


def test_migrate_is_idempotent_and_matches_the_tables(read_url: str) -> None:
    migrate(read_url)
    migrate(read_url)
    engine = sa.create_engine(read_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
    engine.dispose()


# ---------------------------------------------------------------------------------- orders


def test_orders_view_statuses_and_average_fill_price(engine: sa.Engine) -> None:
    b, source = builders.book(), ListSource()
    filled = submitted(b, source, quantity=100, limit_price="190.00")
    order = b.orders[filled.order_id]
    source.append(builders.fill(b, order, 30, "190.00"), builders.fill(b, order, 70, "189.50"))

    amended = submitted(b, source, quantity=100, limit_price="190.00")
    order = b.orders[amended.order_id]
    source.append(builders.fill(b, order, 40, "190.00"))
    partially_filled_version = order.version
    source.append(b.request_replace(order, 80, Decimal("190.50"), ACTOR, Source.API,
                                    builders.ts()),
                  b.confirm_replace(order, builders.ts()))
    source.append(b.request_cancel(order, ACTOR, Source.API, builders.ts()),
                  b.confirm_cancel(order, builders.ts()))
    source.append(b.request_cancel(b.finished[order.order_id], ACTOR, Source.API,
                                   builders.ts()))  # CancelRejected

    rejected = submitted(b, source, quantity=5_000)
    assert isinstance(rejected, OrderRejected)

    resting = submitted(b, source, quantity=10, limit_price="189.00", side=Side.SELL)
    source.append(b.request_replace(b.orders[resting.order_id], 5_000, None, ACTOR, Source.API,
                                    builders.ts()))  # ReplaceRejected

    assert ProjectionRunner(engine, source).catch_up() == len(source.entries)

    with engine.connect() as conn:
        body = queries.get_order(conn, str(filled.order_id))
        assert body == {
            "order_id": str(filled.order_id),
            "client_order_id": filled.client_order_id,
            "account_id": ACCOUNT,
            "symbol": "AAPL",
            "side": "buy",
            "quantity": 100,
            "order_type": "limit",
            "limit_price": "190",
            "time_in_force": "day",
            "status": "filled",
            "filled_quantity": 100,
            "average_fill_price": "189.65",  # (30 * 190.00 + 70 * 189.50) / 100
            "reject": None,
        }
        body = queries.get_order(conn, str(amended.order_id))
        assert body is not None and set(body) == ORDER_KEYS
        assert (body["status"], body["quantity"], body["limit_price"]) == ("canceled", 80, "190.5")
        assert (body["filled_quantity"], body["average_fill_price"]) == (40, "190")
        body = queries.get_order(conn, str(rejected.order_id))
        assert body is not None
        assert (body["status"], body["filled_quantity"], body["average_fill_price"]) == (
            "rejected",
            0,
            None,
        )
        assert body["reject"] == {
            "control": rejected.control,
            "threshold": rejected.threshold,
            "observed": rejected.observed,
        }
        body = queries.get_order(conn, str(resting.order_id))
        assert body is not None
        assert (body["status"], body["side"], body["quantity"]) == ("accepted", "sell", 10)
        assert queries.get_order(conn, "00000000-0000-0000-0000-00000000dead") is None

        versions = dict(conn.execute(sa.text("SELECT order_id, version FROM orders_view")).all())
        # two requests, two confirmations, one refusal
        assert versions[str(amended.order_id)] == partially_filled_version + 5
        assert versions[str(resting.order_id)] == 2  # the replace rejection moved it

        every = queries.list_orders(conn)
        assert [o["order_id"] for o in every] == [
            str(e.order_id) for e in (filled, amended, rejected, resting)
        ]
        assert [o["order_id"] for o in queries.list_orders(conn, status="rejected")] == [
            str(rejected.order_id)
        ]
        page = queries.list_orders(conn, limit=2)
        rest = queries.list_orders(conn, after=page[-1]["order_id"])
        assert page + rest == every
        assert queries.list_orders(conn, account_id=OTHER_ACCOUNT) == []
        assert len(queries.list_orders(conn, symbol="AAPL", account_id=ACCOUNT)) == 4


# ------------------------------------------------------------------------------- positions


def test_positions_average_cost_and_realized_pnl_through_a_flip(engine: sa.Engine) -> None:
    b, source = builders.book(), ListSource()
    trade(b, source, Side.BUY, 100, "190.00")  # long 100 @ 190
    trade(b, source, Side.BUY, 50, "193.00")  # long 150 @ (19000 + 9650) / 150 = 191
    trade(b, source, Side.SELL, 60, "195.00")  # realizes (195 - 191) * 60 = 240; long 90 @ 191
    trade(b, source, Side.SELL, 140, "192.00")  # closes 90: +90 (330); short 50 @ 192
    trade(b, source, Side.BUY, 20, "190.00")  # covers 20: (192 - 190) * 20 = +40 (370)
    trade(b, source, Side.SELL_SHORT, 10, "191.00")  # short 40 @ (30*192 + 10*191) / 40
    trade(b, source, Side.BUY, 7, "191.00", account_id=OTHER_ACCOUNT)
    trade(b, source, Side.SELL, 7, "191.50", account_id=OTHER_ACCOUNT)  # flat, +3.50

    # Small batches: the same position is loaded, updated and written back across batches.
    ProjectionRunner(engine, source, batch_size=3).catch_up()

    with engine.connect() as conn:
        assert queries.list_positions(conn) == [
            {"account_id": ACCOUNT, "symbol": "AAPL", "quantity": -40,
             "average_price": "191.75", "realized_pnl": "370"},
            {"account_id": OTHER_ACCOUNT, "symbol": "AAPL", "quantity": 0,
             "average_price": "0", "realized_pnl": "3.5"},
        ]  # fmt: skip
        assert [
            p["account_id"] for p in queries.list_positions(conn, account_id=OTHER_ACCOUNT)
        ] == [OTHER_ACCOUNT]


# ----------------------------------------------------------------------------------- audit


def test_audit_trail_pages_and_filters(engine: sa.Engine) -> None:
    b, source = builders.book(), ListSource()
    trade(b, source, Side.BUY, 10, "190.00")  # positions 1, 2
    other = submitted(b, source, account_id=OTHER_ACCOUNT, quantity=20)  # 3
    trade(b, source, Side.SELL, 10, "190.00")  # 4, 5
    target = b.orders[other.order_id]
    source.append(b.request_cancel(target, ACTOR, Source.API, builders.ts()),  # 6
                  b.confirm_cancel(target, builders.ts()))  # 7
    closed, _ = b.close_day("system", Source.SYSTEM, builders.ts(), "test")
    source.append(closed)  # 8: no account, no order
    ProjectionRunner(engine, source).catch_up()

    with engine.connect() as conn:
        first = queries.audit_events(conn, limit=4)
        assert [e["position"] for e in first] == [1, 2, 3, 4]
        rest = queries.audit_events(conn, limit=4, after=first[-1]["position"])
        assert [e["position"] for e in rest] == [5, 6, 7, 8]
        assert [e["event_type"] for e in first + rest] == [
            "OrderAccepted", "OrderFilled", "OrderAccepted", "OrderAccepted", "OrderFilled",
            "CancelRequested", "OrderCanceled", "TradingDayClosed",
        ]  # fmt: skip
        day = rest[-1]
        assert (day["account_id"], day["order_id"], day["actor"]) == (None, None, "system")
        assert day["aggregate_id"] == str(closed.day_id)

        assert [e["position"] for e in queries.audit_events(conn, account_id=OTHER_ACCOUNT)] == [
            3, 6, 7,
        ]
        by_order = queries.audit_events(conn, order_id=str(other.order_id))
        assert [(e["position"], e["aggregate_version"]) for e in by_order] == [
            (3, 1), (6, 2), (7, 3)]
        assert all(e["aggregate_id"] == e["order_id"] == str(other.order_id) for e in by_order)
        window = queries.audit_events(
            conn, since_ns=by_order[0]["ts_ns"], until_ns=by_order[1]["ts_ns"]
        )
        assert [e["position"] for e in window] == [3, 4, 5]  # until is exclusive

        event = first[2]
        assert event["payload"] == decode_body(*source.entries[2][1:])[1]
        assert event["payload"]["prev_hash"] == stored_hash(source.entries[1][2])
        assert (event["actor"], event["source"], event["account_id"]) == (
            ACTOR,
            "api",
            OTHER_ACCOUNT,
        )
        assert event["timestamp"] == queries.iso_timestamp(event["ts_ns"])


def test_timestamps_keep_nanoseconds() -> None:
    assert queries.iso_timestamp(T0 + 123_456_789) == "2023-11-14T22:13:20.123456789Z"
    assert queries.iso_timestamp(0) == "1970-01-01T00:00:00.000000000Z"


# --------------------------------------------------------------------------- exactly once


def test_catching_up_twice_changes_nothing(engine: sa.Engine, tmp_path: Path) -> None:
    source = mixed_log()
    runner = ProjectionRunner(engine, source, batch_size=7)
    assert runner.catch_up() == len(source.entries)
    once = current_digest(engine)
    assert ProjectionRunner(engine, source, batch_size=7).catch_up() == len(source.entries)
    assert current_digest(engine) == once == reference_digest(source, tmp_path)
    with engine.connect() as conn:
        assert queries.projection_positions(conn) == dict.fromkeys(
            ("orders", "positions", "audit", "control_stats"), len(source.entries)
        )


class RedeliveringSource(ListSource):
    """Hands back the last few entries again with every batch, as Kafka does after a rebalance."""

    def select(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        return super().select(max(0, after - 3), limit)


def test_redelivered_events_are_skipped(engine: sa.Engine, tmp_path: Path) -> None:
    source = RedeliveringSource()
    source.entries = mixed_log().entries
    ProjectionRunner(engine, source, batch_size=10).catch_up()
    assert current_digest(engine) == reference_digest(source, tmp_path)


def test_a_view_behind_the_others_replays_alone(engine: sa.Engine, tmp_path: Path) -> None:
    source = mixed_log()
    ProjectionRunner(engine, source).catch_up()
    with engine.begin() as conn:
        conn.execute(audit_trail.delete())
        conn.execute(projection_positions.delete().where(projection_positions.c.name == "audit"))
    ProjectionRunner(engine, source, batch_size=9).catch_up()
    assert current_digest(engine) == reference_digest(source, tmp_path)


def test_crash_between_batches_ends_like_a_one_shot_run(
    read_url: str, engine: sa.Engine, tmp_path: Path
) -> None:
    source = mixed_log()
    half = len(source.entries) // 2
    ProjectionRunner(engine, source.first(half), batch_size=5).catch_up()
    engine.dispose()  # the process died; a new one starts over the same database

    restarted = sa.create_engine(read_url)
    assert ProjectionRunner(restarted, source, batch_size=5).catch_up() == len(source.entries)
    assert current_digest(restarted) == reference_digest(source, tmp_path)
    restarted.dispose()


def test_a_failure_inside_a_batch_rolls_back_every_view(
    engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = mixed_log()
    runner = ProjectionRunner(engine, source, batch_size=8)
    original = AuditView.process
    calls = 0

    def crash_on_the_second_batch(self: AuditView, conn: sa.Connection, batch: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("disk full")
        original(self, conn, batch)

    monkeypatch.setattr(AuditView, "process", crash_on_the_second_batch)
    with pytest.raises(RuntimeError, match="disk full"):
        runner.catch_up()
    with engine.connect() as conn:
        # Orders and positions ran before audit in the failed batch: rolled back with it.
        assert set(queries.projection_positions(conn).values()) == {8}
    assert runner.position == 8

    monkeypatch.setattr(AuditView, "process", original)
    assert runner.catch_up() == len(source.entries)
    assert current_digest(engine) == reference_digest(source, tmp_path)


class RacingSource(ListSource):
    """Lets a second runner catch up while the first is between reading and writing."""

    def __init__(self, rival: ProjectionRunner | None = None) -> None:
        super().__init__()
        self.rival = rival

    def select(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        if self.rival is not None:
            rival, self.rival = self.rival, None
            rival.catch_up()
        return super().select(after, limit)


def test_two_runners_on_one_database_never_apply_a_batch_twice(
    engine: sa.Engine, tmp_path: Path
) -> None:
    log = mixed_log()
    ProjectionRunner(engine, log.first(10)).catch_up()
    racing = RacingSource(ProjectionRunner(engine, log))
    racing.entries = log.entries
    with pytest.raises(ConcurrentProjectionError):
        ProjectionRunner(engine, racing).catch_up()
    assert current_digest(engine) == reference_digest(log, tmp_path)


def test_rebuild_refuses_a_database_that_already_has_views(
    read_url: str, engine: sa.Engine
) -> None:
    source = mixed_log()
    ProjectionRunner(engine, source).catch_up()
    with pytest.raises(ValueError, match="empty database"):
        rebuild(source, read_url)


# ------------------------------------------------------------------------- background thread


class FlakySource(ListSource):
    def __init__(self) -> None:
        super().__init__()
        self.failing = threading.Event()

    def select(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        if self.failing.is_set():
            raise ConnectionError("store unreachable")
        return super().select(after, limit)


def test_background_runner_follows_the_log_and_survives_errors(engine: sa.Engine) -> None:
    b, source = builders.book(), FlakySource()
    runner = ProjectionRunner(engine, source)
    runner.start()
    try:
        trade(b, source, Side.BUY, 10, "190.00")
        runner.notify()
        assert runner.wait_for(2, timeout=10)
        assert not runner.wait_for(3, timeout=0.05)

        source.failing.set()
        trade(b, source, Side.SELL, 10, "190.00")
        assert not runner.wait_for(4, timeout=1)
        assert isinstance(runner.last_error, ConnectionError)

        source.failing.clear()
        assert runner.wait_for(4, timeout=10)
        assert runner.position == 4
        with engine.connect() as conn:
            assert [p["quantity"] for p in queries.list_positions(conn)] == [0]
    finally:
        runner.stop()
    assert runner.last_error is None
