"""The firm's book of record: instruments, accounts, orders, the trading day and the
pre-trade decisions.

One instance is owned by one engine thread (single writer, ARCHITECTURE rule 3). Every
decision method builds an event and then applies it through ``apply`` — the same path a
restart uses to rebuild this state from the journal, so live and replayed state cannot
drift apart.

Cancels and replaces are requests (``CancelRequested``, ``ReplaceRequested``) that take
effect only when the venue confirms them in log order (``confirm_cancel``,
``confirm_replace``): until then the order trades on its current terms, so the venue and
the book never disagree about what may trade (ARCHITECTURE rule 10).

Memory does not grow with history: a finished order leaves ``orders`` and only a frozen
``OrderSnapshot`` stays, for idempotent resends, during its trading day and the next.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any
from uuid import UUID

from domain import controls as ctl
from domain.accounts import Account, Exposure
from domain.controls import REPLACE_CONTROLS, Candidate
from domain.events import (
    BookSnapshotTaken,
    CancelRejected,
    CancelRequested,
    ClockExceptionRecorded,
    EngineRecovered,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    ReplaceRejected,
    ReplaceRequested,
    TradingDayClosed,
    TradingDayOpened,
)
from domain.governance import Governance, Rate, User
from domain.governance_events import GOVERNANCE_EVENTS
from domain.instruments import Instrument
from domain.lifecycle import FINISHED_STATUSES, LIVE_STATUSES, action_of, transition
from domain.limits import FirmLimits, SymbolLimits
from domain.orders import Order, OrderSnapshot, PendingReplace
from domain.reference_prices import OUTSIDE_PARTICIPANT, MarketTape, ReferencePrices
from domain.trading_day import TradingDay, day_id
from domain.values import (
    CancelReason,
    ExposureMode,
    FrozenRecord,
    OrderStatus,
    RequestStage,
    Side,
    Source,
    TimeInForce,
)

VENUE_ACTOR = "venue"
VENUE_SOURCE = Source.VENUE
SYSTEM_ACTOR = "system"
# Counterparty recorded on fills against the venue's own liquidity, not a firm order.
LIQUIDITY_PROVIDER = OUTSIDE_PARTICIPANT + "liquidity-provider"

SELL = Side.SELL
SYSTEM_SOURCE = Source.SYSTEM
BUY = Side.BUY  # a plain name: an enum member lookup costs ~0.1 us on CPython 3.11
# Events on the hot path are built with tuple.__new__: a NamedTuple's generated __new__ is a
# Python frame that parses every field as an argument (0.84 us for an OrderAccepted, 0.40
# this way). Field order is the class's; the codec's round-trip tests hold it to it.
_event: Any = tuple.__new__
_ACCEPTED = transition(OrderStatus.SUBMITTED, "accept")

DuplicateKey = tuple[str, str, str, int, Decimal | None]
ClientKey = tuple[str, str]


class DayError(Exception):
    """A trading-day transition the book's state does not allow (nothing recorded)."""


def loses_priority(old_price: Decimal | None, old_quantity: int,
                   new_price: Decimal | None, new_quantity: int) -> bool:
    """Time priority is lost by a new price or a larger size (one rule: venue and book)."""
    return new_price != old_price or new_quantity > old_quantity


