"""A market maker: one bid and one offer around the mid, skewed against its inventory.

Fair price = mid - skew_ticks_per_unit * inventory (in ticks): a long maker lowers both
quotes, so its offer is hit more often and its bid less, and the inventory mean-reverts.
The bid is ``spread_ticks`` below the fair price (rounded down to a tick), the offer
``spread_ticks`` above it (rounded up). Sizes are cut so that the inventory can never pass
``max_inventory`` either way, even if every working quote filled at once: a bid is at most
``max_inventory - inventory`` and an offer at most ``max_inventory + inventory``.

When the desired price or size of a side changes, its working order is replaced (a cancel
when the side must go quiet); a side with a cancel or replace still pending at the venue
is left alone until the venue answers (ARCHITECTURE rule 10: pending is not done).

A quote a control refused (e.g. ``duplicate``: the same terms as an order sent less than the
window ago, such as the previous run's quote just before a restart) is sent again at the
next quote or timer once the duplicate window since it was sent has passed, at the last mid
seen: the maker does not wait for the mid to move (a quiet market may not move for long).
The timer acts only while a side's quote is refused, so a maker that is never refused
decides on quotes alone (backtest and live ask for the same orders).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from domain.market_data import Nbbo, Quote
from domain.strategy import BaseStrategy, OrderUpdate, StrategyContext

PENDING = ("pending_cancel", "pending_replace", "submitted")


@dataclass(frozen=True)
class MarketMakerConfig:
    symbol: str
    tick_size: Decimal
    spread_ticks: int = 2  # each quote's distance from the fair price
    size: int = 100
    max_inventory: int = 500
    skew_ticks_per_unit: Decimal = Decimal("0.01")
    time_in_force: str = "day"
    # The firm's duplicate window (15c3-5 erroneous-order control): a new quote with the
    # price and size of one sent less than this ago would be refused, so it waits.
    duplicate_window_ns: int = 1_000_000_000
    # How often a side whose quote was refused is looked at again without a new quote.
    retry_timer_ns: int = 250_000_000

    def __post_init__(self) -> None:
        if self.spread_ticks < 1 or self.size < 1 or self.max_inventory < 1:
            raise ValueError("spread_ticks, size and max_inventory must be at least 1")
        if self.retry_timer_ns < 1:
            raise ValueError("retry_timer_ns must be at least 1")
        if self.tick_size <= 0 or self.skew_ticks_per_unit < 0:
            raise ValueError("tick_size must be positive, skew_ticks_per_unit not negative")


class MarketMaker(BaseStrategy):
    def __init__(self, strategy_id: str, config: MarketMakerConfig) -> None:
        self.strategy_id = strategy_id
        self.config = config
        self.symbols = (config.symbol,)
        self.timer_interval_ns = config.retry_timer_ns
        self.requotes = 0
        # Sides whose last new quote a control refused: quoted again at the next quote or
        # timer, no sooner than the duplicate window after the refused one was sent
        # (``sent_at``), so a control that keeps refusing sees one order a window.
        self.refused: set[str] = set()
        self.sent_at: dict[tuple[str, Decimal, int], int] = {}
        self.mid: Decimal | None = None  # the last uncrossed mid quoted around

    def quotes(self, mid: Decimal, inventory: int) -> tuple[tuple[Decimal, int] | None,
                                                             tuple[Decimal, int] | None]:
        """The (price, size) of the bid and of the offer wanted now (None: no quote)."""
        c = self.config
        fair_ticks = mid / c.tick_size - c.skew_ticks_per_unit * inventory
        bid_ticks = math.floor(fair_ticks) - c.spread_ticks
        ask_ticks = math.ceil(fair_ticks) + c.spread_ticks
        bid_size = min(c.size, c.max_inventory - inventory)
        ask_size = min(c.size, c.max_inventory + inventory)
        bid = (bid_ticks * c.tick_size, bid_size) if bid_size > 0 and bid_ticks > 0 else None
        ask = (ask_ticks * c.tick_size, ask_size) if ask_size > 0 else None
        return bid, ask

    def on_quote(self, ctx: StrategyContext, quote: Quote, nbbo: Nbbo) -> None:
        if quote.symbol != self.config.symbol or nbbo.crossed:
            return
        mid = nbbo.midpoint
        if mid is None:
            return
        self.mid = mid
        self._quote(ctx, mid)

    def on_timer(self, ctx: StrategyContext, now_ns: int) -> None:
        if self.refused and self.mid is not None:
            self._quote(ctx, self.mid)

    def _quote(self, ctx: StrategyContext, mid: Decimal) -> None:
        bid, ask = self.quotes(mid, ctx.position(self.config.symbol))
        working = ctx.open_orders(self.config.symbol)
        self._side(ctx, "buy", bid, [o for o in working if o.side == "buy"])
        self._side(ctx, "sell", ask, [o for o in working if o.side == "sell"])

    def on_order(self, ctx: StrategyContext, update: OrderUpdate) -> None:
        if (update.status == "rejected" and update.limit_price is not None
                and update.symbol == self.config.symbol):
            self.refused.add(update.side)

    def _side(self, ctx: StrategyContext, side: str, wanted: tuple[Decimal, int] | None,
              working: list[OrderUpdate]) -> None:
        if any(o.status in PENDING for o in working):
            return  # the venue has not answered the last request on this side yet
        for extra in working[1:]:  # one quote a side: never more exposure than intended
            ctx.cancel(extra.client_order_id)
        current = working[0] if working else None
        if wanted is None:
            if current is not None:
                ctx.cancel(current.client_order_id)
            return
        price, size = wanted
        if current is None:
            key = (side, price, size)
            if ctx.now_ns - self.sent_at.get(key, -self.config.duplicate_window_ns) \
                    < self.config.duplicate_window_ns:
                return  # sent (or refused) within the window: it would be a duplicate
            self.refused.discard(side)
            self.sent_at[key] = ctx.now_ns
            if len(self.sent_at) > 1000:  # only the window matters: forget older quotes
                horizon = ctx.now_ns - self.config.duplicate_window_ns
                self.sent_at = {k: t for k, t in self.sent_at.items() if t >= horizon}
            ctx.submit(self.config.symbol, side, size, price, self.config.time_in_force)
            return
        leaves = current.quantity - current.filled_quantity
        if current.limit_price == price and leaves == size:
            return
        # A replace sets the order's total quantity: what has filled stays filled.
        self.requotes += 1
        ctx.replace(current.client_order_id, quantity=current.filled_quantity + size,
                    price=price)
