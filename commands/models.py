"""Commands: imperative requests, validated at the edge; the engine trusts them.

Identity (who acted, through what) is a field of every command, never a global:
authentication and roles come later and will fill these fields.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from domain.values import OrderType, Side, Source, TimeInForce

Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")]
Symbol = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[A-Z0-9][A-Z0-9.\-]*$")]
Quantity = Annotated[int, Field(strict=True, gt=0, le=1_000_000_000)]
Price = Annotated[Decimal, Field(gt=0, max_digits=20, decimal_places=8, allow_inf_nan=False)]


class OrderFields(BaseModel):
    """The public shape of a new order (the REST contract's body)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_order_id: Identifier
    account_id: Identifier
    symbol: Symbol
    side: Side
    quantity: Quantity
    order_type: OrderType
    limit_price: Price | None = Field(None, validate_default=True)
    time_in_force: TimeInForce = TimeInForce.DAY

    @field_validator("limit_price")
    @classmethod
    def _price_matches_type(cls, value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        order_type = info.data.get("order_type")
        if order_type == OrderType.LIMIT and value is None:
            raise ValueError("required for a limit order")
        if order_type == OrderType.MARKET and value is not None:
            raise ValueError("must be empty for a market order")
        return value


class Acting(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    actor: Identifier = "anonymous"
    source: Source = Source.API


class SubmitOrder(OrderFields, Acting):
    pass


class CancelOrder(Acting):
    order_id: UUID


class ReplaceFields(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    quantity: Quantity | None = None
    limit_price: Price | None = None

    @model_validator(mode="after")
    def _something_changes(self) -> Any:
        if self.quantity is None and self.limit_price is None:
            raise ValueError("give quantity, limit_price or both")
        return self


class ReplaceOrder(ReplaceFields, Acting):
    order_id: UUID


class EndOfDay(Acting):
    """Cancel every live DAY order (the session's close)."""


Command = SubmitOrder | CancelOrder | ReplaceOrder | EndOfDay
