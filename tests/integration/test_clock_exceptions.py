"""Clock exceptions through the real threaded engine and store, SQLite and PostgreSQL.

The system clock steps back during trading and across a restart (an NTP step, a VM
migration): log order must stay time order (ARCHITECTURE rule 10; as-of replay's binary
search relies on it), and each step beyond the tolerance is recorded once
(``ClockExceptionRecorded``, CAT: log every clock drift beyond 50 ms) and listed in item 8 of
the daily 15c3-5 report, the same from live and from replayed read models.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from commands.models import SubmitOrder
from commands.outcomes import Outcome
from infrastructure.as_of import cut_at
from infrastructure.bootstrap import System, bootstrap
from infrastructure.settings import Settings
from projections.rebuild import rebuild
from projections.report_15c3_5 import daily_report
from tests.invariants import check_log

pytestmark = pytest.mark.timeout(180)

T0 = 1_699_920_060_000_000_000  # 2023-11-14T00:01:00Z, inside the default calendar's day
MS = 1_000_000
DATE = "2023-11-14"


class SteppableClock:
    """The system clock: runs at real speed from T0; a test steps it back or forward."""

    def __init__(self) -> None:
        self.offset = 0
        self._start = time.monotonic_ns()

    def __call__(self) -> int:
        return T0 + time.monotonic_ns() - self._start + self.offset


def order(cid: str, account: str, side: str, quantity: int) -> SubmitOrder:
    return SubmitOrder(client_order_id=cid, account_id=account, symbol="AAPL", side=side,
                       quantity=quantity, order_type="limit", limit_price=Decimal("189.00"),
                       actor="tester")


def trade(system: System, prefix: str, n: int = 6) -> None:
    """Resting buys and the sells that fill them, through the engine thread."""
    futures = []
    for k in range(n):
        futures.append(system.engine.submit(order(f"{prefix}-b{k}", "ACC-ALPHA", "buy", 10 + k)))
        futures.append(system.engine.submit(order(f"{prefix}-s{k}", "ACC-BETA", "sell", 10 + k)))
    outcomes: list[Outcome] = [f.result(timeout=60) for f in futures]
    assert {o.kind for o in outcomes} == {"created"}


def clock_exceptions(system: System) -> list[Any]:
    return [e for _, e in system.store.read() if type(e).__name__ == "ClockExceptionRecorded"]


def report(read_models: sa.Engine) -> dict[str, Any]:
    with read_models.connect() as conn:
        return daily_report(conn, DATE)


def test_clock_steps_back_are_recorded_and_never_break_time_order(
        backend: Settings, tmp_path: Path) -> None:
    clock = SteppableClock()
    system = bootstrap(backend, start=True, clock=clock)
    try:
        trade(system, "before")
        clock.offset -= 10 * MS  # within CAT's 50 ms: held, not recorded
        trade(system, "small")
        assert clock_exceptions(system) == []
        clock.offset -= 5_000 * MS  # an NTP step back during trading
        trade(system, "behind")
        trade(system, "still")  # still behind: no second record
        clock.offset += 10_000 * MS  # the clock catches up with the held stamp
        trade(system, "after")
    finally:
        system.close()
    clock.offset -= 60_000 * MS  # restarted on a clock a minute behind the log
    system = bootstrap(backend, start=True, clock=clock)
    try:
        trade(system, "restarted")
        log = list(system.store.read())
        seen = check_log(log)  # time order over the whole log, and every fill within terms
        assert seen["fills"] > 0
        recorded = clock_exceptions(system)
        assert [(e.state, e.where) for e in recorded] == [
            ("behind", "live"), ("caught_up", "live"), ("behind", "restart")]
        live, caught_up, restart = recorded
        # Behind by the step (and the 10 ms one the engine may still hold) less the time
        # since the last stamp (the test's own pace).
        assert 4_000 * MS < live.step_ns <= 5_010 * MS and live.tolerance_ns == 50 * MS
        assert caught_up.step_ns <= 0
        before_restart = max(e.ts_ns for p, e in log if p < _position(log, restart))
        assert restart.held_ns == before_restart == restart.ts_ns
        assert 50_000 * MS < restart.step_ns <= 60_000 * MS

        # As-of replay's binary search finds, for any moment, the last event stamped by then.
        stamps = [(p, e.ts_ns) for p, e in log]
        moments = [ts for _, ts in stamps[:: max(1, len(stamps) // 25)]]
        for ts in [*moments, restart.ts_ns - 1, restart.ts_ns, stamps[-1][1]]:
            expected = max(p for p, t in stamps if t <= ts)
            assert cut_at(system.store, ts).position == expected

        # Item 8 of the day's report, from the live read models and from a replay.
        system.projections.catch_up()
        live_report = report(system.read_models)
        replayed_url = f"sqlite:///{tmp_path / 'replayed.sqlite'}"
        rebuild(system.store, replayed_url)
        replayed = sa.create_engine(replayed_url)
        try:
            assert report(replayed) == live_report
        finally:
            replayed.dispose()
    finally:
        system.close()
    item = live_report["clock_exceptions"]
    assert item["recorded"] is True and item["tolerance_ms"] == 50
    assert "drift against NIST time is not measured" in item["statement"]
    assert [(x["state"], x["where"], x["step_ns"], x["tolerance_ns"])
            for x in item["exceptions"]] == [
        (e.state, e.where, e.step_ns, e.tolerance_ns) for e in recorded]
    assert item["exceptions"][2]["position"] == _position(log, restart)


def _position(log: list[tuple[int, Any]], event: Any) -> int:
    return next(p for p, e in log if e == event)
