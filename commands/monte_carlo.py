"""Monte Carlo runs in parallel processes: each run is a spec (a synthetic path of a regime,
or the recorded ticks with perturbed latencies and slippage) that a worker turns into a full
backtest; the outcomes' distribution is ``domain.monte_carlo.distribution``."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, NamedTuple

from domain.monte_carlo import REGIMES, Distribution, Outcome, distribution, outcome_of


class RunSpec(NamedTuple):
    number: int
    strategy: str
    params: dict[str, Any]
    seed: int
    regime: str | None  # a synthetic path of this regime; None: the recorded ticks
    feed_latency_ns: int
    order_latency_ns: int
    slippage_ticks: int
    capital: float
    steps: int
    ticks_file: str | None


def plan(runs: int, seed: int, strategy: str, params: dict[str, Any], *, capital: float,
         regimes: Sequence[str] = ("bull", "flat", "crash"), steps: int = 500,
         ticks_file: str | None = None, latency_ns: tuple[int, int] = (0, 0),
         latency_jitter_ns: int = 0, max_slippage_ticks: int = 0) -> list[RunSpec]:
    """Seeded specs: with a tick file, its replay under perturbed latencies and slippage;
    without, synthetic paths cycling through the regimes."""
    rng = random.Random(seed)
    for regime in regimes:
        if regime not in REGIMES:
            raise ValueError(f"unknown regime {regime!r}; known: {', '.join(REGIMES)}")
    specs = []
    for i in range(runs):
        jitter = rng.randint(0, latency_jitter_ns) if latency_jitter_ns else 0
        specs.append(RunSpec(
            i, strategy, params, rng.getrandbits(32),
            None if ticks_file else regimes[i % len(regimes)],
            latency_ns[0] + jitter, latency_ns[1] + jitter,
            rng.randint(0, max_slippage_ticks) if max_slippage_ticks else 0,
            capital, steps, ticks_file))
    return specs


def run_all(specs: Sequence[RunSpec], worker: Callable[[RunSpec], list[float]],
            workers: int = 1, progress: Callable[[int, int], None] | None = None
            ) -> list[list[float]]:
    """Equity curves in spec order (whatever order the processes finish in)."""
    curves: list[list[float]] = [[] for _ in specs]
    if workers <= 1:
        for done, spec in enumerate(specs, 1):
            curves[spec.number] = worker(spec)
            if progress is not None:
                progress(done, len(specs))
        return curves
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(worker, spec): spec.number for spec in specs}
        for done, future in enumerate(as_completed(futures), 1):
            curves[futures[future]] = future.result()
            if progress is not None:
                progress(done, len(specs))
    return curves


def summarise(curves: Sequence[Sequence[float]], capital: float, ruin_fraction: float
              ) -> tuple[list[Outcome], Distribution]:
    outcomes = [outcome_of(capital, c or [capital]) for c in curves]
    return outcomes, distribution(outcomes, capital * ruin_fraction)
