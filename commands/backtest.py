"""Tick-by-tick backtest: market data drives a strategy, its orders go through the real engine.

A backtest is a normal marketlog session on its own store: every order a strategy asks for
becomes a ``SubmitOrder``/``CancelOrder``/``ReplaceOrder`` command decided by the engine with
all the 15c3-5 controls, the engine's venue step releases it to a simulated venue (the
``MarketVenue`` below, behind the engine's ``Venue`` port), and every decision and fill is a
hash-chained event. So ``marketlog audit``, ``verify`` and ``replay`` work on a backtest's
output directory exactly as on a live one.

Time is the feed's: the engine's clock is ``SimClock``, which the loop moves to the time of
each market event, order arrival or report, so events carry feed timestamps and a run is a
pure function of (ticks, strategy, parameters, seed) — two runs write identical logs.

Latency model (nanoseconds, constant within a run):
  * feed latency: the strategy sees a market event ``feed_latency_ns`` after the venue did;
  * order latency: a command reaches the engine and venue ``order_latency_ns`` after the
    strategy asked for it, and reports (accepts, fills, cancels) travel back as long.
Fills of resting orders come from the market (``MarketVenue.on_quote``/``on_trade``, which
model queue position) and are journaled here as the venue's execution reports.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

from pydantic import ValidationError

from commands.engine import Engine
from commands.models import (
    CancelOrder,
    CloseTradingDay,
    Command,
    OpenTradingDay,
    ReplaceOrder,
    SubmitOrder,
)
from commands.ports import Venue
from domain import strategies
from domain.backtest_metrics import EquitySample, Fill, Metrics, metrics_of
from domain.backtest_strategies import REFERENCE_STRATEGIES
from domain.book_of_record import SYSTEM_ACTOR
from domain.events import (
    CancelRejected,
    CancelRequested,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    ReplaceRejected,
    ReplaceRequested,
)
from domain.market_data import Nbbo, Quote, Trade
from domain.orders import Order
from domain.reference_prices import OUTSIDE_PARTICIPANT
from domain.strategy import BaseStrategy, OrderUpdate, Strategy
from domain.values import OrderType, Source

# The counterparty of a resting order's fill by the market (an outside participant: its
# prints move the reference tape like the liquidity provider's do).
MARKET_COUNTERPARTY = OUTSIDE_PARTICIPANT + "market"
_NS_PER_DAY = 86_400 * 1_000_000_000

# Heap entry kinds, in the order they run when due at the same nanosecond.
_ARRIVE, _DELIVER, _REPORT, _TIMER = 0, 1, 2, 3


class SimClock:
    """The engine's clock in a backtest: the time the loop is at (feed time)."""

    __slots__ = ("now",)

    def __init__(self, now: int = 0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


Execution = tuple[Order, int, Decimal]  # a resting order filled by the market: qty, price


class MarketVenue(Venue, Protocol):
    """The engine's venue port plus what market data does to it."""

    def on_quote(self, quote: Quote) -> Sequence[Execution]: ...

    def on_trade(self, trade: Trade) -> Sequence[Execution]: ...

    def nbbo(self, symbol: str) -> Nbbo | None: ...

    def mid(self, symbol: str) -> float | None: ...


class BufferedJournal:
    """The store, with group commits spanning many engine cycles.

    Nobody waits on a backtest's durability (the venue is simulated), so events are
    appended in transactions of ``commit_every`` events instead of one per cycle; the log
    is the same sequence either way (single writer: positions are head + buffered count).
    ``listener`` sees every batch as the engine hands it over (strategy reports, P&L)."""

    def __init__(self, store: Any, commit_every: int = 20_000) -> None:
        self.store = store
        self.commit_every = commit_every
        self.buffer: list[Any] = []
        self.listener: Callable[[Sequence[Any]], None] | None = None

    def append(self, events: Sequence[Any]) -> int:
        self.buffer.extend(events)
        if self.listener is not None:
            self.listener(events)
        if len(self.buffer) >= self.commit_every:
            self.flush()
        return int(self.store.head_position) + len(self.buffer)

    def flush(self) -> int:
        if self.buffer:
            self.store.append(self.buffer)
            self.buffer = []
        return int(self.store.head_position)

    def read(self, after: int = 0) -> Any:
        self.flush()
        return self.store.read(after)

    def reset_head(self) -> None:
        self.flush()
        self.store.reset_head()


@dataclass
class BacktestConfig:
    account_id: str = "ACC-ALPHA"
    # The user the strategy trades as: the entitlement control checks it like any trader's
    # (the default configuration's trader of ACC-ALPHA).
    actor: str = "maria"
    feed_latency_ns: int = 0
    order_latency_ns: int = 0
    maker_fee: Decimal = Decimal(0)  # per share; negative: a rebate
    taker_fee: Decimal = Decimal(0)
    capital: float = 1_000_000.0
    sample_ns: int = 1_000_000_000  # the P&L curve's period (feed time)
    # Annualisation of Sharpe and Sortino; None: periods of sample_ns in 252 days of 6.5
    # hours (a stock exchange's year).
    periods_per_year: float | None = None

    @property
    def annualisation(self) -> float:
        if self.periods_per_year is not None:
            return self.periods_per_year
        return 252 * 23_400 * 1e9 / self.sample_ns


@dataclass
class _Tracked:
    client_order_id: str
    symbol: str
    side: str
    quantity: int
    limit_price: Decimal | None
    order_id: UUID | None = None
    status: str = "submitted"
    filled_quantity: int = 0
    deferred: list[Command] = field(default_factory=list)  # cancels asked before the ack


@dataclass
class BacktestResult:
    strategy_id: str
    metrics: Metrics
    by_symbol: dict[str, Metrics]
    equity: list[EquitySample]
    ticks: int
    orders: int
    rejects: dict[str, int]
    fees: float
    head_position: int = 0
    head_hash: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy_id,
            "ticks": self.ticks,
            "orders": self.orders,
            "rejects": self.rejects,
            "fees": self.fees,
            "metrics": self.metrics._asdict(),
            "by_symbol": {s: m._asdict() for s, m in sorted(self.by_symbol.items())},
            "equity": [list(s) for s in self.equity],
            "chain_head": {"position": self.head_position, "hash": self.head_hash},
        }


