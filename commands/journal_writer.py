"""Ordered journal appends on their own thread, so the engine decides while the store commits.

ARCHITECTURE rule 3: concurrency comes from pipelining I/O, never from threads sharing the
book of record. The engine thread hands over each batch of events in the order it produced
them; this thread appends them in exactly that order, one transaction each, and reports
every completion back in the same order. After a failed append it writes nothing more —
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

    def resume(self) -> None:
        """Write again (the engine has rebuilt itself from the store; nothing is queued)."""
        self._failure = None

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            events, stage = job
            if self._failure is not None:
                self.done.append(Written(stage, None, self._failure))
            else:
                try:
                    position = self.journal.append(events) if events else None
                    self.done.append(Written(stage, position, None))
                except Exception as exc:
                    log.exception("journal append failed; holding later batches back")
                    self._failure = exc
                    self.done.append(Written(stage, None, exc))
            self.wake()
