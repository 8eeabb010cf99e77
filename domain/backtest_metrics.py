"""Performance of a backtest: P&L curve statistics, pure (floats in, floats out).

Returns are per period of the equity curve (``e[i] / e[i-1] - 1``); ratios are annualised
with ``periods_per_year``. Conventions, so the numbers can be checked by hand:
  * Sharpe: mean / sample standard deviation (n - 1) * sqrt(periods_per_year), risk-free 0;
  * Sortino: mean / downside deviation * sqrt(periods_per_year), the downside deviation
    being sqrt(mean(min(r, 0)^2)) over ALL periods (target 0; Sortino & Price 1994);
  * max drawdown: the largest fall from a running peak, as a fraction of that peak and in
    currency;
  * turnover: traded notional / starting capital;
  * fill ratio: filled quantity / quantity the engine received.
A ratio whose denominator is 0 is 0.0 (a flat curve has no risk and no return).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple


class EquitySample(NamedTuple):
    ts_ns: int
    equity: float


class Fill(NamedTuple):
    ts_ns: int
    symbol: str
    signed_quantity: int  # buy positive
    price: float
    fee: float


class Metrics(NamedTuple):
    final_pnl: float
    total_return: float
    sharpe: float
    sortino: float
    max_drawdown: float  # fraction of the peak
    max_drawdown_amount: float
    turnover: float
    fill_ratio: float
    fills: int
    traded_quantity: int
    fees: float
    periods: int


def returns_of(equity: Sequence[float]) -> list[float]:
    return [b / a - 1.0 if a else 0.0 for a, b in itertools.pairwise(equity)]


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def stdev(xs: Sequence[float]) -> float:
    if len(xs) < 2:
        return 0.0
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def sharpe(returns: Sequence[float], periods_per_year: float = 1.0) -> float:
    sd = stdev(returns)
    # A deviation at the level of float rounding is no risk (a constant series).
    if sd <= 1e-12 * max(1.0, abs(mean(returns))):
        return 0.0
    return mean(returns) / sd * math.sqrt(periods_per_year)


def sortino(returns: Sequence[float], periods_per_year: float = 1.0) -> float:
    if not returns:
        return 0.0
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    if downside == 0.0:
        return 0.0
    return mean(returns) / downside * math.sqrt(periods_per_year)


def max_drawdown(equity: Sequence[float]) -> tuple[float, float]:
    """(fraction of the peak, amount) of the deepest fall from a running peak."""
    peak = -math.inf
    worst_fraction = worst_amount = 0.0
    for e in equity:
        peak = max(peak, e)
        amount = peak - e
        worst_amount = max(worst_amount, amount)
        if peak > 0 and amount / peak > worst_fraction:
            worst_fraction = amount / peak
    return worst_fraction, worst_amount


def drawdown_curve(equity: Sequence[float]) -> list[float]:
    """The fall from the running peak at each point, as a fraction of the peak (<= 0)."""
    peak = -math.inf
    out = []
    for e in equity:
        peak = max(peak, e)
        out.append((e - peak) / peak if peak > 0 else 0.0)
    return out


def metrics_of(curve: Sequence[EquitySample], fills: Sequence[Fill], capital: float,
               submitted_quantity: int, periods_per_year: float = 1.0) -> Metrics:
    equity = [s.equity for s in curve]
    returns = returns_of(equity)
    final = equity[-1] if equity else capital
    fraction, amount = max_drawdown([capital, *equity])
    traded = sum(abs(f.signed_quantity) for f in fills)
    notional = sum(abs(f.signed_quantity) * f.price for f in fills)
    return Metrics(
        final_pnl=final - capital,
        total_return=(final - capital) / capital if capital else 0.0,
        sharpe=sharpe(returns, periods_per_year),
        sortino=sortino(returns, periods_per_year),
        max_drawdown=fraction,
        max_drawdown_amount=amount,
        turnover=notional / capital if capital else 0.0,
        fill_ratio=traded / submitted_quantity if submitted_quantity else 0.0,
        fills=len(fills),
        traded_quantity=traded,
        fees=sum(f.fee for f in fills),
        periods=len(returns),
    )
