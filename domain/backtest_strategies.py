"""Small reference strategies for the backtester's own checks and benchmark.

They are not trading ideas: each has a known answer. ``NoOp`` asks nothing (the event loop's
cost alone); ``BuyAndHold`` buys once and carries the market's return; ``RandomEntries``
goes long and flat at random, so it has no edge and any good result is luck; ``Trend``
(long above a moving average, flat below) has an edge exactly when prices trend.
``Churn`` sends a marketable order on every quote (the end-to-end benchmark).
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal
from random import Random

from domain.market_data import Nbbo, Quote
from domain.strategy import BaseStrategy, StrategyContext


class NoOp(BaseStrategy):
    strategy_id = "noop"


class BuyAndHold(BaseStrategy):
    strategy_id = "buy-and-hold"

    def __init__(self, symbol: str = "SPY", quantity: int = 100) -> None:
        self.symbols = (symbol,)
        self.quantity = quantity
        self.sent = False

    def on_quote(self, ctx: StrategyContext, quote: Quote, nbbo: Nbbo) -> None:
        if not self.sent and nbbo.ask is not None:
            self.sent = True
            ctx.submit(nbbo.symbol, "buy", self.quantity)


class _LongFlat(BaseStrategy):
    """Holds ``quantity`` or nothing; ``want_long`` decides on each quote (market orders)."""

    def __init__(self, symbol: str, quantity: int) -> None:
        self.symbols = (symbol,)
        self.quantity = quantity
        self.in_flight = False

    def want_long(self, mid: Decimal) -> bool | None:
        raise NotImplementedError

    def on_quote(self, ctx: StrategyContext, quote: Quote, nbbo: Nbbo) -> None:
        mid = nbbo.midpoint
        if mid is None:
            return
        want = self.want_long(mid)
        if want is None or self.in_flight:
            return
        held = ctx.position(nbbo.symbol)
        if want and held <= 0:
            self.in_flight = True
            ctx.submit(nbbo.symbol, "buy", self.quantity, None, "ioc")
        elif not want and held > 0:
            self.in_flight = True
            ctx.submit(nbbo.symbol, "sell", held, None, "ioc")

    def on_order(self, ctx: StrategyContext, update: object) -> None:
        status = getattr(update, "status", "")
        if status in ("filled", "canceled", "rejected"):
            self.in_flight = False


class RandomEntries(_LongFlat):
    strategy_id = "random"

    def __init__(self, symbol: str = "SPY", quantity: int = 100, seed: int = 0,
                 switch_probability: float = 0.02) -> None:
        super().__init__(symbol, quantity)
        self.rng = Random(seed)
        self.switch_probability = switch_probability
        self.long = False

    def want_long(self, mid: Decimal) -> bool | None:
        if self.rng.random() < self.switch_probability:
            self.long = not self.long
        return self.long


class Trend(_LongFlat):
    strategy_id = "trend"

    def __init__(self, symbol: str = "SPY", quantity: int = 100, lookback: int = 20) -> None:
        super().__init__(symbol, quantity)
        self.lookback = lookback
        self.window: deque[Decimal] = deque(maxlen=lookback)
        self.total = Decimal(0)

    def want_long(self, mid: Decimal) -> bool | None:
        window = self.window
        if len(window) == window.maxlen:
            self.total -= window[0]
        window.append(mid)
        self.total += mid
        if len(window) < self.lookback:
            return None
        return mid > self.total / self.lookback


class Churn(BaseStrategy):
    """Buys and sells ``quantity`` at the touch on every quote, alternating (IOC limits)."""

    strategy_id = "churn"

    def __init__(self, symbol: str = "SPY", quantity: int = 1) -> None:
        self.symbols = (symbol,)
        self.quantity = quantity
        self.buy = True

    def on_quote(self, ctx: StrategyContext, quote: Quote, nbbo: Nbbo) -> None:
        price = nbbo.ask if self.buy else nbbo.bid
        if price is None:
            return
        ctx.submit(nbbo.symbol, "buy" if self.buy else "sell", self.quantity, price, "ioc")
        self.buy = not self.buy


class PassiveBid(BaseStrategy):
    """Rests one bid at ``offset_ticks`` below the touch on the first quote (queue tests)."""

    strategy_id = "passive-bid"

    def __init__(self, symbol: str = "SPY", quantity: int = 100, price: str = "",
                 side: str = "buy") -> None:
        self.symbols = (symbol,)
        self.quantity = quantity
        self.price = Decimal(price) if price else None
        self.side = side
        self.sent = False
        self.updates: list[object] = []

    def on_quote(self, ctx: StrategyContext, quote: Quote, nbbo: Nbbo) -> None:
        if self.sent:
            return
        price = self.price if self.price is not None else nbbo.bid
        if price is None:
            return
        self.sent = True
        ctx.submit(nbbo.symbol, self.side, self.quantity, price)

    def on_order(self, ctx: StrategyContext, update: object) -> None:
        self.updates.append(update)


REFERENCE_STRATEGIES = {
    "noop": NoOp,
    "buy-and-hold": BuyAndHold,
    "random": RandomEntries,
    "trend": Trend,
    "churn": Churn,
    "passive-bid": PassiveBid,
}
