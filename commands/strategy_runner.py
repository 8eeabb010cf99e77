"""The live strategy runner: ``domain.strategy.StrategyContext`` over the engine.

A strategy's intents (``submit``/``cancel``/``replace``) become ``SubmitOrder``/
``CancelOrder``/``ReplaceOrder`` commands tagged ``strategy=<strategy_id>``, acting as the
strategy's configured user with ``source=strategy``: they pass every 15c3-5 control like an
order from REST, and the per-strategy throttle and kill switch apply to them. Client order
ids are ``<prefix>-<n>``, the prefix by default the strategy id: unique per runner and
deterministic for a run (the paper-trading desk's prefix adds the recorded run number, see
``infrastructure.strategy_desk``).

``StrategyRunner`` is the synchronous core: it calls the strategy (one callback at a time),
sends what the callback asked for once it returns (``send``: ``Engine.execute`` in the
caller's thread, or ``engine_sender`` through the engine thread), and turns outcomes and the
events of the strategy's orders (read from the store's log) into ``on_order`` updates.
Without ``send`` it runs in batch mode: the caller ``take``s what the strategy asked for,
sends it with other runners' commands in one engine cycle and ``deliver``s the outcomes
(the demo's crowd of traders, ``commands.demo_runner``).
``StrategyThread`` drives a runner from a market-data source and a timer in a thread of
its own (paper trading under ``marketlog serve``).

A strategy that raises is stopped and its error kept (log and ``status``); the engine never
sees the exception. A kill switch on ``strategy:<id>``, its account or the firm stops the
strategy (``stopped by kill switch``); the engine itself cancels its resting orders (and
does so for a recorded stop of a run too, ``infrastructure.strategy_desk``).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

from commands.models import CancelOrder, Command, ReplaceOrder, SubmitOrder
from commands.outcomes import Outcome
from domain.market_data import Nbbo, Quote, Trade
from domain.strategy import OrderUpdate, Strategy
from domain.values import OrderStatus, OrderType, Source

log = logging.getLogger(__name__)

Send = Callable[[list[Command]], list[Outcome | BaseException]]

CREATED, RUNNING, STOPPED = "created", "running", "stopped"
KILLED, FAILED = "stopped by kill switch", "failed"
TERMINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED})
# A callback may ask for orders whose outcomes call it again (on_order): bounded, so a
# strategy that answers every rejection with a new order cannot spin the runner forever.
MAX_ROUNDS = 50


class MarketData(Protocol):
    """Where quotes and trades come from (a feed handler, the venue's own book)."""

    def poll(self) -> Sequence[Quote | Trade]: ...


class OrderEvents(Protocol):
    """The events journaled since the last poll (the store's log, in log order)."""

    def poll(self) -> Sequence[Any]: ...


@dataclass
class _Tracked:
    client_order_id: str
    symbol: str
    side: str
    quantity: int
    limit_price: Decimal | None
    order_id: UUID | None = None
    status: str = OrderStatus.SUBMITTED
    filled: int = 0
    notional: Decimal = Decimal(0)
    version: int = 0
    reject_control: str | None = None

    def update(self, ts_ns: int, last_qty: int = 0,
               last_price: Decimal | None = None) -> OrderUpdate:
        return OrderUpdate(self.client_order_id, None if self.order_id is None
                           else str(self.order_id), self.symbol, self.side, self.status,
                           self.quantity, self.filled, last_qty, last_price, self.limit_price,
                           self.reject_control, ts_ns)


def engine_sender(engine: Any, timeout_s: float = 30.0) -> Send:
    """Send through the engine thread (``Engine.submit``), waiting for each durable outcome."""

    def send(commands: list[Command]) -> list[Outcome | BaseException]:
        results: list[Outcome | BaseException] = []
        futures = []
        for command in commands:
            try:
                futures.append(engine.submit(command))
            except Exception as exc:  # EngineBusy, EngineHalted: the command was not taken
                futures.append(exc)
        for future in futures:
            if isinstance(future, BaseException):
                results.append(future)
                continue
            try:
                results.append(future.result(timeout=timeout_s))
            except Exception as exc:
                results.append(exc)
        return results

    return send


def consolidate(symbol: str, quotes: Iterable[Quote]) -> Nbbo:
    """The best bid and offer across venues' quotes (ties: the earlier venue)."""
    bid: Quote | None = None
    ask: Quote | None = None
    ts = 0
    for q in quotes:
        ts = max(ts, q.ts_ns)
        if q.bid is not None and (bid is None or q.bid > bid.bid):  # type: ignore[operator]
            bid = q
        if q.ask is not None and (ask is None or q.ask < ask.ask):  # type: ignore[operator]
            ask = q
    return Nbbo(symbol, None if bid is None else bid.bid, 0 if bid is None else bid.bid_size,
                None if bid is None else bid.venue, None if ask is None else ask.ask,
                0 if ask is None else ask.ask_size, None if ask is None else ask.venue, ts)


class StrategyRunner:
    """Runs one strategy: implements its context, sends its orders, follows their events."""

    def __init__(self, strategy: Strategy, *, actor: str, account_id: str, send: Send | None,
                 clock: Callable[[], int], source: Source = Source.STRATEGY,
                 client_id_prefix: str | None = None) -> None:
        self.strategy = strategy
        self.actor = actor
        self.account_id = account_id
        self.send = send  # None: batch mode (take/deliver)
        self.clock = clock
        self.source = source
        self.client_id_prefix = client_id_prefix or strategy.strategy_id
        self.status = CREATED
        self.errors: list[str] = []
        self.orders_sent = 0
        self.fills = 0
        self.rejections: Counter[str] = Counter()  # control -> count
        self._sequence = 0
        self._now_ns = 0
        self._orders: dict[str, _Tracked] = {}
        self._by_order_id: dict[UUID, _Tracked] = {}
        self._positions: Counter[str] = Counter()
        self._quotes: dict[str, dict[str, Quote]] = {}  # symbol -> venue -> quote
        self._nbbo: dict[str, Nbbo] = {}
        self._intents: list[tuple[Command, _Tracked]] = []
        self._taken: list[tuple[Command, _Tracked]] = []  # batch mode: sent, not answered
        self._next_timer_ns = 0

    # ------------------------------------------------------------ the context (strategy side)

    @property
    def strategy_id(self) -> str:
        return self.strategy.strategy_id

    @property
    def now_ns(self) -> int:
        return self._now_ns

    def submit(self, symbol: str, side: str, quantity: int, price: Decimal | None = None,
               time_in_force: str = "day") -> str:
        return self._submit(self.account_id, symbol, side, quantity, price, time_in_force)

    def _submit(self, account_id: str, symbol: str, side: str, quantity: int,
                price: Decimal | None, time_in_force: str) -> str:
        self._sequence += 1
        client_order_id = f"{self.client_id_prefix}-{self._sequence}"
        # Built (validated) now: a malformed order raises in the strategy's own callback.
        command = SubmitOrder(
            client_order_id=client_order_id, account_id=account_id, symbol=symbol,
            side=side, quantity=quantity,  # type: ignore[arg-type]
            order_type=OrderType.MARKET if price is None else OrderType.LIMIT,
            limit_price=price, time_in_force=time_in_force,  # type: ignore[arg-type]
            strategy=self.strategy_id, actor=self.actor, source=self.source)
        tracked = _Tracked(client_order_id, symbol, side, quantity, price)
        self._orders[client_order_id] = tracked
        self._intents.append((command, tracked))
        return client_order_id

    def cancel(self, client_order_id: str) -> None:
        tracked = self._live(client_order_id)
        if tracked is not None and tracked.order_id is not None:
            self._intents.append((CancelOrder(order_id=tracked.order_id, actor=self.actor,
                                              source=self.source), tracked))

    def replace(self, client_order_id: str, quantity: int | None = None,
                price: Decimal | None = None) -> None:
        tracked = self._live(client_order_id)
        if tracked is not None and tracked.order_id is not None:
            self._intents.append((ReplaceOrder(order_id=tracked.order_id, quantity=quantity,
                                               limit_price=price, actor=self.actor,
                                               source=self.source), tracked))

    def position(self, symbol: str) -> int:
        return self._positions[symbol]

    def open_orders(self, symbol: str | None = None) -> list[OrderUpdate]:
        return [t.update(self._now_ns) for t in self._orders.values()
                if t.status not in TERMINAL and (symbol is None or t.symbol == symbol)]

    def nbbo(self, symbol: str) -> Nbbo | None:
        return self._nbbo.get(symbol)

    def _live(self, client_order_id: str) -> _Tracked | None:
        tracked = self._orders.get(client_order_id)
        return None if tracked is None or tracked.status in TERMINAL else tracked

    # ------------------------------------------------------------ driving (runner side)

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    @property
    def positions(self) -> dict[str, int]:
        return {s: q for s, q in self._positions.items() if q}

    def start(self) -> None:
        if self.status == RUNNING:
            return
        self.status = RUNNING
        self._now_ns = self.clock()
        self._next_timer_ns = self._now_ns + self.strategy.timer_interval_ns
        self._dispatch(self.strategy.on_start)

    def stop(self, status: str = STOPPED, reason: str | None = None) -> None:
        """Stop calling the strategy. Its live orders are the engine's to cancel: the desk's
        recorded stop (``StrategyStopped``) or a kill switch cancels them."""
        if self.status != RUNNING:
            return
        if reason:
            self.errors.append(reason)
        try:
            self.strategy.on_stop(self)
        except Exception as exc:
            self.errors.append(f"on_stop: {type(exc).__name__}: {exc}")
        self._intents.clear()
        self.status = status
        log.info("strategy %s %s%s", self.strategy_id, status, f": {reason}" if reason else "")

    def on_quote(self, quote: Quote) -> None:
        venues = self._quotes.setdefault(quote.symbol, {})
        venues[quote.venue] = quote
        nbbo = self._nbbo[quote.symbol] = consolidate(quote.symbol, venues.values())
        if quote.symbol in self.strategy.symbols:
            self._now_ns = quote.ts_ns
            self._dispatch(self.strategy.on_quote, quote, nbbo)

    def on_trade(self, trade: Trade) -> None:
        if trade.symbol in self.strategy.symbols:
            self._now_ns = trade.ts_ns
            self._dispatch(self.strategy.on_trade, trade)

    def on_timer(self, now_ns: int) -> None:
        interval = self.strategy.timer_interval_ns
        if interval <= 0 or now_ns < self._next_timer_ns:
            return
        self._next_timer_ns = now_ns + interval
        self._now_ns = now_ns
        self._dispatch(self.strategy.on_timer, now_ns)

    def on_events(self, events: Iterable[Any]) -> None:
        """The log's events since the last call: the strategy's own orders' updates, and any
        kill switch that covers it."""
        updates: list[OrderUpdate] = []
        for event in events:
            name = type(event).__name__
            if name == "KillSwitchTripped":
                if event.scope in (f"strategy:{self.strategy_id}", "firm",
                                   f"account:{self.account_id}"):
                    self._killed(event.scope)
                continue
            tracked = self._by_order_id.get(getattr(event, "order_id", None))  # type: ignore[arg-type]
            if tracked is None or event.version <= tracked.version:
                continue  # not ours, or already known from an outcome
            tracked.version = event.version
            update = self._apply_event(tracked, name, event)
            if update is not None:
                updates.append(update)
        for update in updates:
            self._dispatch(self.strategy.on_order, update)

    def _apply_event(self, t: _Tracked, name: str, event: Any) -> OrderUpdate | None:
        ts = event.ts_ns
        if name == "OrderFilled":
            qty, price = event.fill_quantity, event.fill_price
            if event.cumulative_quantity <= t.filled:
                return None
            t.notional += qty * price
            self._filled(t, event.cumulative_quantity - t.filled)
            t.status = (OrderStatus.FILLED if event.leaves_quantity == 0
                        else OrderStatus.PARTIALLY_FILLED)
            return t.update(ts, qty, price)
        if name == "OrderCanceled":
            t.status = OrderStatus.CANCELED
        elif name == "OrderReplaced":
            t.quantity, t.limit_price = event.quantity, event.limit_price
            t.status = OrderStatus.PARTIALLY_FILLED if t.filled else OrderStatus.ACCEPTED
        elif name == "CancelRequested":
            t.status = OrderStatus.PENDING_CANCEL
        elif name == "ReplaceRequested":
            t.status = OrderStatus.PENDING_REPLACE
        elif name in ("ReplaceRejected", "CancelRejected"):
            t.reject_control = getattr(event, "control", None) or event.reason
            t.status = OrderStatus.PARTIALLY_FILLED if t.filled else OrderStatus.ACCEPTED
            if getattr(event, "status", None) in TERMINAL:
                t.status = event.status
        else:
            return None
        return t.update(ts)

    def _filled(self, t: _Tracked, quantity: int) -> None:
        t.filled += quantity
        self.fills += 1
        self._positions[t.symbol] += quantity if t.side == "buy" else -quantity

    def _killed(self, scope: str) -> None:
        if self.status == RUNNING:
            self.stop(KILLED, f"kill switch tripped on {scope}")

    # ------------------------------------------------------------ calling the strategy

    def _dispatch(self, callback: Callable[..., None], *args: Any) -> None:
        """Call the strategy, then send what it asked for; outcomes call ``on_order`` in turn
        (all in this thread, one callback at a time)."""
        if self.status != RUNNING:
            return
        pending: list[OrderUpdate] = []
        if not self._call(callback, *args) or self.send is None:
            return  # batch mode: the caller takes the intents
        for _ in range(MAX_ROUNDS):
            pending.extend(self._flush())
            if not pending or self.status != RUNNING:
                return
            update = pending.pop(0)
            if not self._call(self.strategy.on_order, update):
                return
        self.stop(FAILED, f"more than {MAX_ROUNDS} rounds of orders from one callback")

    def _call(self, callback: Callable[..., None], *args: Any) -> bool:
        try:
            callback(self, *args)
            return True
        except Exception as exc:
            log.exception("strategy %s raised in %s", self.strategy_id,
                          getattr(callback, "__name__", callback))
            self.stop(FAILED, f"{getattr(callback, '__name__', 'callback')}: "
                              f"{type(exc).__name__}: {exc}")
            return False

    def _flush(self) -> list[OrderUpdate]:
        if not self._intents or self.status != RUNNING:
            self._intents.clear()
            return []
        intents, self._intents = self._intents, []
        assert self.send is not None
        outcomes = self.send([command for command, _ in intents])
        self.orders_sent += sum(isinstance(c, SubmitOrder) for c, _ in intents)
        return self._apply_outcomes(intents, outcomes)

    def _apply_outcomes(self, intents: list[tuple[Command, _Tracked]],
                        outcomes: Sequence[Outcome | BaseException]) -> list[OrderUpdate]:
        updates = []
        for (command, tracked), outcome in zip(intents, outcomes, strict=True):
            update = self._apply_outcome(command, tracked, outcome)
            if update is not None:
                updates.append(update)
        return updates

    # ------------------------------------------------------------ batch mode

    def take(self, max_orders: int | None = None) -> list[Command]:
        """The commands the strategy asked for since the last ``take``, in the order asked,
        to send in the caller's engine cycle; answer with ``deliver``. Past ``max_orders``
        new orders, the rest are dropped as never asked (the caller's order budget)."""
        intents, self._intents = ([], []) if self.status != RUNNING else (self._intents, [])
        if max_orders is not None:
            kept: list[tuple[Command, _Tracked]] = []
            for command, tracked in intents:
                if isinstance(command, SubmitOrder):
                    if max_orders <= 0:
                        self._orders.pop(command.client_order_id, None)
                        continue
                    max_orders -= 1
                kept.append((command, tracked))
            intents = kept
        self._taken += intents
        self.orders_sent += sum(isinstance(c, SubmitOrder) for c, _ in intents)
        return [command for command, _ in intents]

    def deliver(self, outcomes: Sequence[Outcome | BaseException]) -> None:
        """The outcomes of what was taken, in order: ``on_order`` for each update (what the
        strategy asks for in it waits for the next ``take``)."""
        taken, self._taken = self._taken, []
        for update in self._apply_outcomes(taken, outcomes):
            if self.status == RUNNING:
                self._call(self.strategy.on_order, update)

    def _apply_outcome(self, command: Command, t: _Tracked,
                       outcome: Outcome | BaseException) -> OrderUpdate | None:
        now = self._now_ns
        if isinstance(outcome, BaseException):
            self.errors.append(f"{type(command).__name__} {t.client_order_id}: "
                               f"{type(outcome).__name__}: {outcome}")
            if isinstance(command, SubmitOrder):
                t.status = OrderStatus.REJECTED  # nothing recorded: the order never existed
                return t.update(now)
            return None
        snap = outcome.snapshot
        control = (outcome.detail or {}).get("control")
        if control is not None:  # a replace refused by a control
            t.reject_control = control
            self.rejections[control] += 1
        if snap is None:
            return t.update(now) if control is not None else None
        if t.order_id is None:
            t.order_id = snap.order_id
            self._by_order_id[snap.order_id] = t
        if snap.version < t.version:
            return None  # the log already told us more than this answer
        t.version = snap.version
        t.status, t.quantity, t.limit_price = snap.status, snap.quantity, snap.limit_price
        last_qty, last_price = snap.filled_quantity - t.filled, None
        if last_qty > 0:
            last_price = (snap.filled_notional - t.notional) / last_qty
            t.notional = snap.filled_notional
            self._filled(t, last_qty)
        else:
            last_qty = 0
        if snap.reject is not None and isinstance(command, SubmitOrder):
            t.reject_control = snap.reject[0]
            self.rejections[t.reject_control] += 1
            if t.reject_control == "kill_switch":
                # The switch was tripped before this strategy started, or between polls.
                update = t.update(now)
                self._killed(f"strategy:{self.strategy_id} (order refused: kill_switch)")
                return update
        return t.update(now, last_qty, last_price)

    def describe(self) -> dict[str, Any]:
        return {"id": self.strategy_id, "status": self.status, "actor": self.actor,
                "account_id": self.account_id, "symbols": list(self.strategy.symbols),
                "orders_sent": self.orders_sent, "fills": self.fills,
                "positions": self.positions, "rejections": dict(self.rejections),
                "errors": list(self.errors)}


class StrategyThread:
    """Drives a runner in a thread of its own: market data, the log's events, the timer."""

    def __init__(self, runner: StrategyRunner, market_data: MarketData, events: OrderEvents,
                 poll_s: float = 0.05,
                 on_exit: Callable[[StrategyRunner], None] | None = None) -> None:
        self.runner = runner
        self.market_data = market_data
        self.events = events
        self.poll_s = poll_s
        # Called in this thread when the runner stopped by itself (a kill switch, an error),
        # not when ``stop`` was asked for: whoever asks records that stop.
        self.on_exit = on_exit
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self.runner.start()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"strategy-{self.runner.strategy_id}")
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None
        self.runner.stop()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        runner = self.runner
        while not self._stop.is_set() and runner.running:
            try:
                runner.on_events(self.events.poll())
                for item in self.market_data.poll():
                    if isinstance(item, Quote):
                        runner.on_quote(item)
                    else:
                        runner.on_trade(item)
                runner.on_events(self.events.poll())
                runner.on_timer(runner.clock())
            except Exception as exc:  # the runner's own failure: stop it, keep the engine
                log.exception("strategy runner %s failed", runner.strategy_id)
                runner.stop(FAILED, f"runner: {type(exc).__name__}: {exc}")
            self._stop.wait(self.poll_s)
        if self.on_exit is not None and not self._stop.is_set():
            try:
                self.on_exit(runner)
            except Exception:
                log.exception("recording the end of strategy %s failed", runner.strategy_id)
