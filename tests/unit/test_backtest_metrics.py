"""Metrics on hand-computed series."""

from __future__ import annotations

import math

import pytest

from domain.backtest_metrics import (
    EquitySample,
    Fill,
    drawdown_curve,
    max_drawdown,
    metrics_of,
    returns_of,
    sharpe,
    sortino,
)


def test_sharpe_by_hand() -> None:
    r = [0.01, -0.02, 0.03, 0.0]
    # mean 0.005; deviations .005 -.025 .025 -.005; squares sum 0.0013; /3 -> sd 0.0208167
    assert sharpe(r) == pytest.approx(0.005 / math.sqrt(0.0013 / 3))
    assert sharpe(r, 252) == pytest.approx(0.005 / math.sqrt(0.0013 / 3) * math.sqrt(252))


def test_sortino_counts_only_the_downside() -> None:
    r = [0.01, -0.02, 0.03, 0.0]
    # downside deviation sqrt((0 + 0.0004 + 0 + 0) / 4) = 0.01
    assert sortino(r) == pytest.approx(0.5)
    assert sortino([0.01, 0.02]) == 0.0  # no losing period: no downside risk measured


def test_flat_curve_has_zero_ratios() -> None:
    assert sharpe([0.001] * 5) == 0.0
    assert sharpe([]) == 0.0


def test_max_drawdown_by_hand() -> None:
    equity = [100.0, 120.0, 90.0, 110.0, 80.0, 130.0]
    assert max_drawdown(equity) == (pytest.approx(40 / 120), 40.0)
    assert drawdown_curve(equity)[4] == pytest.approx(-40 / 120)
    assert returns_of([100.0, 110.0, 99.0]) == pytest.approx([0.1, -0.1])


def test_metrics_of_a_small_run() -> None:
    curve = [EquitySample(i, e) for i, e in enumerate([1000.0, 1010.0, 990.0, 1020.0])]
    fills = [Fill(0, "SPY", 10, 50.0, 0.03), Fill(1, "SPY", -10, 52.0, 0.03)]
    m = metrics_of(curve, fills, 1000.0, submitted_quantity=40)
    assert m.final_pnl == 20.0
    assert m.total_return == pytest.approx(0.02)
    assert m.turnover == pytest.approx((500 + 520) / 1000)
    assert m.fill_ratio == 0.5
    assert m.fees == pytest.approx(0.06)
    assert m.max_drawdown == pytest.approx(20 / 1010)
    assert m.periods == 3
