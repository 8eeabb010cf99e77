"""Drift against a time reference with a real SNTP server on a UDP socket (tests/sntp_server.py):
the client's reading, then a served system (SQLite and PostgreSQL) whose checker thread asks
the reference while its offset moves and the server stops, and the engine records each
episode once (ClockExceptionRecorded, where "reference"), listed by item 8 of the day's
15c3-5 report, the same from live and from replayed read models."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from infrastructure.bootstrap import System, bootstrap
from infrastructure.settings import Settings
from infrastructure.time_reference import query
from projections.rebuild import digest, rebuild
from projections.report_15c3_5 import daily_report
from tests.integration.test_clock_exceptions import DATE, MS, SteppableClock, trade
from tests.invariants import check_log
from tests.sntp_server import SntpServer

pytestmark = pytest.mark.timeout(180)

INTERVAL_S = 0.05


def test_the_client_measures_a_real_servers_offset_and_reports_an_outage() -> None:
    server = SntpServer(offset_ns=200 * MS)
    try:
        reading = query("127.0.0.1", server.port, timeout=1.0)
        assert reading.error is None and reading.offset_ns is not None
        assert reading.delay_ns is not None and 0 <= reading.delay_ns < 100 * MS
        # The loopback round trip is small: the offset is the server's, within it.
        assert abs(reading.offset_ns - 200 * MS) <= reading.delay_ns + 2 * MS
        server.offset_ns = -75 * MS
        behind = query("127.0.0.1", server.port, timeout=1.0)
        assert behind.offset_ns is not None and abs(behind.offset_ns + 75 * MS) < 20 * MS
    finally:
        server.stop()
    down = query("127.0.0.1", server.port, timeout=0.2)  # refused or timed out: a value
    assert down.offset_ns is None and down.error
    assert query("127.0.0.1", 9, timeout=0.2).error  # nothing there answers SNTP


def reference_records(system: System) -> list[Any]:
    return [e for _, e in system.store.read()
            if type(e).__name__ == "ClockExceptionRecorded" and e.where == "reference"]


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def more_checks(system: System, n: int = 6) -> None:
    """Let the checker run ``n`` more checks (each handed to the engine and answered)."""
    checker = system.time_checker
    target = checker.checks + n
    wait_until(lambda: checker.checks >= target)


def report(read_models: sa.Engine) -> dict[str, Any]:
    with read_models.connect() as conn:
        return daily_report(conn, DATE)


def test_a_served_system_records_drift_against_the_reference_once_per_episode(
        backend: Settings, tmp_path: Path) -> None:
    clock = SteppableClock()
    server = SntpServer(clock, offset_ns=200 * MS)  # the system clock 200 ms behind it
    settings = backend.model_copy(update={"time_reference": server.reference,
                                          "time_check_seconds": INTERVAL_S})
    system = bootstrap(settings, start=True, clock=clock)
    try:
        assert system.time_checker is not None
        wait_until(lambda: len(reference_records(system)) == 1)
        trade(system, "off")
        more_checks(system)  # still 200 ms off: no second record
        [behind] = reference_records(system)
        assert (behind.state, behind.reference, behind.tolerance_ns) == (
            "behind", server.reference, 50 * MS)
        assert 150 * MS < behind.step_ns == behind.held_ns - behind.observed_ns < 250 * MS

        server.offset_ns = 0  # back in step with the reference
        wait_until(lambda: len(reference_records(system)) == 2)
        more_checks(system)
        server.stop()  # the reference goes away: drift is no longer measured
        wait_until(lambda: len(reference_records(system)) == 3)
        more_checks(system)
        trade(system, "down")
        recorded = reference_records(system)
        assert [e.state for e in recorded] == ["behind", "within", "unreachable"]
        assert abs(recorded[1].step_ns) <= 50 * MS
        assert recorded[2].step_ns == 0 and system.time_checker.last.error

        log = list(system.store.read())
        check_log(log)  # time order over the whole log, fills within terms
        assert [e.state for _, e in log if type(e).__name__ == "ClockExceptionRecorded"
                and e.where != "reference"] == []  # the engine's own watch saw no step

        system.projections.catch_up()
        live = report(system.read_models)
        with system.read_models.connect() as conn:
            live_digest = digest(conn)
        replayed_url = f"sqlite:///{tmp_path / 'replayed.sqlite'}"
        assert rebuild(system.store, replayed_url) == live_digest
        replayed = sa.create_engine(replayed_url)
        try:
            assert report(replayed) == live
        finally:
            replayed.dispose()
    finally:
        system.close()
        server.stop()
    item = live["clock_exceptions"]
    assert [(x["state"], x["where"], x["step_ns"]) for x in item["exceptions"]] == [
        (e.state, "reference", e.step_ns) for e in recorded]
    assert f"measured against the time reference {server.reference} (SNTP)" in item["statement"]
    assert "not measured (no time reference configured)" not in item["statement"]


def test_no_reference_configured_means_no_checker(backend: Settings) -> None:
    system = bootstrap(backend, start=True)
    try:
        assert system.time_checker is None
    finally:
        system.close()
