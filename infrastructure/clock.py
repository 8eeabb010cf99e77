"""The system clock, the only place marketlog reads the time (the domain never does)."""

from __future__ import annotations

import time


def utc_now_ns() -> int:
    # Looked up at call time so freezegun and test clocks can stand in for it.
    return time.time_ns()
