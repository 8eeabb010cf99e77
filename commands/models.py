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


TradingDate = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$",
                                   description="ISO date, e.g. 2026-11-26")]
Reason = Annotated[str, Field(min_length=1, max_length=200)]


class OpenTradingDay(Acting):
    """Open a trading day: exposure restarts from the orders carried over (GTC).

    Sent by the engine's schedule (actor ``system``) or by an operator. Without a date, the
    calendar's date of the moment it is decided.
    """

    trading_date: TradingDate | None = None
    reason: Reason = "operator"
    close_at_ns: int | None = Field(None, description="scheduled close, epoch ns (UTC)")


class CloseTradingDay(Acting):
    """Close the trading day: DAY orders expire (each cancel confirmed by the venue)."""

    reason: Reason = "operator"


class TakeSnapshot(Acting):
    """Store a snapshot of the book of record (restart replays only the log after it)."""


Command = SubmitOrder | CancelOrder | ReplaceOrder | OpenTradingDay | CloseTradingDay | TakeSnapshot
# Commands that need the venue and the book in step (no batch in flight) to be decided.
BARRIERS = (OpenTradingDay, CloseTradingDay, TakeSnapshot)
