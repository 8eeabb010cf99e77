"""The book of record as plain data and back: what a snapshot stores.

Recovery starts from the latest trusted snapshot and replays only the log after it, so
restart time stops growing with history. The snapshot holds exactly the state that
``BookOfRecord.apply`` builds (live orders, the idempotency records still kept, the
duplicate window, the trading day, the tape, exposure, positions and cash); instruments and
limits come from the configuration as at any start. A test replays the log from zero and
compares it with snapshot + tail, field by field.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal
from typing import Any
from uuid import UUID, SafeUUID

from domain.book_of_record import BookOfRecord
from domain.orders import Order, OrderSnapshot, PendingReplace
from domain.reference_prices import ReferencePrice

FORMAT = 2

_ORDER_FIELDS = ("order_id", "account_id", "client_order_id", "symbol", "side", "quantity",
                 "order_type", "limit_price", "time_in_force", "ts_ns", "original_quantity",
                 "original_limit_price", "status", "filled_quantity", "filled_notional",
                 "exposure_price", "protection_price", "version", "reject", "priority",
                 "pending_cancel", "pending_replace", "request_seq")
_DECIMALS = frozenset({"limit_price", "original_limit_price", "filled_notional",
                       "exposure_price", "protection_price"})


_SET_INT = UUID.__dict__["int"].__set__
_SET_SAFE = UUID.__dict__["is_safe"].__set__


def _uuid(hex_text: str) -> UUID:
    # UUID(hex=...) validates at ~3 us; a restart rebuilds hundreds of thousands of them from
    # text this module wrote itself (int() still refuses anything but hex).
    uid = object.__new__(UUID)
    _SET_INT(uid, int(hex_text, 16))
    _SET_SAFE(uid, SafeUUID.unknown)
    return uid


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _undec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _order_state(order: Order) -> list[Any]:
    values: list[Any] = []
    for name in _ORDER_FIELDS:
        value = getattr(order, name)
        if name in _DECIMALS:
            value = _dec(value)
        elif name == "order_id":
            value = value.hex
        elif name == "pending_replace" and value is not None:
            value = [value.quantity, str(value.limit_price), str(value.reserved)]
        elif name == "reject" and value is not None:
            value = list(value)
        values.append(value)
    return values


def _order_from(values: list[Any]) -> Order:
    order = Order.__new__(Order)
    for name, saved in zip(_ORDER_FIELDS, values, strict=True):
        value: Any = saved
        if name in _DECIMALS:
            value = _undec(saved)
        elif name == "order_id":
            value = _uuid(saved)
        elif name == "pending_replace" and saved is not None:
            value = PendingReplace(saved[0], Decimal(saved[1]), Decimal(saved[2]))
        elif name == "reject" and saved is not None:
            value = tuple(saved)
        setattr(order, name, value)
    return order


def _record_state(r: OrderSnapshot) -> list[Any]:
    return [r.order_id.hex, r.client_order_id, r.account_id, r.symbol, r.side, r.quantity,
            r.order_type, _dec(r.limit_price), r.time_in_force, r.status, r.filled_quantity,
            str(r.filled_notional), None if r.reject is None else list(r.reject),
            r.original_quantity, _dec(r.original_limit_price), r.version]


def _record_from(v: list[Any]) -> OrderSnapshot:
    return OrderSnapshot(_uuid(v[0]), v[1], v[2], v[3], v[4], v[5], v[6], _undec(v[7]),
                         v[8], v[9], v[10], Decimal(v[11]),
                         None if v[12] is None else tuple(v[12]),
                         v[13], _undec(v[14]), v[15])


def _reference_state(r: ReferencePrice) -> list[Any]:
    return [str(r.price), r.source, r.as_of_ns]


def _reference_from(v: list[Any]) -> ReferencePrice:
    return ReferencePrice(Decimal(v[0]), v[1], v[2])


def _records(book: BookOfRecord, finished: list[tuple[tuple[str, str], UUID]]
             ) -> list[list[Any]]:
    return [_record_state(book.finished[order_id]) for _, order_id in finished
            if order_id in book.finished]


def _restore_records(book: BookOfRecord, saved: list[list[Any]]
                     ) -> list[tuple[tuple[str, str], UUID]]:
    keyed = []
    for values in saved:
        record = _record_from(values)
        key = (record.account_id, record.client_order_id)
        book.finished[record.order_id] = record
        book.by_client_id[key] = record
        keyed.append((key, record.order_id))
    return keyed


def state_of(book: BookOfRecord) -> dict[str, Any]:
    day = book.day
    return {
        "format": FORMAT,
        "events_applied": book.events_applied,
        "priority_seq": book.priority_seq,
        "request_seq": book.request_seq,
        "day": [day.date, day.is_open, day.exposure_mode, day.opened_ns,
                day.scheduled_close_ns, day.last_closed_date, day.version],
        "last_closes": {s: str(p) for s, p in book.last_closes.items()},
        "last_sale": {s: _reference_state(r) for s, r in book.tape.last_sale.items()},
        "previous_close": {s: _reference_state(r) for s, r in book.tape.previous_close.items()},
        "firm_exposure": book.firm_exposure.state(),
        "accounts": {
            a.account_id: {"cash": str(a.cash), "positions": a.positions,
                           "exposure": a.exposure.state()}
            for a in book.accounts.values()
        },
        "orders": [_order_state(o) for o in book.orders.values()],
        # Every kept record is in one of the two days' lists (finished today / the day
        # before): stored by day, so a restore builds each record once.
        "finished_today": _records(book, book._finished_today),
        "finished_before": _records(book, book._finished_before),
        "recent": [[ts, [k[0], k[1], k[2], k[3], _dec(k[4])]]
                   for ts, k in book._recent_queue if book.recent_orders.get(k) == ts],
    }


def restore(book: BookOfRecord, state: dict[str, Any]) -> None:
    """Load ``state`` into a freshly constructed book (same configuration)."""
    if state.get("format") != FORMAT:
        raise ValueError(f"unknown book snapshot format {state.get('format')!r}")
    book.events_applied = state["events_applied"]
    book.priority_seq = state["priority_seq"]
    book.request_seq = state["request_seq"]
    day = book.day
    (day.date, day.is_open, day.exposure_mode, day.opened_ns, day.scheduled_close_ns,
     day.last_closed_date, day.version) = state["day"]
    day.gross = day.exposure_mode == "gross"
    book.last_closes = {s: Decimal(p) for s, p in state["last_closes"].items()}
    book.tape.last_sale = {s: _reference_from(v) for s, v in state["last_sale"].items()}
    book.tape.previous_close = {s: _reference_from(v)
                                for s, v in state["previous_close"].items()}
    book.firm_exposure.restore(state["firm_exposure"])
    for account_id, saved in state["accounts"].items():
        account = book.accounts.get(account_id)
        if account is None:
            raise ValueError(f"snapshot holds account {account_id} that the configuration "
                             "no longer has; replay the log from the beginning instead")
        account.cash = Decimal(saved["cash"])
        account.positions = dict(saved["positions"])
        account.exposure.restore(saved["exposure"])
    for values in state["orders"]:
        order = _order_from(values)
        book.orders[order.order_id] = order
        book.by_client_id[(order.account_id, order.client_order_id)] = order
    book._finished_today = _restore_records(book, state["finished_today"])
    book._finished_before = _restore_records(book, state["finished_before"])
    book._recent_queue = deque()
    book.recent_orders = {}
    for ts, k in state["recent"]:
        key = (k[0], k[1], k[2], k[3], _undec(k[4]))
        book._recent_queue.append((ts, key))
        book.recent_orders[key] = ts
