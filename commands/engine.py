"""The single-writer engine: decide in memory, journal in group commits, then release.

One thread owns the book of record and the venue (ARCHITECTURE rule 3: no locks on the hot
path). Each batch of up to ``batch_max`` queued commands goes through:

1. decide each command in memory (controls, state machine) -> events;
2. journal all of those events in ONE transaction (group commit);
3. only then release accepted orders, cancels and replaces to the venue (record before
   release, 15c3-5: an order reaches a market only after its risk decision is recorded);
   cancels and replaces go first, so an order cancelled in this batch cannot trade in it;
4. journal the venue's executions and remainders in a second transaction;
5. acknowledge every command with the order as it stood after step 3.

Running as a thread (``start``), the engine pipelines these steps: a ``JournalWriter``
thread commits batch N while the engine decides batch N+1. Every batch of events is handed
to the writer in the order the engine produced (and applied) them, so the log's order is
the order the state changed in, and replay rebuilds exactly this state. An acknowledgement
waits for the batch's venue events, which the writer commits after every earlier batch, so
nothing an acknowledgement shows can be lost. ``execute`` runs the same steps one after the
other in the caller's thread (demo, tests, benchmarks).

If a journal write fails, the in-memory state may hold decisions the store does not: the
engine rebuilds itself from the store and answers each command from the rebuilt state, so
an acknowledged outcome is always a durable one and an unrecorded command is reported as
such (safe to resend: idempotency by client_order_id makes resending harmless).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from decimal import Decimal
from typing import Any, NamedTuple
from uuid import UUID

from commands.garbage_collection import CollectorSchedule
from commands.journal_writer import JournalWriter
from commands.models import CancelOrder, Command, EndOfDay, ReplaceOrder, SubmitOrder
from commands.outcomes import OrderSnapshot, Outcome
from commands.ports import Journal, Venue
from domain.book_of_record import LIQUIDITY_PROVIDER, VENUE_ACTOR, VENUE_SOURCE, BookOfRecord
from domain.events import (
    CancelRejected,
    OrderAccepted,
    OrderCanceled,
    OrderReplaced,
    ReplaceRejected,
)
from domain.lifecycle import LIVE_STATUSES
from domain.orders import Order
from domain.values import CancelReason, OrderType, TimeInForce

log = logging.getLogger(__name__)

Item = tuple[Command, "Future[Outcome] | None"]
Release = tuple[str, Order, Any, Any]
Answer = tuple["Future[Outcome] | None", "Decision | Exception", int]


class Decision(NamedTuple):
    """A command's result inside the cycle; becomes an ``Outcome`` when acknowledged."""

    kind: str
    order: Order | None = None
    detail: dict[str, Any] | None = None

    def acknowledge(self) -> Outcome:
        # Taken at acknowledgement, after the venue step, so it shows fills and remainders.
        snapshot = None if self.order is None else OrderSnapshot.of(self.order)
        return Outcome(self.kind, snapshot, self.detail)

class Stage(NamedTuple):
    """A batch on its way through the pipeline (what the journal writer hands back)."""

    kind: str  # "decisions" (then release to the venue) or "venue" (then acknowledge)
    answers: list[Answer]
    releases: list[Release]
    now: int
    outcomes: list[Outcome | Exception]


_STOP = object()
_WRITTEN = object()  # the journal writer's wake-up call
IDLE_S = 1.0  # an idle engine thread wakes this often to tend the garbage collector
MAX_IN_FLIGHT = 3  # batches handed to the journal writer and not yet durable


