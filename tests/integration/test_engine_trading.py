"""The engine over the real store (SQLite and PostgreSQL): the races of a pipelined venue,
market-order protection, trading days on the calendar, snapshots and memory.

Races are made deterministic with a gate at the engine's journal port: a commit is held
until the engine has decided the next cycle, exactly the window in which a cancel or a
replace used to reach the book of record before the venue.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import pytest

from commands.engine import Engine
from commands.models import CancelOrder, ReplaceOrder, SubmitOrder
from commands.outcomes import Outcome
from domain.book_snapshot import state_of
from domain.values import OrderStatus
from infrastructure.bootstrap import System, bootstrap, build_engine
from infrastructure.settings import Settings
from tests.invariants import check_exposure, check_log, check_venue_agrees

pytestmark = pytest.mark.timeout(180)

DAY_NS = 86_400 * 1_000_000_000
T0 = 1_699_920_000_000_000_000  # 2023-11-14T00:00:00Z (the default calendar: UTC days)


class Clock:
    """A clock the test moves; every reading advances it by one millisecond."""

    def __init__(self, start: int = T0 + 3_600_000_000_000) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            self.now += 1_000_000
            return self.now


class GatedJournal:
    """The real store; ``hold()`` makes the next append wait until ``release()``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._gate = threading.Event()
        self._gate.set()
        self.holding = threading.Event()

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def append(self, events: Sequence[Any]) -> int:
        if not self._gate.is_set():
            self.holding.set()
            assert self._gate.wait(30)
        return int(self.inner.append(events))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def order(account: str, cid: str, side: str, quantity: int, price: str | None,
          tif: str = "day") -> SubmitOrder:
    return SubmitOrder(client_order_id=cid, account_id=account, symbol="AAPL", side=side,
                       quantity=quantity, order_type="limit" if price else "market",
                       limit_price=Decimal(price) if price else None,
                       time_in_force=tif if price else "ioc", actor="tester")


def done(results: list[Outcome | BaseException]) -> list[Outcome]:
    for r in results:
        assert isinstance(r, Outcome), r
    return results  # type: ignore[return-value]


def log(system: System) -> list[tuple[int, Any]]:
    return list(system.store.read())


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the engine"
        time.sleep(0.002)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def system(backend: Settings, clock: Clock) -> Iterator[System]:
    s = bootstrap(backend, start=False, clock=clock)
    yield s
    s.close()


def quiescent_checks(system: System) -> None:
    events = log(system)
    check_log(events)
    check_exposure(system.engine.book, events)
    check_venue_agrees(system.engine.book, system.engine.venue)
    rebuilt = build_engine(system.settings, system.config, system.store)
    assert state_of(rebuilt.book) == state_of(system.engine.book)


# ----------------------------------------------------------------- the pipeline's races


def _race(system: System, second: Any) -> tuple[Outcome, Outcome]:
    """A resting sell at 190; a buy at 190 held in its commit; then ``second(sell_id)`` is
    decided while the buy has not reached the venue."""
    engine = system.engine
    [sell] = done(engine.execute([order("ACC-ALPHA", "sell", "sell", 100, "190.00")]))
    gate = GatedJournal(system.store)
    engine.journal = gate
    engine.start()
    try:
        gate.hold()
        buy = engine.submit(order("ACC-BETA", "buy", "buy", 100, "190.00"))
        assert gate.holding.wait(10)  # the buy's decision is on its way to the store
        target = uuid.UUID(sell.order["order_id"])  # type: ignore[index]
        change = engine.submit(second(target))
        # The engine decides the next cycle while the first is still being committed.
        wait_until(lambda: engine.book.lookup(target).status in (  # type: ignore[union-attr]
            OrderStatus.PENDING_CANCEL, OrderStatus.PENDING_REPLACE))
        gate.release()
        return buy.result(timeout=30), change.result(timeout=30)
    finally:
        engine.stop()
        engine.journal = system.store


def test_a_replace_decided_while_a_taker_is_in_flight_never_trades_through_it(
        system: System) -> None:
    """Issue 5 item 2: a sell re-priced 190 -> 191 filled at 190 after OrderReplaced(191)."""
    buy, replaced = _race(system, lambda oid: ReplaceOrder(
        order_id=oid, limit_price=Decimal("191.00"), actor="tester"))
    # The venue traded the sell on its old terms before the replace reached it.
    assert buy.order["status"] == "filled"  # type: ignore[index]
    kinds = [type(e).__name__ for _, e in log(system)
             if getattr(e, "order_id", None) == uuid.UUID(replaced.order["order_id"])]  # type: ignore[index]
    assert kinds == ["OrderAccepted", "ReplaceRequested", "OrderFilled", "ReplaceRejected"]
    assert replaced.order["status"] == "filled"  # type: ignore[index]
    assert check_log(log(system))["racing_fills"] == 1
    assert system.engine.failures == 0
    quiescent_checks(system)


