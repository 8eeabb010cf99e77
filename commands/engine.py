"""The single-writer engine: decide in memory, journal in group commits, then release.

One thread owns the book of record and the venue (ARCHITECTURE rule 3: no locks on the hot
path). Each cycle of up to ``batch_max`` commands goes through three named places:

1. the decision (``commands.decisions``): controls and state machine, in memory -> events;
2. the group commit: all of the cycle's events in ONE transaction;
3. the venue step (``commands.venue_step``): only then do accepted orders, cancel and
   replace requests reach the venue (record before release, 15c3-5), in log order; its
   executions, remainders and confirmations are journaled in turn, and then every command is
   acknowledged with the order as it stood after the venue step.

``execute`` runs a cycle in the caller's thread (demo, tests, benchmarks); ``start`` hands
the engine to a ``Pipeline`` (``commands.pipeline``) that runs cycles on the engine thread
and overlaps the group commit of one cycle with the decision of the next.

Trading days open and close through barrier commands (``OpenTradingDay``,
``CloseTradingDay``) that the engine schedules from its calendar and operators may send;
a barrier is decided with no cycle in flight, so the venue and the book are in step.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, InvalidStateError
from typing import Any, NamedTuple, Protocol
from uuid import UUID

import orjson

from commands.decisions import HANDLERS, Context, Decision, Release
from commands.garbage_collection import CollectorSchedule
from commands.models import (
    BARRIERS,
    CloseTradingDay,
    Command,
    OpenTradingDay,
    RecordTimeReferenceCheck,
    Sweep,
    TakeSnapshot,
)
from commands.outcomes import Outcome, OutcomeKind
from commands.ports import Journal, StoreHalted, Venue
from commands.venue_step import VenueStep
from domain import book_snapshot
from domain.book_of_record import SYSTEM_ACTOR, BookOfRecord
from domain.clock_watch import CAT_TOLERANCE_NS, ClockWatch, ReferenceWatch, Where
from domain.events import BookSnapshotTaken, ClockExceptionRecorded, EngineRecovered
from domain.nbbo_reference import MarketDataBoard, NbboReferencePrices
from domain.values import Source

log = logging.getLogger(__name__)

# How often at most the engine sweeps for loss-limit trips after fills (expiries of
# temporary limits and locates are swept as soon as they are due).
SWEEP_INTERVAL_NS = 200_000_000

Item = tuple[Command, "Future[Outcome] | None"]
Answer = tuple["Future[Outcome] | None", "Decision | Exception", int]


class NotRecorded(Exception):
    """The command's events could not be journaled; nothing of it is durable."""


class EngineBusy(Exception):
    """The engine's command queue is full: retry after a moment (backpressure)."""


class EngineHalted(Exception):
    """The engine stopped writing for good (fenced by another writer, or a broken chain)."""


class Session(NamedTuple):
    trading_date: str
    open_ns: int
    close_ns: int


class TradingCalendar(Protocol):
    """When trading days open and close (infrastructure reads the configured hours)."""

    def session_at(self, now_ns: int) -> Session | None:
        """The session whose [open, close) contains ``now_ns``; None outside sessions."""

    def trading_date(self, now_ns: int) -> str: ...

    def close_of(self, trading_date: str) -> int | None: ...


def answer(future: Future[Outcome] | None, result: Outcome | BaseException) -> None:
    """Answer a caller, best effort: one that gave up is no error (ARCHITECTURE rule 9)."""
    if future is None:
        return
    try:
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass  # cancelled by a caller that timed out; the outcome is durable all the same