class NotRecorded(Exception):
    """The command's events could not be journaled; nothing of it is durable."""


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
    ) -> None:
        self._new_book = new_book
        self._new_venue = new_venue
        self.journal = journal
        self.clock = clock
        self.new_id = new_id
        self.batch_max = batch_max
        self.on_commit = on_commit
        self.book = new_book()
        self.venue = new_venue(self.book)
        self.committed_position = 0
        self.batches = 0
        self.collector = CollectorSchedule()
        self._venue_events: list[Any] = []
        self._now = 0
        self._end_of_day_in_cycle = False
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._writer: JournalWriter | None = None
        self._in_flight = 0
        self._failure: BaseException | None = None
        self._failed_answers: list[Answer] = []

    # ------------------------------------------------------------ lifecycle

    def recover(self) -> int:
        """Rebuild the book of record from the journal, then release its live orders again.

        Live orders re-enter the venue in time priority (``book.orders`` order) through the
        same step as new ones: resting ones rest again, and an order whose venue step was
        lost (a crash or failed write between the decision commit and the fills commit)
        trades, rests or has its IOC/FOK/market remainder cancelled now, so the recovered
        book is never crossed and every durable acceptance reaches the venue exactly once.
        """
        book = self._new_book()
        position = 0
        for at, event in self.journal.read():
            book.apply(event)
            position = at
        self.journal.reset_head()
        self.book, self.venue, self.committed_position = book, self._new_venue(book), position
        now = self.clock()
        self._venue_events = []
        try:
            for order in list(book.orders.values()):
                if order.status in LIVE_STATUSES:
                    self._execute(order, now)
            if self._venue_events:
                self.committed_position = self.journal.append(self._venue_events)
        finally:
            self._venue_events = []
        return self.committed_position

    def start(self) -> None:
        self._writer = JournalWriter(self.journal, lambda: self._queue.put(_WRITTEN))
        self._writer.start()
        self._thread = threading.Thread(target=self._run, name="marketlog-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish every queued and in-flight command, then stop."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None
        if self._writer is not None:
            self._writer.stop(timeout)
            self._writer = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, command: Command) -> Future[Outcome]:
        """Queue a command for the engine thread; the future resolves once it is durable."""
        future: Future[Outcome] = Future()
        self._queue.put((command, future))
        return future

    # ------------------------------------------------------------ the pipelined loop

    def _run(self) -> None:
        self.collector.take_over()
        try:
            self._serve()
        except Exception:  # never let the writer thread die silently
            log.exception("engine thread failed")
            raise
        finally:
            self.collector.hand_back()

    def _serve(self) -> None:
        q = self._queue
        waiting: deque[Item] = deque()
        stopping = False
        while True:
            ready = bool(waiting) and self._in_flight < MAX_IN_FLIGHT and self._failure is None
            try:
                item = q.get_nowait() if ready else q.get(timeout=IDLE_S)
            except queue.Empty:
                if not ready:
                    self.collector.when_idle()
                    continue
                item = None
            while item is not None:  # take everything that has arrived
                if item is _STOP:
                    stopping = True
                elif item is _WRITTEN:
                    self._take_written()
                else:
                    waiting.append(item)
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    item = None
            if self._failure is not None and self._in_flight == 0:
                self._recover_from_failure()
            if waiting and self._in_flight < MAX_IN_FLIGHT and self._failure is None:
                batch = [waiting.popleft() for _ in range(min(len(waiting), self.batch_max))]
                self._decide_and_write(batch)
                self.collector.after_cycle()
            if stopping and not waiting and self._in_flight == 0:
                return

    def _write(self, events: list[Any], stage: Stage) -> None:
        assert self._writer is not None
        self._in_flight += 1
        self._writer.write(events, stage)

    def _decide_and_write(self, items: Sequence[Item]) -> None:
        now = self.clock()
        events, releases, answers = self._decide_batch(items, now)
        # Written even when empty: a re-sent order's answer must wait for the batch that
        # created it, and the writer reports completions in order.
        self._write(events, Stage("decisions", answers, releases, now, []))

    def _take_written(self) -> None:
        assert self._writer is not None
        done = self._writer.done
        while done:
            stage, position, error = done.popleft()
            self._in_flight -= 1
            if error is not None:
                self._failure = self._failure or error
                self._failed_answers.extend(stage.answers)
                continue
            if position is not None:
                self.committed_position = position
                if self.on_commit is not None:
                    self.on_commit(position)
            if stage.kind == "decisions":
                # Record before release: this batch's decisions are durable now.
                try:
                    venue_events = self._venue_step(stage.releases, stage.now)
                except Exception as exc:  # a venue bug: rebuild from the store, as for a write
                    log.exception("venue step failed")
                    self._writer.hold(exc)  # later batches were decided on the broken state
                    self._failure = self._failure or exc
                    self._failed_answers.extend(stage.answers)
                    continue
                # Acknowledgements are taken now, in the only thread that may read orders;
                # everything they show is written before or with these venue events.
                outcomes = [o if isinstance(o, Exception) else o.acknowledge()
                            for _, o, _ in stage.answers]
                venue_stage = stage._replace(kind="venue", outcomes=outcomes)
                if venue_events or self._in_flight:
                    self._write(venue_events, venue_stage)
                else:  # nothing to write and nothing ahead of it: durable already
                    self._acknowledge(venue_stage)
            else:
                self._acknowledge(stage)

    def _acknowledge(self, stage: Stage) -> None:
        self.batches += 1
        for (future, _, _), outcome in zip(stage.answers, stage.outcomes, strict=True):
            if future is not None:
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
        if self._end_of_day_in_cycle:
            self._end_of_day_in_cycle = False
            self.collector.at_end_of_day()

    def _recover_from_failure(self) -> None:
        assert self._writer is not None and self._failure is not None
        failure, answers = self._failure, self._failed_answers
        self._failure, self._failed_answers = None, []
        self._answer_after_failure(answers, failure)
        self._writer.resume()

    # ------------------------------------------------------------ one cycle, in order

    def execute(self, commands: Iterable[Command]) -> list[Outcome | BaseException]:
        """Run commands as one cycle in the caller's thread (demo, benchmarks, tests)."""
        items: list[Item] = [(command, Future()) for command in commands]
        self.run_batch(items)
        return [f.exception() or f.result() for _, f in items]  # type: ignore[union-attr]

    def run_batch(self, items: Sequence[Item]) -> None:
        now = self.clock()
        events, releases, answers = self._decide_batch(items, now)
        try:
            if events:
                self.committed_position = self.journal.append(events)
            venue_events = self._venue_step(releases, now)
            if venue_events:
                self.committed_position = self.journal.append(venue_events)
        except Exception as exc:
            log.exception("journal append failed; rebuilding from the store")
            self._answer_after_failure(answers, exc)
            return
        self.batches += 1
        for future, outcome, _ in answers:
            if future is not None:
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome.acknowledge())
        if self.on_commit is not None and (events or releases):
            self.on_commit(self.committed_position)
        if self._end_of_day_in_cycle:
            self._end_of_day_in_cycle = False
            self.collector.at_end_of_day()

    def _decide_batch(self, items: Sequence[Item], now: int
                      ) -> tuple[list[Any], list[Release], list[Answer]]:
        book = self.book
        events: list[Any] = []
        releases: list[Release] = []
        answers: list[Answer] = []
        for command, future in items:
            try:
                outcome: Decision | Exception = self._decide(book, command, now, events, releases)
            except Exception as exc:  # a bug in one command must not sink the batch
                log.exception("command failed: %r", command)
                outcome = exc
            order = outcome.order if isinstance(outcome, Decision) else None
            version = order.version if order is not None else 0
            answers.append((future, outcome, version))
        return events, releases, answers

    def _venue_step(self, releases: list[Release], now: int) -> list[Any]:
        self._venue_events = []
        try:
            self._release(releases, now)
            return self._venue_events
        finally:
            self._venue_events = []

    def _answer_after_failure(self, answers: list[Answer], exc: BaseException) -> None:
        delay = 0.05
        while True:
            try:
                self.recover()
                break
            except Exception:
                log.exception("recovery from the store failed; retrying in %.2fs", delay)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        for future, outcome, version in answers:
            if future is None:
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
                continue
            order = None
            if outcome.order is not None:
                order = self.book.orders.get(outcome.order.order_id)
            if order is not None and order.version >= version:
                future.set_result(outcome._replace(order=order).acknowledge())
            elif outcome.kind in ("existing", "conflict", "not_found"):
                future.set_result(outcome.acknowledge())  # journaled nothing, lost nothing
            else:
                future.set_exception(NotRecorded(f"not recorded ({exc}); safe to resend"))

    # ------------------------------------------------------------ decisions

    def _decide(self, book: BookOfRecord, command: Command, now: int, events: list[Any],
                releases: list[Release]) -> Decision:
        if isinstance(command, SubmitOrder):
            existing = book.find(command.account_id, command.client_order_id)
            if existing is not None:
                # Idempotent re-send: the original outcome, nothing journaled.
                differs = _differences(existing, command)
                if differs:
                    return Decision("conflict", existing, {"fields": differs})
                return Decision("existing", existing)
            event = book.submit(
                self.new_id(), command.account_id, command.client_order_id, command.symbol,
                command.side, command.quantity, command.order_type, command.limit_price,
                command.time_in_force, command.actor, command.source, now)
            events.append(event)
            order = book.orders[event.order_id]
            if type(event) is OrderAccepted:
                releases.append(("new", order, None, None))
            return Decision("created", order)
        if isinstance(command, CancelOrder):
            target = book.orders.get(command.order_id)
            if target is None:
                return Decision("not_found")
            price = target.limit_price
            cancel = book.cancel(target, command.actor, command.source, now)
            events.append(cancel)
            if type(cancel) is OrderCanceled:
                releases.append(("cancel", target, price, None))
                return Decision("updated", target)
            assert isinstance(cancel, CancelRejected)
            return Decision("refused", target, {"reason": cancel.reason})
        if isinstance(command, ReplaceOrder):
            target = book.orders.get(command.order_id)
            if target is None:
                return Decision("not_found")
            old_price, old_quantity = target.limit_price, target.quantity
            result = book.replace(target, command.quantity, command.limit_price,
                                  command.actor, command.source, now)
            events.append(result)
            if type(result) is OrderReplaced:
                releases.append(("replace", target, old_price, old_quantity))
                return Decision("updated", target)
            assert isinstance(result, ReplaceRejected)
            return Decision("refused", target, {
                "control": result.control, "threshold": result.threshold,
                "observed": result.observed})
        if isinstance(command, EndOfDay):
            canceled = book.end_of_day(command.actor, command.source, now)
            self._end_of_day_in_cycle = True
            events.extend(canceled)
            releases.extend(("cancel", book.orders[e.order_id], book.orders[e.order_id].limit_price,
                             None) for e in canceled)
            return Decision("done", None, {"canceled": len(canceled)})
        raise TypeError(f"unknown command {type(command).__name__}")

    # ------------------------------------------------------------ the venue step

    def _release(self, releases: list[Release], now: int) -> None:
        venue = self.venue
        venue.requote()
        # Cancels and replaces first: an order pulled in this batch never trades in it.
        for kind, order, old_price, old_quantity in releases:
            if kind == "cancel":
                venue.remove(order, old_price)
            elif (kind == "replace"
                  and (order.limit_price != old_price or order.quantity > old_quantity)
                  and venue.remove(order, old_price)):
                # Losing time priority: a new price or a larger size re-enters the queue.
                self._execute(order, now)
        for kind, order, _, _ in releases:
            if kind == "new":
                self._execute(order, now)

    def _execute(self, order: Order, now: int) -> None:
        if order.status not in LIVE_STATUSES:
            return
        tif = order.time_in_force
        if tif == TimeInForce.FOK and not self.venue.can_fill_completely(order):
            self._cancel_remainder(order, CancelReason.FOK_UNFILLED, now)
            return
        self._now = now
        if not self.venue.match(order, self._on_execution):
            self._cancel_remainder(order, CancelReason.SELF_TRADE_PREVENTED, now)
            return
        if order.status in LIVE_STATUSES:
            if tif == TimeInForce.IOC:
                self._cancel_remainder(order, CancelReason.IOC_REMAINDER, now)
            elif order.order_type == OrderType.MARKET:
                self._cancel_remainder(order, CancelReason.MARKET_NO_LIQUIDITY, now)

    def _cancel_remainder(self, order: Order, reason: str, now: int) -> None:
        self._venue_events.append(self.book.cancel(order, VENUE_ACTOR, VENUE_SOURCE, now, reason))

    def _on_execution(self, taker: Order, maker: Any, quantity: int, price: Decimal) -> None:
        trade_id = self.new_id().hex
        book, now = self.book, self._now
        maker_is_order = isinstance(maker, Order)
        counterparty = str(maker.order_id) if maker_is_order else LIQUIDITY_PROVIDER
        self._venue_events.append(
            book.fill(taker, quantity, price, trade_id, "taker", counterparty, now))
        if maker_is_order:
            self._venue_events.append(
                book.fill(maker, quantity, price, trade_id, "maker", str(taker.order_id), now))


def _differences(order: Order, command: SubmitOrder) -> list[str]:
    return [
        name for name, ours, theirs in (
            ("symbol", order.symbol, command.symbol),
            ("side", order.side, command.side),
            ("quantity", order.quantity, command.quantity),
            ("order_type", order.order_type, command.order_type),
            ("limit_price", order.limit_price, command.limit_price),
            ("time_in_force", order.time_in_force, command.time_in_force),
        ) if ours != theirs
    ]
