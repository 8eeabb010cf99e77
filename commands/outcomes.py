"""What a command returns once its events are durable."""

from __future__ import annotations

from typing import Any, NamedTuple

from domain.orders import Order
from domain.values import price_text


class Outcome(NamedTuple):
    # created | existing | conflict | not_found | updated | refused | done
    kind: str
    order: dict[str, Any] | None = None
    detail: dict[str, Any] | None = None


def order_body(order: Order) -> dict[str, Any]:
    """The API's order shape, from the engine's live view (same keys as the blotter view)."""
    reject = order.reject
    return {
        "order_id": str(order.order_id),
        "client_order_id": order.client_order_id,
        "account_id": order.account_id,
        "symbol": order.symbol,
        "side": str(order.side),
        "quantity": order.quantity,
        "order_type": str(order.order_type),
        "limit_price": price_text(order.limit_price),
        "time_in_force": str(order.time_in_force),
        "status": str(order.status),
        "filled_quantity": order.filled_quantity,
        "average_fill_price": price_text(order.average_fill_price),
        "reject": None if reject is None else dict(zip(("control", "threshold", "observed"),
                                                       reject, strict=True)),
    }
