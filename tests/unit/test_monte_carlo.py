"""Monte Carlo pieces: seeded, so percentiles are the same on every run."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from commands.monte_carlo import plan, run_all, summarise
from domain.market_data import Quote, Trade
from domain.monte_carlo import (
    REGIMES,
    bootstrap_returns,
    distribution,
    equity_from_returns,
    gbm_path,
    outcome_of,
    percentile,
    ticks_from_path,
)


def test_percentile_matches_linear_interpolation() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 25) == pytest.approx(1.75)


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    returns = [0.01, -0.02, 0.015, 0.0, -0.005]
    a = bootstrap_returns(returns, 50, seed=9)
    assert a == bootstrap_returns(returns, 50, seed=9)
    assert a != bootstrap_returns(returns, 50, seed=10)
    assert all(r in returns for run in a for r in run)
    outcomes = [outcome_of(1000.0, equity_from_returns(1000.0, run)) for run in a]
    first = distribution(outcomes, 900.0)
    again = distribution([outcome_of(1000.0, equity_from_returns(1000.0, run))
                          for run in bootstrap_returns(returns, 50, seed=9)], 900.0)
    assert first == again
    assert first.pnl_percentiles["p5"] <= first.pnl_percentiles["p50"] <= \
        first.pnl_percentiles["p95"]


def test_probability_of_ruin_counts_runs_touching_the_threshold() -> None:
    curves = [[1000.0, 850.0, 1100.0], [1000.0, 950.0], [1000.0, 900.0, 700.0], [1000.0]]
    outcomes = [outcome_of(1000.0, c) for c in curves]
    assert distribution(outcomes, 900.0).probability_of_ruin == 0.5  # 850 and 700 (and 900)
    assert distribution(outcomes, 899.0).probability_of_ruin == 0.5


def test_regimes_drift_the_right_way() -> None:
    dt = 1 / 252
    finals = {name: [gbm_path(100.0, 252, regime, dt, random.Random(s))[-1]
                     for s in range(200)] for name, regime in REGIMES.items()}
    means = {name: sum(v) / len(v) for name, v in finals.items()}
    assert means["bull"] > 120 > means["flat"] > 90 > means["crash"]


def test_ticks_from_path_round_to_the_tick() -> None:
    ticks = list(ticks_from_path([100.004, 100.016], "SPY", start_ns=0, step_ns=10))
    assert ticks[0] == Quote("SIM", "SPY", Decimal("99.99"), 500, Decimal("100.01"), 500, 0)
    assert ticks[1] == Trade("SIM", "SPY", Decimal("100.00"), 100, 1)
    assert ticks[3].price == Decimal("100.02")  # type: ignore[union-attr]


def _fake_worker(spec: object) -> list[float]:
    rng = random.Random(spec.seed)  # type: ignore[attr-defined]
    return equity_from_returns(1000.0, [rng.gauss(0, 0.01) for _ in range(20)])


def test_plan_and_summary_are_deterministic() -> None:
    specs = plan(30, 5, "noop", {}, capital=1000.0, latency_jitter_ns=1000,
                 max_slippage_ticks=2)
    assert specs == plan(30, 5, "noop", {}, capital=1000.0, latency_jitter_ns=1000,
                         max_slippage_ticks=2)
    assert [s.regime for s in specs[:3]] == ["bull", "flat", "crash"]
    curves = run_all(specs, _fake_worker)
    _, dist = summarise(curves, 1000.0, 0.95)
    _, again = summarise(run_all(specs, _fake_worker), 1000.0, 0.95)
    assert dist == again
    assert dist.runs == 30
