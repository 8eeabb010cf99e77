"""Commands: imperative requests, validated at the edge; the engine trusts them.

Identity (who acted, through what) is a field of every command, never a global:
authentication and roles come later and will fill these fields.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from domain.values import OrderType, Role, Side, Source, TimeInForce

IDENTIFIER_PATTERN = r"^[\x21-\x7e]+$"  # printable ASCII, no spaces
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=IDENTIFIER_PATTERN)]
Symbol = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[A-Z0-9][A-Z0-9.\-]*$")]


def _whole(value: Any) -> Any:
    # JSON has one number type and JSON Schema counts 2.0 as an integer: take it as 2.
    # Anything else (1.5, "10", true) still meets the strict int check and is refused.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Quantity = Annotated[int, Field(strict=True, gt=0, le=1_000_000_000), BeforeValidator(_whole)]

# The schema says what the validator checks (Pydantic's own schema for Decimal would allow
# any string): positive, at most 12 digits before the point and 8 after, best sent as a
# string (exact). A JSON number is read as its shortest decimal text; for numbers "at most 8
# places" is multipleOf 1e-8 (validators test the quotient: 190.25 passes, 6.103515625e-05 not).
_FRACTION = "|".join(f"0{{{zeros}}}[1-9][0-9]{{0,{7 - zeros}}}" for zeros in range(8))
PRICE_PATTERN = rf"^\+?([1-9][0-9]{{0,11}}(\.[0-9]{{1,8}})?|0?\.({_FRACTION}))$"
Price = Annotated[
    Decimal,
    Field(gt=0, max_digits=20, decimal_places=8, allow_inf_nan=False),
    WithJsonSchema({
        "anyOf": [{"type": "string", "pattern": PRICE_PATTERN},
                  {"type": "number", "minimum": 0.00000001, "maximum": 999_999_999_999,
                   "multipleOf": 0.00000001}],
        "description": "Greater than 0, at most 12 digits before the point and 8 after.",
        "examples": ["190.25"],
    }),
]


def _price_rule(schema: dict[str, Any]) -> None:
    """"Limit orders need a price, market orders must not have one" in the JSON Schema itself
    (2020-12 if/then/else, which OpenAPI 3.1 uses), beside the validator that enforces it."""
    schema["examples"] = [
        {"client_order_id": "ord-0001", "account_id": "ACC-ALPHA", "symbol": "AAPL",
         "side": "buy", "quantity": 100, "order_type": "limit", "limit_price": "190.25",
         "time_in_force": "day"},
        {"client_order_id": "ord-0002", "account_id": "ACC-BETA", "symbol": "MSFT",
         "side": "sell", "quantity": 10, "order_type": "market", "time_in_force": "ioc"},
    ]
    schema["if"] = {"properties": {"order_type": {"const": "limit"}},
                    "required": ["order_type"]}
    schema["then"] = {"properties": {"limit_price": {"not": {"type": "null"}}},
                      "required": ["limit_price"]}
    schema["else"] = {"properties": {"limit_price": {"type": "null"}}}


class OrderFields(BaseModel):
    """The public shape of a new order (the REST contract's body)."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_price_rule)

    client_order_id: Identifier
    account_id: Identifier
    symbol: Symbol
    side: Side
    quantity: Quantity
    order_type: OrderType
    limit_price: Price | None = Field(None, validate_default=True)
    time_in_force: TimeInForce = TimeInForce.DAY
    strategy: Identifier | None = Field(
        None, description="Strategy tag: its kill switch and throttle apply to the order.")

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


def _changes_something(schema: dict[str, Any]) -> None:
    """"Give quantity, limit_price or both" in the JSON Schema, beside the validator."""
    schema["anyOf"] = [
        {"properties": {"quantity": {"not": {"type": "null"}}}, "required": ["quantity"]},
        {"properties": {"limit_price": {"not": {"type": "null"}}}, "required": ["limit_price"]},
    ]


class ReplaceFields(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_changes_something)

    quantity: Quantity | None = None
    limit_price: Price | None = None

    @model_validator(mode="after")
    def _something_changes(self) -> Any:
        if self.quantity is None and self.limit_price is None:
            raise ValueError("give quantity, limit_price or both")
        return self


class ReplaceOrder(ReplaceFields, Acting):
    order_id: UUID


def _calendar_date(value: str) -> str:
    day = date.fromisoformat(value)  # 2026-02-30 matches the pattern but is no date
    if not 1970 <= day.year <= 2999:
        raise ValueError("a trading date between 1970 and 2999")
    return value


TradingDate = Annotated[
    str, AfterValidator(_calendar_date),
    WithJsonSchema({"type": "string", "format": "date",
                    "pattern": r"^(19[7-9][0-9]|2[0-9]{3})-[0-9]{2}-[0-9]{2}$",
                    "description": "ISO date between 1970 and 2999, e.g. 2026-11-26"}),
]
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


class Sweep(Acting):
    """The engine's own: loss-limit trips and expiries (temporary limits, locates) now due."""


class RecordTimeReferenceCheck(Acting):
    """The system's own (infrastructure.time_reference): what a check of the system clock
    against the time reference found, for the engine to record if it begins or ends an
    episode beyond the tolerance, or an outage (domain.clock_watch.ReferenceWatch)."""

    reference: Annotated[str, Field(min_length=1, max_length=300)]  # host[:port]
    observed_ns: int  # the system clock when the answer arrived (or the check gave up)
    offset_ns: int | None = None  # the reference's time less the system clock's; None: no answer
    delay_ns: int | None = None  # the round trip
    error: Annotated[str, Field(max_length=300)] | None = None


# ------------------------------------------------------------------ risk governance
# Operator commands (issue 7): each becomes an event naming its actor and reason, or is
# refused with nothing recorded. Roles are checked by the domain (domain/governance.py).

Username = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9._-]*$")]
SCOPE_PATTERN = r"^(firm|(account|strategy|symbol):[\x21-\x7e]+)$"
Scope = Annotated[str, Field(min_length=1, max_length=80, pattern=SCOPE_PATTERN,
                             description="firm, account:<id>, strategy:<tag> or symbol:<sym>")]
