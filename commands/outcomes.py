"""What a command returns once its events are durable."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, NamedTuple
from uuid import UUID

from domain.orders import Order
from domain.values import price_text


class OrderSnapshot(NamedTuple):
    """An order's fields frozen at acknowledgement.

    Taken in the engine thread (the only one allowed to read live ``Order`` objects) and
    cheap (~0.5 us); the text body is built later, in the caller's thread, off the hot path.
    """

    order_id: UUID
    client_order_id: str
    account_id: str
    symbol: str
    side: str
    quantity: int
    order_type: str
    limit_price: Decimal | None
    time_in_force: str
    status: str
    filled_quantity: int
    filled_notional: Decimal
    reject: tuple[str, str, str] | None

    @classmethod
    def of(cls, o: Order) -> OrderSnapshot:
        return cls(o.order_id, o.client_order_id, o.account_id, o.symbol, o.side, o.quantity,
                   o.order_type, o.limit_price, o.time_in_force, o.status, o.filled_quantity,
                   o.filled_notional, o.reject)

    def body(self) -> dict[str, Any]:
        """The API's order shape (same keys as the blotter view's ``order_body``)."""
        reject, filled = self.reject, self.filled_quantity
        return {
            "order_id": str(self.order_id),
            "client_order_id": self.client_order_id,
            "account_id": self.account_id,
            "symbol": self.symbol,
            "side": str(self.side),
            "quantity": self.quantity,
            "order_type": str(self.order_type),
            "limit_price": price_text(self.limit_price),
            "time_in_force": str(self.time_in_force),
            "status": str(self.status),
            "filled_quantity": filled,
            "average_fill_price": price_text(self.filled_notional / filled) if filled else None,
            "reject": None if reject is None else dict(
                zip(("control", "threshold", "observed"), reject, strict=True)),
        }


class Outcome(NamedTuple):
    # created | existing | conflict | not_found | updated | refused | done
    kind: str
    snapshot: OrderSnapshot | None = None
    detail: dict[str, Any] | None = None

    @property
    def order(self) -> dict[str, Any] | None:
        return None if self.snapshot is None else self.snapshot.body()
