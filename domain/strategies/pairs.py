"""A pairs (statistical-arbitrage) trader on two symbols.

spread = mid(A) - hedge_ratio * mid(B), sampled each time either mid changes (once both
are known). Over the last ``window`` samples, z = (spread - mean) / stdev (population
standard deviation, exact decimal arithmetic so a backtest and a live run agree to the
digit). Beyond +entry_z the spread is rich: sell A, buy B (short the spread); beyond
-entry_z buy A, sell B (long the spread); back inside ±exit_z, flatten both legs.

Orders are marketable (market IOC); the trader acts only when neither leg has an order
working, and sends what moves its own position (``ctx.position``) to the target, so a
partly filled leg is completed on the next signal instead of being doubled.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from domain.market_data import Nbbo, Quote
from domain.strategy import BaseStrategy, StrategyContext


@dataclass(frozen=True)
class PairsConfig:
    symbol_a: str
    symbol_b: str
    hedge_ratio: Decimal = Decimal(1)
    window: int = 20
    entry_z: Decimal = Decimal(2)
    exit_z: Decimal = Decimal("0.5")
    size: int = 100  # shares of A per trade; B is size * hedge_ratio, rounded

    def __post_init__(self) -> None:
        if self.window < 2 or self.size < 1:
            raise ValueError("window must be at least 2 and size at least 1")
        if not Decimal(0) <= self.exit_z < self.entry_z:
            raise ValueError("need 0 <= exit_z < entry_z")

    @property
    def size_b(self) -> int:
        return int((self.size * self.hedge_ratio).to_integral_value(ROUND_HALF_EVEN))


def zscore(samples: deque[Decimal] | list[Decimal]) -> Decimal | None:
    n = len(samples)
    mean = sum(samples, Decimal(0)) / n
    variance = sum(((s - mean) ** 2 for s in samples), Decimal(0)) / n
    if variance == 0:
        return None
    return (samples[-1] - mean) / variance.sqrt()


class PairsTrader(BaseStrategy):
    def __init__(self, strategy_id: str, config: PairsConfig) -> None:
        self.strategy_id = strategy_id
        self.config = config
        self.symbols = (config.symbol_a, config.symbol_b)
        self.timer_interval_ns = 0
        self.mids: dict[str, Decimal] = {}
        self.spreads: deque[Decimal] = deque(maxlen=config.window)
        self.target = 0  # +1 long the spread, -1 short, 0 flat
        self.last_z: Decimal | None = None

    def on_quote(self, ctx: StrategyContext, quote: Quote, nbbo: Nbbo) -> None:
        c = self.config
        if quote.symbol not in self.symbols:
            return
        mid = nbbo.midpoint
        if mid is None or self.mids.get(quote.symbol) == mid:
            return
        self.mids[quote.symbol] = mid
        if len(self.mids) < 2:
            return
        self.spreads.append(self.mids[c.symbol_a] - c.hedge_ratio * self.mids[c.symbol_b])
        if len(self.spreads) < c.window:
            return
        z = self.last_z = zscore(self.spreads)
        if z is None:
            return
        if z > c.entry_z:
            self.target = -1
        elif z < -c.entry_z:
            self.target = 1
        elif abs(z) < c.exit_z:
            self.target = 0
        self._trade_to_target(ctx)

    def _trade_to_target(self, ctx: StrategyContext) -> None:
        c = self.config
        if ctx.open_orders(c.symbol_a) or ctx.open_orders(c.symbol_b):
            return  # a leg is still working: decide again once it is done
        for symbol, wanted in ((c.symbol_a, self.target * c.size),
                               (c.symbol_b, -self.target * c.size_b)):
            delta = wanted - ctx.position(symbol)
            if delta:
                ctx.submit(symbol, "buy" if delta > 0 else "sell", abs(delta), None, "ioc")
