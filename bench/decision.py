"""Row 1: in-memory decision latency, ``engine.decide`` on a validated SubmitOrder (no I/O).

Each call is timed on its own with ``perf_counter_ns``. The engine comes from
``build_engine`` (so ``gc.freeze()`` ran as in production) over a null journal and a
simulated clock advancing 20 us per order; every ``batch_max`` orders the event and release
lists are dropped, as a cycle would after its group commit. The venue is not involved
(``_decide`` only records the decision); the book keeps every order, as in a trading day.
"""

from __future__ import annotations

import gc
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.workload import SIM_NS_PER_ORDER, NullJournal, SimClock, bench_config, commands
from commands.garbage_collection import CollectorSchedule
from domain import controls as ctl
from infrastructure.bootstrap import build_engine
from infrastructure.settings import Settings


@dataclass
class GcPauses:
    counts: list[int] = field(default_factory=lambda: [0, 0, 0])
    total_ns: list[int] = field(default_factory=lambda: [0, 0, 0])
    max_ns: list[int] = field(default_factory=lambda: [0, 0, 0])
    _start: int = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        now = time.perf_counter_ns()
        if phase == "start":
            self._start = now
            return
        gen = info["generation"]
        took = now - self._start
        self.counts[gen] += 1
        self.total_ns[gen] += took
        self.max_ns[gen] = max(self.max_ns[gen], took)


@dataclass
class DecisionResult:
    gc_mode: str
    orders: int
    p50_us: float
    p99_us: float
    p999_us: float
    max_us: float
    mean_us: float
    timer_overhead_ns: float
    pauses: GcPauses
    rejects: int

    def gc_note(self) -> str:
        p = self.pauses
        if not sum(p.counts):
            return "no collections"
        return ", ".join(
            f"gen{g}: {p.counts[g]} x (max {p.max_ns[g] / 1000:.0f} us, "
            f"total {p.total_ns[g] / 1e6:.1f} ms)"
            for g in range(3) if p.counts[g]
        )


def timer_overhead_ns(samples: int = 200_000) -> float:
    pc = time.perf_counter_ns
    deltas = []
    for _ in range(samples):
        t0 = pc()
        t1 = pc()
        deltas.append(t1 - t0)
    deltas.sort()
    return float(deltas[len(deltas) // 2])


MODES = {
    "engine": "GC on the engine's schedule (collect between cycles), every control (22)",
    "automatic": "comparison: Python's automatic GC",
    "disabled": "GC disabled (lower bound)",
}


# The controls the engine had before issue 7 (the comparison row "without the new controls":
# the same code and run, the new checks left out of the plan).
BEFORE_ISSUE_7 = ("session", "unknown_account", "unknown_symbol", "restricted", "lot_size",
                  "tick_size", "max_qty", "stale_reference", "price_collar", "max_notional",
                  "duplicate", "credit", "firm_credit")


def without_new_controls() -> ctl.Plan:
    return ctl.plan(tuple(c for c in ctl.NEW_ORDER if c.name in BEFORE_ISSUE_7))


def measure(cmds: list[Any], warmup: int, *, mode: str, batch: int = 2000,
            data_dir: Path | None = None, plan: ctl.Plan | None = None) -> DecisionResult:
    every = ctl.NEW_ORDER_PLAN
    if plan is not None:
        ctl.NEW_ORDER_PLAN = plan
    try:
        return _measure(cmds, warmup, mode=mode, batch=batch, data_dir=data_dir)
    finally:
        ctl.NEW_ORDER_PLAN = every


def _measure(cmds: list[Any], warmup: int, *, mode: str, batch: int,
             data_dir: Path | None) -> DecisionResult:
    clock = SimClock()
    with tempfile.TemporaryDirectory(prefix="marketlog-bench-") as tmp:
        settings = Settings(data_dir=data_dir or Path(tmp), batch_max=batch)
        engine = build_engine(settings, bench_config(), NullJournal(), clock)  # gc.freeze()
    engine.run_batch([])  # the calendar's trading day opens (orders need one)
    schedule = CollectorSchedule()
    if mode in ("disabled", "engine"):
        schedule.take_over()
    between_cycles = schedule.after_cycle if mode == "engine" else None
    decide, book = engine.decide, engine.book
    pc = time.perf_counter_ns
    events: list[Any] = []
    releases: list[Any] = []
    n = len(cmds) - warmup
    lat = [0] * n
    pauses = GcPauses()
    try:
        for i, cmd in enumerate(cmds[:warmup]):
            if i % batch == 0:
                events.clear()
                releases.clear()
                clock.now += batch * SIM_NS_PER_ORDER
            decide(cmd, events, releases)
            if between_cycles is not None and i % batch == batch - 1:
                between_cycles()
        gc.callbacks.append(pauses)
        for i, cmd in enumerate(cmds[warmup:]):
            if i % batch == 0:
                events.clear()
                releases.clear()
                clock.now += batch * SIM_NS_PER_ORDER
                if between_cycles is not None and i:
                    between_cycles()  # where the engine thread runs it: outside any decision
            t0 = pc()
            decide(cmd, events, releases)
            lat[i] = pc() - t0
    finally:
        if pauses in gc.callbacks:
            gc.callbacks.remove(pauses)
        schedule.hand_back()
        gc.enable()
        gc.unfreeze()  # let the next measurement's build_engine freeze afresh
    rejects = sum(1 for o in book.finished.values() if o.reject is not None)
    mean = sum(lat) / n
    lat.sort()
    last = n - 1

    def q(p: float) -> float:
        return lat[min(last, round(p / 100 * last))] / 1000

    result = DecisionResult(mode, n,
                            q(50), q(99), q(99.9), lat[-1] / 1000, mean / 1000, 0.0, pauses,
                            rejects)
    del engine, book, decide
    gc.collect()
    return result


def run(orders: int, warmup: int) -> list[DecisionResult]:
    """Every GC mode with every control; then, in the same run, the engine's GC schedule with
    the controls of before issue 7 only (``gc_mode`` "before")."""
    cmds = commands(orders + warmup, seed=11)
    overhead = timer_overhead_ns()
    results = []
    for mode in MODES:
        r = measure(cmds, warmup, mode=mode)
        r.timer_overhead_ns = overhead
        results.append(r)
    r = measure(cmds, warmup, mode="engine", plan=without_new_controls())
    r.timer_overhead_ns = overhead
    r.gc_mode = "before"
    results.append(r)
    return results
