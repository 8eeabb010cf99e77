"""The decision: one handler per command, in memory, no I/O (cosmicpython's handlers).

A handler reads and changes the book of record (through its decision methods, which apply
the events they build), appends those events to the cycle's list, and appends what the venue
must do once the events are durable (``Release``). It returns a ``Decision``: what the caller
is told once everything the decision caused is durable.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, NamedTuple
from uuid import UUID

from commands import models as m
from commands.models import (
    CancelOrder,
    CloseTradingDay,
    Command,
    OpenTradingDay,
    ReplaceOrder,
    SubmitOrder,
    TakeSnapshot,
)
from commands.outcomes import Outcome, OutcomeKind
from domain.book_of_record import BookOfRecord, DayError
from domain.events import CancelRequested, OrderAccepted, ReplaceRejected, ReplaceRequested
from domain.governance import Refused
from domain.orders import Order, OrderSnapshot
from domain.values import Role

# Enum members as plain module names: on CPython 3.11 a member lookup (Side.BUY) costs
# ~0.1 us, and these run several times per order.
CREATED = OutcomeKind.CREATED
EXISTING = OutcomeKind.EXISTING
CONFLICT = OutcomeKind.CONFLICT
UPDATED = OutcomeKind.UPDATED
REFUSED = OutcomeKind.REFUSED
NOT_FOUND = OutcomeKind.NOT_FOUND
DONE = OutcomeKind.DONE



_tuple: Any = tuple.__new__


class ReleaseKind(StrEnum):
    NEW = "new"  # an accepted order goes to the venue
    CANCEL = "cancel"  # a cancel request goes to the venue
    REPLACE = "replace"  # a replace request goes to the venue


NEW = ReleaseKind.NEW  # a plain name, read for every accepted order


class Release(NamedTuple):
    kind: ReleaseKind
    order: Order


class Decision(NamedTuple):
    """A command's result inside the cycle; becomes an ``Outcome`` when acknowledged."""

    kind: OutcomeKind
    order: Order | OrderSnapshot | None = None
    detail: dict[str, Any] | None = None

    def acknowledge(self) -> Outcome:
        # Taken after the venue step, so it shows fills, remainders and confirmations.
        order = self.order
        snapshot = order if order is None or isinstance(order, OrderSnapshot) else \
            OrderSnapshot.of(order)
        return Outcome(self.kind, snapshot, self.detail)


class Context(NamedTuple):
    """What handlers need besides the book: ids, the clock, the trading calendar."""

    new_id: Callable[[], UUID]
    stamp: Callable[[], int]  # the engine's clock, never going backwards
    trading_date: Callable[[int], str]  # the calendar's date of an instant
    scheduled_close: Callable[[str], int | None]  # the calendar's close of a date


def submit_order(ctx: Context, book: BookOfRecord, command: SubmitOrder, events: list[Any],
                 releases: list[Release]) -> Decision:
    # The fields from the model's instance dict: pydantic's BaseModel defines __getattr__,
    # which sends every attribute read through CPython's slow lookup slot (11 per order).
    f = command.__dict__
    account_id, client_order_id = f["account_id"], f["client_order_id"]
    existing = book.find(account_id, client_order_id)
    if existing is not None:
        # Idempotent resend: the original outcome, nothing journaled.
        differs = differences(existing, command)
        if differs:
            return Decision(CONFLICT, existing, {"fields": differs})
        return Decision(EXISTING, existing)
    event = book.submit(
        ctx.new_id(), account_id, client_order_id, f["symbol"], f["side"], f["quantity"],
        f["order_type"], f["limit_price"], f["time_in_force"], f["actor"], f["source"],
        ctx.stamp(), f["strategy"])
    events.append(event)
    if book.follow_ups:  # a locate consumed, or an automatic kill switch and its cancels
        _follow_ups(book, events, releases)
    # The order as registered under its client id: the live Order if accepted, its frozen
    # record if rejected (a str-tuple key: a UUID key hashes through a Python-level method).
    order = book.by_client_id[account_id, client_order_id]
    if type(event) is OrderAccepted:
        # Built with tuple.__new__: a NamedTuple's own __new__ is a Python frame.
        releases.append(_tuple(Release, (NEW, order)))
    decision: Decision = _tuple(Decision, (CREATED, order, None))
    return decision


def _follow_ups(book: BookOfRecord, events: list[Any], releases: list[Release]) -> None:
    for event in book.take_follow_ups():
        events.append(event)
        if type(event) is CancelRequested:
            releases.append(Release(ReleaseKind.CANCEL, book.orders[event.order_id]))


