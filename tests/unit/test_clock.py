"""Where wall-clock time matters: the engine stamps events with the system clock and the
duplicate control measures its window in that time (freezegun drives the clock; the journal
is an in-memory fake at our own port, so nothing here does I/O)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from freezegun import freeze_time

from commands.engine import Engine
from commands.models import SubmitOrder
from commands.outcomes import Outcome
from domain.clock_watch import ClockState, ClockWatch
from domain.events import ClockExceptionRecorded, OrderAccepted
from infrastructure.clock import utc_now_ns
from infrastructure.ids import id_factory
from infrastructure.venue import SimulatedVenue
from projections.queries import iso_timestamp
from tests import builders

MS = 1_000_000
T0 = 1_795_618_800_000_000_000  # 2026-11-25T15:00:00Z


class MemoryJournal:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def append(self, events: Sequence[Any]) -> int:
        self.events.extend(events)
        return len(self.events)

    def read(self, after: int = 0) -> Iterator[tuple[int, Any]]:
        return iter(list(enumerate(self.events, 1))[after:])

    def reset_head(self) -> None:
        pass


def new_engine(journal: MemoryJournal, clock: Callable[[], int] = utc_now_ns,
               tolerance_ns: int = 50 * MS) -> Engine:
    engine = Engine(builders.book, lambda b: SimulatedVenue(b.instruments), journal,
                    clock, id_factory(), clock_tolerance_ns=tolerance_ns)
    engine.recover()
    return engine


def order(client_order_id: str, quantity: int = 10) -> SubmitOrder:
    return SubmitOrder(client_order_id=client_order_id, account_id=builders.ACCOUNT,
                       symbol="AAPL", side="buy", quantity=quantity, order_type="limit",
                       limit_price=Decimal("189.00"), actor=builders.ACTOR)


def outcome(results: Sequence[Outcome | BaseException]) -> dict[str, Any]:
    (result,) = results
    assert isinstance(result, Outcome) and result.order is not None
    return result.order


def test_events_carry_the_wall_clock_in_utc_nanoseconds() -> None:
    journal = MemoryJournal()
    with freeze_time("2026-11-25 15:00:00.123456"):
        # Built under the frozen clock: the engine's stamps never go back before its start.
        engine = new_engine(journal)
        outcome(engine.execute([order("c-1")]))
    (event,) = journal.events
    whole_seconds = int(datetime(2026, 11, 25, 15, 0, 0, tzinfo=UTC).timestamp())
    assert event.ts_ns == whole_seconds * 1_000_000_000 + 123_456_000
    assert iso_timestamp(event.ts_ns) == "2026-11-25T15:00:00.123456000Z"


def test_duplicate_window_is_measured_in_wall_clock_time() -> None:
    window_ms = builders.limits().duplicate_window_ns // builders.MS
    with freeze_time("2026-11-25 15:00:00") as clock:
        engine = new_engine(MemoryJournal())
        assert outcome(engine.execute([order("c-1")]))["status"] == "accepted"
        clock.tick(window_ms / 1000 / 2)
        again = outcome(engine.execute([order("c-2")]))  # same order, new client id
        assert again["reject"] == {"control": "duplicate",
                                   "threshold": f"{window_ms * 1_000_000}ns",
                                   "observed": f"{window_ms * 1_000_000 // 2}ns"}
        clock.tick(window_ms / 1000)
        assert outcome(engine.execute([order("c-3")]))["status"] == "accepted"


def test_stamps_never_go_backwards_when_the_wall_clock_does() -> None:
    """Log order is time order (ARCHITECTURE rule 10): a clock stepped back by NTP must not
    stamp a later event earlier than the one before it."""
    journal = MemoryJournal()
    with freeze_time("2026-11-25 15:00:00") as clock:
        engine = new_engine(journal)
        outcome(engine.execute([order("c-1")]))
        clock.move_to("2026-11-25 14:59:00")
        outcome(engine.execute([order("c-2", 20)]))
    stamps = [e.ts_ns for e in journal.events]
    assert stamps == sorted(stamps)
    # The step back (a minute, beyond CAT's 50 ms) is itself recorded, before the order.
    assert [type(e).__name__ for e in journal.events] == [
        "OrderAccepted", "ClockExceptionRecorded", "OrderAccepted"]


# ------------------------------------------------------------------ clock exceptions


class SteppingClock:
    """The system clock as a test sets it; moves 1 us forward on every reading."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        self.now += 1_000
        return self.now


def exceptions(journal: MemoryJournal) -> list[ClockExceptionRecorded]:
    return [e for e in journal.events if type(e) is ClockExceptionRecorded]


