"""The firm's book of record: instruments, accounts, orders and the pre-trade decisions.

One instance is owned by one engine thread (single writer, ARCHITECTURE rule 3). Every
decision method builds an event and then applies it through ``apply`` — the same path a
restart uses to rebuild this state from the journal, so live and replayed state cannot
drift apart.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any
from uuid import UUID

from domain import controls as c
from domain.accounts import Account
from domain.controls import NEW_ORDER_CONTROLS, REPLACE_CONTROLS
from domain.events import (
    CancelRejected,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    ReplaceRejected,
)
from domain.instruments import Instrument
from domain.lifecycle import LIVE_STATUSES, transition
from domain.limits import FirmLimits
from domain.orders import Order
from domain.values import ZERO, CancelReason, OrderType, Side, TimeInForce

VENUE_ACTOR = "venue"
VENUE_SOURCE = "venue"
# Counterparty recorded on fills against the venue's own liquidity, not a firm order.
LIQUIDITY_PROVIDER = "venue:liquidity-provider"

DuplicateKey = tuple[str, str, str, int, Decimal | None]


class BookOfRecord:
    def __init__(
        self,
        instruments: Iterable[Instrument],
        accounts: Iterable[Account],
        firm: FirmLimits,
    ) -> None:
        self.instruments = {i.symbol: i for i in instruments}
        self.accounts = {a.account_id: a for a in accounts}
        self.firm = firm
        self.orders: dict[UUID, Order] = {}
        self.by_client_id: dict[tuple[str, str], Order] = {}
        self.last_trade: dict[str, Decimal] = {}
        self.firm_exposure = ZERO
        self.events_applied = 0
        self._recent: dict[DuplicateKey, int] = {}
        self._recent_queue: deque[tuple[int, DuplicateKey]] = deque()
        self._max_window_ns = max(
            [firm.defaults.duplicate_window_ns]
            + [a.limits.duplicate_window_ns for a in self.accounts.values()]
        )
        self._handlers: dict[type, Callable[[Any], None]] = {
            OrderAccepted: self._on_accepted,
            OrderRejected: self._on_rejected,
            OrderFilled: self._on_filled,
            OrderCanceled: self._on_canceled,
            OrderReplaced: self._on_replaced,
            ReplaceRejected: self._on_version_only,
            CancelRejected: self._on_version_only,
        }

    # ------------------------------------------------------------------ queries

    def reference_price(self, symbol: str) -> Decimal | None:
        """Last trade, else the previous close; None when neither exists."""
        last = self.last_trade.get(symbol)
        if last is not None:
            return last
        instrument = self.instruments.get(symbol)
        return instrument.reference_price if instrument else None

    def find(self, account_id: str, client_order_id: str) -> Order | None:
        return self.by_client_id.get((account_id, client_order_id))

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
    ) -> OrderAccepted | OrderRejected:
        """Run every pre-trade control on a new order; the first failure rejects it."""
        head = (order_id, 1, now_ns, actor, source, account_id, symbol, client_order_id,
                side, quantity, order_type, limit_price, time_in_force)
        account = self.accounts.get(account_id)
        if account is None:
            return self._reject(head, 0, ("configured account", account_id), None, None, 0)
        limits = account.limits
        version = limits.version
        instrument = self.instruments.get(symbol)
        if instrument is None:
            return self._reject(head, 1, ("listed instrument", symbol), None, None, version)
        if symbol in self.firm.restricted_symbols or symbol in account.restricted_symbols:
            f = c.restricted(symbol, self.firm.restricted_symbols, account.restricted_symbols)
            return self._reject(head, 2, f, None, None, version)  # type: ignore[arg-type]
        f = c.lot_size(quantity, instrument.lot_size)
        if f:
            return self._reject(head, 3, f, None, None, version)
        f = c.tick_size(limit_price, instrument.tick_size)
        if f:
            return self._reject(head, 4, f, None, None, version)
        f = c.max_quantity(quantity, limits.max_order_quantity)
        if f:
            return self._reject(head, 5, f, None, None, version)
        last = self.last_trade.get(symbol)
        reference = instrument.reference_price if last is None else last
        f = c.price_collar(limit_price, reference, limits.price_collar_pct)
        if f:
            return self._reject(head, 6, f, reference, None, version)
        assert reference is not None
        exposure_price = reference if limit_price is None else limit_price
        notional = exposure_price * quantity
        f = c.max_notional(notional, limits.max_order_notional)
        if f:
            return self._reject(head, 7, f, reference, None, version)
        key = (account_id, symbol, side, quantity, limit_price)
        queue = self._recent_queue
        if queue and queue[0][0] <= now_ns - self._max_window_ns:
            self._forget_before(now_ns - self._max_window_ns)
        f = c.duplicate(self._recent.get(key), now_ns, limits.duplicate_window_ns)
        if f:
            return self._reject(head, 8, f, reference, None, version)
        exposure_before = account.exposure
        f = c.credit(exposure_before, notional, limits.credit_limit)
        if f:
            return self._reject(head, 9, f, reference, exposure_before, version)
        f = c.credit(self.firm_exposure, notional, self.firm.credit_limit)
        if f:
            return self._reject(head, 10, f, reference, exposure_before, version)
        event = OrderAccepted(*head, reference, exposure_price, exposure_before,
                              self.firm_exposure, version, limits.record, NEW_ORDER_CONTROLS)
        self._on_accepted(event)
        return event

    def _reject(self, head: tuple[Any, ...], index: int, failure: tuple[str, str],
                reference: Decimal | None, exposure: Decimal | None,
                version: int) -> OrderRejected:
        event = OrderRejected(*head, NEW_ORDER_CONTROLS[index], failure[0],  # type: ignore[call-arg]
                              failure[1], reference, exposure, version,
                              NEW_ORDER_CONTROLS[:index])
        self._on_rejected(event)
        return event

    def cancel(
        self, order: Order, actor: str, source: str, now_ns: int,
        reason: str = CancelReason.REQUESTED,
    ) -> OrderCanceled | CancelRejected:
        if order.status not in LIVE_STATUSES:
            event: OrderCanceled | CancelRejected = CancelRejected(
                order.order_id, order.version + 1, now_ns, actor, source, order.account_id,
                order.symbol, f"order is {order.status}", str(order.status))
        else:
            event = OrderCanceled(order.order_id, order.version + 1, now_ns, actor, source,
                                  order.account_id, order.symbol, order.leaves_quantity, reason)
        self.apply(event)
        return event

    def replace(
        self, order: Order, quantity: int | None, limit_price: Decimal | None,
        actor: str, source: str, now_ns: int,
    ) -> OrderReplaced | ReplaceRejected:
        """Run the controls again on the order as it would be after the replace."""
        new_quantity = order.quantity if quantity is None else quantity
        new_price = order.limit_price if limit_price is None else limit_price

        def reject(control: str, threshold: str, observed: str) -> ReplaceRejected:
            event = ReplaceRejected(order.order_id, order.version + 1, now_ns, actor, source,
                                    order.account_id, order.symbol, quantity, limit_price,
                                    control, threshold, observed)
            self.apply(event)
            return event

        if order.status not in LIVE_STATUSES:
            return reject("order_status", "live order", str(order.status))
        if order.order_type != OrderType.LIMIT:
            return reject("order_type", "limit order", str(order.order_type))
        if new_quantity <= order.filled_quantity:
            return reject("min_quantity", f"> {order.filled_quantity} filled",
                          str(new_quantity))
        account = self.accounts[order.account_id]
        limits = account.limits
        instrument = self.instruments[order.symbol]
        for name, f in (
            ("lot_size", c.lot_size(new_quantity, instrument.lot_size)),
            ("tick_size", c.tick_size(new_price, instrument.tick_size)),
            ("max_qty", c.max_quantity(new_quantity, limits.max_order_quantity)),
        ):
            if f:
                return reject(name, *f)
        reference = self.reference_price(order.symbol)
        f = c.price_collar(new_price, reference, limits.price_collar_pct)
        if f:
            return reject("price_collar", *f)
        assert reference is not None and new_price is not None
        f = c.max_notional(new_price * new_quantity, limits.max_order_notional)
        if f:
            return reject("max_notional", *f)
        old_leaves = order.quantity - order.filled_quantity
        new_leaves = new_quantity - order.filled_quantity
        delta = new_price * new_leaves - order.exposure_price * old_leaves
        exposure_before = account.exposure
        if delta > 0:  # reducing exposure is always allowed, even above a lowered limit
            f = c.credit(exposure_before, delta, limits.credit_limit)
            if f:
                return reject("credit", *f)
            f = c.credit(self.firm_exposure, delta, self.firm.credit_limit)
            if f:
                return reject("firm_credit", *f)
        event = OrderReplaced(order.order_id, order.version + 1, now_ns, actor, source,
                              order.account_id, order.symbol, order.quantity, order.limit_price,
                              new_quantity, new_price, reference, exposure_before,
                              self.firm_exposure, limits.version, REPLACE_CONTROLS)
        self.apply(event)
        return event

    def fill(
        self, order: Order, quantity: int, price: Decimal, trade_id: str, liquidity: str,
        counterparty: str, now_ns: int,
    ) -> OrderFilled:
        leaves = order.quantity - order.filled_quantity
        if not 0 < quantity <= leaves or order.status not in LIVE_STATUSES:
            raise ValueError(f"venue reported {quantity} filled on {order.order_id} "
                             f"({order.status}, leaves {leaves})")
        event = OrderFilled(order.order_id, order.version + 1, now_ns, VENUE_ACTOR, VENUE_SOURCE,
                            order.account_id, order.symbol, order.side, trade_id, quantity, price,
                            order.filled_quantity + quantity, leaves - quantity, liquidity,
                            counterparty)
        self._on_filled(event)
        return event

    def end_of_day(self, actor: str, source: str, now_ns: int) -> list[OrderCanceled]:
        """Cancel every live DAY order (market orders never rest past their release)."""
        return [
            self.cancel(order, actor, source, now_ns, CancelReason.END_OF_DAY)  # type: ignore[misc]
            for order in list(self.orders.values())
            if order.status in LIVE_STATUSES and order.time_in_force == TimeInForce.DAY
        ]

    # ------------------------------------------------------------------ applying

    def apply(self, event: Any) -> None:
        self._handlers[type(event)](event)

    def _register(self, event: OrderAccepted | OrderRejected) -> Order:
        order = Order(event.order_id, event.account_id, event.client_order_id, event.symbol,
                      event.side, event.quantity, event.order_type, event.limit_price,
                      event.time_in_force, event.ts_ns)
        order.version = event.version
        self.orders[event.order_id] = order
        self.by_client_id[(event.account_id, event.client_order_id)] = order
        self.events_applied += 1
        return order

    def _on_accepted(self, e: OrderAccepted) -> None:
        order = self._register(e)
        order.status = transition(order.status, "accept")
        order.exposure_price = e.exposure_price
        notional = e.exposure_price * e.quantity
        self.accounts[e.account_id].exposure += notional
        self.firm_exposure += notional
        key = (e.account_id, e.symbol, e.side, e.quantity, e.limit_price)
        self._recent[key] = e.ts_ns
        self._recent_queue.append((e.ts_ns, key))

    def _on_rejected(self, e: OrderRejected) -> None:
        order = self._register(e)
        order.status = transition(order.status, "reject")
        order.reject = (e.control, e.threshold, e.observed)

    def _on_filled(self, e: OrderFilled) -> None:
        order = self.orders[e.order_id]
        order.status = transition(order.status, "partial_fill" if e.leaves_quantity else "fill")
        order.filled_quantity = e.cumulative_quantity
        order.version = e.version
        notional = e.fill_price * e.fill_quantity
        order.filled_notional += notional
        delta = notional - order.exposure_price * e.fill_quantity
        account = self.accounts[e.account_id]
        account.exposure += delta
        self.firm_exposure += delta
        signed = e.fill_quantity if order.side == Side.BUY else -e.fill_quantity
        account.positions[e.symbol] = account.positions.get(e.symbol, 0) + signed
        account.cash -= notional if signed > 0 else -notional
        self.last_trade[e.symbol] = e.fill_price
        self.events_applied += 1

    def _on_canceled(self, e: OrderCanceled) -> None:
        order = self.orders[e.order_id]
        order.status = transition(order.status, "cancel")
        order.version = e.version
        released = order.exposure_price * e.canceled_quantity
        self.accounts[e.account_id].exposure -= released
        self.firm_exposure -= released
        self.events_applied += 1

    def _on_replaced(self, e: OrderReplaced) -> None:
        order = self.orders[e.order_id]
        order.status = transition(order.status, "replace")
        assert e.limit_price is not None
        old = order.exposure_price * (order.quantity - order.filled_quantity)
        new = e.limit_price * (e.quantity - order.filled_quantity)
        self.accounts[e.account_id].exposure += new - old
        self.firm_exposure += new - old
        if e.limit_price != order.limit_price or e.quantity > order.quantity:
            # A new price or a larger size loses time priority at the venue; ``orders`` keeps
            # acceptance order, which is the queue a restart rebuilds, so move it to the back.
            self.orders[e.order_id] = self.orders.pop(e.order_id)
        order.quantity = e.quantity
        order.limit_price = e.limit_price
        order.exposure_price = e.limit_price
        order.version = e.version
        self.events_applied += 1

    def _on_version_only(self, e: ReplaceRejected | CancelRejected) -> None:
        self.orders[e.order_id].version = e.version
        self.events_applied += 1

    def _forget_before(self, cutoff_ns: int) -> None:
        queue, recent = self._recent_queue, self._recent
        while queue and queue[0][0] <= cutoff_ns:
            ts, key = queue.popleft()
            if recent.get(key) == ts:
                del recent[key]
