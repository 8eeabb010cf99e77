"""Ordered journal appends on their own thread, so the engine decides while the store commits.

ARCHITECTURE rule 3: concurrency comes from pipelining I/O, never from threads sharing the
book of record. The engine thread hands over each batch of events in the order it produced
them; this thread appends them in exactly that order, one transaction each, and reports
every completion back in the same order. Batches that queue up while a transaction is in
progress are written together in the next one (a group commit of group commits: under
load, fewer and larger transactions). After a failed append it writes nothing more —
later batches were decided on state that includes the failed one — until the engine has
rebuilt itself from the store and calls ``resume``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from commands.ports import Journal

log = logging.getLogger(__name__)

_STOP = object()
MAX_EVENTS_PER_TRANSACTION = 20_000


class Written(NamedTuple):
    stage: Any  # what the engine attached to the batch
    position: int | None  # log position of its last event; None when it had no events
    error: BaseException | None


class JournalWriter:
    def __init__(self, journal: Journal, wake: Callable[[], None]) -> None:
        self.journal = journal
        self.wake = wake
        self.done: deque[Written] = deque()  # completions, in submission order
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="marketlog-journal", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._jobs.put(_STOP)
        self._thread.join(timeout)

    def write(self, events: Sequence[Any], stage: Any) -> None:
        self._jobs.put((events, stage))

    def hold(self, reason: BaseException) -> None:
        """Write nothing more until ``resume`` (the engine's state went wrong on its side)."""
        self._failure = self._failure or reason

    def resume(self) -> None:
        """Write again (the engine has rebuilt itself from the store; nothing is queued)."""
        self._failure = None

    def _run(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is _STOP:
                return
            batch = [job]
            stop = False
            count = len(job[0])
            while count < MAX_EVENTS_PER_TRANSACTION:
                try:
                    job = jobs.get_nowait()
                except queue.Empty:
                    break
                if job is _STOP:
                    stop = True
                    break
                batch.append(job)
                count += len(job[0])
            self._write_together(batch)
            if stop:
                return

    def _write_together(self, batch: list[tuple[Sequence[Any], Any]]) -> None:
        if self._failure is not None:
            self.done.extend(Written(stage, None, self._failure) for _, stage in batch)
            self.wake()
            return
        events = [event for job_events, _ in batch for event in job_events]
        try:
            last = self.journal.append(events) if events else None
        except Exception as exc:
            log.exception("journal append failed; holding later batches back")
            self._failure = exc
            self.done.extend(Written(stage, None, exc) for _, stage in batch)
            self.wake()
            return
        # One transaction gives contiguous positions (the store has a single writer and
        # PostgreSQL's EXCLUSIVE lock), so each batch's last position follows from the end.
        after = len(events)
        for job_events, stage in batch:
            after -= len(job_events)
            position = None if not job_events or last is None else last - after
            self.done.append(Written(stage, position, None))
        self.wake()