def test_clock_watch_records_an_episode_once_and_its_end() -> None:
    watch = ClockWatch(50 * MS)
    held = T0
    assert watch.check(held - 10 * MS, held) is None  # within tolerance: absorbed
    assert watch.check(held - 50 * MS, held) is None  # at the tolerance: not beyond it
    assert watch.check(held - 200 * MS, held) is ClockState.BEHIND
    assert watch.check(held - 300 * MS, held) is None  # further behind: the same episode
    assert watch.check(held - 1, held) is None  # not yet caught up
    assert watch.check(held, held) is ClockState.CAUGHT_UP
    assert watch.check(held + 5, held) is None
    assert watch.check(held - 51 * MS, held) is ClockState.BEHIND  # a new episode


def test_a_small_step_back_is_held_and_not_recorded() -> None:
    clock = SteppingClock(T0)
    journal = MemoryJournal()
    engine = new_engine(journal, clock)
    outcome(engine.execute([order("c-1")]))
    clock.now -= 10 * MS
    outcome(engine.execute([order("c-2", 20)]))
    assert not exceptions(journal)
    stamps = [e.ts_ns for e in journal.events]
    assert stamps == sorted(stamps) and len(stamps) == 2


def test_a_step_back_beyond_tolerance_is_recorded_once_per_episode() -> None:
    clock = SteppingClock(T0)
    journal = MemoryJournal()
    engine = new_engine(journal, clock)
    outcome(engine.execute([order("c-1")]))
    held = engine.stamp()  # the engine's last stamp (nothing has moved it since)
    clock.now = held - 200 * MS
    for n in range(2, 6):  # orders while the clock is behind: one record, not one per order
        outcome(engine.execute([order(f"c-{n}", 10 + n)]))
    [behind] = exceptions(journal)
    assert type(journal.events[1]) is ClockExceptionRecorded  # before the cycle's decisions
    assert (behind.state, behind.where, behind.held_ns, behind.tolerance_ns) == (
        "behind", "live", held, 50 * MS)
    assert 199 * MS < behind.step_ns == behind.held_ns - behind.observed_ns < 200 * MS
    assert behind.held_ns >= journal.events[0].ts_ns
    assert behind.ts_ns == held and behind.engine_id == engine.engine_id
    assert behind.actor == "system" and behind.source == "system"
    clock.now += 300 * MS  # past the held stamp: the episode ends, recorded once
    outcome(engine.execute([order("c-6", 30)]))
    outcome(engine.execute([order("c-7", 31)]))
    states = [(e.state, e.version) for e in exceptions(journal)]
    assert states == [("behind", 1), ("caught_up", 2)]
    caught_up = exceptions(journal)[1]
    assert caught_up.step_ns <= 0 and caught_up.observed_ns >= caught_up.held_ns
    stamps = [e.ts_ns for e in journal.events]
    assert stamps == sorted(stamps)
    # Replay applies them like any event: the rebuilt book is the live one.
    rebuilt = new_engine(journal, clock)
    assert rebuilt.book.events_applied == engine.book.events_applied


def test_a_restart_never_stamps_before_the_log_and_records_a_clock_behind_it() -> None:
    clock = SteppingClock(T0 + 3_600 * 1_000 * MS)  # an hour ahead, then the OS clock steps
    journal = MemoryJournal()
    outcome(new_engine(journal, clock).execute([order("c-1")]))
    last = journal.events[-1].ts_ns
    clock.now = T0  # restarted on a clock an hour behind the log (NTP step, VM migration)

    engine = new_engine(journal, clock)

    [restart] = exceptions(journal)
    assert (restart.state, restart.where, restart.held_ns, restart.ts_ns) == (
        "behind", "restart", last, last)
    assert restart.step_ns > 3_599 * 1_000 * MS
    outcome(engine.execute([order("c-2", 20)]))
    accepted = [e for e in journal.events if type(e) is OrderAccepted]
    assert accepted[-1].ts_ns >= last
    assert len(exceptions(journal)) == 1  # still behind: no second record
    stamps = [e.ts_ns for e in journal.events]
    assert stamps == sorted(stamps)


def test_a_restart_on_a_clock_slightly_behind_the_log_records_nothing() -> None:
    clock = SteppingClock(T0)
    journal = MemoryJournal()
    outcome(new_engine(journal, clock).execute([order("c-1")]))
    last = journal.events[-1].ts_ns
    clock.now = last - 20 * MS
    engine = new_engine(journal, clock)
    outcome(engine.execute([order("c-2", 20)]))
    assert not exceptions(journal)
    assert journal.events[-1].ts_ns == last  # held at the log's last stamp, unrecorded
