"""Monte Carlo building blocks, pure and seeded: synthetic price paths, bootstrap of
returns, and the distribution of outcomes.

Synthetic paths are geometric Brownian motion with a regime's drift and volatility
(annualised, per step ``dt`` in years): ``S[t+1] = S[t] * exp((mu - sigma^2/2) dt +
sigma sqrt(dt) Z)``. Every function takes its ``Random`` or seed: the same seed gives
the same numbers on every machine (Python's Mersenne Twister and ``gauss`` are specified).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from random import Random
from typing import NamedTuple

from domain.backtest_metrics import max_drawdown
from domain.market_data import Quote, Trade


class Regime(NamedTuple):
    name: str
    drift: float  # annualised
    volatility: float  # annualised


REGIMES: dict[str, Regime] = {
    "bull": Regime("bull", 0.30, 0.15),
    "flat": Regime("flat", 0.0, 0.10),
    "crash": Regime("crash", -0.80, 0.60),
}


def gbm_path(start: float, steps: int, regime: Regime, dt: float, rng: Random
             ) -> list[float]:
    drift = (regime.drift - regime.volatility ** 2 / 2) * dt
    shock = regime.volatility * math.sqrt(dt)
    prices = [start]
    price = start
    for _ in range(steps):
        price *= math.exp(drift + shock * rng.gauss(0.0, 1.0))
        prices.append(price)
    return prices


def ticks_from_path(prices: Sequence[float], symbol: str = "SPY", *, start_ns: int,
                    step_ns: int, tick: Decimal = Decimal("0.01"), half_spread_ticks: int = 1,
                    size: int = 500, venue: str = "SIM") -> Iterator[Quote | Trade]:
    """A quote and a print at each price of the path (the print at the mid, rounded to the
    tick; the quote ``half_spread_ticks`` either side)."""
    half = tick * half_spread_ticks
    for i, p in enumerate(prices):
        ts = start_ns + i * step_ns
        mid = (Decimal(repr(p)) / tick).quantize(Decimal(1), ROUND_HALF_EVEN) * tick
        mid = max(mid, half + tick)
        yield Quote(venue, symbol, mid - half, size, mid + half, size, ts)
        yield Trade(venue, symbol, mid, size // 5 or 1, ts + 1)


def bootstrap_returns(returns: Sequence[float], runs: int, seed: int,
                      length: int | None = None) -> list[list[float]]:
    """``runs`` resamples (with replacement) of the per-period returns."""
    rng = Random(seed)
    n = length or len(returns)
    if not returns:
        return [[0.0] * n for _ in range(runs)]
    return [[returns[rng.randrange(len(returns))] for _ in range(n)] for _ in range(runs)]


def equity_from_returns(capital: float, returns: Sequence[float]) -> list[float]:
    equity = [capital]
    for r in returns:
        equity.append(equity[-1] * (1.0 + r))
    return equity


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default, 'linear')."""
    if not sorted_values:
        return 0.0
    position = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


class Outcome(NamedTuple):
    final_pnl: float
    max_drawdown: float  # fraction
    min_equity: float


class Distribution(NamedTuple):
    runs: int
    pnl_percentiles: dict[str, float]
    drawdown_percentiles: dict[str, float]
    probability_of_ruin: float
    mean_pnl: float


PERCENTILES = (5, 25, 50, 75, 95)


def outcome_of(capital: float, equity: Sequence[float]) -> Outcome:
    return Outcome(equity[-1] - capital, max_drawdown([capital, *equity])[0],
                   min([capital, *equity]))


def distribution(outcomes: Sequence[Outcome], ruin_equity: float) -> Distribution:
    """Percentiles of final P&L and max drawdown; ruin: equity at or below ``ruin_equity``
    at any point of the run."""
    pnls = sorted(o.final_pnl for o in outcomes)
    dds = sorted(o.max_drawdown for o in outcomes)
    ruined = sum(1 for o in outcomes if o.min_equity <= ruin_equity)
    n = len(outcomes)
    return Distribution(
        n,
        {f"p{q}": percentile(pnls, q) for q in PERCENTILES},
        {f"p{q}": percentile(dds, q) for q in PERCENTILES},
        ruined / n if n else 0.0,
        sum(pnls) / n if n else 0.0,
    )
