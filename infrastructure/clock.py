"""The system clock, the only place marketlog reads the time (the domain never does)."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def utc_now_ns() -> int:
    # Looked up at call time so freezegun and test clocks can stand in for it.
    return time.time_ns()


def epoch_ns(moment: datetime) -> int:
    """An instant as UTC epoch nanoseconds, the log's unit; a time without an offset is UTC.
    (Integer arithmetic: a float timestamp would lose the microseconds of distant dates.)"""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1_000