def cancel_order(ctx: Context, book: BookOfRecord, command: CancelOrder, events: list[Any],
                 releases: list[Release]) -> Decision:
    target = book.lookup(command.order_id)
    if target is None:
        return Decision(NOT_FOUND)
    actor = command.actor
    if not (book.gov.entitled(actor, target.account_id)
            or book.gov.role_of(actor) in (Role.RISK_OFFICER, Role.ADMIN)):
        # 15c3-5(c)(2)(iii): only those entitled to an account act on its orders; risk
        # officers may cancel any (nothing is recorded here: the API records the denial).
        return Decision(REFUSED, target, {"reason": f"{actor!r} is not entitled to "
                                                    f"{target.account_id}", "denied": True})
    event = book.request_cancel(target, command.actor, command.source, ctx.stamp())
    events.append(event)
    if type(event) is CancelRequested:
        assert isinstance(target, Order)
        releases.append(Release(ReleaseKind.CANCEL, target))
        return Decision(UPDATED, target)
    return Decision(REFUSED, target, {"reason": event.reason})


def replace_order(ctx: Context, book: BookOfRecord, command: ReplaceOrder, events: list[Any],
                  releases: list[Release]) -> Decision:
    target = book.lookup(command.order_id)
    if target is None:
        return Decision(NOT_FOUND)
    event = book.request_replace(target, command.quantity, command.limit_price,
                                 command.actor, command.source, ctx.stamp())
    events.append(event)
    if book.follow_ups:
        _follow_ups(book, events, releases)
    if type(event) is ReplaceRequested:
        assert isinstance(target, Order)
        releases.append(Release(ReleaseKind.REPLACE, target))
        return Decision(UPDATED, target)
    assert isinstance(event, ReplaceRejected)
    return Decision(REFUSED, target, {
        "control": event.control, "threshold": event.threshold, "observed": event.observed})


def open_trading_day(ctx: Context, book: BookOfRecord, command: OpenTradingDay,
                     events: list[Any], releases: list[Release]) -> Decision:
    now = ctx.stamp()
    date = command.trading_date or ctx.trading_date(now)
    close = command.close_at_ns if command.close_at_ns is not None else \
        ctx.scheduled_close(date)
    try:
        event = book.open_day(date, command.actor, command.source, now, close, command.reason)
    except DayError as exc:
        return Decision(REFUSED, None, {"reason": str(exc)})
    events.append(event)
    return Decision(DONE, None, {"trading_date": date, "opened": True})


def close_trading_day(ctx: Context, book: BookOfRecord, command: CloseTradingDay,
                      events: list[Any], releases: list[Release]) -> Decision:
    try:
        event, cancels = book.close_day(command.actor, command.source, ctx.stamp(),
                                        command.reason)
    except DayError as exc:
        return Decision(REFUSED, None, {"reason": str(exc)})
    events.append(event)
    events.extend(cancels)
    releases.extend(Release(ReleaseKind.CANCEL, book.orders[c.order_id]) for c in cancels
                    if type(c) is CancelRequested)
    return Decision(DONE, None, {"trading_date": event.trading_date,
                                             "expiring_orders": event.expiring_orders})


def _governed(decide: Callable[[Context, BookOfRecord, Any], Any]) -> Handler:
    """A governance command's handler: the domain's decision, or its refusal (nothing
    recorded); the events it caused (a trip's cancels go to the venue once durable)."""

    def handle(ctx: Context, book: BookOfRecord, command: Any, events: list[Any],
               releases: list[Release]) -> Decision:
        try:
            result = decide(ctx, book, command)
        except Refused as exc:
            return Decision(REFUSED, None, {"reason": str(exc), "denied": exc.denied})
        produced = result if isinstance(result, list) else [result]
        book.follow_ups[:0] = produced
        _follow_ups(book, events, releases)
        first = produced[0] if produced else None
        detail: dict[str, Any] = {"events": [type(e).__name__ for e in produced]}
        if first is not None:
            detail["id"] = str(first[0])
            detail["version"] = first[1]
        return Decision(DONE, None, detail)

    return handle


def _sweep(ctx: Context, book: BookOfRecord, command: m.Sweep) -> list[Any]:
    return book.gov.sweep(ctx.stamp())


def _request_locate(ctx: Context, book: BookOfRecord, c: m.RequestLocate) -> Any:
    return book.gov.request_locate(c.locate_id or ctx.new_id(), c.account_id, c.symbol,
                                   c.quantity, c.actor, c.source, ctx.stamp(), c.reason)


def _request_limit(ctx: Context, book: BookOfRecord, c: m.RequestLimitChange) -> Any:
    return book.gov.request_limit_change(c.change_id or ctx.new_id(), c.scope, c.field,
                                         c.value, c.actor, c.source, ctx.stamp(), c.reason,
                                         c.expires_at_ns)


def _trip(ctx: Context, book: BookOfRecord, c: m.TripKillSwitch) -> Any:
    return book.gov.trip(c.scope, "manual", "manual trip", "manual trip", c.actor, c.source,
                         ctx.stamp(), c.reason)


def _issue_key(ctx: Context, book: BookOfRecord, c: m.IssueApiKey) -> Any:
    return book.gov.issue_key(ctx.new_id(), c.username, c.key_id, c.key_sha256, c.actor,
                              c.source, ctx.stamp(), c.reason)


def _deny(ctx: Context, book: BookOfRecord, c: m.RecordDenial) -> Any:
    return book.gov.deny(ctx.new_id(), c.actor, c.source, ctx.stamp(), c.action, c.account_id,
                         c.reason)


