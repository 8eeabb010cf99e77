"""The engine's live view of one order (rebuilt from its events on restart)."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from domain.values import ZERO, OrderStatus


class Order:
    # __slots__: the engine keeps every open order in memory (target <= 1 KiB each).
    __slots__ = (
        "account_id",
        "client_order_id",
        "exposure_price",
        "filled_notional",
        "filled_quantity",
        "limit_price",
        "order_id",
        "order_type",
        "quantity",
        "reject",
        "side",
        "status",
        "symbol",
        "time_in_force",
        "ts_ns",
        "version",
    )

    def __init__(
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
        ts_ns: int,
    ) -> None:
        self.order_id = order_id
        self.account_id = account_id
        self.client_order_id = client_order_id
        self.symbol = symbol
        self.side = side
        self.quantity = quantity
        self.order_type = order_type
        self.limit_price = limit_price
        self.time_in_force = time_in_force
        self.ts_ns = ts_ns
        self.status = OrderStatus.SUBMITTED
        self.filled_quantity = 0
        self.filled_notional = ZERO
        self.exposure_price = ZERO
        self.version = 0
        self.reject: tuple[str, str, str] | None = None  # (control, threshold, observed)

    @property
    def leaves_quantity(self) -> int:
        if self.status in (OrderStatus.CANCELED, OrderStatus.REJECTED):
            return 0
        return self.quantity - self.filled_quantity

    @property
    def average_fill_price(self) -> Decimal | None:
        if not self.filled_quantity:
            return None
        return self.filled_notional / self.filled_quantity
