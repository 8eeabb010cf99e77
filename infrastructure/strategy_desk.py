"""The paper-trading desk: the configured strategies (``Settings.strategies``), each run by
a ``StrategyThread`` against the simulated venue of the serving engine, started with the
server (``start = true``) or by a risk officer (``POST /strategies/{id}/start``).

Every run is a record of the log (15c3-5 supervision: strategies are an order entry point):
``StrategyStarted`` (who, the run number, kind, account and parameters) is journaled through
the engine *before* the strategy's thread starts, and ``StrategyStopped`` (why, and what the
runner counted) once when the run ends: a user's stop, a kill switch, the strategy's own
error, or the server's shutdown. The engine follows the stop, in the same cycle, with a
cancel of every live order of the strategy's tag on its account (no quote rests on the
venue with nobody managing it). The strategy's thread has ended before the stop is sent,
so no order of the run can follow it. The run number is the last recorded run + 1, read from the
book of record (rebuilt from the log), so it keeps counting across restarts. A run that the
log shows open when the strategy starts again (its process ended without recording the
stop: a crash, an engine that could no longer write) is first recorded as stopped, with no
counts; that stop cancels the orders the dead run left, which the engine re-released to the
venue at its recovery.

Client order ids are ``<strategy_id>.r<run>-<n>``, ``n`` counting the run's orders from 1.
Read from the right, ``n`` and ``run`` are digits, so an id names one strategy, run and order:
a new run's orders are never taken by the engine's idempotency (account, client order id)
for resends of an earlier run's.
"""

from __future__ import annotations

import logging
import threading
from decimal import Decimal
from typing import Any

from commands.models import Command, StartStrategy, StopStrategy
from commands.outcomes import OutcomeKind
from commands.strategy_runner import (
    CREATED,
    FAILED,
    KILLED,
    StrategyRunner,
    StrategyThread,
    engine_sender,
)
from domain.strategies import build
from domain.strategy import Strategy
from domain.values import Source
from infrastructure.clock import utc_now_ns
from infrastructure.settings import StrategySpec
from infrastructure.venue_quotes import StoreEvents, VenueQuotes

log = logging.getLogger(__name__)

SYSTEM = "system"
REASON_MAX = 200  # commands.models.Reason
SHUTDOWN = "server shutdown"
UNRECORDED = "not stopped by the process that ran it (found open at the next start)"


class UnknownStrategy(KeyError):
    pass


class StrategyRefused(Exception):
    """The engine did not record the start or stop: refused by the rules (the reason says
    why), or ``unavailable`` (not running, busy, halted). Nothing ran."""

    def __init__(self, reason: str, unavailable: bool = False) -> None:
        super().__init__(reason)
        self.unavailable = unavailable


def strategy_params(spec: StrategySpec, tick_sizes: dict[str, Decimal]) -> dict[str, Any]:
    params = dict(spec.params)
    if spec.kind == "market_maker":
        params.setdefault("tick_size", tick_sizes[params["symbol"]])
    return params


def build_strategy(spec: StrategySpec, tick_sizes: dict[str, Decimal]) -> Strategy:
    return build(spec.kind, spec.id, strategy_params(spec, tick_sizes))


def client_id_prefix(strategy_id: str, run: int) -> str:
    return f"{strategy_id}.r{run}"


def _reason(text: str) -> str:
    return text if len(text) <= REASON_MAX else text[: REASON_MAX - 3] + "..."


