"""Walk-forward known answers with a pure evaluation (no engine): a rule with no edge looks
good in sample and not out of sample; a rule with a real edge on a trend stays positive."""

from __future__ import annotations

import random
from collections.abc import Sequence
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from commands.walk_forward import walk_forward
from domain.backtest_metrics import EquitySample, metrics_of
from domain.market_data import Trade
from domain.monte_carlo import Regime, gbm_path
from domain.walk_forward import grid, stitch, windows

MIN = 60_000_000_000


def test_windows_tile_the_out_of_sample() -> None:
    w = windows(10, 4, 2)
    assert [(x.in_sample, x.out_of_sample) for x in w] == [
        ((0, 4), (4, 6)), ((2, 6), (6, 8)), ((4, 8), (8, 10))]
    assert grid({"b": [1, 2], "a": ["x"]}) == [{"a": "x", "b": 1}, {"a": "x", "b": 2}]
    assert stitch(100.0, [[10.0, 11.0], [50.0, 45.0]]) == pytest.approx([100.0, 110.0, 99.0])


def _trades(prices: Sequence[float]) -> list[Trade]:
    return [Trade("SIM", "X", Decimal(repr(round(p, 2))), 1, i * MIN)
            for i, p in enumerate(prices)]


def _evaluate(ticks: Sequence[Any], params: dict[str, Any]) -> Any:
    """Long or flat each period: 'random' flips a seeded coin, 'trend' follows the last
    move. Equity in currency units of one share, on 10,000 capital."""
    prices = [float(t.price) for t in ticks]
    rng = random.Random(params.get("seed", 0) * 7919 + int(ticks[0].ts_ns // MIN))
    equity = [10_000.0]
    for i in range(1, len(prices)):
        if params["rule"] == "random":
            long = rng.random() < 0.5
        else:
            long = i >= 2 and prices[i - 1] > prices[i - 2]
        equity.append(equity[-1] + (100 * (prices[i] - prices[i - 1]) if long else 0.0))
    curve = [EquitySample(i, e) for i, e in enumerate(equity)]
    return SimpleNamespace(metrics=metrics_of(curve, [], 10_000.0, 0, 252.0), equity=curve)


def test_no_edge_looks_good_in_sample_only() -> None:
    prices = gbm_path(100.0, 2400, Regime("flat", 0.0, 0.3), 1 / 252, random.Random(3))
    space = {"rule": ["random"], "seed": list(range(20))}
    rep = walk_forward(_trades(prices), space, _evaluate, period_ns=MIN, in_sample=200,
                       out_of_sample=100, capital=10_000.0)
    assert len(rep.windows) == 22
    assert rep.mean_in_sample > 1.5  # the best of 20 coins looks like skill...
    assert abs(rep.mean_out_of_sample) < 3 * rep.out_of_sample_stderr  # ...and is not
    assert rep.degradation > 1.0


def test_real_edge_survives_out_of_sample() -> None:
    # Momentum in the returns: each move continues the last one more often than not.
    rng = random.Random(4)
    prices, move = [100.0], 0.1
    for _ in range(2400):
        move = move if rng.random() < 0.7 else -move
        prices.append(prices[-1] + move + rng.gauss(0, 0.02))
    space = {"rule": ["trend", "random"], "seed": [0, 1]}
    rep = walk_forward(_trades(prices), space, _evaluate, period_ns=MIN, in_sample=200,
                       out_of_sample=100, capital=10_000.0)
    assert all(w.best_params["rule"] == "trend" for w in rep.windows)
    assert rep.mean_out_of_sample > 3 * rep.out_of_sample_stderr > 0
    assert rep.stitched_equity[-1] > 10_000.0
