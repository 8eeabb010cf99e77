"""Clock exceptions the engine can detect with certainty: the system clock behind its last stamp.

The engine's clock never goes backwards (it holds its last stamp while the system clock is
behind), so log order stays time order whatever NTP or a VM migration does to the system
clock. A step back beyond the tolerance is still a clock exception the firm must log (CAT:
industry members keep their clocks within 50 ms of NIST time and log every drift beyond it),
so the engine records one ``ClockExceptionRecorded`` when such an episode begins and one when
the system clock has caught up with the held stamp again.

Drift against NIST time needs a time reference (an SNTP server, infrastructure.time_reference):
when one is configured, a checker thread measures the system clock's offset from it and hands
each measurement to the engine, which records (``ReferenceWatch``) the state at its first
check of a start and of a trading day, and every change between within the tolerance,
behind, ahead and unreachable: one record when an episode begins and one when it ends, and
the reference's outages, so an examiner sees when drift was not measured.

Pure: the engine passes in what the system clock said and its last stamp, or the measured
offset.
"""

from __future__ import annotations

from enum import StrEnum

CAT_TOLERANCE_NS = 50_000_000  # FINRA CAT: within 50 ms of NIST time


class ClockState(StrEnum):
    BEHIND = "behind"  # the system clock is behind the last stamp beyond the tolerance
    CAUGHT_UP = "caught_up"  # it has reached the last stamp again: the episode ends
    # Against a time reference (offset = reference - system clock):
    AHEAD = "ahead"  # the system clock is ahead of the reference beyond the tolerance
    WITHIN = "within"  # within the tolerance of the reference (an episode or outage ends)
    UNREACHABLE = "unreachable"  # the reference did not answer: drift is not measured


class Where(StrEnum):
    RESTART = "restart"  # found while recovering from the store (a start, or a rebuild)
    LIVE = "live"  # found during trading, at the start of an engine cycle
    REFERENCE = "reference"  # measured against the configured time reference


class ClockWatch:
    """One record per episode: when the clock falls behind beyond the tolerance, and when it
    has caught up. Smaller steps back are absorbed by holding the last stamp, unrecorded."""

    __slots__ = ("behind", "tolerance_ns")

    def __init__(self, tolerance_ns: int = CAT_TOLERANCE_NS) -> None:
        if tolerance_ns <= 0:
            raise ValueError("the clock tolerance must be positive")
        self.tolerance_ns = tolerance_ns
        self.behind = False

    def check(self, observed_ns: int, held_ns: int) -> ClockState | None:
        """What to record now that the system clock says ``observed_ns`` and the engine's last
        stamp is ``held_ns``: the start or the end of an episode, else nothing."""
        if self.behind:
            if observed_ns >= held_ns:
                self.behind = False
                return ClockState.CAUGHT_UP
            return None
        if held_ns - observed_ns > self.tolerance_ns:
            self.behind = True
            return ClockState.BEHIND
        return None


def reference_state(offset_ns: int | None, tolerance_ns: int) -> ClockState:
    """Where the system clock stands against the reference: ``offset_ns`` is the reference's
    time less the system clock's (SNTP's offset), None when the reference did not answer."""
    if offset_ns is None:
        return ClockState.UNREACHABLE
    if offset_ns > tolerance_ns:
        return ClockState.BEHIND
    if offset_ns < -tolerance_ns:
        return ClockState.AHEAD
    return ClockState.WITHIN


class ReferenceWatch:
    """Which checks against the time reference to record: the first of a start and of each
    trading day (whatever it found: the day's records show drift was measured), then only
    changes of state, so an episode beyond the tolerance is one record when it begins and
    one when it ends, never one per check."""

    __slots__ = ("state", "tolerance_ns", "trading_date")

    def __init__(self, tolerance_ns: int = CAT_TOLERANCE_NS) -> None:
        if tolerance_ns <= 0:
            raise ValueError("the clock tolerance must be positive")
        self.tolerance_ns = tolerance_ns
        self.state: ClockState | None = None  # not checked yet since the start
        self.trading_date: str | None = None

    def check(self, offset_ns: int | None, trading_date: str) -> ClockState | None:
        """The state to record for a check that measured ``offset_ns`` (None: unreachable)
        on ``trading_date``, else None."""
        state = reference_state(offset_ns, self.tolerance_ns)
        if state == self.state and trading_date == self.trading_date:
            return None
        self.state, self.trading_date = state, trading_date
        return state
