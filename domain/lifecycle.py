"""The order lifecycle as one explicit table: (status, action) -> status.

The book of record and the orders projection both move an order's status through this one
table (``transition``), with the action each event stands for (``action_of``), so the engine
and the read models cannot disagree about what an event does to an order.

A cancel or replace is a request first (pending, FIX OrdStatus 6 / E) and takes effect only
when the venue confirms it, in log order (ARCHITECTURE rule 10). Until then the order trades
on its current terms; the entries marked "race" are the real-world oddities that follow.
"""

from __future__ import annotations

from typing import Any

from domain.values import OrderStatus as S
from domain.values import RequestStage


class IllegalTransition(Exception):
    """An action that the order's current status does not allow."""

    def __init__(self, status: str, action: str) -> None:
        super().__init__(f"cannot {action} an order that is {status}")
        self.status = status
        self.action = action


TRANSITIONS: dict[tuple[S, str], S] = {
    (S.SUBMITTED, "accept"): S.ACCEPTED,
    (S.SUBMITTED, "reject"): S.REJECTED,
    (S.ACCEPTED, "partial_fill"): S.PARTIALLY_FILLED,
    (S.ACCEPTED, "fill"): S.FILLED,
    (S.PARTIALLY_FILLED, "partial_fill"): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, "fill"): S.FILLED,
    # Canceled by the venue itself: IOC/FOK/market remainder, self-trade prevention.
    (S.ACCEPTED, "cancel"): S.CANCELED,
    (S.PARTIALLY_FILLED, "cancel"): S.CANCELED,
    (S.PENDING_REPLACE, "cancel"): S.CANCELED,
    # A cancel request: pending until the venue confirms it.
    (S.ACCEPTED, "cancel_request"): S.PENDING_CANCEL,
    (S.PARTIALLY_FILLED, "cancel_request"): S.PENDING_CANCEL,
    # A cancel may follow a pending replace; the venue resolves the replace first.
    (S.PENDING_REPLACE, "cancel_request"): S.PENDING_CANCEL,
    # Race: the venue traded the order before the cancel reached it.
    (S.PENDING_CANCEL, "partial_fill"): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, "fill"): S.FILLED,
    (S.PENDING_CANCEL, "cancel"): S.CANCELED,
    # A replace resolved while a cancel waits behind it: still pending cancel.
    (S.PENDING_CANCEL, "replaced"): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, "replaced_partial"): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, "replace_refused"): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, "replace_refused_partial"): S.PENDING_CANCEL,
    # A replace request that passed every control: pending until the venue confirms it.
    (S.ACCEPTED, "replace_request"): S.PENDING_REPLACE,
    (S.PARTIALLY_FILLED, "replace_request"): S.PENDING_REPLACE,
    # Race: fills on the old terms before the replace reached the venue.
    (S.PENDING_REPLACE, "partial_fill"): S.PENDING_REPLACE,
    (S.PENDING_REPLACE, "fill"): S.FILLED,
    (S.PENDING_REPLACE, "replaced"): S.ACCEPTED,
    (S.PENDING_REPLACE, "replaced_partial"): S.PARTIALLY_FILLED,
    (S.PENDING_REPLACE, "replace_refused"): S.ACCEPTED,
    (S.PENDING_REPLACE, "replace_refused_partial"): S.PARTIALLY_FILLED,
    # Race: the order finished before the request reached the venue, which refuses it.
    (S.FILLED, "cancel_refused"): S.FILLED,
    (S.CANCELED, "cancel_refused"): S.CANCELED,
    (S.FILLED, "replace_refused"): S.FILLED,
    (S.FILLED, "replace_refused_partial"): S.FILLED,
    (S.CANCELED, "replace_refused"): S.CANCELED,
    (S.CANCELED, "replace_refused_partial"): S.CANCELED,
}

# Orders the venue may trade: resting or on their way, including those with a request pending.
LIVE_STATUSES = frozenset({S.ACCEPTED, S.PARTIALLY_FILLED, S.PENDING_CANCEL, S.PENDING_REPLACE})
# Orders a new cancel or replace request may act on without waiting for another to resolve.
WORKING_STATUSES = frozenset({S.ACCEPTED, S.PARTIALLY_FILLED})
FINISHED_STATUSES = frozenset({S.FILLED, S.CANCELED, S.REJECTED})


def transition(status: S, action: str) -> S:
    try:
        return TRANSITIONS[(status, action)]
    except KeyError:
        raise IllegalTransition(status, action) from None


def action_of(event: Any, filled_quantity: int) -> str | None:
    """The lifecycle action an order event stands for; None when it leaves the status alone.

    ``filled_quantity`` is the order's filled quantity after the event (a replace resolves to
    ACCEPTED or PARTIALLY_FILLED by it).
    """
    kind = type(event).__name__
    if kind == "OrderFilled":
        return "partial_fill" if event.leaves_quantity else "fill"
    if kind == "OrderCanceled":
        return "cancel"
    if kind == "CancelRequested":
        return "cancel_request"
    if kind == "ReplaceRequested":
        return "replace_request"
    if kind == "OrderReplaced":
        return "replaced_partial" if filled_quantity else "replaced"
    if kind == "ReplaceRejected" and event.stage == RequestStage.VENUE:
        return "replace_refused_partial" if filled_quantity else "replace_refused"
    if kind == "CancelRejected" and event.stage == RequestStage.VENUE:
        return "cancel_refused"
    if kind == "OrderAccepted":
        return "accept"
    if kind == "OrderRejected":
        return "reject"
    return None  # refused on request: the order is as it was
