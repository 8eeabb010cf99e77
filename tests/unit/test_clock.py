"""Where wall-clock time matters: the engine stamps events with the system clock and the
duplicate control measures its window in that time (freezegun drives the clock; the journal
is an in-memory fake at our own port, so nothing here does I/O)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from freezegun import freeze_time

from commands.engine import Engine
from commands.models import SubmitOrder
from commands.outcomes import Outcome
from infrastructure.clock import utc_now_ns
from infrastructure.ids import id_factory
from infrastructure.venue import SimulatedVenue
from projections.queries import iso_timestamp
from tests import builders


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


def new_engine(journal: MemoryJournal) -> Engine:
    engine = Engine(builders.book, lambda b: SimulatedVenue(b.instruments), journal,
                    utc_now_ns, id_factory())
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
    assert stamps == sorted(stamps) and len(stamps) == 2
