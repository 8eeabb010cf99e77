"""The paper-trading desk: the configured strategies (``Settings.strategies``), each run by
a ``StrategyThread`` against the simulated venue of the serving engine, started with the
server (``start = true``) or by a risk officer (``POST /strategies/{id}/start``)."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

from commands.strategy_runner import (
    CREATED,
    StrategyRunner,
    StrategyThread,
    engine_sender,
)
from domain.strategies import build
from domain.strategy import Strategy
from infrastructure.clock import utc_now_ns
from infrastructure.settings import StrategySpec
from infrastructure.venue_quotes import StoreEvents, VenueQuotes


class UnknownStrategy(KeyError):
    pass


def build_strategy(spec: StrategySpec, tick_sizes: dict[str, Decimal]) -> Strategy:
    params = dict(spec.params)
    if spec.kind == "market_maker":
        params.setdefault("tick_size", tick_sizes[params["symbol"]])
    return build(spec.kind, spec.id, params)


class StrategyDesk:
    def __init__(self, system: Any, specs: list[StrategySpec], poll_s: float = 0.05) -> None:
        self.system = system
        self.specs = {spec.id: spec for spec in specs}
        self.poll_s = poll_s
        self.threads: dict[str, StrategyThread] = {}
        self.runners: dict[str, StrategyRunner] = {}
        self._lock = threading.Lock()  # API requests may start and stop concurrently

    def start_configured(self) -> None:
        for spec in self.specs.values():
            if spec.start:
                self.start(spec.id)

    def start(self, strategy_id: str) -> dict[str, Any]:
        with self._lock:
            spec = self.specs.get(strategy_id)
            if spec is None:
                raise UnknownStrategy(strategy_id)
            current = self.threads.get(strategy_id)
            if current is not None and current.alive:
                return current.runner.describe()
            engine = self.system.engine
            ticks = {s: i.tick_size for s, i in engine.book.instruments.items()}
            strategy = build_strategy(spec, ticks)
            # A fresh runner per start (a stopped or killed strategy starts clean), whose
            # client ids continue the previous run's: never reused within this process.
            runner = StrategyRunner(strategy, actor=spec.user, account_id=spec.account,
                                    send=engine_sender(engine), clock=utc_now_ns)
            previous = self.runners.get(strategy_id)
            if previous is not None:
                runner._sequence = previous._sequence  # ids keep counting: never reused
            # The recorded feed when one plays (its NBBO is the engine's reference too),
            # else the simulated venue's own quotes.
            player = self.system.feed
            feed: Any = (player.subscribe(strategy.symbols) if player is not None
                         else VenueQuotes(engine.venue, strategy.symbols, utc_now_ns))
            events = StoreEvents(self.system.store, self.system.store.head_position)
            thread = StrategyThread(runner, feed, events, self.poll_s)
            self.runners[strategy_id] = runner
            self.threads[strategy_id] = thread
            thread.start()
            return runner.describe()

    def stop(self, strategy_id: str) -> dict[str, Any]:
        with self._lock:
            if strategy_id not in self.specs:
                raise UnknownStrategy(strategy_id)
            thread = self.threads.pop(strategy_id, None)
            if thread is not None:
                thread.stop()
                if self.system.feed is not None:  # its queue would fill up unread
                    self.system.feed.unsubscribe(thread.market_data)
            return self.describe(strategy_id)

    def stop_all(self) -> None:
        for strategy_id in list(self.threads):
            self.stop(strategy_id)

    def describe(self, strategy_id: str) -> dict[str, Any]:
        spec = self.specs[strategy_id]
        runner = self.runners.get(strategy_id)
        if runner is None:
            return {"id": spec.id, "kind": spec.kind, "status": CREATED, "actor": spec.user,
                    "account_id": spec.account, "symbols": [], "orders_sent": 0, "fills": 0,
                    "positions": {}, "rejections": {}, "errors": []}
        return {"kind": spec.kind, **runner.describe()}

    def list(self) -> list[dict[str, Any]]:
        return [self.describe(strategy_id) for strategy_id in self.specs]