def _certify(ctx: Context, book: BookOfRecord, c: m.CertifyReport) -> Any:
    return book.gov.certify(c.certification_id or ctx.new_id(), c.actor, c.source, ctx.stamp(),
                            c.report, c.trading_date, c.report_sha256, c.reason)


def _start_strategy(ctx: Context, book: BookOfRecord, c: m.StartStrategy) -> Any:
    return book.gov.start_strategy(c.strategy_id, c.run, c.kind, c.account_id, c.params,
                                   c.actor, c.source, ctx.stamp(), c.reason)


def _stop_strategy(ctx: Context, book: BookOfRecord, c: m.StopStrategy) -> Any:
    return book.gov.stop_strategy(c.strategy_id, c.run, c.actor, c.source, ctx.stamp(),
                                  c.reason, c.orders_sent, c.fills)


Handler = Callable[[Context, BookOfRecord, Any, list[Any], list[Release]], Decision]

GOVERNANCE_HANDLERS: dict[type[Command], Handler] = {
    m.Sweep: _governed(_sweep),
    m.HaltSymbol: _governed(lambda x, b, c: b.gov.halt(
        c.symbol, True, c.actor, c.source, x.stamp(), c.reason)),
    m.ResumeSymbol: _governed(lambda x, b, c: b.gov.halt(
        c.symbol, False, c.actor, c.source, x.stamp(), c.reason)),
    m.TriggerShortSaleRestriction: _governed(lambda x, b, c: b.gov.trigger_ssr(
        c.symbol, c.actor, c.source, x.stamp(), c.reason)),
    m.RequestLocate: _governed(_request_locate),
    m.GrantLocate: _governed(lambda x, b, c: b.gov.grant_locate(
        c.locate_id, c.quantity, c.expires_at_ns, c.actor, c.source, x.stamp(), c.reason)),
    m.TripKillSwitch: _governed(_trip),
    m.ResetKillSwitch: _governed(lambda x, b, c: b.gov.reset(
        c.scope, c.actor, c.source, x.stamp(), c.reason)),
    m.RequestLimitChange: _governed(_request_limit),
    m.ApproveLimitChange: _governed(lambda x, b, c: b.gov.approve_limit_change(
        c.change_id, c.actor, c.source, x.stamp(), c.reason)),
    m.RejectLimitChange: _governed(lambda x, b, c: b.gov.reject_limit_change(
        c.change_id, c.actor, c.source, x.stamp(), c.reason)),
    m.CreateUser: _governed(lambda x, b, c: b.gov.create_user(
        c.username, c.role, c.actor, c.source, x.stamp(), c.reason)),
    m.DisableUser: _governed(lambda x, b, c: b.gov.disable_user(
        c.username, c.actor, c.source, x.stamp(), c.reason)),
    m.Entitle: _governed(lambda x, b, c: b.gov.entitle(
        c.username, c.account_id, True, c.actor, c.source, x.stamp(), c.reason)),
    m.RevokeEntitlement: _governed(lambda x, b, c: b.gov.entitle(
        c.username, c.account_id, False, c.actor, c.source, x.stamp(), c.reason)),
    m.IssueApiKey: _governed(_issue_key),
    m.RevokeApiKey: _governed(lambda x, b, c: b.gov.revoke_key(
        c.key_id, c.actor, c.source, x.stamp(), c.reason)),
    m.SuspendAccount: _governed(lambda x, b, c: b.gov.suspend(
        c.account_id, True, c.actor, c.source, x.stamp(), c.reason)),
    m.ReinstateAccount: _governed(lambda x, b, c: b.gov.suspend(
        c.account_id, False, c.actor, c.source, x.stamp(), c.reason)),
    m.RecordDenial: _governed(_deny),
    m.CertifyReport: _governed(_certify),
    m.StartStrategy: _governed(_start_strategy),
    m.StopStrategy: _governed(_stop_strategy),
}
HANDLERS: dict[type[Command], Handler] = {
    SubmitOrder: submit_order,
    CancelOrder: cancel_order,
    ReplaceOrder: replace_order,
    OpenTradingDay: open_trading_day,
    CloseTradingDay: close_trading_day,
    **GOVERNANCE_HANDLERS,
    # TakeSnapshot is the engine's own: it needs the store, not the book alone.
}
assert TakeSnapshot not in HANDLERS


def differences(order: Order | OrderSnapshot, command: SubmitOrder) -> list[str]:
    """Fields in which a resend differs from the order *as submitted* (a later replace of
    the original does not make its resend a conflict)."""
    return [
        name for name, ours, theirs in (
            ("symbol", order.symbol, command.symbol),
            ("side", order.side, command.side),
            ("quantity", order.original_quantity, command.quantity),
            ("order_type", order.order_type, command.order_type),
            ("limit_price", order.original_limit_price, command.limit_price),
            ("time_in_force", order.time_in_force, command.time_in_force),
        ) if ours != theirs
    ]
