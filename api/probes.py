"""Questions to the databases that answer within a deadline, however the databases behave.

``/health`` and ``/audit/verify`` used to ask the event store directly and hung for as long
as it was away: its driver waits for a connection and retries (minutes, by design, so the
engine rides out a failover). Here each question runs in a background thread and the caller
waits only until its deadline; without an answer by then the database counts as down.

Each question is single-flight: while one call is pending, every caller waits on that same
call instead of starting another, so an outage ties up one thread per question rather than
one per request, and repeated ``/audit/verify`` calls do not re-hash the log in parallel.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from fastapi import Response

from api.errors import Unavailable, transient
from api.read_your_writes import caught_up
from infrastructure.bootstrap import System

T = TypeVar("T")

DEADLINE_S = 0.9  # /health and /audit/verify answer within a second during an outage


class SingleFlight(Generic[T]):
    """Runs ``call`` in a daemon thread, at most one at a time; callers share its future.

    A call pending longer than ``abandon_after_s`` is given up (its thread is left to finish
    on its own) and the next caller starts a fresh one: a call that never returns, say on
    a connection whose packets vanish, must not answer for the probe for ever.
    """

    def __init__(self, name: str, call: Callable[[], T], abandon_after_s: float) -> None:
        self.name = name
        self._call = call
        self._abandon_after_s = abandon_after_s
        self._lock = threading.Lock()
        self._current: Future[T] | None = None
        self._started = 0.0
        self._last_ok_started = -1.0

    def future(self) -> Future[T]:
        with self._lock:
            now = time.monotonic()
            current = self._current
            if (current is not None and not current.done()
                    and now - self._started < self._abandon_after_s):
                return current
            future: Future[T] = Future()
            self._current, self._started = future, now
        threading.Thread(target=self._run, args=(future, now), name=f"probe-{self.name}",
                         daemon=True).start()
        return future

    def succeeded_since(self, moment: float) -> bool:
        """Whether a call started at or after ``moment`` (``time.monotonic()``) succeeded."""
        with self._lock:
            return self._last_ok_started >= moment

    def pending_for(self) -> float:
        """Seconds the current call has been running (0 when none is)."""
        with self._lock:
            if self._current is None or self._current.done():
                return 0.0
            return time.monotonic() - self._started

    def _run(self, future: Future[T], started: float) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = self._call()
        except BaseException as exc:  # handed to the caller, who decides what it means
            future.set_exception(exc)
            return
        with self._lock:
            self._last_ok_started = max(self._last_ok_started, started)
        future.set_result(result)


async def settled(futures: list[Future[Any]], timeout: float) -> None:
    """Wait, without holding a thread, until one of ``futures`` is done or ``timeout`` passes.

    The routes that wait on probes are ``async`` for this: a thread pool filled by reads
    stuck on a database must not keep ``/health`` from answering.
    """
    if any(f.done() for f in futures):
        return
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()

    def wake(_future: Future[Any]) -> None:
        # Runs in the probe's thread, possibly after this request (or the loop) is gone.
        with suppress(RuntimeError):
            loop.call_soon_threadsafe(woken.set)

    for f in futures:
        f.add_done_callback(wake)
    with suppress(TimeoutError):
        await asyncio.wait_for(woken.wait(), timeout)


class Breaker:
    """Reads fail fast (503) while the read models are known to be down.

    Without it every read during an outage waits out the connect timeout on a pool thread;
    a burst of them fills the pool. Once a read fails to reach the database, reads answer
    503 at once until a probe started after that failure (single-flight, in the background,
    or the one ``/health`` asks) reaches it again.
    """

    def __init__(self, probe: SingleFlight[bool]) -> None:
        self._probe = probe
        self._lock = threading.Lock()
        self._tripped: float | None = None

    def trip(self) -> None:
        with self._lock:
            self._tripped = time.monotonic()
        self._probe.future()

    def check(self) -> None:
        with self._lock:
            tripped = self._tripped
        if tripped is None:
            return
        if self._probe.succeeded_since(tripped):
            with self._lock:
                if self._tripped == tripped:
                    self._tripped = None
            return
        self._probe.future()  # someone keeps asking, one at a time
        raise Unavailable("the read models", "their database did not answer the last attempt")


@dataclass
class Probes:
    """The questions ``/health`` and ``/audit/verify`` ask, one set per running app."""

    store_head: SingleFlight[int]
    read_models: SingleFlight[bool]
    verify: SingleFlight[Any]
    reads: Breaker = field(init=False)

    def __post_init__(self) -> None:
        self.reads = Breaker(self.read_models)

    @classmethod
    def of(cls, system: System) -> Probes:
        return cls(
            SingleFlight("store", lambda: _head(system), abandon_after_s=60.0),
            SingleFlight("read-models", lambda: _ping(system.read_models), abandon_after_s=60.0),
            # Incremental: only records after the last verified one are hashed again (the CLI's
            # `marketlog verify` does the full walk). The first call may take a while.
            SingleFlight("verify", lambda: system.store.verify(incremental=True),
                         abandon_after_s=600.0),
        )


def _head(system: System) -> int:
    return system.store.recorder.max_notification_id() or 0


def _ping(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    return True


_DOWN = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)


@contextmanager
def read_models(system: System, probes: Probes, response: Response) -> Iterator[sa.Connection]:
    """A read-model connection for a query, once the views include every acknowledged event.

    503 at once while the read models are known down (``Breaker``); a read that finds them
    down trips the breaker for the reads after it.
    """
    probes.reads.check()
    caught_up(system, response)
    try:
        conn = system.read_models.connect()
    except _DOWN as exc:
        if transient(exc):
            probes.reads.trip()
        raise
    with conn:
        try:
            yield conn
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                probes.reads.trip()
            raise


async def outcome(flight: SingleFlight[Any], future: Future[Any], deadline: float,
                  deadline_s: float = DEADLINE_S) -> tuple[bool, Any, str | None]:
    """(ok, value, error) of ``future`` by ``deadline`` (a ``time.monotonic()`` instant)."""
    await settled([future], deadline - time.monotonic())
    if not future.done():
        return False, None, _silent(flight, deadline_s)
    if (exc := future.exception()) is not None:
        return False, None, _reason(exc)
    return True, future.result(), None


async def verified(probes: Probes, deadline_s: float = DEADLINE_S) -> Any:
    """The store's chain check; Unavailable as soon as the store stops answering.

    The verification may rightly take longer than the deadline on a long log, so while it
    runs the store is asked for its head every ``deadline_s``: as long as that answers, the
    wait goes on; the first time it does not, the caller gets a 503.
    """
    checking = probes.verify.future()
    while True:
        alive = probes.store_head.future()
        await settled([checking, alive], deadline_s)
        if checking.done():
            return checking.result()
        if not alive.done():
            raise Unavailable("the event store", _silent(probes.store_head, deadline_s))
        if (exc := alive.exception()) is not None:
            raise Unavailable("the event store", _reason(exc))
        await settled([checking], deadline_s)
        if checking.done():
            return checking.result()


def _silent(flight: SingleFlight[Any], deadline_s: float) -> str:
    return f"no answer within {deadline_s} s (asked {flight.pending_for():.1f} s ago)"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__
