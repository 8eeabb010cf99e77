"""The order lifecycle as one explicit table: (status, action) -> status."""

from __future__ import annotations

from domain.values import OrderStatus as S


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
    # Cancel by request, IOC/FOK remainder, market remainder, or end of day for DAY orders.
    (S.ACCEPTED, "cancel"): S.CANCELED,
    (S.PARTIALLY_FILLED, "cancel"): S.CANCELED,
    # A replace keeps the status; its controls decide acceptance, not the table.
    (S.ACCEPTED, "replace"): S.ACCEPTED,
    (S.PARTIALLY_FILLED, "replace"): S.PARTIALLY_FILLED,
}

LIVE_STATUSES = frozenset({S.ACCEPTED, S.PARTIALLY_FILLED})


def transition(status: S, action: str) -> S:
    try:
        return TRANSITIONS[(status, action)]
    except KeyError:
        raise IllegalTransition(status, action) from None
