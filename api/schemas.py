"""Response shapes of the REST contract."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class Reject(BaseModel):
    control: str
    threshold: str
    observed: str


class OrderOut(BaseModel):
    order_id: str
    client_order_id: str
    account_id: str
    symbol: str
    side: str
    quantity: int
    order_type: str
    limit_price: str | None
    time_in_force: str
    status: str
    filled_quantity: int
    average_fill_price: str | None
    reject: Reject | None


class PositionOut(BaseModel):
    account_id: str
    symbol: str
    quantity: int
    average_price: str | None
    realized_pnl: str


class AuditEventOut(BaseModel):
    position: int
    event_type: str
    aggregate_id: str
    aggregate_version: int
    timestamp: str
    ts_ns: int
    actor: str
    source: str
    account_id: str | None
    order_id: str | None
    payload: dict[str, Any]


class InstrumentOut(BaseModel):
    symbol: str
    tick_size: str
    lot_size: int
    reference_price: str | None


class AccountOut(BaseModel):
    account_id: str
    credit_limit: str
    cash: str
    max_order_quantity: int
    max_order_notional: str
    price_collar_pct: str
    duplicate_window_ms: int
    restricted_symbols: list[str]
    limits_version: int


class ChainOut(BaseModel):
    ok: bool
    events: int
    head_position: int
    head_hash: str
    first_broken_position: int | None
    problem: str | None
