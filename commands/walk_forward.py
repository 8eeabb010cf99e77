"""Walk-forward runs: grid search in each in-sample window, the best parameters judged on
the next window. Each evaluation is a full backtest (``evaluate``: ticks and parameters to
a result), so every in- and out-of-sample order went through the engine and its controls."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from commands.backtest import BacktestResult
from domain.market_data import Quote, Trade
from domain.walk_forward import WalkForwardReport, WindowResult, grid, report, windows

Evaluate = Callable[[Sequence[Quote | Trade], dict[str, Any]], BacktestResult]


def split_periods(ticks: Sequence[Quote | Trade], period_ns: int) -> list[int]:
    """Index of the first tick of each period of ``period_ns`` feed time."""
    starts: list[int] = []
    current = None
    for i, tick in enumerate(ticks):
        bucket = tick.ts_ns // period_ns
        if bucket != current:
            starts.append(i)
            current = bucket
    return starts


def walk_forward(ticks: Sequence[Quote | Trade], space: Mapping[str, Sequence[Any]],
                 evaluate: Evaluate, *, period_ns: int, in_sample: int, out_of_sample: int,
                 capital: float, score: str = "sharpe",
                 progress: Callable[[int, int], None] | None = None) -> WalkForwardReport:
    starts = split_periods(ticks, period_ns)
    starts.append(len(ticks))
    plan = windows(len(starts) - 1, in_sample, out_of_sample)
    candidates = grid(space)
    total, done = len(plan) * (len(candidates) + 1), 0
    results: list[WindowResult] = []
    curves: list[list[float]] = []

    def piece(span: tuple[int, int]) -> Sequence[Quote | Trade]:
        return ticks[starts[span[0]]:starts[span[1]]]

    for window in plan:
        best: tuple[float, dict[str, Any]] | None = None
        for params in candidates:
            value = float(getattr(evaluate(piece(window.in_sample), params).metrics, score))
            if best is None or value > best[0]:
                best = (value, params)
            done += 1
            if progress is not None:
                progress(done, total)
        assert best is not None
        oos = evaluate(piece(window.out_of_sample), best[1])
        done += 1
        if progress is not None:
            progress(done, total)
        results.append(WindowResult(window, best[1], best[0],
                                    float(getattr(oos.metrics, score)),
                                    oos.metrics.final_pnl))
        curves.append([s.equity for s in oos.equity])
    return report(results, capital, curves)
