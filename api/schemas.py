"""Response shapes of the REST contract."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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


# ------------------------------------------------------------------------ errors


class ErrorOut(BaseModel):
    detail: str


class ConflictOut(BaseModel):
    """409: the reason (control, threshold, observed, or the conflicting fields) and the order
    as it stands."""

    detail: dict[str, Any]


class ValidationIssue(BaseModel):
    type: str
    loc: list[str | int]
    msg: str
    input: str | int | float | bool | None = Field(
        None, description="The offending value, only when it is a short scalar.")
    ctx: dict[str, Any] | None = None


class ValidationErrorOut(BaseModel):
    detail: list[ValidationIssue]
    errors_omitted: int | None = Field(
        None, description="How many further problems were found but not listed.")


# ------------------------------------------------------------------------ health


class _Open(BaseModel):
    # Further keys pass through: the engine and the store report more as they learn more.
    model_config = ConfigDict(extra="allow")


class ChainHealth(_Open):
    ok: bool
    verified_position: int
    problem: str | None = None


class StoreHealth(_Open):
    dialect: str
    ok: bool
    head_position: int | None = None
    error: str | None = None
    chain: ChainHealth | None = Field(
        None, description="The hash chain as the store last verified it (a break halts it).")


class ReadModelsHealth(_Open):
    dialect: str
    ok: bool
    error: str | None = None


class PartitionLag(BaseModel):
    partition: int
    next_offset: int = Field(description="Next offset of the events topic to apply.")
    published_offset: int = Field(description="End offset per the relay's last checkpoint.")
    lag_records: int


class RelayHealth(BaseModel):
    position: int = Field(description="Last log position on Kafka with its checkpoint.")
    lag: int = Field(description="Committed events not yet on Kafka.")
    ok: bool
    last_error: str | None


class ProjectionsHealth(_Open):
    position: int = Field(description="Every event up to this log position is in the views.")
    lag: int = Field(description="Committed events not yet in the views.")
    ok: bool
    last_error: str | None
    feed: Literal["store", "kafka"] = Field(
        "store", description="What the read models follow: the store's notification log "
        "(embedded default) or the Kafka events topic.")
    halted: str | None = Field(None, description="A record the projector cannot apply "
                               "(topic[partition]@offset and why): it stopped there.")
    relay: RelayHealth | None = None
    partitions: list[PartitionLag] | None = None


class ProjectionOut(BaseModel):
    name: str
    position: int
    lag: int


class ProjectionsOut(BaseModel):
    feed: Literal["store", "kafka"]
    committed_position: int
    projections: list[ProjectionOut]
    status: ProjectionsHealth


class TradingDayOut(BaseModel):
    date: str | None
    open: bool
    exposure_mode: str
    scheduled_close_ns: int | None


class EngineHealth(_Open):
    running: bool
    committed_position: int
    batches: int
    halted: str | None = Field(None, description="Why the engine stopped writing for good "
                               "(fenced by another writer, broken chain), if it did.")
    failures: int = Field(0, description="Failures of the engine loop, each recovered.")
    last_failure: str | None = None
    queue_depth: int = 0
    queue_max: int = 0
    access_denied: int = Field(0, description="Requests this process refused for who made "
                                              "them (401/403), each also an AccessDenied event.")
    trading_day: TradingDayOut | None = None
    writer_lock: str | None = Field(None, description="held, reacquiring or lost")
    recovered_from_snapshot: int | None = Field(
        None, description="The snapshot's log position the last recovery started from.")


class HealthOut(_Open):
    status: Literal["ok", "degraded"]
    store: StoreHealth
    read_models: ReadModelsHealth
    engine: EngineHealth
    projections: ProjectionsHealth