class Backtest:
    """One run: ``run(ticks)`` replays them through the strategy, engine and venue."""

    def __init__(self, engine: Engine, venue: MarketVenue, journal: BufferedJournal,
                 clock: SimClock, strategy: Strategy, config: BacktestConfig) -> None:
        self.engine = engine
        self.venue = venue
        self.journal = journal
        self.clock = clock
        self.strategy = strategy
        self.config = config
        journal.listener = self._on_events
        self._heap: list[tuple[int, int, int, Any]] = []
        self._seq = 0
        self._outbox: list[Command] = []
        self._updates: list[OrderUpdate] = []
        self._orders: dict[str, _Tracked] = {}
        self._by_order_id: dict[UUID, _Tracked] = {}
        self._client_seq = 0
        self.positions: dict[str, int] = {}
        self._cash: dict[str, float] = {}  # per symbol, fees included
        self._fills: list[Fill] = []
        self._submitted_qty = 0
        self._rejects: dict[str, int] = {}
        self._fees = 0.0
        self._day: str | None = None
        self._day_end = 0
        # Per-symbol P&L (cash + position at the mark) at each sample of the curve.
        self._symbol_marks: list[tuple[int, dict[str, float]]] = []

    # ------------------------------------------------------------------ StrategyContext

    @property
    def strategy_id(self) -> str:
        return self.strategy.strategy_id

    @property
    def now_ns(self) -> int:
        return self.clock.now

    def submit(self, symbol: str, side: str, quantity: int, price: Decimal | None = None,
               time_in_force: str = "day") -> str:
        self._client_seq += 1
        client_order_id = f"{self.strategy.strategy_id}-{self._client_seq}"
        tracked = _Tracked(client_order_id, symbol, side, quantity, price)
        self._orders[client_order_id] = tracked
        try:
            # Validated at the edge like a REST body (the strategy's side and TIF are text).
            command = SubmitOrder.model_validate({
                "client_order_id": client_order_id, "account_id": self.config.account_id,
                "symbol": symbol, "side": side, "quantity": quantity,
                "order_type": OrderType.MARKET if price is None else OrderType.LIMIT,
                "limit_price": price, "time_in_force": time_in_force,
                "strategy": self.strategy.strategy_id, "actor": self.config.actor,
                "source": Source.STRATEGY})
        except ValidationError as exc:
            # Refused at the edge like a malformed REST body: nothing reaches the engine.
            tracked.status = "rejected"
            self._updates.append(self._update(tracked, 0, None, "validation: "
                                              + str(exc.errors()[0]["msg"])))
            return client_order_id
        self._submitted_qty += quantity
        self._outbox.append(command)
        return client_order_id

    def cancel(self, client_order_id: str) -> None:
        tracked = self._orders.get(client_order_id)
        if tracked is None or tracked.status in ("rejected", "filled", "canceled"):
            return
        if tracked.order_id is None:
            tracked.deferred.append(CancelOrder(order_id=_PLACEHOLDER, actor=self.config.actor,
                                                source=Source.STRATEGY))
            return
        self._outbox.append(CancelOrder(order_id=tracked.order_id, actor=self.config.actor,
                                        source=Source.STRATEGY))

    def replace(self, client_order_id: str, quantity: int | None = None,
                price: Decimal | None = None) -> None:
        tracked = self._orders.get(client_order_id)
        if tracked is None or tracked.order_id is None:
            return
        self._outbox.append(ReplaceOrder(order_id=tracked.order_id, quantity=quantity,
                                         limit_price=price, actor=self.config.actor,
                                         source=Source.STRATEGY))

    def position(self, symbol: str) -> int:
        return self.positions.get(symbol, 0)

    def open_orders(self, symbol: str | None = None) -> list[OrderUpdate]:
        return [self._update(t, 0, None, None) for t in self._orders.values()
                if t.status in ("submitted", "accepted", "partially_filled", "pending_cancel",
                                "pending_replace")
                and (symbol is None or t.symbol == symbol)]

    def nbbo(self, symbol: str) -> Nbbo | None:
        return self.venue.nbbo(symbol)

    # ------------------------------------------------------------------ the loop

    def run(self, ticks: Iterable[Quote | Trade]) -> BacktestResult:
        strategy, config, venue, clock = self.strategy, self.config, self.venue, self.clock
        heap = self._heap
        wants_quotes = type(strategy).on_quote is not BaseStrategy.on_quote
        wants_trades = type(strategy).on_trade is not BaseStrategy.on_trade
        symbols = frozenset(strategy.symbols)
        feed_latency = config.feed_latency_ns
        sample_ns = config.sample_ns
        on_quote, on_trade = venue.on_quote, venue.on_trade
        equity: list[EquitySample] = []
        marks: dict[str, float] = {}
        next_sample = 0
        count = 0
        started = False
        t = 0
        for tick in ticks:
            t = tick.ts_ns
            if not started:
                started = True
                self._start(t)
                next_sample = t - t % sample_ns + sample_ns
            if heap and heap[0][0] <= t:
                self._drain(t)
            if t >= next_sample:
                self._sample(next_sample, equity, marks)
                next_sample = t - t % sample_ns + sample_ns
            count += 1
            clock.now = t
            if type(tick) is Quote:
                executions = on_quote(tick)
                if executions:
                    self._journal_executions(executions)
                if not wants_quotes or (symbols and tick.symbol not in symbols):
                    continue
            else:
                executions = on_trade(tick)  # type: ignore[arg-type]
                if executions:
                    self._journal_executions(executions)
                if not wants_trades or (symbols and tick.symbol not in symbols):
                    continue
            if feed_latency:
                self._push(t + feed_latency, _DELIVER, tick)
            else:
                self._deliver(tick)
        if started:
            self._drain(None)
            clock.now = max(clock.now, t)
            strategy.on_stop(self)
            self._after_callback()
            self._drain(None)
            self._end_day()
            self._sample(clock.now, equity, marks)
        self.journal.flush()
        return self._result(equity, count)

    def _start(self, t: int) -> None:
        self.clock.now = t
        self._open_day(t)
        self.strategy.on_start(self)
        self._after_callback()
        interval = self.strategy.timer_interval_ns
        if interval > 0:
            self._push(t + interval, _TIMER, interval)

    def _open_day(self, t: int) -> None:
        import time as _time  # formatting an epoch stamp, not reading the clock

        self._day = _time.strftime("%Y-%m-%d", _time.gmtime(t // 1_000_000_000))
        self._day_end = (t // _NS_PER_DAY + 1) * _NS_PER_DAY
        self._execute([OpenTradingDay(actor=SYSTEM_ACTOR, source=Source.SYSTEM,
                                      trading_date=self._day, close_at_ns=self._day_end,
                                      reason="backtest")])

    def _end_day(self) -> None:
        if self._day is not None and self.engine.book.day.is_open:
            self._execute([CloseTradingDay(actor=SYSTEM_ACTOR, source=Source.SYSTEM,
                                           reason="backtest end of day")])
        self._day = None

    def _push(self, at: int, kind: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, kind, self._seq, payload))

    def _drain(self, until: int | None) -> None:
        """Run everything due up to ``until`` (None: everything), in time order."""
        heap, clock = self._heap, self.clock
        while heap and (until is None or heap[0][0] <= until):
            at, kind, _, payload = heapq.heappop(heap)
            clock.now = max(clock.now, at)
            if kind == _ARRIVE:
                self._run(payload)
            elif kind == _DELIVER:
                self._deliver(payload)
            elif kind == _REPORT:
                self._report(payload)
            else:
                self.strategy.on_timer(self, clock.now)
                self._after_callback()
                self._push(at + payload, _TIMER, payload)
                if until is None:
                    heap[:] = [e for e in heap if e[1] != _TIMER]
                    heapq.heapify(heap)

    def _deliver(self, tick: Quote | Trade) -> None:
        if type(tick) is Quote:
            nbbo = self.venue.nbbo(tick.symbol)
            if nbbo is None:
                return
            self.strategy.on_quote(self, tick, nbbo)
        else:
            self.strategy.on_trade(self, tick)  # type: ignore[arg-type]
        if self._outbox or self._updates:
            self._after_callback()

    def _after_callback(self) -> None:
        if self._updates:
            updates, self._updates = self._updates, []
            self._report(updates)
        if self._outbox:
            commands, self._outbox = self._outbox, []
            latency = self.config.order_latency_ns
            if latency:
                self._push(self.clock.now + latency, _ARRIVE, commands)
            else:
                self._run(commands)

    def _report(self, updates: list[OrderUpdate]) -> None:
        for update in updates:
            self.strategy.on_order(self, update)
        self._after_callback()

    def _run(self, commands: list[Command]) -> None:
        """Commands reach the engine now (clock = arrival time)."""
        if self.clock.now >= self._day_end:
            # A feed crossing midnight (UTC) closes one trading day and opens the next.
            self._end_day()
            self._open_day(self.clock.now)
        self._execute(commands)

    def _execute(self, commands: list[Command]) -> None:
        self.engine.execute(commands)
        if self._updates:
            updates, self._updates = self._updates, []
            latency = self.config.order_latency_ns
            if latency:
                self._push(self.clock.now + latency, _REPORT, updates)
            else:
                self._report(updates)

    def _journal_executions(self, executions: Sequence[Execution]) -> None:
        """The venue's reports of resting orders the market filled (queue position reached,
        or traded through): facts the engine records, like its venue step's fills."""
        engine = self.engine
        book, now = engine.book, engine.stamp()
        events: list[Any] = []
        for order, quantity, price in executions:
            events.append(book.fill(order, quantity, price, engine.new_id().hex, "maker",
                                    MARKET_COUNTERPARTY, now))
        events.extend(book.take_follow_ups())
        engine.committed_position = engine.journal.append(events)
        if self._updates:
            updates, self._updates = self._updates, []
            latency = self.config.order_latency_ns
            if latency:
                self._push(now + latency, _REPORT, updates)
            else:
                self._report(updates)

    # ------------------------------------------------------------------ what happened

    def _on_events(self, events: Sequence[Any]) -> None:
        by_order_id, orders = self._by_order_id, self._orders
        for event in events:
            kind = type(event)
            if kind is OrderFilled:
                tracked = by_order_id.get(event.order_id)
                if tracked is None:
                    continue
                tracked.filled_quantity = event.cumulative_quantity
                tracked.status = "filled" if not event.leaves_quantity else "partially_filled"
                self._on_fill(event)
                self._updates.append(self._update(tracked, event.fill_quantity,
                                                  event.fill_price, None, event.ts_ns))
            elif kind is OrderAccepted or kind is OrderRejected:
                tracked = orders.get(event.client_order_id)
                if tracked is None or event.account_id != self.config.account_id:
                    continue
                tracked.order_id = event.order_id
                by_order_id[event.order_id] = tracked
                control = None
                if kind is OrderRejected:
                    tracked.status = "rejected"
                    control = event.control
                    self._rejects[control] = self._rejects.get(control, 0) + 1
                else:
                    tracked.status = "accepted"
                    for deferred in tracked.deferred:
                        self._outbox.append(deferred.model_copy(
                            update={"order_id": event.order_id}))
                    tracked.deferred.clear()
                self._updates.append(self._update(tracked, 0, None, control, event.ts_ns))
            elif kind in _STATUS_AFTER:
                tracked = by_order_id.get(event.order_id)
                if tracked is None:
                    continue
                status = _STATUS_AFTER[kind]
                if kind is OrderReplaced:
                    tracked.quantity, tracked.limit_price = event.quantity, event.limit_price
                if status is None:  # a refused request: the order is as it was
                    status = ("partially_filled" if tracked.filled_quantity else "accepted")
                tracked.status = status
                self._updates.append(self._update(tracked, 0, None, None, event.ts_ns))

    def _on_fill(self, event: OrderFilled) -> None:
        signed = event.fill_quantity if event.side == "buy" else -event.fill_quantity
        price = float(event.fill_price)
        fee_rate = self.config.maker_fee if event.liquidity == "maker" else self.config.taker_fee
        fee = float(fee_rate) * event.fill_quantity
        symbol = event.symbol
        self.positions[symbol] = self.positions.get(symbol, 0) + signed
        self._cash[symbol] = self._cash.get(symbol, 0.0) - signed * price - fee
        self._fees += fee
        self._fills.append(Fill(event.ts_ns, symbol, signed, price, fee))

    def _update(self, t: _Tracked, last_qty: int, last_price: Decimal | None,
                control: str | None, ts_ns: int | None = None) -> OrderUpdate:
        return OrderUpdate(t.client_order_id, None if t.order_id is None else str(t.order_id),
                           t.symbol, t.side, t.status, t.quantity, t.filled_quantity, last_qty,
                           last_price, t.limit_price, control,
                           self.clock.now if ts_ns is None else ts_ns)

    def _sample(self, at: int, equity: list[EquitySample], marks: dict[str, float]) -> None:
        mid = self.venue.mid
        total = self.config.capital
        for symbol, cash in self._cash.items():
            price = mid(symbol)
            if price is not None:
                marks[symbol] = price
            total += cash + self.positions.get(symbol, 0) * marks.get(symbol, 0.0)
        equity.append(EquitySample(at, total))
        if self._cash:
            self._symbol_marks.append((at, {s: c + self.positions.get(s, 0) * marks.get(s, 0.0)
                                            for s, c in self._cash.items()}))
        else:
            self._symbol_marks.append((at, {}))

    def _result(self, equity: list[EquitySample], count: int) -> BacktestResult:
        config = self.config
        fills = self._fills
        metrics = metrics_of(equity, fills, config.capital, self._submitted_qty,
                             config.annualisation)
        by_symbol: dict[str, Metrics] = {}
        for symbol in sorted({f.symbol for f in fills}):
            curve = [EquitySample(at, config.capital + pnl.get(symbol, 0.0))
                     for at, pnl in self._symbol_marks]
            submitted = sum(t.quantity for t in self._orders.values() if t.symbol == symbol
                            and t.order_id is not None)
            by_symbol[symbol] = metrics_of(curve, [f for f in fills if f.symbol == symbol],
                                           config.capital, submitted, config.annualisation)
        store = self.journal.store
        return BacktestResult(self.strategy.strategy_id, metrics, by_symbol, equity, count,
                              sum(1 for t in self._orders.values() if t.order_id is not None),
                              dict(sorted(self._rejects.items())), self._fees,
                              int(store.head_position), str(store.head_hash))


_PLACEHOLDER = UUID(int=0)
_STATUS_AFTER: dict[type, str | None] = {
    OrderCanceled: "canceled",
    CancelRequested: "pending_cancel",
    ReplaceRequested: "pending_replace",
    OrderReplaced: None,
    CancelRejected: None,
    ReplaceRejected: None,
}


# ---------------------------------------------------------------------- strategies by name

StrategyFactory = Callable[..., Strategy]
# Strategies `marketlog backtest` knows by name (the live strategies join this registry).
def _live(kind: str) -> StrategyFactory:
    """A strategy of the live desk (domain/strategies), the same code as under ``serve``:
    ``--param strategy_id=...`` names it, every other parameter is its config's."""

    def factory(strategy_id: str = kind, **params: Any) -> Strategy:
        return strategies.build(kind, str(strategy_id), params)

    return factory


STRATEGIES: dict[str, StrategyFactory] = {
    **REFERENCE_STRATEGIES, "market-maker": _live("market_maker"), "pairs": _live("pairs")}


def register(name: str, factory: StrategyFactory) -> None:
    STRATEGIES[name] = factory


def parse_params(pairs: Iterable[str]) -> dict[str, Any]:
    """``k=v`` pairs as keyword arguments: ints, then floats, else text."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param wants key=value, got {pair!r}")
        value: Any = text
        for convert in (int, float):
            try:
                value = convert(text)
                break
            except ValueError:
                continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"--param {key}: not a finite number")
        params[key] = value
    return params


def make_strategy(name: str, params: dict[str, Any]) -> Strategy:
    try:
        factory = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}"
                         ) from None
    return factory(**params)


