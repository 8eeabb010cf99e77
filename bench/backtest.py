"""Backtest throughput: ``python -m bench.backtest``.

1. The event loop alone: a no-op strategy over synthetic quotes and prints (ticks/s).
2. End to end: a strategy sending an IOC limit at the touch on every quote, each through the
   engine's 15c3-5 controls, the venue step and the journal (orders/s; the engine's own
   sweeps and the store's group commits included).
"""

from __future__ import annotations

import platform
import random
import sys
import tempfile
from pathlib import Path

from domain.backtest_strategies import NoOp
from domain.market_data import Nbbo, Quote, Trade
from domain.monte_carlo import REGIMES, gbm_path, ticks_from_path
from domain.strategy import BaseStrategy, StrategyContext
from infrastructure.backtest_venue import run_backtest, wall_seconds

T0 = 1_767_623_400_000_000_000
REFERENCE = (
    ("NautilusTrader 1.221", "248,000 quotes/s no-op", "3,400 market orders/s end to end"),
    ("backtrader", "24,000 bars/s", ""),
)


class Churner(BaseStrategy):
    """An IOC at the touch on every quote, sides alternating; the size cycles so no two
    orders within the duplicate control's window are the same (it would reject them)."""

    strategy_id = "bench-churn"
    symbols = ("SPY",)

    def __init__(self) -> None:
        self.n = 0

    def on_quote(self, ctx: StrategyContext, quote: Quote, nbbo: Nbbo) -> None:
        self.n += 1
        buy = self.n % 2 == 0
        price = nbbo.ask if buy else nbbo.bid
        ctx.submit("SPY", "buy" if buy else "sell", 1 + self.n % 400, price, "ioc")


def ticks(n: int, step_ns: int) -> list[Quote | Trade]:
    prices = gbm_path(520.0, n // 2, REGIMES["flat"], 1e-7, random.Random(1))
    return list(ticks_from_path(prices, "SPY", start_ns=T0, step_ns=step_ns))


def bench_config(directory: Path) -> Path:
    """The default firm configuration with credit limits a day of churn stays inside: the
    credit control counts every order entered (gross), so 20,000 orders at $520 would
    otherwise be refused after a few hundred, and the reject storm would trip the kill
    switch (both correct, neither what this benchmark measures)."""
    default = Path(__file__).resolve().parent.parent / "infrastructure/config/default.toml"
    text = default.read_text()
    text = text.replace('credit_limit = "40000000"', 'credit_limit = "400000000000"')
    text = text.replace('credit_limit = "20000000"', 'credit_limit = "200000000000"')
    path = directory / "bench.toml"
    path.write_text(text)
    return path


def main() -> None:
    n_noop = int(sys.argv[1]) if len(sys.argv) > 1 else 600_000
    n_orders = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = ticks(n_noop, 1_000_000)
        start = wall_seconds()
        result = run_backtest(data, NoOp(), Path(tmp) / "noop", seed=1)
        elapsed = wall_seconds() - start
        rows.append(("no-op strategy, event loop", f"{result.ticks:,} ticks",
                     f"{result.ticks / elapsed:,.0f} ticks/s"))
        # 5 ms between quotes: 200 orders a feed-second, inside the strategy throttle.
        data = ticks(2 * n_orders, 5_000_000)
        start = wall_seconds()
        config_file = bench_config(Path(tmp))
        result = run_backtest(data, Churner(), Path(tmp) / "orders", seed=1,
                              config_file=config_file)
        elapsed = wall_seconds() - start
        rows.append(("IOC per quote, engine + controls + venue + store",
                     f"{result.orders:,} orders ({result.metrics.fills:,} fills, "
                     f"rejects {result.rejects or 'none'})",
                     f"{result.orders / elapsed:,.0f} orders/s"))
    print(f"backtest benchmark — Python {platform.python_version()}, {platform.machine()}, "
          "one process, SQLite store in a temp dir, group commits of 20,000 events")
    width = max(len(r[0]) for r in rows)
    for name, size, rate in rows:
        print(f"  {name:<{width}}  {size:<48} {rate:>18}")
    print("reference figures (measured elsewhere, other hardware):")
    for name, a, b in REFERENCE:
        print(f"  {name:<{width}}  {a:<48} {b:>18}")
    print("targets: >= 300,000 ticks/s no-op; >= 30,000 orders/s end to end")


if __name__ == "__main__":
    main()