def test_a_cancel_decided_while_a_taker_is_in_flight_is_refused_by_the_venue(
        system: System) -> None:
    """Issue 5 item 2: a taker "filled" a canceled maker, raised in book.fill and forced a
    full replay. Now the cancel is a request; the venue finds the order filled."""
    buy, canceled = _race(system, lambda oid: CancelOrder(order_id=oid, actor="tester"))
    assert buy.order["status"] == "filled"  # type: ignore[index]
    assert canceled.order["status"] == "filled"  # type: ignore[index]
    kinds = [type(e).__name__ for _, e in log(system)
             if getattr(e, "order_id", None) == uuid.UUID(canceled.order["order_id"])]  # type: ignore[index]
    assert kinds == ["OrderAccepted", "CancelRequested", "OrderFilled", "CancelRejected"]
    assert system.engine.failures == 0
    assert not [e for _, e in log(system) if type(e).__name__ == "EngineRecovered"]
    quiescent_checks(system)


def test_market_orders_never_fill_beyond_their_protection_when_the_market_moves(
        system: System, clock: Clock) -> None:
    engine = system.engine
    done(engine.execute([order("ACC-ALPHA", f"ask-{p}", "sell", 10, p)
                         for p in ("199.00", "203.00", "206.00")]))
    # The market prints at 180 (an outside participant, as the feed will report it): the
    # reference moves, and with it a market buy's protection: 180 x 1.1 = 198.00.
    engine.book.tape.print_trade("AAPL", Decimal("180.00"), clock())
    [buy] = done(engine.execute([order("ACC-BETA", "mkt", "buy", 30, None)]))
    assert buy.order["status"] == "canceled"  # type: ignore[index]
    assert buy.order["filled_quantity"] == 0  # type: ignore[index]
    accepted = next(e for _, e in log(system) if getattr(e, "client_order_id", "") == "mkt")
    assert accepted.protection_price == Decimal("198.00")
    assert accepted.reference_source == "last_sale"
    check_log(log(system))


# ------------------------------------------------------------------------ trading days


def test_the_calendar_closes_the_day_expires_day_orders_and_carries_gtc(
        backend: Settings, clock: Clock) -> None:
    system = bootstrap(backend, start=False, clock=clock)
    try:
        engine = system.engine
        assert engine.book.day.date == "2023-11-14" and engine.book.day.is_open
        day, gtc, filled = done(engine.execute([
            order("ACC-ALPHA", "day-bid", "buy", 10, "189.00"),
            order("ACC-ALPHA", "gtc-bid", "buy", 20, "188.00", "gtc"),
            order("ACC-BETA", "sell", "sell", 5, "189.00"),
        ]))
        # 5 filled and 5 open at 189, 20 open at 188.
        assert engine.book.exposure("ACC-ALPHA") == Decimal("5650.00")
        # Past midnight: the scheduled close expires the DAY order, the next day opens.
        clock.now = T0 + DAY_NS + 1_000_000_000
        done(engine.execute([]))
        events = [type(e).__name__ for _, e in log(system)]
        assert events.count("TradingDayClosed") == 1 and events.count("TradingDayOpened") == 2
        assert engine.book.day.date == "2023-11-15"
        day_id = uuid.UUID(day.order["order_id"])  # type: ignore[index]
        expired = [e for _, e in log(system) if type(e).__name__ == "OrderCanceled"
                   and e.order_id == day_id]
        assert [(e.reason, e.canceled_quantity) for e in expired] == [("end_of_day", 5)]
        # Today's exposure: only the GTC order carried over; yesterday's trade is history.
        assert engine.book.exposure("ACC-ALPHA") == Decimal("3760.00")
        assert engine.book.exposure("ACC-BETA") == 0
        [tomorrow] = done(engine.execute([order("ACC-BETA", "t2", "sell", 20, "188.00")]))
        assert tomorrow.order["status"] == "filled"  # type: ignore[index]
        gtc_id = uuid.UUID(gtc.order["order_id"])  # type: ignore[index]
        assert engine.book.lookup(gtc_id).status == "filled"  # type: ignore[union-attr]
        assert engine.book.exposure("ACC-ALPHA") == Decimal("3760.00")  # now as executions
        state = state_of(engine.book)
        quiescent_checks(system)
        # A restart in the middle of the day resumes that day's state.
        system.close()
        system = bootstrap(backend, start=False, clock=clock)
        assert state_of(system.engine.book) == state
        assert system.engine.book.day.date == "2023-11-15"
        del filled
    finally:
        system.close()


def test_a_restart_after_the_close_time_closes_the_day_it_missed(
        backend: Settings, clock: Clock) -> None:
    system = bootstrap(backend, start=False, clock=clock)
    done(system.engine.execute([order("ACC-ALPHA", "left", "buy", 10, "189.00")]))
    system.close()
    clock.now = T0 + 3 * DAY_NS + 1_000_000_000  # the engine was down for two days
    system = bootstrap(backend, start=False, clock=clock)
    try:
        day = system.engine.book.day
        assert (day.date, day.is_open, day.last_closed_date) == ("2023-11-17", True,
                                                                 "2023-11-14")
        kinds = [type(e).__name__ for _, e in log(system)]
        assert kinds[-5:] == ["TradingDayClosed", "CancelRequested", "OrderCanceled",
                              "TradingDayOpened", "BookSnapshotTaken"]  # a snapshot per close
        quiescent_checks(system)
    finally:
        system.close()