EpochNs = Annotated[int, Field(gt=0, lt=2**63, description="UTC epoch nanoseconds")]


class Governed(Acting):
    reason: Reason


class HaltSymbol(Governed):
    symbol: Symbol


class ResumeSymbol(Governed):
    symbol: Symbol


class TriggerShortSaleRestriction(Governed):
    symbol: Symbol


class RequestLocate(Governed):
    locate_id: UUID | None = None  # the engine assigns one
    account_id: Identifier
    symbol: Symbol
    quantity: Quantity


class GrantLocate(Governed):
    locate_id: UUID
    quantity: Quantity
    expires_at_ns: EpochNs


class TripKillSwitch(Governed):
    scope: Scope


class ResetKillSwitch(Governed):
    scope: Scope


class RequestLimitChange(Governed):
    change_id: UUID | None = None  # the engine assigns one
    scope: Scope
    field: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z_]+$")]
    value: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[0-9]+(\.[0-9]+)?$")]
    expires_at_ns: EpochNs | None = None


class ApproveLimitChange(Governed):
    change_id: UUID


class RejectLimitChange(Governed):
    change_id: UUID


class CreateUser(Governed):
    username: Username
    role: Role


class DisableUser(Governed):
    username: Username


class Entitle(Governed):
    username: Username
    account_id: Identifier


class RevokeEntitlement(Governed):
    username: Username
    account_id: Identifier


class IssueApiKey(Governed):
    """Only the key's hash reaches the engine: the token is made and shown at the edge."""

    username: Username
    key_id: Annotated[str, Field(min_length=8, max_length=32, pattern=r"^[a-z0-9]+$")]
    key_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class RevokeApiKey(Governed):
    key_id: Annotated[str, Field(min_length=1, max_length=32)]


class SuspendAccount(Governed):
    account_id: Identifier


class ReinstateAccount(Governed):
    account_id: Identifier


class CertifyReport(Governed):
    """Compliance certifies a report it reviewed, naming it by its SHA-256."""

    certification_id: UUID | None = None  # the engine assigns one
    report: Annotated[str, Field(pattern=r"^15c3-5$")] = "15c3-5"
    trading_date: Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    report_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


StrategyId = Annotated[str, Field(min_length=1, max_length=41,
                                  pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Run = Annotated[int, Field(strict=True, gt=0, lt=2**31)]
Count = Annotated[int, Field(strict=True, ge=0)]


class StartStrategy(Governed):
    """Open the next run of a paper-trading strategy (recorded before it sends anything).

    ``run`` is the run being opened, the last recorded run + 1: a resend is refused."""

    strategy_id: StrategyId
    run: Run
    kind: Identifier
    account_id: Identifier
    params: dict[Annotated[str, Field(min_length=1, max_length=64)],
                 Annotated[str, Field(max_length=200)]] = Field(default_factory=dict)


class StopStrategy(Governed):
    """Record the end of a strategy's run (its user's stop, a kill switch, an error or the
    server's shutdown), with what the runner counted."""

    strategy_id: StrategyId
    run: Run
    orders_sent: Count | None = None
    fills: Count | None = None


class RecordDenial(Acting):
    action: Annotated[str, Field(max_length=200)]
    account_id: str | None = None
    reason: Annotated[str, Field(max_length=300)]


GOVERNANCE_COMMANDS = (
    HaltSymbol, ResumeSymbol, TriggerShortSaleRestriction, RequestLocate, GrantLocate,
    TripKillSwitch, ResetKillSwitch, RequestLimitChange, ApproveLimitChange, RejectLimitChange,
    CreateUser, DisableUser, Entitle, RevokeEntitlement, IssueApiKey, RevokeApiKey,
    SuspendAccount, ReinstateAccount, RecordDenial, CertifyReport, StartStrategy, StopStrategy,
)

Command = (SubmitOrder | CancelOrder | ReplaceOrder | OpenTradingDay | CloseTradingDay
           | TakeSnapshot | Sweep | HaltSymbol | ResumeSymbol | TriggerShortSaleRestriction
           | RequestLocate | GrantLocate | TripKillSwitch | ResetKillSwitch | RequestLimitChange
           | ApproveLimitChange | RejectLimitChange | CreateUser | DisableUser | Entitle
           | RevokeEntitlement | IssueApiKey | RevokeApiKey | SuspendAccount | ReinstateAccount
           | RecordDenial | CertifyReport | StartStrategy | StopStrategy
           | RecordTimeReferenceCheck)
# Commands that need the venue and the book in step (no batch in flight) to be decided.
BARRIERS = (OpenTradingDay, CloseTradingDay, TakeSnapshot, Sweep)
