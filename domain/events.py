"""The facts marketlog records. Past tense, immutable, one schema version each.

Events are typed NamedTuples rather than eventsourcing ``Aggregate`` events: the engine
creates several per order on its hot path, and a NamedTuple costs ~0.3 us where a frozen
dataclass costs ~1.7 us and an eventsourcing aggregate event ~7 us. They are still stored
through the eventsourcing recorder (one stored event per fact), so the store and its
notification log are the library's.

Every event's first two fields are its aggregate's id (a UUID) and that aggregate's version
(the store's originator id and version); then ``ts_ns`` (UTC epoch nanoseconds, stamped by
the engine's clock when it happened, so log order is time order), who acted (``actor``) and
through what (``source``). Order events also carry the account and symbol, so audit queries
and Kafka keys need no join. Money is ``Decimal``; quantities are ``int``. Events are deeply
immutable: tuples and ``FrozenRecord`` rather than lists and dicts.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, NamedTuple
from uuid import UUID

from domain.governance_events import GOVERNANCE_EVENTS
from domain.values import FrozenRecord

# ---------------------------------------------------------------------------- orders


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
    reference_source: str  # domain.values.ReferenceSource
    reference_ts_ns: int  # as-of time of the reference price
    # Market orders only: the venue never fills beyond it (market-order protection), and
    # the controls value the order at it.
    protection_price: Decimal | None
    exposure_price: Decimal  # price the order's exposure is valued at (limit or protection)
    exposure_before: Decimal
    firm_exposure_before: Decimal
    limits_version: int
    limits: FrozenRecord
    checks: tuple[str, ...]  # the controls that ran (and passed), in order: coverage
    trading_date: str
    # Schema 2: the strategy tag (kill switches and throttles per strategy), and the inputs
    # of the controls that have no field of their own (throttle counts, LULD band, the
    # Rule 201 bid, the locate used), control name -> text.
    strategy: str | None
    inputs: FrozenRecord


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
    reference_source: str | None
    reference_ts_ns: int | None
    exposure_before: Decimal | None
    limits_version: int
    checks: tuple[str, ...]  # the controls that ran and passed before the one that rejected
    trading_date: str | None
    strategy: str | None  # schema 2


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
    counterparty: str  # another account's order id, or an outside participant ("venue:...")


class CancelRequested(NamedTuple):
    """A cancel accepted on request; the order trades on until the venue confirms it."""

    order_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    account_id: str
    symbol: str
    reason: str  # domain.values.CancelReason


class OrderCanceled(NamedTuple):
    """The venue pulled the order: a confirmed cancel request, or a remainder it cancels."""

    order_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    account_id: str
    symbol: str
    canceled_quantity: int
    reason: str  # domain.values.CancelReason


class CancelRejected(NamedTuple):
    """A cancel that could not apply: on request (not live, already pending) or at the
    venue (the order finished before the request reached it)."""

    order_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    account_id: str
    symbol: str
    reason: str
    status: str  # the order's status when the request was refused
    stage: str  # domain.values.RequestStage


class ReplaceRequested(NamedTuple):
    """A replace (price and/or quantity) that passed every control again; pending until the
    venue confirms it. Its credit delta, if positive, is reserved until then."""

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
    reference_source: str
    reference_ts_ns: int
    exposure_before: Decimal
    firm_exposure_before: Decimal
    reserved_exposure: Decimal
    limits_version: int
    checks: tuple[str, ...]
    inputs: FrozenRecord  # schema 2: as OrderAccepted.inputs


class OrderReplaced(NamedTuple):
    """The venue applied a requested replace; the new terms are in force from here on."""

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
    lost_priority: bool  # a new price or a larger size goes to the back of the queue


class ReplaceRejected(NamedTuple):
    """A replace refused on request (a control, or a request already pending) or at the
    venue (the order finished, or filled past the new size, before the request arrived)."""

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
    stage: str  # domain.values.RequestStage


# ---------------------------------------------------------------------------- trading days


class TradingDayOpened(NamedTuple):
    """A trading day begins: exposure restarts from the orders carried over (GTC), and the
    previous closes become the reference prices until each symbol prints."""

    day_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    trading_date: str  # ISO date in the calendar's time zone
    exposure_mode: str  # domain.values.ExposureMode, in force for the whole day
    previous_closes: tuple[tuple[str, str], ...]  # (symbol, price) pairs
    scheduled_close_ns: int | None  # None: closed by an operator only
    reason: str


class TradingDayClosed(NamedTuple):
    """A trading day ends: DAY orders are canceled (each a request the venue confirms)."""

    day_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    trading_date: str
    closing_prices: tuple[tuple[str, str], ...]  # (symbol, price): tomorrow's previous closes
    expiring_orders: int  # live DAY orders whose cancel this close requested
    reason: str


# ---------------------------------------------------------------------------- the engine


class EngineRecovered(NamedTuple):
    """The engine rebuilt itself from the store after a failure (ARCHITECTURE rule 9)."""

    engine_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    cause: str
    position: int  # the log position the rebuilt state includes


class BookSnapshotTaken(NamedTuple):
    """A snapshot of the book of record at ``position`` was stored; recovery trusts a stored
    snapshot only when its digest is recorded here, in the hash-chained log."""

    snapshot_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    position: int
    sha256: str
    size: int


class ClockExceptionRecorded(NamedTuple):
    """The system clock was found behind the engine's last stamp by more than the tolerance
    (CAT: a firm logs every clock drift beyond 50 ms), or caught up with it again: one record
    when such an episode begins and one when it ends, never one per order. Meanwhile the
    engine stamps its last stamp, so log order stays time order (ARCHITECTURE rule 10). Only
    backward steps are detected this way; drift against NIST time is measured against a
    configured time reference (``where`` "reference", domain.clock_watch.ReferenceWatch)."""

    engine_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    observed_ns: int  # what the system clock said
    held_ns: int  # the engine's last stamp (at a restart: the log's last event's)
    step_ns: int  # held_ns - observed_ns: how far back the clock was (<= 0 once caught up)
    tolerance_ns: int
    where: str  # domain.clock_watch: "restart" (recovering from the store), "live", "reference"
    state: str  # domain.clock_watch: "behind" (an episode begins) or "caught_up" (it ends);
    # against a reference "behind", "ahead", "within" or "unreachable", where observed_ns is
    # the system clock at the check, held_ns the reference's time then (observed_ns when
    # unreachable) and step_ns the offset held_ns - observed_ns (0 when unreachable).
    reference: str  # host[:port] of the time reference (schema 2); "" for the engine's own


OrderEvent = (
    OrderAccepted
    | OrderRejected
    | OrderFilled
    | CancelRequested
    | OrderCanceled
    | CancelRejected
    | ReplaceRequested
    | OrderReplaced
    | ReplaceRejected
)
ORDER_EVENTS: tuple[type[Any], ...] = (
    OrderAccepted, OrderRejected, OrderFilled, CancelRequested, OrderCanceled, CancelRejected,
    ReplaceRequested, OrderReplaced, ReplaceRejected,
)

EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        *ORDER_EVENTS,
        TradingDayOpened,
        TradingDayClosed,
        EngineRecovered,
        BookSnapshotTaken,
        ClockExceptionRecorded,
        *GOVERNANCE_EVENTS,
    )
}

# Schema version of each event's current shape. Older stored shapes are upcast on read
# (infrastructure.codec), never rewritten (ARCHITECTURE rule 5).
SCHEMA_VERSION: dict[str, int] = {
    **dict.fromkeys(EVENT_TYPES, 1),
    # 2: strategy tag and the new controls' inputs (issue 7); upcast in infrastructure.codec.
    "OrderAccepted": 2, "OrderRejected": 2, "ReplaceRequested": 2,
    # 2: the orders a strategy's stop canceled; upcast in infrastructure.codec.
    "StrategyStopped": 2,
    # 2: the time reference a clock exception was measured against; upcast in
    # infrastructure.codec.
    "ClockExceptionRecorded": 2,
}


def _annotation(t: Any) -> str:
    return getattr(t, "__forward_arg__", str(t))  # forward references under __future__


DECIMAL_FIELDS: dict[str, frozenset[str]] = {
    name: frozenset(f for f, t in cls.__annotations__.items() if "Decimal" in _annotation(t))
    for name, cls in EVENT_TYPES.items()
}
