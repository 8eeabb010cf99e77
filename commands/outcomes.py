"""What a command returns once its events are durable."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple

from domain.orders import OrderSnapshot
from domain.values import price_text


class OutcomeKind(StrEnum):
    CREATED = "created"  # a new order, accepted or rejected (both recorded)
    EXISTING = "existing"  # an idempotent resend: the original order, nothing journaled
    CONFLICT = "conflict"  # a resend of a client_order_id with other fields
    NOT_FOUND = "not_found"
    UPDATED = "updated"  # a cancel or replace the venue confirmed
    REFUSED = "refused"  # a cancel or replace refused (recorded)
    DONE = "done"  # an operator command (trading day, snapshot)


def snapshot_body(s: OrderSnapshot) -> dict[str, Any]:
    """The API's order shape (same keys as the blotter view's ``order_body``)."""
    reject, filled = s.reject, s.filled_quantity
    return {
        "order_id": str(s.order_id),
        "client_order_id": s.client_order_id,
        "account_id": s.account_id,
        "symbol": s.symbol,
        "side": str(s.side),
        "quantity": s.quantity,
        "order_type": str(s.order_type),
        "limit_price": price_text(s.limit_price),
        "time_in_force": str(s.time_in_force),
        "status": str(s.status),
        "filled_quantity": filled,
        "average_fill_price": price_text(s.filled_notional / filled) if filled else None,
        "reject": None if reject is None else dict(
            zip(("control", "threshold", "observed"), reject, strict=True)),
    }


class Outcome(NamedTuple):
    kind: OutcomeKind
    snapshot: OrderSnapshot | None = None
    detail: dict[str, Any] | None = None

    @property
    def order(self) -> dict[str, Any] | None:
        # Built in the caller's thread, off the engine's hot path.
        return None if self.snapshot is None else snapshot_body(self.snapshot)
