"""Strategies through the live runner against the real engine, store and simulated venue
(SQLite and PostgreSQL): their orders carry the strategy's tag and user, pass the same
controls as a REST order, and a strategy that fails or is killed stops without stopping
the engine."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from commands.models import (
    ApproveLimitChange,
    RequestLimitChange,
    SubmitOrder,
    TripKillSwitch,
)
from commands.strategy_runner import FAILED, KILLED, RUNNING, StrategyRunner
from domain.events import OrderAccepted, OrderFilled, OrderRejected
from domain.market_data import Nbbo, Quote
from domain.strategies import MarketMaker, MarketMakerConfig
from domain.strategy import BaseStrategy, OrderUpdate, StrategyContext
from domain.values import OrderStatus, Source
from infrastructure.bootstrap import System, bootstrap
from infrastructure.clock import utc_now_ns
from infrastructure.settings import Settings
from infrastructure.venue_quotes import StoreEvents, VenueQuotes

pytestmark = pytest.mark.timeout(180)

MAX_INVENTORY = 300


@pytest.fixture
def system(backend: Settings) -> Iterator[System]:
    system = bootstrap(backend.model_copy(update={"liquidity_provider": True}), start=False)
    try:
        yield system
    finally:
        system.close()


def runner_for(system: System, strategy: Any) -> tuple[StrategyRunner, VenueQuotes,
                                                         StoreEvents]:
    runner = StrategyRunner(strategy, actor="strategy", account_id="ACC-ALPHA",
                            send=system.engine.execute, clock=utc_now_ns)
    feed = VenueQuotes(system.engine.venue, ("AAPL", "MSFT"), utc_now_ns)
    events = StoreEvents(system.store, system.store.head_position)
    return runner, feed, events


def step(system: System, runner: StrategyRunner, feed: VenueQuotes, events: StoreEvents,
         move: bool = True) -> None:
    if move:
        # The market moves: the liquidity provider requotes, as in each engine cycle that
        # releases orders (the engine is idle here: this thread is its only user).
        system.engine.venue.requote()
    for quote in feed.poll():
        runner.on_quote(quote)
    runner.on_events(events.poll())


def rest_order(price: Decimal | None, side: str = "buy", quantity: int = 100,
               client_order_id: str = "rest-1", tif: str = "day") -> SubmitOrder:
    return SubmitOrder(client_order_id=client_order_id, account_id="ACC-BETA", symbol="AAPL",
                       side=side, quantity=quantity, order_type="market" if price is None
                       else "limit", limit_price=price, time_in_force=tif, actor="tester",
                       source=Source.API)


def test_market_maker_trades_against_a_taker_within_its_inventory(system: System) -> None:
    config = MarketMakerConfig("AAPL", Decimal("0.01"), spread_ticks=2, size=100,
                               max_inventory=MAX_INVENTORY, skew_ticks_per_unit=Decimal("0.02"))
    maker = MarketMaker("mm-aapl", config)
    runner, feed, events = runner_for(system, maker)
    runner.start()
    rng = random.Random(9)
    extremes, takes = [], []
    for n in range(300):
        step(system, runner, feed, events)
        if n % 3 == 0:  # a taker on another account lifts or hits the best quote
            side, quantity = rng.choice(("buy", "sell")), 20 + n // 3  # unique: no duplicates
            outcome = system.engine.execute([rest_order(None, side, quantity, f"taker-{n}",
                                                        "ioc")])[0]
            assert outcome.order["reject"] is None, outcome  # type: ignore[union-attr]
            takes.append(quantity)
            runner.on_events(events.poll())
        extremes.append(runner.position("AAPL"))
    assert runner.status == RUNNING and not runner.errors, runner.describe()
    assert runner.orders_sent >= 2 and maker.requotes > 50 and runner.fills > 20
    assert max(abs(p) for p in extremes) <= MAX_INVENTORY
    # The cap binds: the seeded taker drives the inventory to it (the exact path depends on
    # the duplicate window, which is wall-clock time).
    assert max(abs(p) for p in extremes) >= MAX_INVENTORY - 100

    # The log agrees: every order the runner sent carries its tag, its user and source,
    # under deterministic client ids, and its fills add up to the runner's position.
    mine: dict[Any, str] = {}
    position = 0
    refused: Counter[str] = Counter()
    for _, event in system.store.read():
        if isinstance(event, OrderAccepted | OrderRejected) and event.strategy == "mm-aapl":
            assert event.actor == "strategy" and event.source == Source.STRATEGY
            assert event.account_id == "ACC-ALPHA"
            mine[event.order_id] = event.client_order_id
            if isinstance(event, OrderRejected):
                refused[event.control] += 1
        elif isinstance(event, OrderFilled) and event.order_id in mine:
            position += event.fill_quantity * (1 if event.side == "buy" else -1)
    assert sorted(mine.values(), key=lambda c: int(c.rsplit("-", 1)[1])) == [
        f"mm-aapl-{n}" for n in range(1, runner.orders_sent + 1)]
    assert position == runner.position("AAPL")
    # The only refusals: a quote re-sent at the same price and size within a second of the
    # one that just filled (the duplicate control, as for any client); the maker does not
    # send a refused quote again until its wanted quote changes.
    assert set(refused) <= {"duplicate"} and refused["duplicate"] <= 30, refused
    assert refused["duplicate"] <= runner.rejections["duplicate"]
    live = [o for o in system.engine.book.live_orders() if o.order_id in mine]
    assert {o.client_order_id for o in live} == {
        u.client_order_id for u in runner.open_orders()}


class OneShot(BaseStrategy):
    """Sends the orders it is given on its first quote; keeps every update it sees."""

    symbols = ("AAPL",)

    def __init__(self, strategy_id: str, orders: list[tuple[str, int, Decimal | None]]) -> None:
        self.strategy_id = strategy_id
        self.orders = orders
        self.updates: list[OrderUpdate] = []
        self.sent = False

    def on_quote(self, ctx: StrategyContext, quote: Quote, nbbo: Nbbo) -> None:
        if not self.sent:
            self.sent = True
            for side, quantity, price in self.orders:
                ctx.submit("AAPL", side, quantity, price)

    def on_order(self, ctx: StrategyContext, update: OrderUpdate) -> None:
        self.updates.append(update)


def test_a_strategy_order_is_refused_by_the_same_control_as_a_rest_order(
        system: System) -> None:
    far = Decimal("100.00")  # AAPL trades near 190: outside the 10% price collar
    strategy = OneShot("collar-bot", [("buy", 10, far)])
    runner, feed, events = runner_for(system, strategy)
    runner.start()
    step(system, runner, feed, events)
    assert [(u.status, u.reject_control) for u in strategy.updates] == [
        (OrderStatus.REJECTED, "price_collar")]
    rest = system.engine.execute([rest_order(far, quantity=10)])[0]
    assert rest.order["reject"]["control"] == "price_collar"  # type: ignore[union-attr]
    assert runner.rejections == {"price_collar": 1} and runner.status == RUNNING


def test_the_per_strategy_throttle_refuses_a_burst(system: System) -> None:
    change_id = uuid.uuid4()
    cut = RequestLimitChange(change_id=change_id, scope="firm",
                             field="strategy_max_orders_per_second", value="2",
                             reason="test", actor="rose", source=Source.API)
    assert system.engine.execute([cut])[0].kind == "done"  # type: ignore[union-attr]
    approved = system.engine.execute([ApproveLimitChange(
        change_id=change_id, reason="test", actor="raj", source=Source.API)])[0]
    assert approved.kind == "done", approved  # type: ignore[union-attr]
    mid = system.engine.venue.liquidity.mid("AAPL")  # type: ignore[union-attr]
    strategy = OneShot("burst-bot", [("buy", 10 + n, mid - 1 - n) for n in range(4)])
    runner, feed, events = runner_for(system, strategy)
    runner.start()
    step(system, runner, feed, events, move=False)
    assert [u.reject_control for u in strategy.updates] == [None, None, "rate", "rate"]
    # Another strategy's tag has a throttle of its own (per strategy, not per user).
    other = OneShot("other-bot", [("buy", 20, mid - 1)])
    runner2, feed2, events2 = runner_for(system, other)
    runner2.start()
    step(system, runner2, feed2, events2, move=False)
    assert [u.reject_control for u in other.updates] == [None]


class Raises(BaseStrategy):
    symbols = ("AAPL",)
    strategy_id = "buggy"

    def on_quote(self, ctx: StrategyContext, quote: Quote, nbbo: Nbbo) -> None:
        ctx.submit("AAPL", "buy", 10, (nbbo.bid or Decimal(1)) - Decimal("0.50"))
        raise ZeroDivisionError("oops")


def test_a_raising_strategy_is_stopped_and_the_engine_keeps_serving(system: System) -> None:
    runner, feed, events = runner_for(system, Raises())
    runner.start()
    step(system, runner, feed, events)
    assert runner.status == FAILED
    assert runner.errors == ["on_quote: ZeroDivisionError: oops"]
    assert runner.orders_sent == 0  # what the failed callback asked for is not sent
    step(system, runner, feed, events)  # no further calls
    assert runner.status == FAILED and len(runner.errors) == 1
    outcome = system.engine.execute([rest_order(Decimal("189.00"), quantity=5)])[0]
    assert outcome.order["status"] in ("accepted", "filled"), outcome  # type: ignore[union-attr]
    assert system.engine.halted is None


def test_a_kill_switch_on_the_strategy_stops_it(system: System) -> None:
    maker = MarketMaker("mm-kill", MarketMakerConfig("AAPL", Decimal("0.01")))
    runner, feed, events = runner_for(system, maker)
    runner.start()
    step(system, runner, feed, events)
    assert len(runner.open_orders()) == 2
    tripped = system.engine.execute([TripKillSwitch(scope="strategy:mm-kill", reason="test",
                                                    actor="rose", source=Source.API)])[0]
    assert tripped.kind == "done", tripped  # type: ignore[union-attr]
    runner.on_events(events.poll())
    assert runner.status == KILLED
    assert runner.open_orders() == []  # the engine canceled its quotes; the runner saw it
    assert not [o for o in system.engine.book.live_orders() if o.client_order_id
                .startswith("mm-kill-")]
