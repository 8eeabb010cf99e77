"""Market invariants over a journal and an engine, for the tests that try to break them.

Each check reads the log as an auditor would (events in log order) or compares the engine's
book of record with its venue; each raises AssertionError naming what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any
from uuid import UUID

from domain.book_of_record import BookOfRecord
from domain.lifecycle import LIVE_STATUSES
from domain.orders import Order
from domain.values import OrderType, Side


def check_log(events: Iterable[tuple[int, Any]]) -> dict[str, int]:
    """Walk the log in order and check, for every fill, that it is within the terms in force
    at that point (the limit, or a market order's protection price, as last confirmed by the
    venue), not after a confirmed cancel, and not beyond the order's quantity; and that log
    order is time order. Returns counts of what it saw."""
    terms: dict[UUID, tuple[str, Decimal, int]] = {}  # side, limit, quantity in force
    filled: dict[UUID, int] = {}
    closed: set[UUID] = set()
    pending: set[UUID] = set()  # a cancel or replace requested, not yet resolved
    last_ts = 0
    seen = {"fills": 0, "cancels": 0, "replaces": 0, "events": 0, "racing_fills": 0}
    for position, e in events:
        seen["events"] += 1
        assert e.ts_ns >= last_ts, f"log order is not time order at {position}"
        last_ts = e.ts_ns
        kind = type(e).__name__
        if kind == "OrderAccepted":
            limit = e.limit_price if e.order_type == OrderType.LIMIT else e.protection_price
            terms[e.order_id] = (e.side, limit, e.quantity)
            filled[e.order_id] = 0
        elif kind in ("CancelRequested", "ReplaceRequested"):
            pending.add(e.order_id)
        elif kind == "OrderReplaced":
            side, _, _ = terms[e.order_id]
            terms[e.order_id] = (side, e.limit_price, e.quantity)
            seen["replaces"] += 1
            pending.discard(e.order_id)
        elif kind in ("ReplaceRejected", "CancelRejected") and e.stage == "venue":
            pending.discard(e.order_id)
        elif kind == "OrderCanceled":
            closed.add(e.order_id)
            seen["cancels"] += 1
            pending.discard(e.order_id)
        elif kind == "OrderFilled":
            seen["fills"] += 1
            # A fill on the old terms while a request is on its way (the race of a pipeline).
            seen["racing_fills"] += e.order_id in pending
            assert e.order_id not in closed, f"fill at {position} after a confirmed cancel"
            side, limit, quantity = terms[e.order_id]
            within = e.fill_price <= limit if side == Side.BUY else e.fill_price >= limit
            assert within, f"{side} filled at {e.fill_price} beyond {limit} ({position})"
            filled[e.order_id] += e.fill_quantity
            assert filled[e.order_id] == e.cumulative_quantity, position
            assert filled[e.order_id] <= quantity, f"overfilled at {position}"
    return seen


def check_exposure(book: BookOfRecord, events: Iterable[tuple[int, Any]]) -> None:
    """Gross exposure from the day's events alone: today's fills at their prices, plus every
    live order's leaves at its exposure price, plus what pending replaces hold back."""
    today: list[Any] = []
    for _, e in events:
        kind = type(e).__name__
        if kind == "TradingDayOpened":
            today = []
        elif kind == "OrderFilled":
            today.append(e)
    expected = dict.fromkeys(book.accounts, Decimal(0))
    for f in today:
        expected[f.account_id] += f.fill_price * f.fill_quantity
    for o in book.orders.values():
        assert o.status in LIVE_STATUSES, f"{o.order_id} is {o.status} but still in memory"
        reserved = o.pending_replace.reserved if o.pending_replace else 0
        expected[o.account_id] += o.exposure_price * (o.quantity - o.filled_quantity) + reserved
    for account_id, value in expected.items():
        got = book.accounts[account_id].exposure.value("gross")
        assert got == value, f"{account_id}: exposure {got}, the day's events imply {value}"
    assert book.firm_exposure.value("gross") == sum(expected.values(), Decimal(0))


def check_venue_agrees(book: BookOfRecord, venue: Any) -> None:
    """With no cycle in flight: what rests at the venue is exactly the book's resting orders,
    at their confirmed prices, queued in the book's priority order; nothing is pending."""
    resting: dict[UUID, tuple[Decimal, Order]] = {}
    for symbol_book in venue.books.values():
        for side in (symbol_book.bids, symbol_book.asks):
            for price in side.prices:
                level = side.levels[price]
                firm = [e for e in level if isinstance(e, Order)]
                assert [e.priority for e in firm] == sorted(e.priority for e in firm), (
                    f"queue at {price} is out of priority order")
                for entry in firm:
                    assert entry.order_id not in resting
                    resting[entry.order_id] = (price, entry)
    should_rest = {o.order_id: o for o in book.orders.values()
                   if o.status in LIVE_STATUSES and o.order_type == OrderType.LIMIT
                   and o.time_in_force in ("day", "gtc")}
    for o in book.orders.values():
        assert o.pending_cancel is None and o.pending_replace is None, (
            f"{o.order_id} still has a request pending with nothing in flight")
    assert set(resting) == set(should_rest), (
        f"venue rests {len(resting)} firm orders, the book {len(should_rest)}: "
        f"only at the venue {set(resting) - set(should_rest)}, "
        f"only in the book {set(should_rest) - set(resting)}")
    for order_id, (price, entry) in resting.items():
        order = should_rest[order_id]
        assert entry is order, "the venue rests another object than the book's order"
        assert price == order.limit_price, f"{order_id} rests at {price}, limit {order.limit_price}"