class StrategyDesk:
    def __init__(self, system: Any, specs: list[StrategySpec], poll_s: float = 0.05,
                 timeout_s: float = 10.0) -> None:
        self.system = system
        self.specs = {spec.id: spec for spec in specs}
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.threads: dict[str, StrategyThread] = {}
        self.runners: dict[str, StrategyRunner] = {}
        self.runs: dict[str, int] = {}  # strategy id -> the run this process opened last
        self._lock = threading.Lock()  # API requests may start and stop concurrently
        # Runs opened here whose stop is not recorded yet; guarded by its own lock, taken
        # by a strategy's thread that ends by itself while ``stop`` may hold ``_lock``.
        self._open: set[tuple[str, int]] = set()
        self._record_lock = threading.Lock()

    def start_configured(self) -> None:
        for spec in self.specs.values():
            if spec.start:
                try:
                    self.start(spec.id, SYSTEM, Source.SYSTEM,
                               "configured to start with the server")
                except StrategyRefused as exc:
                    log.error("strategy %s not started: %s", spec.id, exc)

    def start(self, strategy_id: str, actor: str = SYSTEM, source: str = Source.SYSTEM,
              reason: str | None = None) -> dict[str, Any]:
        with self._lock:
            spec = self.specs.get(strategy_id)
            if spec is None:
                raise UnknownStrategy(strategy_id)
            current = self.threads.get(strategy_id)
            if current is not None and current.alive:
                return self.describe(strategy_id)
            engine = self.system.engine
            ticks = {s: i.tick_size for s, i in engine.book.instruments.items()}
            params = strategy_params(spec, ticks)
            strategy = build(spec.kind, spec.id, params)  # a bad configuration records nothing
            last, running, _ = engine.book.gov.strategies.get(strategy_id, (0, False, ""))
            if running:
                previous = self.runners.get(strategy_id)
                counted = previous is not None and self.runs.get(strategy_id) == last
                self._record_stop(strategy_id, last, SYSTEM, Source.SYSTEM, UNRECORDED,
                                  previous.orders_sent if counted and previous else None,
                                  previous.fills if counted and previous else None,
                                  opened_here=False)
            run = last + 1
            self._record(StartStrategy(
                strategy_id=strategy_id, run=run, kind=spec.kind, account_id=spec.account,
                params={k: str(v) for k, v in params.items()}, actor=actor, source=source,
                reason=_reason(reason or f"started by {actor}")))
            with self._record_lock:
                self._open.add((strategy_id, run))
            runner = StrategyRunner(strategy, actor=spec.user, account_id=spec.account,
                                    send=engine_sender(engine), clock=utc_now_ns,
                                    client_id_prefix=client_id_prefix(strategy_id, run))
            # The recorded feed when one plays (its NBBO is the engine's reference too),
            # else the simulated venue's own quotes.
            player = self.system.feed
            feed: Any = (player.subscribe(strategy.symbols) if player is not None
                         else VenueQuotes(engine.venue, strategy.symbols, utc_now_ns))
            events = StoreEvents(self.system.store, self.system.store.head_position)
            thread = StrategyThread(runner, feed, events, self.poll_s,
                                    on_exit=lambda r: self._ended(strategy_id, run, r))
            self.runners[strategy_id] = runner
            self.runs[strategy_id] = run
            self.threads[strategy_id] = thread
            thread.start()
            return self.describe(strategy_id)

    def stop(self, strategy_id: str, actor: str = SYSTEM, source: str = Source.SYSTEM,
             reason: str | None = None) -> dict[str, Any]:
        with self._lock:
            if strategy_id not in self.specs:
                raise UnknownStrategy(strategy_id)
            thread = self.threads.pop(strategy_id, None)
            if thread is not None:
                thread.stop()
                if self.system.feed is not None:  # its queue would fill up unread
                    self.system.feed.unsubscribe(thread.market_data)
                runner = thread.runner
                try:
                    self._record_stop(strategy_id, self.runs[strategy_id], actor, source,
                                      reason or f"stopped by {actor}", runner.orders_sent,
                                      runner.fills)
                except StrategyRefused as exc:
                    # The strategy is stopped all the same; the next start records this run
                    # as ended unrecorded (its run number comes from the log).
                    log.warning("stop of strategy %s not recorded: %s", strategy_id, exc)
                    runner.errors.append(f"stop not recorded: {exc}")
            return self.describe(strategy_id)

    def stop_all(self, reason: str = SHUTDOWN) -> None:
        for strategy_id in list(self.threads):
            self.stop(strategy_id, SYSTEM, Source.SYSTEM, reason)

    # ------------------------------------------------------------------ recording

    def _record(self, command: Command) -> None:
        try:
            outcome = self.system.engine.submit(command).result(timeout=self.timeout_s)
        except Exception as exc:  # EngineBusy, EngineHalted, a timeout
            raise StrategyRefused(f"{type(exc).__name__}: {exc}", unavailable=True) from exc
        if outcome.kind == OutcomeKind.REFUSED:
            raise StrategyRefused((outcome.detail or {}).get("reason", "refused"))

    def _record_stop(self, strategy_id: str, run: int, actor: str, source: str, reason: str,
                     orders_sent: int | None, fills: int | None,
                     opened_here: bool = True) -> None:
        with self._record_lock:
            if opened_here and (strategy_id, run) not in self._open:
                return  # recorded already (the run ended by itself before this stop)
            self._record(StopStrategy(strategy_id=strategy_id, run=run, actor=actor,
                                      source=source, reason=_reason(reason),
                                      orders_sent=orders_sent, fills=fills))
            self._open.discard((strategy_id, run))

    def _ended(self, strategy_id: str, run: int, runner: StrategyRunner) -> None:
        """A run that ended by itself (its thread): a kill switch or the strategy's error."""
        last_error = runner.errors[-1] if runner.errors else runner.status
        if runner.status == KILLED:
            reason = last_error  # "kill switch tripped on <scope>"
        elif runner.status == FAILED:
            reason = f"error: {last_error}"
        else:
            reason = runner.status
        try:
            self._record_stop(strategy_id, run, SYSTEM, Source.SYSTEM, reason,
                              runner.orders_sent, runner.fills)
        except StrategyRefused as exc:
            log.warning("end of strategy %s run %d not recorded: %s", strategy_id, run, exc)

    # ------------------------------------------------------------------ reading

    def describe(self, strategy_id: str) -> dict[str, Any]:
        spec = self.specs[strategy_id]
        runner = self.runners.get(strategy_id)
        if runner is None:
            last = self.system.engine.book.gov.strategies.get(strategy_id, (0,))[0]
            return {"id": spec.id, "kind": spec.kind, "status": CREATED, "run": last,
                    "actor": spec.user, "account_id": spec.account, "symbols": [],
                    "orders_sent": 0, "fills": 0, "positions": {}, "rejections": {},
                    "errors": []}
        return {"kind": spec.kind, "run": self.runs[strategy_id], **runner.describe()}

    def list(self) -> list[dict[str, Any]]:
        return [self.describe(strategy_id) for strategy_id in self.specs]
