"""The venue step: what the venue does with a cycle's releases once they are durable.

Record before release (15c3-5; ARCHITECTURE rule 2): this runs only after the decisions it
acts on are journaled. It sends accepted orders, cancel requests and replace requests to the
venue in the order they were decided (log order), and turns every execution, remainder and
confirmation into an event through the book of record, stamped when it happened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any
from uuid import UUID

from commands.decisions import Release, ReleaseKind
from commands.ports import Venue
from domain.book_of_record import LIQUIDITY_PROVIDER, BookOfRecord
from domain.events import OrderReplaced
from domain.lifecycle import LIVE_STATUSES
from domain.orders import Order
from domain.values import CancelReason, OrderType, TimeInForce

# Enum members as plain module names: on CPython 3.11 a member lookup (Side.BUY) costs
# ~0.1 us, and these run several times per order.
NEW = ReleaseKind.NEW
CANCEL = ReleaseKind.CANCEL
FOK = TimeInForce.FOK
IOC = TimeInForce.IOC
MARKET = OrderType.MARKET



class VenueStep:
    def __init__(self, book: BookOfRecord, venue: Venue, new_id: Callable[[], UUID],
                 stamp: Callable[[], int]) -> None:
        self.book = book
        self.venue = venue
        self.new_id = new_id
        self.stamp = stamp
        self._events: list[Any] = []
        self._now = 0

    def run(self, releases: Sequence[Release]) -> list[Any]:
        """Send releases to the venue in decision order; the events they caused."""
        if not releases:
            # Nothing to send: the market stays as it was. (The engine's own cycles, such
            # as its timed sweeps, come at moments of the wall clock; a requote in them
            # would make a seeded session depend on timing.)
            return []
        events: list[Any] = []
        self._events = events
        self.venue.requote()
        for kind, order in releases:
            self._now = self.stamp()
            if kind is NEW:
                self._execute(order)
            elif kind is CANCEL:
                self._cancel(order)
            else:
                self._replace(order)
        self._events = []
        return events

    def rerelease(self, book: BookOfRecord) -> list[Any]:
        """After a restart: live orders re-enter the venue in time priority, then requests
        whose confirmation was lost are resolved in the order they were made.

        An order whose venue step was lost (a crash between its decision commit and its
        fills commit) trades, rests or has its IOC/FOK/market remainder cancelled now, so
        the recovered book is never crossed and every durable acceptance reaches the venue
        exactly once.
        """
        events: list[Any] = []
        self._events = events
        self._now = self.stamp()
        for order in book.live_orders():
            self._execute(order)
        pending = sorted((o for o in book.orders.values()
                          if o.pending_replace is not None or o.pending_cancel is not None),
                         key=_request_seq)
        for order in pending:
            if order.pending_replace is not None:
                self._replace(order)
            if order.pending_cancel is not None:
                self._cancel(order)
        self._events = []
        return events

    # ------------------------------------------------------------------ the three kinds

    def _execute(self, order: Order) -> None:
        if order.status not in LIVE_STATUSES:
            return
        venue, tif = self.venue, order.time_in_force
        if tif == FOK and not venue.can_fill_completely(order):
            self._remainder(order, CancelReason.FOK_UNFILLED)
            return
        if not venue.match(order, self._on_execution):
            self._remainder(order, CancelReason.SELF_TRADE_PREVENTED)
            return
        if order.status in LIVE_STATUSES:
            if tif == IOC:
                self._remainder(order, CancelReason.IOC_REMAINDER)
            elif order.order_type == MARKET:
                self._remainder(order, CancelReason.MARKET_NO_LIQUIDITY)

    def _cancel(self, order: Order) -> None:
        if order.status in LIVE_STATUSES:
            self.venue.remove(order)
        self._events.append(self.book.confirm_cancel(order, self._now))

    def _replace(self, order: Order) -> None:
        price = order.limit_price
        event = self.book.confirm_replace(order, self._now)
        self._events.append(event)
        if type(event) is not OrderReplaced:
            return
        # A smaller size keeps its place: the resting entry is the order itself. A new
        # price or a larger size goes to the back, and re-entering may trade at once.
        if event.lost_priority and self.venue.remove(order, price):
            self._execute(order)

    def _remainder(self, order: Order, reason: str) -> None:
        self._events.append(self.book.cancel_remainder(order, reason, self._now))

    def _on_execution(self, taker: Order, maker: Any, quantity: int, price: Decimal) -> None:
        trade_id = self.new_id().hex
        book, now = self.book, self._now
        maker_is_order = isinstance(maker, Order)
        counterparty = str(maker.order_id) if maker_is_order else LIQUIDITY_PROVIDER
        self._events.append(
            book.fill(taker, quantity, price, trade_id, "taker", counterparty, now))
        if maker_is_order:
            self._events.append(
                book.fill(maker, quantity, price, trade_id, "maker", str(taker.order_id), now))


def _request_seq(order: Order) -> int:
    return order.request_seq
