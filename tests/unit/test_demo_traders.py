"""The demo's traders (domain/strategies/demo_traders.py) against a fake ``DemoContext``: what
they ask for, decided by the seeded RNG and the quotes they see. The whole demo through the
engine is tests/e2e/test_cli.py."""

from __future__ import annotations

import random
from decimal import Decimal
from itertools import pairwise

from domain.instruments import Instrument
from domain.market_data import Nbbo
from domain.strategies.demo_traders import (
    BlockDesk,
    Desk,
    MarketMaker,
    Resender,
    ShortSeller,
    ThrottleBurst,
)
from domain.strategy import OrderUpdate, Strategy
from domain.values import OrderStatus

INSTRUMENTS = {s: Instrument(s, Decimal("0.01"), lot, Decimal(price))
               for s, lot, price in (("AAPL", 1, "190.00"), ("MSFT", 1, "410.00"),
                                     ("SPY", 1, "520.00"), ("TSLA", 1, "250.00"),
                                     ("PENNY", 100, "0.95"))}


class FakeContext:
    """Records what a trader asks for; quotes at each symbol's reference price."""

    def __init__(self, strategy_id: str = "demo") -> None:
        self._strategy_id = strategy_id
        self.asked: list[tuple] = []  # type: ignore[type-arg]
        self.n = 0

    @property
    def strategy_id(self) -> str:
        return self._strategy_id

    @property
    def now_ns(self) -> int:
        return 0

    def submit(self, symbol: str, side: str, quantity: int, price: Decimal | None = None,
               time_in_force: str = "day") -> str:
        self.n += 1
        self.asked.append(("submit", symbol, side, quantity, price, time_in_force))
        return f"c{self.n}"

    def submit_for(self, account_id: str, symbol: str, side: str, quantity: int,
                   price: Decimal | None = None, time_in_force: str = "day") -> str:
        self.n += 1
        self.asked.append(("submit_for", account_id, symbol, side, quantity, price))
        return f"c{self.n}"

    def cancel(self, client_order_id: str) -> None:
        self.asked.append(("cancel", client_order_id))

    def replace(self, client_order_id: str, quantity: int | None = None,
                price: Decimal | None = None) -> None:
        self.asked.append(("replace", client_order_id, quantity, price))

    def resend(self, client_order_id: str, quantity: int | None = None) -> None:
        self.asked.append(("resend", client_order_id, quantity))

    def ask_desk(self, action: str) -> None:
        self.asked.append(("desk", action))

    def position(self, symbol: str) -> int:
        return 0

    def open_orders(self, symbol: str | None = None) -> list[OrderUpdate]:
        return []

    def nbbo(self, symbol: str) -> Nbbo | None:
        price = INSTRUMENTS[symbol].reference_price
        assert price is not None
        return Nbbo(symbol, price - Decimal("0.01"), 100, "SIM", price + Decimal("0.01"), 100,
                    "SIM", 0)


def update(client_order_id: str, status: str, symbol: str = "AAPL", side: str = "buy",
           reject_control: str | None = None) -> OrderUpdate:
    return OrderUpdate(client_order_id, "order-id", symbol, side, status, 100, 0, 0, None,
                       Decimal("189.00"), reject_control, 0)


def desk(seed: int = 1) -> Desk:
    return Desk(random.Random(seed), INSTRUMENTS)


def test_demo_traders_are_strategies_with_their_own_tags() -> None:
    d = desk()
    shorts, burst, maker = ShortSeller(d), ThrottleBurst(d), MarketMaker(d)
    assert all(isinstance(t, Strategy) for t in (shorts, burst, maker))
    # The kill-switch and throttle drills of the risk desk are on these two tags.
    assert (shorts.strategy_id, burst.strategy_id) == ("sasha-shorts", "sasha-burst")
    assert maker.strategy_id == "demo-maria"


