"""The orders view: one row per order, as the API and the CLI show it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from domain.events import (
    ORDER_EVENTS,
    OrderAccepted,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
)
from domain.lifecycle import TRANSITIONS, action_of, transition
from domain.values import ZERO, OrderStatus
from projections.recorded import Recorded, key_of
from projections.tables import (
    decimal_binder,
    decimal_columns,
    fetch_by_keys,
    insert_rows,
    orders_view,
    update_rows,
)

# Columns an event after the first can change; the rest are fixed at acceptance/rejection.
MUTABLE_COLUMNS = (
    "quantity",
    "limit_price",
    "status",
    "filled_quantity",
    "filled_notional",
    "version",
    "updated_ns",
)

_FIRST = (OrderAccepted, OrderRejected)
_NEXT_STATUS = {(status.value, action): to.value for (status, action), to in TRANSITIONS.items()}

COLUMNS = tuple(c.name for c in orders_view.columns)
_DECIMALS = tuple(i for i, c in enumerate(COLUMNS) if c in decimal_columns(orders_view))
_MUTABLE_DECIMALS = tuple(
    i for i, c in enumerate(MUTABLE_COLUMNS) if c in decimal_columns(orders_view))


class OrdersView:
    name = "orders"

    def process(self, conn: sa.Connection, batch: Sequence[Recorded]) -> None:
        batch = [r for r in batch if type(r.event) in ORDER_EVENTS]
        if not batch:
            return
        keyed = [(r.key if r.key is not None else key_of(r), r.event) for r in batch]
        order_ids = list({key for key, _ in keyed})
        rows = {row["order_id"]: row for row in fetch_by_keys(conn, orders_view, order_ids)}
        existing = set(rows)
        for key, event in keyed:
            _apply(rows, key, event)
        # Positional rows written at the driver level (insert_rows/update_rows in
        # projections/tables.py): the values Core bound before, without its per-row work.
        bind = decimal_binder(conn)
        created = []
        changed = []
        for key, row in rows.items():
            if key in existing:
                values = [row[c] for c in MUTABLE_COLUMNS]
                for i in _MUTABLE_DECIMALS:
                    values[i] = bind(values[i])
                values.append(key)
                changed.append(tuple(values))
            else:
                values = [row[c] for c in COLUMNS]
                for i in _DECIMALS:
                    values[i] = bind(values[i])
                created.append(tuple(values))
        insert_rows(conn, orders_view, COLUMNS, created)
        update_rows(conn, orders_view, MUTABLE_COLUMNS, ("order_id",), changed)


def _apply(rows: dict[str, dict[str, Any]], key: str, event: OrderEvent) -> None:
    if isinstance(event, _FIRST):
        rows[key] = _first_row(key, event)
        return
    row = rows[key]
    row["version"] = event.version
    row["updated_ns"] = event.ts_ns
    match event:
        case OrderFilled():
            row["filled_quantity"] = event.cumulative_quantity
            row["filled_notional"] += event.fill_price * event.fill_quantity
        case OrderReplaced():
            row["quantity"] = event.quantity
            row["limit_price"] = event.limit_price
    # The status moves through the lifecycle table the engine uses (one rule for both);
    # refusals on request leave it as it was, only the version moves.
    action = action_of(event, row["filled_quantity"])
    if action is not None:
        # TRANSITIONS by status text (the row's form); a pair it lacks goes through
        # transition, which raises as it always did.
        status = _NEXT_STATUS.get((row["status"], action))
        if status is None:
            status = transition(OrderStatus(row["status"]), action).value
        row["status"] = status


def _first_row(key: str, event: OrderAccepted | OrderRejected) -> dict[str, Any]:
    rejected = isinstance(event, OrderRejected)
    return {
        "order_id": key,
        "client_order_id": event.client_order_id,
        "account_id": event.account_id,
        "symbol": event.symbol,
        "side": event.side,
        "quantity": event.quantity,
        "order_type": event.order_type,
        "limit_price": event.limit_price,
        "time_in_force": event.time_in_force,
        "status": (OrderStatus.REJECTED if rejected else OrderStatus.ACCEPTED).value,
        "filled_quantity": 0,
        "filled_notional": ZERO,
        "reject_control": event.control if rejected else None,
        "reject_threshold": event.threshold if rejected else None,
        "reject_observed": event.observed if rejected else None,
        "version": event.version,
        "created_ns": event.ts_ns,
        "updated_ns": event.ts_ns,
    }
