"""A recorded market-data file played as a live feed under ``marketlog serve`` (issue 9,
paper trading): the feed handlers' ticks, re-stamped to the wall clock and paced as they
were recorded (``speed`` times faster), go to the market-data board (the reference prices
of the price collar, LULD and the Rule 201 bid test) and to the strategies that trade them.

Re-stamping is what makes a recording usable live: the engine judges a reference's age by
its own clock (``stale_reference``), so a 2010 ITCH day must look like today's feed. While
the file plays, a heartbeat every second keeps a quiet symbol's reference fresh; when it
ends the heartbeats stop, and after the configured maximum age orders are refused
``stale_reference``, as with a real feed that went silent.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from domain.market_data import Quote, Trade
from domain.nbbo_reference import MarketDataBoard
from infrastructure.clock import utc_now_ns

log = logging.getLogger(__name__)

HEARTBEAT_NS = 1_000_000_000
SECOND_NS = 1_000_000_000


class FeedQueue:
    """One subscriber's ticks (a strategy's symbols), drained by its thread with ``poll``."""

    def __init__(self, symbols: Iterable[str]) -> None:
        self.symbols = frozenset(symbols)
        self._ticks: deque[Quote | Trade] = deque()

    def push(self, tick: Quote | Trade) -> None:
        self._ticks.append(tick)  # deque appends and pops are atomic: no lock

    def poll(self) -> Sequence[Quote | Trade]:
        ticks = []
        while self._ticks:
            ticks.append(self._ticks.popleft())
        return ticks


class FeedPlayer:
    def __init__(self, ticks: Iterable[Quote | Trade], board: MarketDataBoard,
                 speed: float = 1.0, clock: Callable[[], int] = utc_now_ns) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.ticks = ticks
        self.board = board
        self.speed = speed
        self.clock = clock
        self.played = 0
        self.finished = False
        self.error: str | None = None
        self._subscribers: list[FeedQueue] = []
        self._venues: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def subscribe(self, symbols: Iterable[str]) -> FeedQueue:
        queue = FeedQueue(symbols)
        self._subscribers = [*self._subscribers, queue]  # replaced whole: the player iterates
        return queue

    def unsubscribe(self, queue: FeedQueue) -> None:
        self._subscribers = [q for q in self._subscribers if q is not queue]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="feed-player")
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def describe(self) -> dict[str, object]:
        return {"played": self.played, "finished": self.finished, "error": self.error}

    def _run(self) -> None:
        try:
            self._play()
        except Exception as exc:  # a corrupt file: the feed stops, named; the engine serves on
            log.exception("market-data feed stopped")
            self.error = f"{type(exc).__name__}: {exc}"
        self.finished = True

    def _play(self) -> None:
        first_ns: int | None = None
        start_ns = 0
        for tick in self.ticks:
            if first_ns is None:
                first_ns, start_ns = tick.ts_ns, self.clock()
            due = start_ns + int((tick.ts_ns - first_ns) / self.speed)
            if not self._wait_until(due):
                return
            live = tick._replace(ts_ns=max(due, self.clock()))
            self._venues.add(live.venue)
            self.board.on_event(live)
            for queue in self._subscribers:
                if live.symbol in queue.symbols:
                    queue.push(live)
            self.played += 1

    def _wait_until(self, due_ns: int) -> bool:
        """Sleep until ``due_ns`` with a heartbeat each second; False when stopped."""
        while True:
            now = self.clock()
            if now >= due_ns:
                return not self._stop.is_set()
            for venue in self._venues:
                self.board.heartbeat(venue, now)
            wait_ns = min(due_ns - now, HEARTBEAT_NS)
            if self._stop.wait(wait_ns / SECOND_NS):
                return False