class Engine:
    def __init__(
        self,
        new_book: Callable[[], BookOfRecord],
        new_venue: Callable[[BookOfRecord], Venue],
        journal: Journal,
        clock: Callable[[], int],
        new_id: Callable[[], UUID],
        batch_max: int = 2000,
        on_commit: Callable[[int], None] | None = None,
        calendar: TradingCalendar | None = None,
        queue_max: int = 20_000,
        snapshot_every: int = 200_000,
        market_data: MarketDataBoard | None = None,
        clock_tolerance_ns: int = CAT_TOLERANCE_NS,
    ) -> None:
        self._new_book = new_book
        # None: references from the venue's own prints and its best bid (the default).
        self.market_data = market_data
        self._new_venue = new_venue
        self.journal = journal
        self.clock = clock
        self.new_id = new_id
        self.batch_max = batch_max
        self.on_commit = on_commit
        self.calendar = calendar
        self.queue_max = queue_max
        self.snapshot_every = snapshot_every
        self.engine_id = new_id()
        self.collector = CollectorSchedule()
        self.committed_position = 0
        self.batches = 0
        self.failures = 0
        self.last_failure: str | None = None
        self.halted: str | None = None
        self.recovered_from_snapshot: int | None = None
        self._last_ns = 0
        self._log_last_ns = 0  # the last event's stamp in the log, as the rebuild found it
        self.clock_watch = ClockWatch(clock_tolerance_ns)
        self.reference_watch = ReferenceWatch(clock_tolerance_ns)
        self._engine_version = 0
        self._snapshot_events = 0  # book.events_applied at the last snapshot
        self._closed_since_snapshot = False
        self.context = Context(new_id, self.stamp, self._trading_date, self._close_of)
        self._handlers: dict[type, Any] = {
            **HANDLERS, TakeSnapshot: self._take_snapshot,
            RecordTimeReferenceCheck: self._record_reference_check}
        self._last_sweep_ns = 0
        self.book = new_book()
        self.venue = new_venue(self.book)
        self._plug_market_data(self.book, self.venue)
        self.venue_step = VenueStep(self.book, self.venue, new_id, self.stamp)
        self.pipeline: Any = None

    def _plug_market_data(self, book: BookOfRecord, venue: Venue) -> None:
        """The reference-price port and Rule 201's best bid: from the market-data board
        when the engine has one (NBBO midpoint, else the feed's last sale, else the book's
        own tape), from the venue otherwise."""
        if self.market_data is None:
            book.best_bid = venue.best_bid
            return
        references = NbboReferencePrices(self.market_data, fallback=book.tape)
        book.references = references
        book.best_bid = references.best_bid

    # ------------------------------------------------------------------ time

    def stamp(self) -> int:
        """The engine's clock, never going backwards: log order is time order."""
        now = self.clock()
        if now < self._last_ns:
            return self._last_ns
        self._last_ns = now
        return now

    def watch_clock(self, events: list[Any], where: Where) -> None:
        """Record a clock exception if the system clock has fallen behind the last stamp
        beyond the tolerance, or caught up after that (domain.clock_watch): once per cycle
        and at recovery, never per order, so ``stamp`` stays as cheap as it was."""
        observed, held, watch = self.clock(), self._last_ns, self.clock_watch
        if held - observed <= watch.tolerance_ns and not watch.behind:
            return  # the usual case, decided here: no call into the watch
        state = watch.check(observed, held)
        if state is None:
            return
        self._engine_version += 1
        event = ClockExceptionRecorded(self.engine_id, self._engine_version, self.stamp(),
                                       SYSTEM_ACTOR, Source.SYSTEM, observed, held,
                                       held - observed, watch.tolerance_ns,
                                       str(where), str(state), "")
        self.book.apply(event)
        events.append(event)
        log.warning("clock exception recorded (%s, %s): system clock %d ns behind the "
                    "engine's last stamp", where, state, held - observed)

    def _record_reference_check(self, _ctx: Context, _book: BookOfRecord,
                                command: RecordTimeReferenceCheck, events: list[Any],
                                _releases: list[Release]) -> Decision:
        """A check against the time reference, decided here (single writer): recorded when
        it is the first of the start or the day, or changes the state (an episode beyond the
        tolerance begins or ends, or the reference stops or resumes answering)."""
        offset = command.offset_ns
        state = self.reference_watch.check(offset, self._trading_date(self.clock()))
        if state is None:
            return Decision(OutcomeKind.DONE, None, {"recorded": False})
        observed = command.observed_ns
        self._engine_version += 1
        event = ClockExceptionRecorded(
            self.engine_id, self._engine_version, self.stamp(), SYSTEM_ACTOR, Source.SYSTEM,
            observed, observed + (offset or 0), offset or 0, self.reference_watch.tolerance_ns,
            str(Where.REFERENCE), str(state), command.reference)
        self.book.apply(event)
        events.append(event)
        log.log(logging.INFO if state == "within" else logging.WARNING,
                "time reference %s: %s (offset %s ns%s)", command.reference, state, offset,
                f", {command.error}" if command.error else "")
        return Decision(OutcomeKind.DONE, None, {"recorded": True, "state": str(state)})

    def _trading_date(self, now_ns: int) -> str:
        if self.calendar is not None:
            return self.calendar.trading_date(now_ns)
        return time.strftime("%Y-%m-%d", time.gmtime(now_ns // 1_000_000_000))

    def _close_of(self, trading_date: str) -> int | None:
        return None if self.calendar is None else self.calendar.close_of(trading_date)

    def scheduled_command(self) -> Command | None:
        """The trading-day transition the calendar says is due now, if any."""
        now = self.clock()
        day = self.book.day
        if self.calendar is None:
            return self._sweep_due(now)
        if day.is_open:
            close = day.scheduled_close_ns
            if close is not None and now >= close:
                return CloseTradingDay(actor=SYSTEM_ACTOR, source=Source.SYSTEM,
                                       reason="scheduled close")
            return self._sweep_due(now)
        session = self.calendar.session_at(now)
        if session is None or (day.last_closed_date is not None
                               and session.trading_date <= day.last_closed_date):
            return self._sweep_due(now)
        return OpenTradingDay(actor=SYSTEM_ACTOR, source=Source.SYSTEM,
                              trading_date=session.trading_date, close_at_ns=session.close_ns,
                              reason="scheduled open")

    def _sweep_due(self, now: int) -> Command | None:
        """A sweep when fills may have moved a loss past its limit, or an expiry is due."""
        gov = self.book.gov
        expiry = gov.next_expiry()
        if ((gov.fills_since_sweep and now - self._last_sweep_ns >= SWEEP_INTERVAL_NS)
                or (expiry is not None and expiry <= now)):
            self._last_sweep_ns = now
            return Sweep(actor=SYSTEM_ACTOR, source=Source.SYSTEM)
        return None

    # ------------------------------------------------------------------ recovery

    def recover(self) -> int:
        """Rebuild the book of record from the latest trusted snapshot plus the log after
        it, then re-release its live orders to a fresh venue (``VenueStep.rerelease``)."""
        # Replay allocates millions of acyclic objects: automatic collections would re-scan
        # the growing book again and again (measured: 2x the replay's own time).
        with self.collector.paused():
            book, position = self._rebuild()
        self.journal.reset_head()
        self.book, self.committed_position = book, position
        self.venue = self._new_venue(book)
        self._plug_market_data(book, self.venue)
        self.venue_step = VenueStep(book, self.venue, self.new_id, self.stamp)
        self._snapshot_events = book.events_applied
        # Log order is time order across restarts too: never stamp before the log's last
        # event, whatever the system clock says now (and record it if it is behind).
        self._last_ns = max(self._last_ns, self._log_last_ns)
        events: list[Any] = []
        self.watch_clock(events, Where.RESTART)
        events += self.venue_step.rerelease(book)
        if events:
            self.committed_position = self.journal.append(events)
        return self.committed_position

    def _rebuild(self) -> tuple[BookOfRecord, int]:
        loaded = self._load_snapshot()
        self.recovered_from_snapshot = None
        if loaded is not None:
            book, position, digest = loaded
            events = self.journal.read(position)
            first = next(events, None)
            # Trusted only when the hash-chained log records this snapshot's digest.
            if (first is not None and type(first[1]) is BookSnapshotTaken
                    and first[1].position == position and first[1].sha256 == digest):
                book.apply(first[1])
                position, last = first
                for position, last in events:  # noqa: B007 - the last one is the head
                    book.apply(last)
                self._log_last_ns = last.ts_ns
                self.recovered_from_snapshot = loaded[1]
                return book, position
            log.warning("snapshot at %d is not recorded in the log; replaying from the start",
                        position)
        book = self._new_book()
        position = 0
        event: Any = None
        for position, event in self.journal.read():  # noqa: B007
            book.apply(event)
        if event is not None:
            self._log_last_ns = event.ts_ns
        return book, position

    def _load_snapshot(self) -> tuple[BookOfRecord, int, str] | None:
        latest = getattr(self.journal, "latest_snapshot", None)
        if latest is None:
            return None
        found = latest()
        if found is None:
            return None
        position, state = found
        book = self._new_book()
        try:
            book_snapshot.restore(book, orjson.loads(state))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("snapshot at %d unusable (%s); replaying from the start", position, exc)
            return None
        return book, position, hashlib.sha256(state).hexdigest()

    def take_snapshot(self) -> BookSnapshotTaken | None:
        """Store the book's state at the committed position (no cycle in flight), and the
        event that records its digest. Returns the event to journal; None if the store
        refused the snapshot (logged, not fatal: recovery then replays further back)."""
        save = getattr(self.journal, "save_snapshot", None)
        if save is None:
            return None
        state = orjson.dumps(book_snapshot.state_of(self.book))
        position = self.committed_position
        try:
            save(position, state)
        except Exception:
            log.exception("storing a snapshot at %d failed", position)
            return None
        event = BookSnapshotTaken(self.new_id(), 1, self.stamp(), SYSTEM_ACTOR, Source.SYSTEM,
                                  position, hashlib.sha256(state).hexdigest(), len(state))
        self.book.apply(event)
        self._snapshot_events = self.book.events_applied
        self._closed_since_snapshot = False
        return event

    def snapshot_due(self) -> bool:
        since = self.book.events_applied - self._snapshot_events
        return since >= self.snapshot_every or (self._closed_since_snapshot and since > 0)

    def recovered_event(self, cause: BaseException) -> EngineRecovered:
        """The record of a recovery from a failure (appended after the rebuild)."""
        self._engine_version += 1
        event = EngineRecovered(self.engine_id, self._engine_version, self.stamp(),
                                SYSTEM_ACTOR, Source.SYSTEM, f"{type(cause).__name__}: {cause}",
                                self.committed_position)
        self.book.apply(event)
        return event

    # ------------------------------------------------------------------ the threaded engine

    def start(self) -> None:
        from commands.pipeline import Pipeline

        self.pipeline = Pipeline(self)
        self.pipeline.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish every queued and in-flight command, then stop."""
        if self.pipeline is not None:
            self.pipeline.stop(timeout)
            self.pipeline = None

    @property
    def running(self) -> bool:
        return self.pipeline is not None and self.pipeline.running

    def submit(self, command: Command) -> Future[Outcome]:
        """Queue a command for the engine thread; the future resolves once it is durable.

        Raises ``EngineBusy`` at once when the queue is full, ``EngineHalted`` when the
        engine has stopped writing for good."""
        if self.pipeline is None:
            raise EngineHalted(self.halted or "the engine is not running")
        result: Future[Outcome] = self.pipeline.submit(command)
        return result

    def refuse(self, reason: str) -> None:
        """Stop taking commands for good (e.g. another engine took the store's lock); what is
        in flight fails at its next append, which the store fences."""
        if self.halted is None:
            self.halted = reason
            log.critical("engine refuses further commands: %s", reason)

    def health(self) -> dict[str, Any]:
        pipeline = self.pipeline
        day = self.book.day
        return {
            "running": self.running,
            "halted": self.halted,
            "failures": self.failures,
            "last_failure": self.last_failure,
            "queue_depth": 0 if pipeline is None else pipeline.depth,
            "queue_max": self.queue_max,
            "committed_position": self.committed_position,
            "batches": self.batches,
            "trading_day": {"date": day.date, "open": day.is_open,
                            "exposure_mode": day.exposure_mode,
                            "scheduled_close_ns": day.scheduled_close_ns},
            "recovered_from_snapshot": self.recovered_from_snapshot,
        }

    # ------------------------------------------------------------------ one cycle, in order

    def execute(self, commands: Iterable[Command]) -> list[Outcome | BaseException]:
        """Run commands in the caller's thread (demo, benchmarks, tests): one cycle, except
        that each barrier (trading day, snapshot) is decided in a cycle of its own."""
        items: list[Item] = [(command, Future()) for command in commands]
        self.run_batch(items)
        return [f.exception() or f.result() for _, f in items]  # type: ignore[union-attr]

    def run_batch(self, items: Sequence[Item]) -> None:
        # The calendar's transitions that are due first (after downtime: a close, then an
        # open); a refused one is not retried in a loop.
        for _ in range(4):
            due = self.scheduled_command()
            if due is None:
                break
            before = self.book.day.version, self.book.day.date
            self._cycle([(due, None)])
            if (self.book.day.version, self.book.day.date) == before:
                break
        segment: list[Item] = []
        for item in items:
            if isinstance(item[0], BARRIERS):
                if segment:
                    self._cycle(segment)
                    segment = []
                self._cycle([item])
            else:
                segment.append(item)
        if segment:
            self._cycle(segment)
        if self.snapshot_due():
            self._cycle([(TakeSnapshot(actor=SYSTEM_ACTOR, source=Source.SYSTEM), None)])

    def _cycle(self, items: Sequence[Item]) -> None:
        events, releases, answers = self.decide_batch(items)
        try:
            if events:
                self.committed_position = self.journal.append(events)
            venue_events = self.venue_step.run(releases)
            if venue_events:
                self.committed_position = self.journal.append(venue_events)
        except StoreHalted as exc:
            self.halted = f"{type(exc).__name__}: {exc}"
            for future, _, _ in answers:
                answer(future, EngineHalted(self.halted))
            raise
        except Exception as exc:
            log.exception("journal append failed; rebuilding from the store")
            self.answer_after_failure(answers, exc)
            return
        self.batches += 1
        for future, outcome, _ in answers:
            answer(future, outcome if isinstance(outcome, Exception) else outcome.acknowledge())
        if self.on_commit is not None and (events or releases):
            self.on_commit(self.committed_position)
        self.after_cycle(items)

    def after_cycle(self, items: Sequence[Item]) -> None:
        if any(type(command) is CloseTradingDay for command, _ in items):
            self._closed_since_snapshot = True
            self.collector.at_end_of_day()

    def decide(self, command: Command, events: list[Any], releases: list[Release]) -> Decision:
        """One command's decision (its handler, on the book of record): what every command
        of a cycle goes through, and what the decision benchmark times."""
        decision: Decision = self._handlers[type(command)](self.context, self.book, command,
                                                           events, releases)
        return decision

    def _take_snapshot(self, _ctx: Context, _book: BookOfRecord, _command: TakeSnapshot,
                       events: list[Any], _releases: list[Release]) -> Decision:
        event = self.take_snapshot()
        if event is not None:
            events.append(event)
        return Decision(OutcomeKind.DONE, None, {"snapshot": event is not None})

    def decide_batch(self, items: Sequence[Item]
                     ) -> tuple[list[Any], list[Release], list[Answer]]:
        events: list[Any] = []
        releases: list[Release] = []
        answers: list[Answer] = []
        # A snapshot's cycle records nothing before it: the snapshot is of the committed state.
        if items and type(items[0][0]) is not TakeSnapshot:
            self.watch_clock(events, Where.LIVE)
        decide = self.decide
        for command, future in items:
            try:
                outcome: Decision | Exception = decide(command, events, releases)
            except Exception as exc:  # a bug in one command must not sink the batch
                log.exception("command failed: %r", command)
                outcome = exc
            order = outcome.order if isinstance(outcome, Decision) else None
            answers.append((future, outcome, 0 if order is None else order.version))
        return events, releases, answers

    def answer_after_failure(self, answers: list[Answer], exc: BaseException) -> None:
        """Rebuild from the store (retrying until it answers), then answer each command from
        the rebuilt state: an acknowledged outcome is always a durable one, and a command
        whose events are not in the store is reported as such (safe to resend)."""
        delay = 0.05
        while True:
            try:
                self.recover()
                break
            except StoreHalted:
                raise
            except Exception:
                log.exception("recovery from the store failed; retrying in %.2fs", delay)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        for future, outcome, version in answers:
            if future is None:
                continue
            if isinstance(outcome, Exception):
                answer(future, outcome)
                continue
            order = None
            if outcome.order is not None:
                order = self.book.lookup(outcome.order.order_id)
            if order is not None and order.version >= version:
                answer(future, outcome._replace(order=order).acknowledge())
            elif outcome.kind in (OutcomeKind.EXISTING, OutcomeKind.CONFLICT,
                                  OutcomeKind.NOT_FOUND):
                answer(future, outcome.acknowledge())  # journaled nothing, lost nothing
            else:
                answer(future, NotRecorded(f"not recorded ({exc}); safe to resend"))
