"""Clock exceptions the engine can detect with certainty: the system clock behind its last stamp.

The engine's clock never goes backwards (it holds its last stamp while the system clock is
behind), so log order stays time order whatever NTP or a VM migration does to the system
clock. A step back beyond the tolerance is still a clock exception the firm must log (CAT:
industry members keep their clocks within 50 ms of NIST time and log every drift beyond it),
so the engine records one ``ClockExceptionRecorded`` when such an episode begins and one when
the system clock has caught up with the held stamp again. Drift against NIST time is not
measured: there is no time reference here, only the log's own latest time.

Pure: the engine passes in what the system clock said and its last stamp.
"""

from __future__ import annotations

from enum import StrEnum

CAT_TOLERANCE_NS = 50_000_000  # FINRA CAT: within 50 ms of NIST time


class ClockState(StrEnum):
    BEHIND = "behind"  # the system clock is behind the last stamp beyond the tolerance
    CAUGHT_UP = "caught_up"  # it has reached the last stamp again: the episode ends


class Where(StrEnum):
    RESTART = "restart"  # found while recovering from the store (a start, or a rebuild)
    LIVE = "live"  # found during trading, at the start of an engine cycle


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
