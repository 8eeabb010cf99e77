"""Walk-forward analysis, pure: the windows, the parameter grid, the stitched out-of-sample
curve and the in-/out-of-sample degradation (the overfitting check).

Each window optimises on ``in_sample`` periods and is judged on the ``out_of_sample``
periods right after them; windows roll forward by ``out_of_sample`` so the out-of-sample
pieces tile the data without overlap. A strategy that only fits noise shows a good best
in-sample score and an out-of-sample score near 0: the gap is the degradation.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from domain.backtest_metrics import mean, stdev


class Window(NamedTuple):
    number: int
    in_sample: tuple[int, int]  # [start, end) in periods of the data
    out_of_sample: tuple[int, int]


def windows(length: int, in_sample: int, out_of_sample: int) -> list[Window]:
    if in_sample <= 0 or out_of_sample <= 0:
        raise ValueError("window lengths must be positive")
    out: list[Window] = []
    start = 0
    while start + in_sample + out_of_sample <= length:
        split = start + in_sample
        out.append(Window(len(out), (start, split), (split, split + out_of_sample)))
        start += out_of_sample
    return out


def grid(space: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the parameter values, in a stable order."""
    keys = sorted(space)
    return [dict(zip(keys, values, strict=True))
            for values in itertools.product(*(space[k] for k in keys))]


class WindowResult(NamedTuple):
    window: Window
    best_params: dict[str, Any]
    in_sample_score: float  # the best of the grid
    out_of_sample_score: float
    out_of_sample_pnl: float


class WalkForwardReport(NamedTuple):
    windows: list[WindowResult]
    mean_in_sample: float
    mean_out_of_sample: float
    out_of_sample_stderr: float
    degradation: float  # mean in-sample - mean out-of-sample score
    efficiency: float  # mean out-of-sample / mean in-sample (0 when in-sample <= 0)
    stitched_equity: list[float]


def stitch(capital: float, pieces: Sequence[Sequence[float]]) -> list[float]:
    """Out-of-sample curves chained: each piece's returns applied to where the last ended."""
    equity = [capital]
    for piece in pieces:
        for a, b in itertools.pairwise(piece):
            equity.append(equity[-1] * (b / a if a else 1.0))
    return equity


def report(results: Sequence[WindowResult], capital: float,
           out_of_sample_curves: Sequence[Sequence[float]]) -> WalkForwardReport:
    ins = [r.in_sample_score for r in results]
    outs = [r.out_of_sample_score for r in results]
    mi, mo = mean(ins), mean(outs)
    stderr = stdev(outs) / len(outs) ** 0.5 if len(outs) > 1 else 0.0
    return WalkForwardReport(list(results), mi, mo, stderr, mi - mo,
                             mo / mi if mi > 0 else 0.0,
                             stitch(capital, out_of_sample_curves))
