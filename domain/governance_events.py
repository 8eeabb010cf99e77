"""The facts of risk governance: halts, short-sale rules, locates, kill switches, governed
limits, users, entitlements and access. Same rules as ``domain.events``: past tense,
immutable, first the aggregate id and its version, then when, who and through what.

Aggregate ids are derived from what they govern (``governance.symbol_id``, ``switch_id``,
``user_id``, ...) so that every change of one thing is one stream with gapless versions;
locates, limit changes, API keys and denials get an id of their own.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, NamedTuple
from uuid import UUID

from domain.values import FrozenRecord

# ---------------------------------------------------------------------------- symbols


class TradingHalted(NamedTuple):
    """15c3-5(c)(2)(i): orders on the symbol are refused (``halt``) until it resumes."""

    symbol_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    symbol: str
    reason: str


class TradingResumed(NamedTuple):
    symbol_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    symbol: str
    reason: str


class ShortSaleRestrictionTriggered(NamedTuple):
    """Reg SHO Rule 201: a print 10% or more below the previous close (or the listing
    market's notice) restricts short sales for the rest of ``trading_date`` and the next
    trading day: shorts priced at or below the national best bid are refused (``ssr``)."""

    symbol_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    symbol: str
    trading_date: str
    trigger_price: Decimal | None  # the print that fell 10%; None: an operator's notice
    previous_close: Decimal | None
    reason: str


# ---------------------------------------------------------------------------- locates


class LocateRequested(NamedTuple):
    """Reg SHO 203(b)(1): a short sale needs reasonable grounds to believe the security can
    be borrowed; the request is the start of that record."""

    locate_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    account_id: str
    symbol: str
    quantity: int
    reason: str


class LocateGranted(NamedTuple):
    locate_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    account_id: str
    symbol: str
    quantity: int  # what may be sold short against it (may be less than requested)
    expires_ns: int
    reason: str


class LocateConsumed(NamedTuple):
    """A short sale accepted against the locate (recorded right after its acceptance)."""

    locate_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    account_id: str
    symbol: str
    order_id: str
    quantity: int
    remaining: int


class LocateExpired(NamedTuple):
    locate_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    account_id: str
    symbol: str
    remaining: int


# ---------------------------------------------------------------------------- kill switches


class KillSwitchTripped(NamedTuple):
    """New orders in ``scope`` are refused (``kill_switch``) and its resting orders are
    canceled: each cancel request follows this event with reason ``kill_switch``, and
    ``canceled_orders`` names them."""

    switch_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    scope: str  # "firm", "account:<id>" or "strategy:<tag>"
    trigger: str  # domain.values.KillTrigger
    threshold: str
    observed: str
    reason: str
    canceled_orders: tuple[str, ...]


class KillSwitchReset(NamedTuple):
    """Only a risk officer resets a switch, with a recorded reason."""

    switch_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    scope: str
    reason: str


# ---------------------------------------------------------------------------- limits


class LimitChangeRequested(NamedTuple):
    """Maker: a proposed new value; nothing changes until a different risk officer approves."""

    change_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    scope: str  # "firm", "account:<id>", "symbol:<symbol>"
    field: str
    old_value: str
    new_value: str
    reason: str
    expires_ns: int | None  # after approval, the change reverts by itself at this time


class LimitChangeApproved(NamedTuple):
    """Checker: the change is in force from here; ``limits_version`` is the scope's new
    version, recorded by every decision that uses it."""

    change_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    scope: str
    field: str
    old_value: str
    new_value: str
    limits_version: int
    reason: str
    expires_ns: int | None


class LimitChangeRejected(NamedTuple):
    """The checker refused the request (or it was withdrawn): it never takes effect."""

    change_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    scope: str
    field: str
    reason: str


class LimitChangeReverted(NamedTuple):
    """A temporary change reached its expiry: the value in force before it is back."""

    change_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    scope: str
    field: str
    value: str  # the restored value
    limits_version: int
    reason: str


# ---------------------------------------------------------------------------- access


class UserCreated(NamedTuple):
    user_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    username: str
    role: str  # domain.values.Role
    reason: str


class UserDisabled(NamedTuple):
    """The user's keys stop working and their orders are refused (``entitlement``)."""

    user_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    username: str
    reason: str


class EntitlementGranted(NamedTuple):
    """15c3-5(c)(2)(iii): only pre-approved users may trade an account."""

    user_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    username: str
    account_id: str
    reason: str


class EntitlementRevoked(NamedTuple):
    user_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    username: str
    account_id: str
    reason: str


class ApiKeyIssued(NamedTuple):
    """Only the key's SHA-256 is recorded: the token itself is shown once, to its owner."""

    key_uuid: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    username: str
    key_id: str  # the token's public prefix, to name it in lists and revocations
    key_sha256: str
    reason: str


class ApiKeyRevoked(NamedTuple):
    key_uuid: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    username: str
    key_id: str
    reason: str


class AccountSuspended(NamedTuple):
    """Orders of the account are refused (``account_suspended``) until reinstated."""

    account_uuid: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    account_id: str
    reason: str


class AccountReinstated(NamedTuple):
    account_uuid: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    account_id: str
    reason: str


class AccessDenied(NamedTuple):
    """A request refused for who made it (no key, a revoked key, a role or account not
    theirs): who, what, when, why."""

    denial_id: UUID
    version: int
    ts_ns: int
    actor: str  # the user, or "unauthenticated"
    source: str
    action: str  # e.g. "POST /orders"
    account_id: str | None
    reason: str


# ---------------------------------------------------------------------------- reviews


class ReportCertified(NamedTuple):
    """A compliance reviewer certified a report (15c3-5(e): the periodic review is
    documented): the record names the report by its SHA-256, so the reviewed document can
    be shown to be the one certified."""

    certification_id: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    report: str  # e.g. "15c3-5"
    trading_date: str  # the day the report covers (ISO date)
    report_sha256: str
    reason: str


# ---------------------------------------------------------------------------- strategies
# 15c3-5 supervisory records: strategies are an entry point, so who started which strategy,
# with what parameters, when, and why it stopped, are facts of the log. One stream per
# strategy id (``governance.strategy_uuid``); ``run`` counts its starts, so a run's client
# order ids (``<strategy_id>.r<run>-<n>``) never repeat across runs or restarts.


class StrategyStarted(NamedTuple):
    strategy_uuid: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    strategy_id: str
    run: int  # 1 for the first start, then one more for each start
    kind: str  # e.g. "market_maker"
    account_id: str  # the account its orders trade
    params: FrozenRecord  # the parameters it was built with, as text, sorted by name
    reason: str


class StrategyStopped(NamedTuple):
    """The run ended: stopped by a user, by a kill switch, by its own error, or by the
    server's shutdown. The counts are the runner's own; None when the process that ran it
    ended without recording its stop (found still running at the next start).

    Like a kill switch's trip, the stop cancels what the strategy left live: each cancel
    request follows this event with reason ``strategy_stopped``, and ``canceled_orders``
    names them (every live order of the strategy's tag on the run's account, including
    those of an earlier run re-released by a restart). Schema 2; schema 1 had no
    ``canceled_orders`` (read as none)."""

    strategy_uuid: UUID
    version: int
    ts_ns: int
    actor: str
    source: str
    strategy_id: str
    run: int
    account_id: str  # the run's account (as its StrategyStarted)
    reason: str
    orders_sent: int | None
    fills: int | None
    canceled_orders: tuple[str, ...]


GOVERNANCE_EVENTS: tuple[type[Any], ...] = (
    TradingHalted, TradingResumed, ShortSaleRestrictionTriggered,
    LocateRequested, LocateGranted, LocateConsumed, LocateExpired,
    KillSwitchTripped, KillSwitchReset,
    LimitChangeRequested, LimitChangeApproved, LimitChangeRejected, LimitChangeReverted,
    UserCreated, UserDisabled, EntitlementGranted, EntitlementRevoked,
    ApiKeyIssued, ApiKeyRevoked, AccountSuspended, AccountReinstated, AccessDenied,
    ReportCertified, StrategyStarted, StrategyStopped,
)