# ---------------------------------------------------------------------- smaller defects


def test_resending_the_original_after_a_replace_is_the_same_order(system: System) -> None:
    engine = system.engine
    first = order("ACC-ALPHA", "orig", "buy", 100, "189.00")
    [placed] = done(engine.execute([first]))
    oid = uuid.UUID(placed.order["order_id"])  # type: ignore[index]
    done(engine.execute([ReplaceOrder(order_id=oid, quantity=150, actor="tester")]))
    [again] = done(engine.execute([first]))  # the order as submitted: not a conflict
    assert again.kind == "existing"
    assert again.order["quantity"] == 150  # type: ignore[index]
    [other] = done(engine.execute([order("ACC-ALPHA", "orig", "buy", 150, "189.00")]))
    assert other.kind == "conflict" and other.detail == {"fields": ["quantity"]}


def test_replaces_back_and_forth_keep_live_and_recovered_priority_equal(
        backend: Settings, clock: Clock) -> None:
    system = bootstrap(backend, start=False, clock=clock)
    engine = system.engine
    a, b, c = done(engine.execute([order("ACC-ALPHA", "a", "buy", 10, "189.00"),
                                   order("ACC-BETA", "b", "buy", 11, "189.00"),
                                   order("ACC-GAMMA", "c", "buy", 12, "188.00")]))
    aid = uuid.UUID(a.order["order_id"])  # type: ignore[index]
    for price in ("188.00", "189.00"):  # 189 -> 188 -> 189: behind b at the end
        done(engine.execute([ReplaceOrder(order_id=aid, limit_price=Decimal(price),
                                          actor="tester")]))
    live = _queues(engine)
    assert live["189.00"] == [b.order["order_id"], a.order["order_id"]]  # type: ignore[index]
    system.close()
    system = bootstrap(backend, start=False, clock=clock)
    try:
        assert _queues(system.engine) == live
        del c
    finally:
        system.close()


def _queues(engine: Engine) -> dict[str, list[str]]:
    book = engine.venue.books["AAPL"]  # type: ignore[attr-defined]
    return {f"{p:.2f}": [str(e.order_id) for e in book.bids.levels[p]] for p in book.bids.prices}


# --------------------------------------------------------------- snapshots and memory


def test_recovery_from_a_snapshot_equals_a_full_replay(backend: Settings, clock: Clock) -> None:
    system = bootstrap(backend.model_copy(update={"snapshot_every": 10**9}), start=False,
                       clock=clock)
    try:
        engine = system.engine
        done(engine.execute([order(a, f"{a}-{n}", ("buy", "sell")[n % 2], 5 + n % 7,
                                   f"{189 + n % 3}.00")
                             for n in range(40) for a in ("ACC-ALPHA", "ACC-BETA")]))
        snapshot = engine.take_snapshot()
        assert snapshot is not None
        system.store.append([snapshot])
        engine.committed_position = system.store.head_position
        done(engine.execute([order("ACC-GAMMA", f"tail-{n}", "sell", 3, "189.00")
                             for n in range(5)]))
        live = state_of(engine.book)
        rebuilt = build_engine(system.settings, system.config, system.store)
        assert rebuilt.recovered_from_snapshot == snapshot.position
        assert state_of(rebuilt.book) == live
    finally:
        system.close()


def test_a_snapshot_the_log_does_not_record_is_not_trusted(backend: Settings,
                                                         clock: Clock) -> None:
    system = bootstrap(backend, start=False, clock=clock)
    try:
        engine = system.engine
        done(engine.execute([order("ACC-ALPHA", "x", "buy", 5, "189.00")]))
        live = state_of(engine.book)
        # A forged snapshot (an account's cash doubled) with no BookSnapshotTaken in the log.
        forged = state_of(engine.book)
        forged["accounts"]["ACC-ALPHA"]["cash"] = "1E+12"
        import orjson

        system.store.save_snapshot(system.store.head_position, orjson.dumps(forged))
        rebuilt = build_engine(system.settings, system.config, system.store)
        assert rebuilt.recovered_from_snapshot is None
        assert state_of(rebuilt.book) == live
    finally:
        system.close()


def test_finished_orders_leave_memory(system: System) -> None:
    engine = system.engine
    done(engine.execute([order("ACC-ALPHA", f"s{n}", "sell", n, "189.00")
                         for n in range(1, 51)]))
    done(engine.execute([order("ACC-BETA", "sweep", "buy", 1275, "189.00")]))
    assert len(engine.book.orders) == 0
    assert len(engine.book.finished) == 51
