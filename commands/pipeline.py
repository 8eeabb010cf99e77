"""The engine thread: cycles pipelined with the journal, supervised, with bounded intake.

Stages and their hand-offs, per cycle:

    submit() ──queue──▶ engine thread: decide (batch N+1)  ─┐
                                                            ├─▶ JournalWriter thread: commit
    engine thread ◀── written(N) ── venue step (N) ─────────┘       (in hand-over order)
    engine thread ◀── written(venue N) ── acknowledge every command of N

The engine thread decides batch N+1 while the writer commits batch N, so the log holds
D(N), D(N+1), V(N), ... — the order in which the book of record changed; a replay rebuilds
exactly this state. A cancel or replace decided in N+1 is only a request until V(N+1), so
N's venue step still trades the order on its old terms and the log shows it that way.

ARCHITECTURE rule 9, nothing a client does can stop the engine:
* intake is bounded (``queue_max``): a full engine answers ``EngineBusy`` at once;
* a caller that gave up (a cancelled future) is skipped or answered best-effort;
* the thread is supervised: an unexpected failure is logged, counted, recorded in the log
  (``EngineRecovered``) and recovered by a rebuild from the store, never silent;
* a store that refuses this writer for good (``StoreHalted``: fenced, or a broken chain)
  halts the engine: every caller gets ``EngineHalted``, and ``/health`` says why.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

from commands.decisions import Release
from commands.engine import Answer, EngineBusy, EngineHalted, Item, NotRecorded, answer
from commands.journal_writer import JournalWriter
from commands.models import BARRIERS, Command, TakeSnapshot
from commands.outcomes import Outcome
from commands.ports import StoreHalted
from domain.book_of_record import SYSTEM_ACTOR
from domain.values import Source

if TYPE_CHECKING:
    from commands.engine import Engine

log = logging.getLogger(__name__)

IDLE_S = 0.25  # an idle engine thread wakes this often: schedule, snapshots, collector
MAX_IN_FLIGHT = 3  # cycles handed to the journal writer and not yet durable
_STOP = object()
_WRITTEN = object()  # the journal writer's wake-up call


class StageKind(StrEnum):
    DECISIONS = "decisions"  # durable next: release to the venue
    VENUE = "venue"  # durable next: acknowledge


class Stage(NamedTuple):
    """A cycle on its way through the pipeline (what the journal writer hands back)."""

    kind: StageKind
    items: list[Item]
    answers: list[Answer]
    releases: list[Release]
    outcomes: list[Outcome | Exception]


class Pipeline:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._waiting: deque[Item] = deque()
        self._writer = JournalWriter(engine.journal, lambda: self._queue.put(_WRITTEN))
        self._thread = threading.Thread(target=self._run, name="marketlog-engine", daemon=True)
        self._in_flight = 0
        self._failure: BaseException | None = None
        self._failed_answers: list[Answer] = []
        self._deciding: list[Answer] = []
        self._scheduled_pending = False
        self._stopping = False

    # ------------------------------------------------------------------ callers' side

    def start(self) -> None:
        self._writer.start()
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._writer.stop(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and self.engine.halted is None

    @property
    def depth(self) -> int:
        """Commands queued or waiting, not yet decided (the backpressure bound's measure)."""
        return self._queue.qsize() + len(self._waiting)

    def submit(self, command: Command) -> Future[Outcome]:
        halted = self.engine.halted
        if halted is not None or not self._thread.is_alive():
            raise EngineHalted(halted or "the engine thread is not running")
        # Two C-level reads, no lock: a semaphore here cost every order a lock shared with
        # the engine thread. The bound is soft by at most the callers racing at this line.
        if self._queue.qsize() + len(self._waiting) >= self.engine.queue_max:
            raise EngineBusy(f"{self.engine.queue_max} commands queued; retry shortly")
        future: Future[Outcome] = Future()
        self._queue.put((command, future))
        return future

    # ------------------------------------------------------------------ the engine thread

    def _run(self) -> None:
        engine = self.engine
        engine.collector.take_over()
        crashes = 0
        try:
            while True:
                try:
                    if self._serve():
                        return
                except StoreHalted as exc:
                    self._halt(exc)
                    return
                except Exception as exc:
                    # Supervision: a bug in the loop itself. Stop writing, let what is in
                    # flight come back, rebuild from the store, answer, record, go on.
                    log.exception("engine thread failed; recovering from the store")
                    engine.failures += 1
                    engine.last_failure = f"{type(exc).__name__}: {exc}"
                    self._writer.hold(exc)
                    self._failure = self._failure or exc
                    self._failed_answers.extend(self._deciding)
                    self._deciding = []
                    crashes += 1  # a bug that fails every cycle must not spin on recoveries
                    time.sleep(min(0.05 * 2 ** min(crashes, 6), 2.0))
        finally:
            engine.collector.hand_back()

    def _serve(self) -> bool:
        """Run cycles until stopped (True), or until an exception escapes."""
        q = self._queue
        while True:
            ready = self._can_start()
            try:
                item = q.get_nowait() if ready else q.get(timeout=IDLE_S)
            except queue.Empty:
                item = None
                if not ready:
                    self._when_idle()
            while item is not None:  # take everything that has arrived
                if item is _STOP:
                    self._stopping = True
                elif item is _WRITTEN:
                    self._take_written()
                else:
                    self._waiting.append(item)
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    item = None
            if self._failure is not None and self._in_flight == 0:
                self._recover_from_failure()
            self._schedule()
            if self._can_start():
                self._start_cycle()
                self.engine.collector.after_cycle()
            if self._stopping and not self._waiting and self._in_flight == 0:
                return True

    def _can_start(self) -> bool:
        if not self._waiting or self._failure is not None or self._in_flight >= MAX_IN_FLIGHT:
            return False
        # A barrier waits for every cycle in flight: the venue and the book in step.
        return not isinstance(self._waiting[0][0], BARRIERS) or self._in_flight == 0

    def _schedule(self) -> None:
        if self._scheduled_pending or self._failure is not None:
            return
        due = self.engine.scheduled_command()
        if due is not None:
            self._scheduled_pending = True
            self._waiting.appendleft((due, None))

    def _when_idle(self) -> None:
        engine = self.engine
        if (not self._waiting and self._in_flight == 0 and self._failure is None
                and engine.snapshot_due()):
            self._waiting.append((TakeSnapshot(actor=SYSTEM_ACTOR, source=Source.SYSTEM), None))
            return
        engine.collector.when_idle()

    def _take(self) -> list[Item]:
        """The next cycle's commands: a barrier alone, else up to batch_max others."""
        waiting = self._waiting
        batch: list[Item] = []
        while waiting and len(batch) < self.engine.batch_max:
            command, future = waiting[0]
            if isinstance(command, BARRIERS) and batch:
                break
            waiting.popleft()
            # The caller gave up before the engine looked at it: never decided. Read without
            # the future's lock; a cancel racing past this line is answered harmlessly later
            # (``answer``), so the state need not be switched to running under a lock.
            if future is not None and future._state == "CANCELLED":
                continue
            else:
                self._scheduled_pending = self._scheduled_pending and not isinstance(
                    command, BARRIERS)
            batch.append((command, future))
            if isinstance(command, BARRIERS):
                break
        return batch

    def _start_cycle(self) -> None:
        items = self._take()
        if not items:
            return
        engine = self.engine
        # Should the loop itself fail before these are handed on, supervision answers them.
        unrecorded = NotRecorded("the engine failed while deciding; safe to resend")
        self._deciding = [(future, unrecorded, 0) for _, future in items]
        events, releases, answers = engine.decide_batch(items)
        self._deciding = answers
        # Written even when empty: a resent order's answer must wait for the cycle that
        # created it, and the writer reports completions in order.
        self._write(events, Stage(StageKind.DECISIONS, items, answers, releases, []))
        self._deciding = []

    def _write(self, events: list[Any], stage: Stage) -> None:
        self._in_flight += 1
        self._writer.write(events, stage)

    def _take_written(self) -> None:
        engine = self.engine
        done = self._writer.done
        while done:
            stage, position, error = done.popleft()
            self._in_flight -= 1
            if error is not None:
                if isinstance(error, StoreHalted):
                    self._failed_answers.extend(stage.answers)
                    raise error
                self._failure = self._failure or error
                self._failed_answers.extend(stage.answers)
                continue
            if position is not None:
                engine.committed_position = position
                if engine.on_commit is not None:
                    engine.on_commit(position)
            if stage.kind is StageKind.DECISIONS:
                # Record before release: this cycle's decisions are durable now.
                try:
                    venue_events = engine.venue_step.run(stage.releases)
                except Exception as exc:  # a venue bug: rebuild from the store
                    log.exception("venue step failed")
                    self._writer.hold(exc)  # later cycles were decided on the broken state
                    self._failure = self._failure or exc
                    self._failed_answers.extend(stage.answers)
                    continue
                # Acknowledgements are taken now, in the only thread that may read orders;
                # everything they show is written before or with these venue events.
                outcomes = [o if isinstance(o, Exception) else o.acknowledge()
                            for _, o, _ in stage.answers]
                venue_stage = stage._replace(kind=StageKind.VENUE, outcomes=outcomes)
                if venue_events or self._in_flight:
                    self._write(venue_events, venue_stage)
                else:  # nothing to write and nothing ahead of it: durable already
                    self._acknowledge(venue_stage)
            else:
                self._acknowledge(stage)

    def _acknowledge(self, stage: Stage) -> None:
        engine = self.engine
        engine.batches += 1
        for (future, _, _), outcome in zip(stage.answers, stage.outcomes, strict=True):
            answer(future, outcome)
        engine.after_cycle(stage.items)

    def _recover_from_failure(self) -> None:
        engine = self.engine
        failure, answers = self._failure, self._failed_answers
        assert failure is not None
        self._failure, self._failed_answers = None, []
        self._scheduled_pending = False
        engine.answer_after_failure(answers, failure)
        self._writer.resume()
        try:  # recorded, so an auditor sees the recovery and its cause in the log
            engine.committed_position = engine.journal.append([engine.recovered_event(failure)])
        except StoreHalted:
            raise
        except Exception:
            log.exception("recording the recovery failed; it stays in the process log")

    def _halt(self, exc: StoreHalted) -> None:
        """Stop writing for good: every caller still waiting is told why."""
        engine = self.engine
        engine.halted = f"{type(exc).__name__}: {exc}"
        log.critical("engine halted: %s", engine.halted)
        self._writer.hold(exc)
        halted = EngineHalted(engine.halted)
        for future, _, _ in self._failed_answers + self._deciding:
            answer(future, halted)
        self._failed_answers, self._deciding = [], []
        while self._in_flight:  # what the writer still holds comes back failed
            item = self._queue.get()
            if item is _WRITTEN:
                done = self._writer.done
                while done:
                    stage, _, _ = done.popleft()
                    self._in_flight -= 1
                    for future, _, _ in stage.answers:
                        answer(future, halted)
            elif isinstance(item, tuple):
                self._waiting.append(item)
        while True:
            while self._waiting:
                _, future = self._waiting.popleft()
                answer(future, halted)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, tuple):
                self._waiting.append(item)


