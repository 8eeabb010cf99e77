"""Drift against a time reference, without I/O: the SNTP arithmetic from known timestamps,
the episode logic (domain.clock_watch.ReferenceWatch), the engine's decision on an in-memory
journal, the report's statement and the schema-1 upcast of ClockExceptionRecorded.
(tests/integration/test_time_reference.py runs them against a real UDP server.)"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from commands.models import RecordTimeReferenceCheck
from commands.outcomes import Outcome
from domain import events as ev
from domain.clock_watch import ClockState, ReferenceWatch, reference_state
from infrastructure import codec
from infrastructure.settings import Settings
from infrastructure.time_reference import (
    PACKET,
    from_ntp,
    offset_and_delay,
    parse_reference,
    request,
    to_ntp,
)
from projections.report_15c3_5 import CLOCK_STATEMENT, _clock_exceptions
from tests import builders
from tests.unit.test_clock import MemoryJournal, SteppingClock, new_engine

MS = 1_000_000
T0 = 1_795_618_800_000_000_000  # 2026-11-25T15:00:00Z
DAY_NS = 86_400 * 1_000 * MS


# ------------------------------------------------------------------ SNTP arithmetic


def test_offset_and_delay_from_known_timestamps() -> None:
    # The reference is 200 ms ahead; 10 ms each way on the wire, 1 ms inside the server.
    t1 = T0
    t2 = T0 + 10 * MS + 200 * MS
    t3 = t2 + 1 * MS
    t4 = T0 + 21 * MS
    assert offset_and_delay(t1, t2, t3, t4) == (200 * MS, 20 * MS)
    # Behind by 75 ms with an asymmetric path: half the asymmetry shows as offset (RFC 4330).
    assert offset_and_delay(T0, T0 + 30 * MS - 75 * MS, T0 + 30 * MS - 75 * MS,
                            T0 + 40 * MS) == (-75 * MS + 10 * MS, 40 * MS)
    assert offset_and_delay(T0, T0, T0, T0) == (0, 0)


def test_ntp_timestamps_round_trip_within_a_nanosecond() -> None:
    for ns in (0, T0, T0 + 123_456_789, T0 + 999_999_999):
        assert abs(from_ntp(to_ntp(ns)) - ns) <= 1
    assert to_ntp(0) >> 32 == 2_208_988_800  # the Unix epoch in the NTP era (since 1900)


def test_the_request_is_a_version_4_client_packet_carrying_its_send_time() -> None:
    packet = request(T0)
    assert len(packet) == 48
    header, *_rest = PACKET.unpack(packet)
    assert header == 0b00_100_011  # LI 0, VN 4, mode 3 (client)
    assert int.from_bytes(packet[40:48]) == to_ntp(T0)


def test_reference_settings_are_host_and_optional_port() -> None:
    assert parse_reference("time.nist.gov") == ("time.nist.gov", 123)
    assert parse_reference("127.0.0.1:5123") == ("127.0.0.1", 5123)
    with pytest.raises(ValueError, match="host"):
        parse_reference("host:0")
    settings = Settings(time_reference="time.nist.gov:123")
    assert settings.time_check_seconds == 60
    assert Settings().time_reference == ""  # default: not configured
    with pytest.raises(ValidationError):
        Settings(time_reference="time nist gov")


# ------------------------------------------------------------------ the episode logic


def test_reference_state_is_the_offset_against_the_tolerance() -> None:
    assert reference_state(None, 50 * MS) is ClockState.UNREACHABLE
    assert reference_state(51 * MS, 50 * MS) is ClockState.BEHIND  # reference ahead of us
    assert reference_state(-51 * MS, 50 * MS) is ClockState.AHEAD
    assert reference_state(50 * MS, 50 * MS) is ClockState.WITHIN  # at it: not beyond
    assert reference_state(-50 * MS, 50 * MS) is ClockState.WITHIN


def test_reference_watch_records_the_first_check_changes_and_each_new_day() -> None:
    watch = ReferenceWatch(50 * MS)
    day = "2026-11-25"
    assert watch.check(3 * MS, day) is ClockState.WITHIN  # the start: drift is measured
    assert watch.check(-40 * MS, day) is None
    assert watch.check(200 * MS, day) is ClockState.BEHIND  # an episode begins
    assert watch.check(300 * MS, day) is None  # the same episode
    assert watch.check(-200 * MS, day) is ClockState.AHEAD  # now the other way
    assert watch.check(0, day) is ClockState.WITHIN  # it ends
    assert watch.check(None, day) is ClockState.UNREACHABLE
    assert watch.check(None, day) is None  # still no answer: one record per outage
    assert watch.check(1 * MS, day) is ClockState.WITHIN  # answering again
    assert watch.check(1 * MS, "2026-11-26") is ClockState.WITHIN  # the next day's first
    assert watch.check(1 * MS, "2026-11-26") is None
    with pytest.raises(ValueError, match="positive"):
        ReferenceWatch(0)


# ------------------------------------------------------------------ the engine decides


def check(observed: int, offset: int | None, error: str | None = None
          ) -> RecordTimeReferenceCheck:
    return RecordTimeReferenceCheck(actor="system", source="system",
                                    reference="ntp.example:123", observed_ns=observed,
                                    offset_ns=offset, delay_ns=None if offset is None else MS,
                                    error=error)


def references(journal: MemoryJournal) -> list[Any]:
    return [e for e in journal.events
            if type(e) is ev.ClockExceptionRecorded and e.where == "reference"]


def test_the_engine_records_episodes_against_the_reference_and_replays_them() -> None:
    clock = SteppingClock(T0)
    journal = MemoryJournal()
    engine = new_engine(journal, clock)
    offsets = [200 * MS, 210 * MS, 190 * MS, 0, 2 * MS, None, None, -120 * MS]
    observed = []
    for offset in offsets:
        clock.now += 1_000 * MS
        observed.append(clock.now)
        (result,) = engine.execute([check(clock.now, offset,
                                          "TimeoutError" if offset is None else None)])
        assert isinstance(result, Outcome) and result.kind == "done"
    recorded = references(journal)
    assert [(e.state, e.step_ns) for e in recorded] == [
        ("behind", 200 * MS), ("within", 0), ("unreachable", 0), ("ahead", -120 * MS)]
    behind = recorded[0]
    assert behind.observed_ns == observed[0]
    assert behind.held_ns == behind.observed_ns + 200 * MS  # the reference's time
    assert behind.tolerance_ns == 50 * MS and behind.reference == "ntp.example:123"
    assert (behind.actor, behind.source, behind.engine_id) == ("system", "system",
                                                              engine.engine_id)
    unreachable = recorded[2]
    assert unreachable.held_ns == unreachable.observed_ns
    assert [e.version for e in recorded] == [1, 2, 3, 4]
    stamps = [e.ts_ns for e in journal.events]
    assert stamps == sorted(stamps)
    # A restart rebuilds the same book; its watch starts afresh: its first check is recorded.
    rebuilt = new_engine(journal, clock)
    assert rebuilt.book.events_applied == engine.book.events_applied
    rebuilt.execute([check(clock.now, -120 * MS)])
    assert [e.state for e in references(journal)][-1] == "ahead"
    assert len(references(journal)) == 5
    # The engine's own step detection stays unaffected and names no reference.
    assert all(e.reference == "" for e in journal.events
               if type(e) is ev.ClockExceptionRecorded and e.where != "reference")


def test_the_first_check_of_a_new_trading_day_is_recorded() -> None:
    clock = SteppingClock(T0)
    journal = MemoryJournal()
    engine = new_engine(journal, clock)
    engine.execute([check(clock.now, MS)])
    engine.execute([check(clock.now, MS)])
    clock.now += DAY_NS
    engine.execute([check(clock.now, MS)])
    assert [e.state for e in references(journal)] == ["within", "within"]


# ------------------------------------------------------------------ report and codec


def governance_row(event: Any, position: int) -> dict[str, Any]:
    body = {k: v for k, v in event._asdict().items()
            if k not in ("engine_id", "version", "ts_ns", "actor", "source")}
    return {"type": type(event).__name__, "ts_ns": event.ts_ns, "actor": event.actor,
            "position": position, "body": orjson.loads(orjson.dumps(body))}


def test_item_8_says_drift_is_measured_and_names_the_reference_when_recorded() -> None:
    live, reference = [e for e in builders.sample_events()
                       if type(e) is ev.ClockExceptionRecorded]
    without = _clock_exceptions([governance_row(live, 1)])
    assert without["statement"] == CLOCK_STATEMENT
    assert "drift against NIST time is not measured" in without["statement"]
    item = _clock_exceptions([governance_row(live, 1), governance_row(reference, 2)])
    assert set(item) == {"recorded", "tolerance_ms", "exceptions", "statement"}
    assert [x["where"] for x in item["exceptions"]] == ["live", "reference"]
    statement = item["statement"]
    assert "drift against NIST time is measured against the time reference " \
           "time.nist.gov:123 (SNTP)" in statement
    assert "not measured (no time reference configured)" not in statement
    assert statement.startswith("backward steps of the system clock")


def test_a_schema_1_clock_exception_is_read_as_the_engines_own() -> None:
    """ClockExceptionRecorded v1 (before time references) had no ``reference``: it reads as
    "" (the engine's own detection); the stored record is not rewritten."""
    event = next(e for e in builders.sample_events()
                 if type(e) is ev.ClockExceptionRecorded and e.where == "live")
    old = event._asdict()
    del old["reference"]
    old["schema"] = 1
    old["prev_hash"] = codec.GENESIS_HASH
    decoded = codec.decode(codec.topic_of(event), orjson.dumps(old, default=str))
    assert decoded == event
    assert ev.SCHEMA_VERSION["ClockExceptionRecorded"] == 2
