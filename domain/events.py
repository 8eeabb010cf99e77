"""The facts marketlog records. Past tense, immutable, one schema version each.

Events are typed NamedTuples rather than eventsourcing ``Aggregate`` events: the engine
creates several per order on its hot path, and a NamedTuple costs ~0.3 us where a frozen
dataclass costs ~1.7 us and an eventsourcing aggregate event ~7 us. They are still stored
through the eventsourcing recorder (one stored event per fact, ``originator_id`` = order id,
``originator_version`` = the order's version), so the store and its notification log are
the library's.

Every event carries: the order (aggregate) id and its version, ``ts_ns`` (UTC epoch
nanoseconds, passed in by the engine's clock), who acted (``actor``) and through what
(``source``), and the account and symbol so that audit queries and Kafka keys need no join.
Money is ``Decimal``; quantities are ``int``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, NamedTuple
from uuid import UUID


class OrderAccepted(NamedTuple):
    """Every pre-trade control passed; records the order as submitted and every input used."""

    order_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    account_id: str
    symbol: str
    client_order_id: str
    side: str
    quantity: int
    order_type: str
    limit_price: Decimal | None
    time_in_force: str
    # 15c3-5(c)(1): the inputs the controls used, so replay needs nothing but the log.
    reference_price: Decimal
    exposure_price: Decimal  # price used to value the order's exposure (limit, else reference)
    exposure_before: Decimal
    firm_exposure_before: Decimal
    limits_version: int
    limits: dict[str, str]
    checks: tuple[str, ...]  # every control the order passed, in order (coverage reporting)


class OrderRejected(NamedTuple):
    """A control refused the order: names the control, its threshold and the observed value."""

    order_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    account_id: str
    symbol: str
    client_order_id: str
    side: str
    quantity: int
    order_type: str
    limit_price: Decimal | None
    time_in_force: str
    control: str
    threshold: str
    observed: str
    reference_price: Decimal | None
    exposure_before: Decimal | None
    limits_version: int
    checks: tuple[str, ...]  # the controls passed before the one that rejected


class OrderFilled(NamedTuple):
    """An execution reported by the venue."""

    order_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    account_id: str
    symbol: str
    side: str
    trade_id: str
    fill_quantity: int
    fill_price: Decimal
    cumulative_quantity: int
    leaves_quantity: int
    liquidity: str  # "maker" (was resting) or "taker"
    counterparty: str  # another account's order id, or the venue's liquidity provider


class OrderCanceled(NamedTuple):
    order_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    account_id: str
    symbol: str
    canceled_quantity: int
    reason: str  # domain.values.CancelReason


class OrderReplaced(NamedTuple):
    """A replace (price and/or quantity) passed every control again."""

    order_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    account_id: str
    symbol: str
    old_quantity: int
    old_limit_price: Decimal | None
    quantity: int
    limit_price: Decimal | None
    reference_price: Decimal
    exposure_before: Decimal
    firm_exposure_before: Decimal
    limits_version: int
    checks: tuple[str, ...]


class ReplaceRejected(NamedTuple):
    order_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    account_id: str
    symbol: str
    requested_quantity: int | None
    requested_limit_price: Decimal | None
    control: str
    threshold: str
    observed: str


class CancelRejected(NamedTuple):
    """A cancel request that could not apply (the order was no longer live)."""

    order_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    account_id: str
    symbol: str
    reason: str
    status: str  # the order's status when the request arrived


OrderEvent = (
    OrderAccepted
    | OrderRejected
    | OrderFilled
    | OrderCanceled
    | OrderReplaced
    | ReplaceRejected
    | CancelRejected
)

EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        OrderAccepted,
        OrderRejected,
        OrderFilled,
        OrderCanceled,
        OrderReplaced,
        ReplaceRejected,
        CancelRejected,
    )
}

# Schema version of each event's current shape. Older stored shapes are upcast on read
# (infrastructure.codec), never rewritten (ARCHITECTURE rule 5).
SCHEMA_VERSION: dict[str, int] = dict.fromkeys(EVENT_TYPES, 1)

DECIMAL_FIELDS: dict[str, frozenset[str]] = {
    name: frozenset(
        f for f, t in cls.__annotations__.items() if "Decimal" in str(t)
    )
    for name, cls in EVENT_TYPES.items()
}