def test_the_market_maker_quotes_passively_then_cancels_and_replaces_what_is_live() -> None:
    maker, ctx = MarketMaker(desk()), FakeContext()
    for _ in range(40):
        maker.on_timer(ctx, 0)
        for asked in ctx.asked:
            if asked[0] == "submit":  # the engine accepts every quote
                maker.on_order(ctx, update(f"c{ctx.n}", OrderStatus.ACCEPTED, asked[1], asked[2]))
        kinds = {a[0] for a in ctx.asked}
        ctx.asked.clear()
        assert kinds <= {"submit", "cancel", "replace"}
    assert maker.live
    for _, (symbol, side) in maker.live.items():
        assert symbol in maker.symbols and side in ("buy", "sell")
    # What she quotes is passive: below the mid on a bid, above it on an offer.
    fresh = MarketMaker(desk(2))
    ctx = FakeContext()
    fresh.on_timer(ctx, 0)
    (_, symbol, side, quantity, price, tif), = ctx.asked
    mid = INSTRUMENTS[symbol].reference_price
    assert mid is not None and price is not None
    assert (price < mid) if side == "buy" else (price > mid)
    assert quantity > 0 and tif in ("day", "gtc")
    # A canceled or filled quote is no longer hers to cancel or replace.
    live = next(iter(maker.live))
    maker.on_order(ctx, update(live, OrderStatus.CANCELED))
    assert live not in maker.live


def test_the_resender_repeats_orders_in_each_of_its_three_ways() -> None:
    resender, ctx = Resender(desk(3)), FakeContext()
    for _ in range(60):
        resender.on_timer(ctx, 0)
    asked = ctx.asked
    resends = [a for a in asked if a[0] == "resend"]
    assert any(a[2] is None for a in resends)  # idempotent
    assert any(a[2] is not None for a in resends)  # a conflict: another quantity
    # The same order under a new client id: two identical submits in a row.
    submits = [a for a in asked if a[0] == "submit"]
    assert any(a == b for a, b in pairwise(submits))


def test_the_desk_only_makes_the_duplicate_control_fire_on_purpose() -> None:
    d = desk()
    first = d.fresh("ACC-ALPHA", "PENNY", "buy", 500, Decimal("0.95"))
    again = d.fresh("ACC-ALPHA", "PENNY", "buy", 500, Decimal("0.95"))
    other_account = d.fresh("ACC-BETA", "PENNY", "buy", 500, Decimal("0.95"))
    assert (first, again, other_account) == (500, 600, 500)  # bumped by a round lot


def test_the_short_seller_sequences_her_orders_with_the_desk() -> None:
    shorts, ctx = ShortSeller(desk()), FakeContext("sasha-shorts")
    for _ in range(len(ShortSeller.script)):
        shorts.on_timer(ctx, 0)
    desk_actions = [a[1] for a in ctx.asked if a[0] == "desk"]
    assert desk_actions == ["locate", "throttle", "halt", "resume", "ssr", "suspend",
                            "reinstate", "kill", "reset"]
    assert ctx.asked[0][:3] == ("submit", "MSFT", "sell_short")  # before any locate
    after_halt = ctx.asked[ctx.asked.index(("desk", "halt")) + 1]
    assert after_halt[:3] == ("submit", "MSFT", "buy")  # into the halt
    assert {a[1] for a in ctx.asked if a[0] == "submit_for"} == {"ACC-ALPHA", "ACC-GAMMA"}
    # The Rule 201 trigger is asked for once; the next rounds of the script sell short.
    for _ in range(len(ShortSeller.script)):
        shorts.on_timer(ctx, 0)
    assert [a for a in ctx.asked if a == ("desk", "ssr")] == [("desk", "ssr")]


def test_the_block_desk_pulls_its_blocks_once_the_firm_limit_refuses_one() -> None:
    bob, ctx = BlockDesk(desk()), FakeContext()
    for n in (1, 2):
        bob.on_timer(ctx, 0)
        bob.on_order(ctx, update(f"c{n}", OrderStatus.ACCEPTED, "SPY"))
    bob.on_timer(ctx, 0)
    bob.on_order(ctx, update("c3", OrderStatus.REJECTED, "SPY", reject_control="firm_credit"))
    ctx.asked.clear()
    bob.on_timer(ctx, 0)
    assert ctx.asked == [("cancel", "c1"), ("cancel", "c2")]
    assert bob.blocks == []
