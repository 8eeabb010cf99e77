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
from dataclasses import fields
from decimal import Decimal
from typing import Any
from uuid import UUID, SafeUUID

from domain.book_of_record import BookOfRecord
from domain.governance import Governance, Locate, User
from domain.limits import SymbolLimits, parse_value, with_value
from domain.orders import Order, OrderSnapshot, PendingReplace
from domain.reference_prices import ReferencePrice

FORMAT = 4  # 3: governance (issue 7), open long sells, the day's starting values, strategy
# 4: the strategies' runs. A format-3 snapshot is still read: the code that wrote it knew no
# strategy events, so none precede it and its strategies are none (exact, not a guess).
READABLE = frozenset({3, FORMAT})

_ORDER_FIELDS = ("order_id", "account_id", "client_order_id", "symbol", "side", "quantity",
                 "order_type", "limit_price", "time_in_force", "ts_ns", "original_quantity",
                 "original_limit_price", "status", "filled_quantity", "filled_notional",
                 "exposure_price", "protection_price", "version", "reject", "priority",
                 "pending_cancel", "pending_replace", "request_seq", "strategy")
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
                           "exposure": a.exposure.state(), "sell_open": a.sell_open,
                           "day_start_value": str(a.day_start_value),
                           "limits": _limits_state(a.limits)}
            for a in book.accounts.values()
        },
        "orders": [_order_state(o) for o in book.orders.values()],
        # Every kept record is in one of the two days' lists (finished today / the day
        # before): stored by day, so a restore builds each record once.
        "finished_today": _records(book, book._finished_today),
        "finished_before": _records(book, book._finished_before),
        "recent": [[ts, [k[0], k[1], k[2], k[3], _dec(k[4])], book.recent_owner[k].hex]
                   for ts, k in book._recent_queue if book.recent_orders.get(k) == ts],
        "firm_limits": _limits_state(book.firm),
        "governance": _governance_state(book.gov),
    }


def _limits_state(limits: Any) -> dict[str, str]:
    return {f.name: str(getattr(limits, f.name)) for f in fields(limits)
            if f.name not in ("record", "defaults", "restricted_symbols", "exposure_mode",
                              "version_text")}


def _limits_from(current: Any, saved: dict[str, str]) -> Any:
    for name, text in saved.items():
        if name != "version":
            current = with_value(current, name, parse_value(current, name, text),
                                 int(saved["version"]))
    return current


def _event_values(event: Any) -> list[Any]:
    return [v.hex if isinstance(v, UUID) else _dec(v) if isinstance(v, Decimal)
            else list(v) if isinstance(v, tuple) else v for v in event]


def _governance_state(gov: Governance) -> dict[str, Any]:
    return {
        "versions": {k.hex: v for k, v in gov.versions.items()},
        "users": [[u.username, u.role, sorted(u.accounts), u.active]
                  for u in gov.users.values()],
        "keys": {key_id: [u.hex, user, sha] for key_id, (u, user, sha) in gov.key_ids.items()},
        "suspended": sorted(gov.suspended),
        "halted": gov.halted,
        "ssr": gov.ssr,
        "prior_date": gov.prior_date,
        "locates": [[loc.locate_id.hex, loc.account_id, loc.symbol, loc.requested, loc.granted,
                     loc.remaining, loc.expires_ns, loc.status] for loc in gov.locates.values()],
        "tripped": {scope: _event_values(e) for scope, e in gov.tripped.items()},
        "windows": gov.windows.state(),
        "symbol_limits": {s: _limits_state(v) for s, v in gov.symbol_limits.items()},
        "pending": [_event_values(e) for e in gov.pending.values()],
        "temporary": [[_event_values(e), before] for e, before in gov.temporary.values()],
        "denials": gov.denials,
        "strategies": {k: list(v) for k, v in gov.strategies.items()},
    }


def _event_from(cls: Any, values: list[Any]) -> Any:
    out = []
    for name, saved in zip(cls._fields, values, strict=True):
        annotation = cls.__annotations__[name]
        kind = getattr(annotation, "__forward_arg__", str(annotation))
        value: Any = saved
        if saved is not None and "UUID" in kind:
            value = _uuid(saved)
        elif saved is not None and "Decimal" in kind:
            value = Decimal(saved)
        elif saved is not None and kind.startswith("tuple"):
            value = tuple(saved)
        out.append(value)
    return cls(*out)


def _restore_governance(gov: Governance, saved: dict[str, Any]) -> None:
    from domain.governance_events import (
        KillSwitchTripped,
        LimitChangeApproved,
        LimitChangeRequested,
    )

    gov.versions = {_uuid(k): v for k, v in saved["versions"].items()}
    gov.users = {name: User(name, role, frozenset(accounts), active)
                 for name, role, accounts, active in saved["users"]}
    gov.key_ids = {key_id: (_uuid(u), user, sha) for key_id, (u, user, sha)
                   in saved["keys"].items()}
    gov.keys = {sha: (key_id, user) for key_id, (_, user, sha) in gov.key_ids.items()}
    gov.suspended = set(saved["suspended"])
    gov.halted = dict(saved["halted"])
    gov.ssr = dict(saved["ssr"])
    gov.prior_date = saved["prior_date"]
    gov.locates = {}
    for lid, account, symbol, requested, granted, remaining, expires, status in \
            saved["locates"]:
        loc = Locate(_uuid(lid), account, symbol, requested)
        loc.granted, loc.remaining, loc.expires_ns, loc.status = (granted, remaining, expires,
                                                                  status)
        gov.locates[loc.locate_id] = loc
    gov.tripped = {scope: _event_from(KillSwitchTripped, v)
                   for scope, v in saved["tripped"].items()}
    gov.windows.restore(saved["windows"])
    gov.firm_rate = gov.windows.rate("")
    gov.symbol_limits = {s: _limits_from(SymbolLimits(), v)
                         for s, v in saved["symbol_limits"].items()}
    pending = [_event_from(LimitChangeRequested, v) for v in saved["pending"]]
    gov.pending = {e.change_id: e for e in pending}
    gov.temporary = {}
    for values, before in saved["temporary"]:
        approval = _event_from(LimitChangeApproved, values)
        gov.temporary[approval.change_id] = (approval, before)
    gov.fills_since_sweep = 1  # the engine's own bookkeeping: sweep once after a restart
    gov.denials = saved["denials"]
    gov.strategies = {k: (run, running, account)
                      for k, (run, running, account) in saved.get("strategies", {}).items()}


def restore(book: BookOfRecord, state: dict[str, Any]) -> None:
    """Load ``state`` into a freshly constructed book (same configuration)."""
    if state.get("format") not in READABLE:
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
        account.sell_open = dict(saved["sell_open"])
        account.day_start_value = Decimal(saved["day_start_value"])
        account.limits = _limits_from(account.limits, saved["limits"])
        book.widen_duplicate_window(account.limits.duplicate_window_ns)
    for values in state["orders"]:
        order = _order_from(values)
        book.orders[order.order_id] = order
        book.by_client_id[(order.account_id, order.client_order_id)] = order
    book._finished_today = _restore_records(book, state["finished_today"])
    book._finished_before = _restore_records(book, state["finished_before"])
    book.firm = _limits_from(book.firm, state["firm_limits"])
    _restore_governance(book.gov, state["governance"])
    book._recent_queue = deque()
    book.recent_orders = {}
    book.recent_owner = {}
    for ts, k, owner in state["recent"]:
        key = (k[0], k[1], k[2], k[3], _undec(k[4]))
        book._recent_queue.append((ts, key))
        book.recent_orders[key] = ts
        book.recent_owner[key] = _uuid(owner)
