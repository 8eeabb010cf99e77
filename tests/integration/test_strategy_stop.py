"""A strategy's recorded stop cancels its live orders, through the real threaded engine,
journal writer, store (SQLite, PostgreSQL) and simulated venue, with fills racing the stop.

The stop is sent in ONE wave with takers crossing the strategy's resting quotes, one command
per cycle over a store that stalls: the stop is decided while earlier takers' cycles are
still on their way to the venue, so some of the strategy's orders fill on the venue before
the stop's cancels reach it (what was already executed) and the cancels find them done or
partly done. The invariants:

* when the stop is acknowledged, no order of the strategy is live in the book of record or
  rests at the venue;
* every order the stop canceled is named by its ``StrategyStopped``, each cancel request
  follows it with reason ``strategy_stopped``; after the venue answered a cancel, the order
  never fills again, and no taker decided after the stop fills any order of the strategy;
* the market's invariants hold (``tests.invariants``) and a replay of the log equals the
  live book, also after a restart that finds the run open and closes it with its stop.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from concurrent.futures import Future
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from commands.models import Command, StartStrategy, StopStrategy, SubmitOrder
from commands.outcomes import Outcome, OutcomeKind
from domain.book_snapshot import state_of
from domain.lifecycle import LIVE_STATUSES
from domain.orders import Order
from domain.values import CancelReason
from infrastructure.bootstrap import System, bootstrap, build_engine
from infrastructure.settings import Settings
from tests.integration.test_pipeline_property import StallingJournal
from tests.invariants import check_exposure, check_log, check_venue_agrees

pytestmark = pytest.mark.timeout(300)

STRATEGY, ACCOUNT = "mm-stop", "ACC-ALPHA"
TAKERS = ("ACC-BETA", "ACC-GAMMA")
T0 = 1_699_920_000_000_000_000  # 2023-11-14T00:00:00Z
PRICE = Decimal("190.00")
ROUNDS = 4


@pytest.fixture
def settings_(backend: Settings) -> Settings:
    return backend.model_copy(update={"batch_max": 1, "snapshot_every": 40})


def clock() -> Any:
    ticks = itertools.count(1)
    return lambda: T0 + next(ticks) * 50_000_000  # 50 ms per reading


def start(run: int) -> StartStrategy:
    return StartStrategy(strategy_id=STRATEGY, run=run, kind="market_maker",
                         account_id=ACCOUNT, params={"symbol": "AAPL"}, actor="system",
                         reason="test")


def stop(run: int, reason: str = "stopped by test") -> StopStrategy:
    return StopStrategy(strategy_id=STRATEGY, run=run, actor="system", reason=reason,
                        orders_sent=0, fills=0)


def quote(run: int, n: int, side: str = "sell", offset: int = 0) -> SubmitOrder:
    # Each run's quotes differ in size from the last run's (the duplicate-order control).
    return SubmitOrder(client_order_id=f"{STRATEGY}.r{run}-{n}", account_id=ACCOUNT,
                       symbol="AAPL", side=side, quantity=10 + run, order_type="limit",
                       limit_price=PRICE + offset * Decimal("0.01"), time_in_force="day",
                       strategy=STRATEGY, actor="strategy", source="strategy")


def taker(run: int, n: int) -> SubmitOrder:
    return SubmitOrder(client_order_id=f"taker-{run}-{n}", account_id=TAKERS[n % 2],
                       symbol="AAPL", side="buy", quantity=3 + n // 2, order_type="limit",
                       limit_price=PRICE + Decimal("0.50") + run * Decimal("0.01"),
                       time_in_force="ioc", actor="tester", source="api")


def run_wave(system: System, commands: list[Command],
             on_stop: Any = None) -> list[Outcome]:
    engine = system.engine
    futures: list[Future[Outcome]] = []
    for command in commands:  # all at once: the pipeline fills up
        future = engine.submit(command)
        if isinstance(command, StopStrategy) and on_stop is not None:
            # Called in the engine thread as the stop is acknowledged: the book and the
            # venue as they stand then, read by their one writer.
            future.add_done_callback(on_stop)
        futures.append(future)
    outcomes = [f.result(timeout=60) for f in futures]
    assert all(isinstance(o, Outcome) for o in outcomes)
    return outcomes


def strategy_orders(system: System) -> tuple[list[Order], list[Order]]:
    """(the strategy's live orders in the book, its orders resting at the venue)."""
    book, venue = system.engine.book, system.engine.venue
    live = [o for o in book.orders.values()
            if o.strategy == STRATEGY and o.status in LIVE_STATUSES]
    resting = [e for b in venue.books.values() for side in (b.bids, b.asks)
               for price in side.prices for e in side.levels[price]
               if isinstance(e, Order) and e.strategy == STRATEGY]
    return live, resting


def check_stop_log(log: list[tuple[int, Any]]) -> dict[str, int]:
    """The stops' cancels and what could still fill, read from the log as an auditor."""
    run_of: dict[UUID, int] = {}  # the strategy's orders -> their run
    stopped: set[int] = set()  # runs stopped so far
    decided_after: dict[str, frozenset[int]] = {}  # other orders -> runs stopped before them
    answered: set[UUID] = set()  # the strategy's orders whose cancel the venue answered
    named: set[str] = set()
    requested: set[str] = set()
    seen = {"stops": 0, "canceled_by_stop": 0, "filled_before_cancel": 0,
            "fills_after_stop": 0}
    for position, e in log:
        kind = type(e).__name__
        if kind == "OrderAccepted":
            if e.strategy == STRATEGY:
                run_of[e.order_id] = int(e.client_order_id.split(".r")[1].split("-")[0])
            else:
                decided_after[str(e.order_id)] = frozenset(stopped)
        elif kind == "StrategyStopped":
            assert named == requested, "a named order's cancel request is missing"
            stopped.add(e.run)
            seen["stops"] += 1
            named |= set(e.canceled_orders)
        elif kind == "CancelRequested" and e.reason == CancelReason.STRATEGY_STOPPED:
            assert str(e.order_id) in named, f"cancel at {position} not named by a stop"
            assert e.actor == "system"
            requested.add(str(e.order_id))
        elif kind == "OrderCanceled" and e.order_id in run_of:
            assert e.reason == CancelReason.STRATEGY_STOPPED, (position, e.reason)
            answered.add(e.order_id)
            seen["canceled_by_stop"] += 1
        elif kind == "CancelRejected" and e.order_id in run_of and e.stage == "venue":
            answered.add(e.order_id)  # filled on the venue before the cancel reached it
            seen["filled_before_cancel"] += 1
        elif kind == "OrderFilled" and e.order_id in run_of:
            run = run_of[e.order_id]
            assert e.order_id not in answered, f"fill at {position} after the stop's cancel"
            assert run not in decided_after.get(e.counterparty, frozenset()), (
                f"a taker decided after run {run}'s stop filled its order at {position}")
            seen["fills_after_stop"] += run in stopped  # executed before, logged after
    assert named == requested
    assert {str(o) for o in answered} == named, "a canceled order's venue answer is missing"
    return seen


def check_quiescent(system: System) -> list[tuple[int, Any]]:
    engine = system.engine
    log = list(system.store.read())
    check_log(log)
    check_exposure(engine.book, log)
    check_venue_agrees(engine.book, engine.venue)
    rebuilt = build_engine(system.settings, system.config, system.store)
    assert state_of(rebuilt.book) == state_of(engine.book), "replay differs from live"
    assert system.store.verify().ok
    return log


@pytest.fixture
def system(settings_: Settings) -> Iterator[System]:
    system = bootstrap(settings_, start=False, clock=clock())
    try:
        yield system
    finally:
        system.close()


def test_fills_racing_a_stop_never_fill_past_it_and_nothing_of_the_run_stays_live(
        system: System) -> None:
    engine = system.engine
    engine.journal = StallingJournal(system.store, random.Random(7))
    engine.start()
    seen: dict[str, int] = {}
    for run in range(1, ROUNDS + 1):
        run_wave(system, [start(run), *(quote(run, n, offset=n) for n in range(1, 13))])
        live, resting = strategy_orders(system)
        assert len(live) == len(resting) == 12
        at_ack: list[tuple[list[Order], list[Order]]] = []
        # Takers, the stop in the middle of them, more takers: the stop is decided while
        # the first takers' cycles are still being written and released.
        wave: list[Command] = [taker(run, n) for n in range(6)]
        wave += [stop(run), *(taker(run, n) for n in range(6, 12))]
        outcomes = run_wave(system, wave, lambda _f, a=at_ack: a.append(strategy_orders(system)))
        stopped = outcomes[6]
        assert stopped.kind == OutcomeKind.DONE, stopped
        assert stopped.detail is not None and stopped.detail["events"][0] == "StrategyStopped"
        assert at_ack == [([], [])], "an order of the run was live when the stop was answered"
        takers = outcomes[:6] + outcomes[7:]
        assert all(o.order is not None and o.order["reject"] is None for o in takers), takers
        # The takers decided after the stop found nothing of the strategy (and no other
        # liquidity): IOC, canceled unfilled.
        assert all(o.order is not None and o.order["filled_quantity"] == 0
                   for o in outcomes[7:])
    engine.stop()
    engine.journal = system.store
    log = check_quiescent(system)
    seen = check_stop_log(log)
    print("stop race:", seen)
    assert seen["stops"] == ROUNDS and seen["canceled_by_stop"] > 0
    # The race happened: fills the venue executed before a stop's cancel reached it,
    # logged after the stop.
    assert seen["fills_after_stop"] + seen["filled_before_cancel"] > 0, seen


def test_a_run_found_open_after_a_restart_is_closed_with_its_orders(
        system: System, settings_: Settings) -> None:
    """The process died with the run open: recovery re-releases its quotes to the venue;
    the stop recorded at the next start cancels them."""
    engine = system.engine
    engine.start()
    run_wave(system, [start(1), quote(1, 1), quote(1, 2, offset=3),
                      quote(1, 3, side="buy", offset=-5)])
    engine.stop()
    system.close()  # no stop recorded
    system = bootstrap(settings_, start=False, clock=clock())
    try:
        live, resting = strategy_orders(system)
        assert len(live) == len(resting) == 3  # re-released at recovery
        assert system.engine.book.gov.strategies[STRATEGY][:2] == (1, True)
        system.engine.start()
        at_ack: list[tuple[list[Order], list[Order]]] = []
        [stopped, started] = run_wave(
            system, [stop(1, "found open at the next start"), start(2)],
            lambda _f: at_ack.append(strategy_orders(system)))
        assert stopped.kind == started.kind == OutcomeKind.DONE
        assert at_ack == [([], [])]
        system.engine.stop()
        log = check_quiescent(system)
        seen = check_stop_log(log)
        assert seen == {"stops": 1, "canceled_by_stop": 3, "filled_before_cancel": 0,
                        "fills_after_stop": 0}
    finally:
        system.close()
