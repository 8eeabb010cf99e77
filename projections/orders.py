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
from domain.lifecycle import action_of, transition
from domain.values import ZERO, OrderStatus
from projections.recorded import Recorded
from projections.tables import orders_view, select_by_keys

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

_UPDATE = orders_view.update().where(orders_view.c.order_id == sa.bindparam("key"))


class OrdersView:
    name = "orders"

    def process(self, conn: sa.Connection, batch: Sequence[Recorded]) -> None:
        batch = [r for r in batch if type(r.event) in ORDER_EVENTS]
        if not batch:
            return
        order_ids = list({str(r.event.order_id) for r in batch})
        rows = {row["order_id"]: dict(row) for row in select_by_keys(conn, orders_view, order_ids)}
        existing = set(rows)
        for recorded in batch:
            _apply(rows, recorded.event)
        created = [row for key, row in rows.items() if key not in existing]
        changed = [
            {"key": key, **{c: row[c] for c in MUTABLE_COLUMNS}}
            for key, row in rows.items()
            if key in existing
        ]
        if created:
            conn.execute(orders_view.insert(), created)
        if changed:
            conn.execute(_UPDATE, changed)


def _apply(rows: dict[str, dict[str, Any]], event: OrderEvent) -> None:
    key = str(event.order_id)
    if isinstance(event, OrderAccepted | OrderRejected):
        rows[key] = _first_row(event)
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
        row["status"] = transition(OrderStatus(row["status"]), action).value


def _first_row(event: OrderAccepted | OrderRejected) -> dict[str, Any]:
    rejected = isinstance(event, OrderRejected)
    return {
        "order_id": str(event.order_id),
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