class BookOfRecord:
    def __init__(
        self,
        instruments: Iterable[Instrument],
        accounts: Iterable[Account],
        firm: FirmLimits,
        references: ReferencePrices | None = None,
        users: Iterable[User] = (),
        symbol_limits: dict[str, SymbolLimits] | None = None,
    ) -> None:
        self.instruments = {i.symbol: i for i in instruments}
        self.accounts = {a.account_id: a for a in accounts}
        self.firm = firm
        # The venue's best bid (Rule 201's bid test): the engine plugs its venue in.
        self.best_bid: Callable[[str], Decimal | None] = _no_bid
        # Events a decision caused besides its own (a locate consumed, an automatic kill
        # switch and its cancels, a Rule 201 trigger): the handler journals them after it.
        self.follow_ups: list[Any] = []
        self.orders: dict[UUID, Order] = {}  # live orders (and those finishing this cycle)
        self.by_client_id: dict[ClientKey, Order | OrderSnapshot] = {}
        self.finished: dict[UUID, OrderSnapshot] = {}
        # Finished orders by the trading day they finished in: today's, and the day before's.
        self._finished_today: list[tuple[ClientKey, UUID]] = []
        self._finished_before: list[tuple[ClientKey, UUID]] = []
        self.tape = MarketTape()
        self.references: ReferencePrices = references if references is not None else self.tape
        self.firm_exposure = Exposure()
        self.day = TradingDay()
        self.last_closes: dict[str, Decimal] = {}  # from the last TradingDayClosed
        self.events_applied = 0
        self._candidate = Candidate.__new__(Candidate)  # reused by every new-order decision
        self.priority_seq = 0
        self.request_seq = 0
        # When each (account, symbol, side, quantity, price) was last accepted, within the
        # longest duplicate window (older entries leave as acceptances are applied).
        self.recent_orders: dict[DuplicateKey, int] = {}
        self._recent_queue: deque[tuple[int, DuplicateKey]] = deque()
        # Which order each of those entries is (a replace is no duplicate of the same order).
        self.recent_owner: dict[DuplicateKey, UUID] = {}
        self._max_window_ns = max(
            [firm.defaults.duplicate_window_ns]
            + [a.limits.duplicate_window_ns for a in self.accounts.values()]
        )
        self.gov = Governance(self, list(users), symbol_limits)
        self._handlers: dict[type, Callable[[Any], None]] = {
            **dict.fromkeys(GOVERNANCE_EVENTS, self.gov.apply),
            OrderAccepted: self._on_accepted,
            OrderRejected: self._on_rejected,
            OrderFilled: self._on_filled,
            CancelRequested: self._on_cancel_requested,
            OrderCanceled: self._on_canceled,
            CancelRejected: self._on_cancel_rejected,
            ReplaceRequested: self._on_replace_requested,
            OrderReplaced: self._on_replaced,
            ReplaceRejected: self._on_replace_rejected,
            TradingDayOpened: self._on_day_opened,
            TradingDayClosed: self._on_day_closed,
            EngineRecovered: self._on_bookkeeping,
            BookSnapshotTaken: self._on_bookkeeping,
            ClockExceptionRecorded: self._on_bookkeeping,
        }

    # ------------------------------------------------------------------ queries

    def widen_duplicate_window(self, window_ns: int) -> None:
        self._max_window_ns = max(self._max_window_ns, window_ns)

    def take_follow_ups(self) -> list[Any]:
        events, self.follow_ups = self.follow_ups, []
        return events

    def reference_price(self, symbol: str) -> Decimal | None:
        reference = self.references.reference(symbol)
        return None if reference is None else reference.price

    def find(self, account_id: str, client_order_id: str) -> Order | OrderSnapshot | None:
        return self.by_client_id.get((account_id, client_order_id))

    def lookup(self, order_id: UUID) -> Order | OrderSnapshot | None:
        order = self.orders.get(order_id)
        return order if order is not None else self.finished.get(order_id)

    def live_orders(self) -> list[Order]:
        """Live orders in venue time priority (the order a restart re-releases them in)."""
        return sorted((o for o in self.orders.values() if o.status in LIVE_STATUSES),
                      key=_priority)

    def exposure(self, account_id: str) -> Decimal:
        return self.accounts[account_id].exposure.value(self.day.exposure_mode)

    def firm_exposure_value(self) -> Decimal:
        return self.firm_exposure.value(self.day.exposure_mode)

    # ---------------------------------------------------------------- decisions

    def submit(
        self,
        order_id: UUID,
        account_id: str,
        client_order_id: str,
        symbol: str,
        side: str,
        quantity: int,
        order_type: str,
        limit_price: Decimal | None,
        time_in_force: str,
        actor: str,
        source: str,
        now_ns: int,
        strategy: str | None = None,
    ) -> OrderAccepted | OrderRejected:
        """Run every pre-trade control on a new order; the first failure rejects it."""
        # The reused candidate, set field by field here (its prepare(), inlined: every order).
        c = self._candidate
        c.book, c.account_id, c.symbol, c.side = self, account_id, symbol, side
        c.quantity, c.order_type, c.limit_price, c.now_ns = (quantity, order_type, limit_price,
                                                             now_ns)
        c.actor, c.strategy, c.inputs = actor, strategy, {}
        c.order = c.limits = c.reference = c.protection_price = c.price = c.locate = None
        c.exposure_before = c.firm_before = c.added = None
        plan = ctl.NEW_ORDER_PLAN
        index, failure, ran = ctl.run(plan, c)
        reference: Any = c.reference
        date = self.day.date
        if failure is not None:
            rejected: OrderRejected = _event(OrderRejected, (
                order_id, 1, now_ns, actor, source, account_id, symbol, client_order_id,
                side, quantity, order_type, limit_price, time_in_force,
                plan.names[index], failure[0], failure[1],
                None if reference is None else reference.price,
                None if reference is None else reference.source,
                None if reference is None else reference.as_of_ns,
                c.exposure_before, 0 if c.limits is None else c.limits.version, ran, date,
                strategy))
            self._on_rejected(rejected)
            self.follow_ups += self.gov.after_reject(account_id, strategy, rejected.control,
                                                     now_ns, actor, source)
            return rejected
        # Every control passed: the reference, the price and exposure are all known.
        limits = c.limits
        accepted: OrderAccepted = _event(OrderAccepted, (
            order_id, 1, now_ns, actor, source, account_id, symbol, client_order_id, side,
            quantity, order_type, limit_price, time_in_force, reference.price,
            reference.source, reference.as_of_ns, c.protection_price, c.price,
            c.exposure_before, c.firm_before, limits.version, limits.record, ran, date,
            strategy, FrozenRecord(c.inputs)))
        self._on_accepted(accepted)
        if c.locate is not None:
            self.follow_ups.append(self.gov.consume_locate(c.locate, order_id, quantity, now_ns,
                                                           actor, source))
        return accepted

    def request_cancel(self, order: Order | OrderSnapshot, actor: str, source: str,
                       now_ns: int, reason: str = CancelReason.REQUESTED
                       ) -> CancelRequested | CancelRejected:
        status = order.status
        if status in FINISHED_STATUSES or status == OrderStatus.PENDING_CANCEL:
            why = ("cancel already pending" if status == OrderStatus.PENDING_CANCEL
                   else f"order is {status}")
            event: CancelRequested | CancelRejected = CancelRejected(
                order.order_id, self._version(order) + 1, now_ns, actor, source, order.account_id,
                order.symbol, why, str(status), RequestStage.REQUEST)
        else:
            event = CancelRequested(order.order_id, order.version + 1, now_ns, actor, source,
                                    order.account_id, order.symbol, reason)
        self.apply(event)
        return event

    def request_replace(
        self, order: Order | OrderSnapshot, quantity: int | None, limit_price: Decimal | None,
        actor: str, source: str, now_ns: int,
    ) -> ReplaceRequested | ReplaceRejected:
        """Run every control a replace can affect on the order as it would be after it."""
        new_quantity = order.quantity if quantity is None else quantity
        new_price = order.limit_price if limit_price is None else limit_price
        if isinstance(order, OrderSnapshot):  # finished and out of memory: too late
            return self._refuse_replace(order, quantity, limit_price, actor, source, now_ns,
                                        "order_status", ("live order", str(order.status)))
        c = Candidate(self, order.account_id, order.symbol, order.side, new_quantity,
                      order.order_type, new_price, now_ns, order, actor, order.strategy)
        account = self.accounts[order.account_id]
        c.account, c.limits = account, account.limits
        c.instrument = self.instruments[order.symbol]
        index, failure, ran = ctl.run(ctl.REPLACE_PLAN, c)
        if failure is not None:
            refused = self._refuse_replace(order, quantity, limit_price, actor, source, now_ns,
                                           REPLACE_CONTROLS[index], failure)
            # A flood of replaces trips the switch like one of new orders (message rate).
            self.follow_ups += self.gov.after_reject(order.account_id, order.strategy,
                                                     refused.control, now_ns, actor, source)
            return refused
        reference = c.reference
        assert reference is not None and c.added is not None and new_price is not None
        assert c.exposure_before is not None and c.firm_before is not None
        event = ReplaceRequested(
            order.order_id, order.version + 1, now_ns, actor, source, order.account_id,
            order.symbol, order.quantity, order.limit_price, new_quantity, new_price,
            reference.price, reference.source, reference.as_of_ns, c.exposure_before,
            c.firm_before, c.added, c.limits.version, ran, FrozenRecord(c.inputs))
        self._on_replace_requested(event)
        if c.locate is not None:
            self.follow_ups.append(self.gov.consume_locate(
                c.locate, order.order_id, new_quantity - order.quantity, now_ns, actor, source))
        return event

    def _refuse_replace(self, order: Order | OrderSnapshot, quantity: int | None,
                        limit_price: Decimal | None, actor: str, source: str, now_ns: int,
                        control: str, failure: tuple[str, str]) -> ReplaceRejected:
        event = ReplaceRejected(
            order.order_id, self._version(order) + 1, now_ns, actor, source,
            order.account_id, order.symbol, quantity, limit_price, control, failure[0],
            failure[1], RequestStage.REQUEST)
        self._on_replace_rejected(event)
        return event

    # ------------------------------------------------------- what the venue reports

    def fill(
        self, order: Order, quantity: int, price: Decimal, trade_id: str, liquidity: str,
        counterparty: str, now_ns: int,
    ) -> OrderFilled:
        leaves = order.quantity - order.filled_quantity
        if not 0 < quantity <= leaves or order.status not in LIVE_STATUSES:
            raise ValueError(f"venue reported {quantity} filled on {order.order_id} "
                             f"({order.status}, leaves {leaves})")
        event: OrderFilled = _event(OrderFilled, (
            order.order_id, order.version + 1, now_ns, VENUE_ACTOR, VENUE_SOURCE,
            order.account_id, order.symbol, order.side, trade_id, quantity, price,
            order.filled_quantity + quantity, leaves - quantity, liquidity, counterparty))
        self._on_filled(event)
        if counterparty.startswith(OUTSIDE_PARTICIPANT):
            triggered = self.gov.after_print(order.symbol, price, now_ns)
            if triggered is not None:
                self.follow_ups.append(triggered)
        return event

    def cancel_remainder(self, order: Order, reason: str, now_ns: int) -> OrderCanceled:
        """The venue cancels what is left (IOC/FOK/market remainder, self-trade prevention)."""
        event: OrderCanceled = _event(OrderCanceled, (
            order.order_id, order.version + 1, now_ns, VENUE_ACTOR, VENUE_SOURCE,
            order.account_id, order.symbol, order.quantity - order.filled_quantity, reason))
        self._on_canceled(event)
        return event

    def confirm_cancel(self, order: Order, now_ns: int) -> OrderCanceled | CancelRejected:
        """The venue reached a cancel request: pulled, or too late (the order finished)."""
        if order.status in LIVE_STATUSES:
            reason = order.pending_cancel or CancelReason.REQUESTED
            return self.cancel_remainder(order, reason, now_ns)
        event = CancelRejected(order.order_id, self._version(order) + 1, now_ns, VENUE_ACTOR,
                               VENUE_SOURCE, order.account_id, order.symbol,
                               f"order {order.status} before the cancel reached the venue",
                               str(order.status), RequestStage.VENUE)
        self.apply(event)
        return event

    def confirm_replace(self, order: Order, now_ns: int) -> OrderReplaced | ReplaceRejected:
        """The venue reached a replace request: applied, or refused (finished, or filled to
        or past the new size in the meantime)."""
        pending = order.pending_replace
        live = order.status in LIVE_STATUSES and pending is not None
        if not live or pending.quantity <= order.filled_quantity:  # type: ignore[union-attr]
            threshold, observed = (("live order", str(order.status)) if not live else
                                   (f"> {order.filled_quantity} filled", str(pending.quantity)))  # type: ignore[union-attr]
            event: OrderReplaced | ReplaceRejected = ReplaceRejected(
                order.order_id, self._version(order) + 1, now_ns, VENUE_ACTOR, VENUE_SOURCE,
                order.account_id, order.symbol,
                None if pending is None else pending.quantity,
                None if pending is None else pending.limit_price,
                "venue", threshold, observed, RequestStage.VENUE)
        else:
            assert pending is not None
            event = OrderReplaced(
                order.order_id, order.version + 1, now_ns, VENUE_ACTOR, VENUE_SOURCE,
                order.account_id, order.symbol, order.quantity, order.limit_price,
                pending.quantity, pending.limit_price,
                loses_priority(order.limit_price, order.quantity, pending.limit_price,
                               pending.quantity))
        self.apply(event)
        return event

    # ------------------------------------------------------------- trading days

    def open_day(self, trading_date: str, actor: str, source: str, now_ns: int,
                 scheduled_close_ns: int | None, reason: str) -> TradingDayOpened:
        day = self.day
        if day.is_open:
            raise DayError(f"trading day {day.date} is open; close it first")
        if day.last_closed_date is not None and trading_date <= day.last_closed_date:
            raise DayError(f"trading day {trading_date} is not after the last closed day "
                           f"{day.last_closed_date}")
        closes = {s: i.reference_price for s, i in self.instruments.items()
                  if i.reference_price is not None}
        closes.update(self.last_closes)
        event = TradingDayOpened(
            day_id(trading_date), 1, now_ns, actor, source, trading_date,
            self.firm.exposure_mode,
            tuple((s, str(p)) for s, p in sorted(closes.items())),
            scheduled_close_ns, reason)
        self._on_day_opened(event)
        return event

    def close_day(self, actor: str, source: str, now_ns: int, reason: str
                  ) -> tuple[TradingDayClosed, list[CancelRequested | CancelRejected]]:
        """Close the day and request the cancel of every live DAY order (the venue confirms
        each; market orders never rest past their release)."""
        day = self.day
        if not day.is_open or day.date is None:
            raise DayError(f"no trading day is open ({day.status_text()})")
        expiring = [o for o in self.live_orders()
                    if o.time_in_force == TimeInForce.DAY
                    and o.status != OrderStatus.PENDING_CANCEL]
        fallback = {s: i.reference_price for s, i in self.instruments.items()
                    if i.reference_price is not None}
        closes = self.tape.closing_prices(fallback)
        event = TradingDayClosed(
            day_id(day.date), day.version + 1, now_ns, actor, source, day.date,
            tuple((s, str(p)) for s, p in sorted(closes.items())), len(expiring), reason)
        self._on_day_closed(event)
        cancels = [self.request_cancel(o, SYSTEM_ACTOR, Source.SYSTEM, now_ns,
                                       CancelReason.END_OF_DAY) for o in expiring]
        return event, cancels

    # ------------------------------------------------------------------ applying

    def apply(self, event: Any) -> None:
        self._handlers[type(event)](event)

    def _register(self, event: OrderAccepted | OrderRejected) -> Order:
        order = Order(event.order_id, event.account_id, event.client_order_id, event.symbol,
                      event.side, event.quantity, event.order_type, event.limit_price,
                      event.time_in_force, event.ts_ns, event.strategy)
        order.version = event.version
        self.by_client_id[(event.account_id, event.client_order_id)] = order
        self.events_applied += 1
        return order

    def _on_accepted(self, e: OrderAccepted) -> None:
        order = self._register(e)
        order.status = _ACCEPTED  # the table's (SUBMITTED, "accept"): a new order's only way
        # Fields read more than once, as locals: each read of a NamedTuple field is a
        # descriptor call, and this runs for every accepted order (live and replayed).
        account_id, side, ts_ns, exposure_price = e.account_id, e.side, e.ts_ns, e.exposure_price
        order.exposure_price = exposure_price
        order.protection_price = e.protection_price
        self.priority_seq += 1
        order.priority = self.priority_seq
        self.orders[e.order_id] = order
        notional = exposure_price * e.quantity
        # Exposure.enter, inlined: this runs for every accepted order.
        account = self.accounts[account_id]
        exposure, firm = account.exposure, self.firm_exposure
        if side == BUY:
            exposure.buy_entered += notional
            firm.buy_entered += notional
        else:
            exposure.sell_entered += notional
            firm.sell_entered += notional
        exposure.gross += notional
        firm.gross += notional
        queue = self._recent_queue
        if queue and queue[0][0] <= ts_ns - self._max_window_ns:
            self._forget_before(ts_ns - self._max_window_ns)
        key = (account_id, e.symbol, side, e.quantity, e.limit_price)
        self.recent_orders[key] = ts_ns
        self.recent_owner[key] = e.order_id
        queue.append((ts_ns, key))
        if side == SELL:
            open_sells = account.sell_open
            open_sells[e.symbol] = open_sells.get(e.symbol, 0) + e.quantity
        self._count(account_id, e.strategy, ts_ns, 1)

    def _count(self, account_id: str, strategy: str | None, ts_ns: int, order: int) -> None:
        """A message (and a new order) in the throttle's windows: account, firm, strategy."""
        rates = self.gov.windows.rates
        rate = rates.get(account_id)
        if rate is None:
            rate = rates[account_id] = Rate()
        rate.add(ts_ns, order)
        self.gov.firm_rate.add(ts_ns, order)
        if strategy is not None:
            self.gov.windows.rate("strategy:" + strategy).add(ts_ns, order)

    def _on_rejected(self, e: OrderRejected) -> None:
        order = self._register(e)
        order.status = transition(order.status, "reject")
        order.reject = (e.control, e.threshold, e.observed)
        self._finish(order)
        self._count(e.account_id, e.strategy, e.ts_ns, 0)
        window = self.gov.reject_window(e.account_id)
        windows = self.gov.windows
        windows.add_reject(e.account_id, e.ts_ns, window)
        if e.strategy is not None:
            windows.add_reject("strategy:" + e.strategy, e.ts_ns, window)

    def _on_filled(self, e: OrderFilled) -> None:
        order = self.orders[e.order_id]
        order.status = transition(order.status, "partial_fill" if e.leaves_quantity else "fill")
        order.filled_quantity = e.cumulative_quantity
        order.version = e.version
        notional = e.fill_price * e.fill_quantity
        order.filled_notional += notional
        released = order.exposure_price * e.fill_quantity
        account = self.accounts[e.account_id]
        account.exposure.fill(order.side, notional, released)
        self.firm_exposure.fill(order.side, notional, released)
        signed = e.fill_quantity if order.side == BUY else -e.fill_quantity
        account.positions[e.symbol] = account.positions.get(e.symbol, 0) + signed
        if order.side == SELL:
            account.sell_open[e.symbol] -= e.fill_quantity
        self.gov.fills_since_sweep += 1
        account.cash -= notional if signed > 0 else -notional
        if e.counterparty.startswith(OUTSIDE_PARTICIPANT):
            self.tape.print_trade(e.symbol, e.fill_price, e.ts_ns)
        self.events_applied += 1
        if not e.leaves_quantity:
            self._finish(order)

    def _on_cancel_requested(self, e: CancelRequested) -> None:
        order = self.orders[e.order_id]
        order.status = transition(order.status, "cancel_request")
        order.version = e.version
        order.pending_cancel = e.reason
        self.request_seq += 1
        order.request_seq = self.request_seq
        self.events_applied += 1
        if e.source != SYSTEM_SOURCE:  # the engine's own cancels are no client messages
            self._count(e.account_id, order.strategy, e.ts_ns, 0)

    def _on_canceled(self, e: OrderCanceled) -> None:
        order = self.orders[e.order_id]
        order.status = transition(order.status, "cancel")
        order.version = e.version
        self._release(order, order.exposure_price * e.canceled_quantity)
        if order.side == SELL:
            self.accounts[e.account_id].sell_open[e.symbol] -= e.canceled_quantity
        self.events_applied += 1
        self._finish(order)

    def _on_cancel_rejected(self, e: CancelRejected) -> None:
        # On request nothing changes; at the venue the order had already finished.
        self._bump(e.order_id, e.version)
        if e.stage == RequestStage.REQUEST:
            self._count_request(e)

    def _count_request(self, e: CancelRejected | ReplaceRejected) -> None:
        """A refused cancel or replace is a message all the same (the throttle counts it)."""
        if e.source != SYSTEM_SOURCE:
            order = self.orders.get(e.order_id)
            self._count(e.account_id, None if order is None else order.strategy, e.ts_ns, 0)

    def _on_replace_requested(self, e: ReplaceRequested) -> None:
        order = self.orders[e.order_id]
        order.status = transition(order.status, "replace_request")
        order.version = e.version
        assert e.limit_price is not None
        order.pending_replace = PendingReplace(e.quantity, e.limit_price, e.reserved_exposure)
        if order.side == SELL and e.quantity > order.quantity:
            # Reg SHO marking: a pending increase of a long sale holds the position already.
            self.accounts[e.account_id].sell_open[e.symbol] += e.quantity - order.quantity
        if e.reserved_exposure:
            self.accounts[e.account_id].exposure.enter(order.side, e.reserved_exposure)
            self.firm_exposure.enter(order.side, e.reserved_exposure)
        self.request_seq += 1
        order.request_seq = self.request_seq
        self.events_applied += 1
        self._count(e.account_id, order.strategy, e.ts_ns, 0)
        key = (e.account_id, e.symbol, order.side, e.quantity, e.limit_price)
        self.recent_orders[key] = e.ts_ns
        self.recent_owner[key] = e.order_id
        self._recent_queue.append((e.ts_ns, key))

    def _on_replaced(self, e: OrderReplaced) -> None:
        order = self.orders[e.order_id]
        assert e.limit_price is not None and order.pending_replace is not None
        filled = order.filled_quantity
        order.status = transition(order.status, "replaced_partial" if filled else "replaced")
        order.version = e.version
        old = order.exposure_price * (order.quantity - filled) + order.pending_replace.reserved
        new = e.limit_price * (e.quantity - filled)
        self.accounts[e.account_id].exposure.enter(order.side, new - old)
        self.firm_exposure.enter(order.side, new - old)
        if order.side == SELL:
            # The increase was held at the request; a decrease frees the position now.
            self.accounts[e.account_id].sell_open[e.symbol] += min(0, e.quantity - order.quantity)
        order.pending_replace = None
        order.quantity = e.quantity
        order.limit_price = e.limit_price
        order.exposure_price = e.limit_price
        if e.lost_priority:
            self.priority_seq += 1
            order.priority = self.priority_seq
        self.events_applied += 1

    def _on_replace_rejected(self, e: ReplaceRejected) -> None:
        order = self.orders.get(e.order_id)
        if e.stage != RequestStage.VENUE or order is None:
            self._bump(e.order_id, e.version)  # refused on request, or the order finished
            if e.stage == RequestStage.REQUEST:
                self._count_request(e)
            return
        # Refused at the venue while the order lives on: filled to or past the new size.
        pending = order.pending_replace
        if pending is not None:
            self._release(order, pending.reserved)
            self._release_sell(order, pending)
            order.pending_replace = None
        action = action_of(e, order.filled_quantity)
        assert action is not None
        order.status = transition(order.status, action)
        order.version = e.version
        self.events_applied += 1

    def _version(self, order: Order | OrderSnapshot) -> int:
        """The order's current version (a finished order's lives on in its record)."""
        current = self.lookup(order.order_id)
        return (order if current is None else current).version

    def _bump(self, order_id: UUID, version: int) -> None:
        order = self.orders.get(order_id)
        if order is not None:
            order.version = version
        else:
            record = self.finished[order_id]
            record = record._replace(version=version)
            self.finished[order_id] = record
            self.by_client_id[(record.account_id, record.client_order_id)] = record
        self.events_applied += 1

    def _release(self, order: Order, open_notional: Decimal) -> None:
        """Open exposure leaves the account and the firm (a cancel, or a reservation)."""
        if open_notional:
            self.accounts[order.account_id].exposure.enter(order.side, -open_notional)
            self.firm_exposure.enter(order.side, -open_notional)

    def _release_sell(self, order: Order, pending: PendingReplace) -> None:
        """A replace that never took effect gives back the position its increase held."""
        if order.side == SELL and pending.quantity > order.quantity:
            self.accounts[order.account_id].sell_open[order.symbol] -= (pending.quantity
                                                                       - order.quantity)

    def _finish(self, order: Order) -> None:
        """A finished order leaves memory; a frozen record stays for idempotent resends."""
        pending = order.pending_replace
        if pending is not None:  # finished on the old terms before the venue saw the replace
            self._release(order, pending.reserved)
            self._release_sell(order, pending)
            order.pending_replace = None
        order.pending_cancel = None
        self.orders.pop(order.order_id, None)
        record = OrderSnapshot.of(order)
        key = (order.account_id, order.client_order_id)
        self.finished[order.order_id] = record
        self.by_client_id[key] = record
        self._finished_today.append((key, order.order_id))

    def _on_day_opened(self, e: TradingDayOpened) -> None:
        day = self.day
        day.date, day.is_open, day.version = e.trading_date, True, e.version
        day.exposure_mode, day.opened_ns = e.exposure_mode, e.ts_ns
        day.gross = e.exposure_mode == ExposureMode.GROSS
        day.scheduled_close_ns = e.scheduled_close_ns
        # Exposure restarts from the orders carried over (GTC): yesterday's executions and
        # expired orders no longer count against today's limits.
        for account in self.accounts.values():
            account.exposure.reset()
        self.firm_exposure.reset()
        for order in self.orders.values():
            if order.status in LIVE_STATUSES:
                notional = order.exposure_price * (order.quantity - order.filled_quantity)
                if order.pending_replace is not None:
                    notional += order.pending_replace.reserved
                self.accounts[order.account_id].exposure.enter(order.side, notional)
                self.firm_exposure.enter(order.side, notional)
        self.tape.new_day({s: Decimal(p) for s, p in e.previous_closes}, e.ts_ns)
        # Rule 201 lasts the trigger day and the next; the loss limit counts from the open.
        self.gov.prior_date = day.last_closed_date
        for account in self.accounts.values():
            account.day_start_value = account.mark(self.reference_price)
        # Idempotency records live for the day the order finished in and the next one
        # (FIX ClOrdID uniqueness is per day); older ones leave memory now.
        for key, order_id in self._finished_before:
            record = self.finished.pop(order_id, None)
            if record is not None and self.by_client_id.get(key) is record:
                del self.by_client_id[key]
        self._finished_before, self._finished_today = self._finished_today, []
        self.events_applied += 1

    def _on_day_closed(self, e: TradingDayClosed) -> None:
        day = self.day
        day.is_open, day.version = False, e.version
        day.last_closed_date = e.trading_date
        self.last_closes = {s: Decimal(p) for s, p in e.closing_prices}
        self.events_applied += 1

    def _on_bookkeeping(self, _e: Any) -> None:
        self.events_applied += 1

    def _forget_before(self, cutoff_ns: int) -> None:
        queue, recent = self._recent_queue, self.recent_orders
        while queue and queue[0][0] <= cutoff_ns:
            ts, key = queue.popleft()
            if recent.get(key) == ts:
                del recent[key]
                del self.recent_owner[key]


def _no_bid(_symbol: str) -> Decimal | None:
    return None


def _priority(order: Order) -> int:
    return order.priority
