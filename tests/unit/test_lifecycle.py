"""The order lifecycle table: every legal transition, and every other pair refused."""

from __future__ import annotations

import itertools

import pytest

from domain.lifecycle import (
    FINISHED_STATUSES,
    LIVE_STATUSES,
    TRANSITIONS,
    WORKING_STATUSES,
    IllegalTransition,
    action_of,
    transition,
)
from domain.values import OrderStatus as S
from domain.values import RequestStage
from tests import builders as b

ACTIONS = ("accept", "reject", "partial_fill", "fill", "cancel", "cancel_request",
           "cancel_refused", "replace_request", "replaced", "replaced_partial",
           "replace_refused", "replace_refused_partial")

# Reviewed by hand: a change to the lifecycle must be a deliberate change here as well.
LEGAL: dict[tuple[S, str], S] = {
    (S.SUBMITTED, "accept"): S.ACCEPTED,
    (S.SUBMITTED, "reject"): S.REJECTED,
    (S.ACCEPTED, "partial_fill"): S.PARTIALLY_FILLED,
    (S.ACCEPTED, "fill"): S.FILLED,
    (S.PARTIALLY_FILLED, "partial_fill"): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, "fill"): S.FILLED,
    (S.ACCEPTED, "cancel"): S.CANCELED,
    (S.PARTIALLY_FILLED, "cancel"): S.CANCELED,
    (S.PENDING_REPLACE, "cancel"): S.CANCELED,
    (S.ACCEPTED, "cancel_request"): S.PENDING_CANCEL,
    (S.PARTIALLY_FILLED, "cancel_request"): S.PENDING_CANCEL,
    (S.PENDING_REPLACE, "cancel_request"): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, "partial_fill"): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, "fill"): S.FILLED,
    (S.PENDING_CANCEL, "cancel"): S.CANCELED,
    (S.PENDING_CANCEL, "replaced"): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, "replaced_partial"): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, "replace_refused"): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, "replace_refused_partial"): S.PENDING_CANCEL,
    (S.ACCEPTED, "replace_request"): S.PENDING_REPLACE,
    (S.PARTIALLY_FILLED, "replace_request"): S.PENDING_REPLACE,
    (S.PENDING_REPLACE, "partial_fill"): S.PENDING_REPLACE,
    (S.PENDING_REPLACE, "fill"): S.FILLED,
    (S.PENDING_REPLACE, "replaced"): S.ACCEPTED,
    (S.PENDING_REPLACE, "replaced_partial"): S.PARTIALLY_FILLED,
    (S.PENDING_REPLACE, "replace_refused"): S.ACCEPTED,
    (S.PENDING_REPLACE, "replace_refused_partial"): S.PARTIALLY_FILLED,
    (S.FILLED, "cancel_refused"): S.FILLED,
    (S.CANCELED, "cancel_refused"): S.CANCELED,
    (S.FILLED, "replace_refused"): S.FILLED,
    (S.FILLED, "replace_refused_partial"): S.FILLED,
    (S.CANCELED, "replace_refused"): S.CANCELED,
    (S.CANCELED, "replace_refused_partial"): S.CANCELED,
}

ILLEGAL = [pair for pair in itertools.product(S, ACTIONS) if pair not in LEGAL]


def test_table_is_exactly_the_reviewed_one() -> None:
    assert TRANSITIONS == LEGAL


def test_table_uses_only_known_actions() -> None:
    assert {action for _, action in TRANSITIONS} == set(ACTIONS)


@pytest.mark.parametrize(("pair", "target"), LEGAL.items(), ids=str)
def test_legal_transition(pair: tuple[S, str], target: S) -> None:
    assert transition(*pair) == target


@pytest.mark.parametrize("pair", ILLEGAL, ids=lambda p: f"{p[0]}-{p[1]}")
def test_illegal_transition_raises(pair: tuple[S, str]) -> None:
    status, action = pair
    with pytest.raises(IllegalTransition) as info:
        transition(status, action)
    assert info.value.status == status
    assert info.value.action == action
    assert str(info.value) == f"cannot {action} an order that is {status}"


def test_unknown_action_raises() -> None:
    with pytest.raises(IllegalTransition):
        transition(S.ACCEPTED, "amend")


def test_rejected_is_terminal_and_a_finished_order_only_absorbs_late_refusals() -> None:
    assert not any(s == S.REJECTED for s, _ in TRANSITIONS)
    for status in (S.FILLED, S.CANCELED):
        assert {a for s, a in TRANSITIONS if s == status} <= {
            "cancel_refused", "replace_refused", "replace_refused_partial"}
        assert all(TRANSITIONS[(status, a)] == status for s, a in TRANSITIONS if s == status)


def test_live_statuses_are_exactly_those_the_venue_can_fill() -> None:
    for action in ("fill", "partial_fill", "cancel"):
        assert {s for (s, a) in TRANSITIONS if a == action} == LIVE_STATUSES
    assert FINISHED_STATUSES.isdisjoint(LIVE_STATUSES)
    assert WORKING_STATUSES < LIVE_STATUSES


def test_only_working_orders_take_a_replace_request() -> None:
    assert {s for (s, a) in TRANSITIONS if a == "replace_request"} == WORKING_STATUSES


def test_a_pending_request_always_resolves_to_a_status_that_can_trade_or_is_final() -> None:
    for (status, action), target in TRANSITIONS.items():
        if status in (S.PENDING_CANCEL, S.PENDING_REPLACE):
            assert target in LIVE_STATUSES | FINISHED_STATUSES, (status, action)


def test_action_of_every_event_type_matches_the_table() -> None:
    expected = {
        "OrderAccepted": "accept", "OrderRejected": "reject", "OrderFilled": "partial_fill",
        "CancelRequested": "cancel_request", "OrderCanceled": "cancel",
        "CancelRejected": None, "ReplaceRequested": "replace_request",
        "OrderReplaced": "replaced_partial", "ReplaceRejected": None,
    }
    seen = set()
    for event in b.sample_events():
        name = type(event).__name__
        if name in expected and name not in seen:
            seen.add(name)
            assert action_of(event, 5) == expected[name], name
    assert seen == set(expected)


def test_refusals_move_the_status_only_when_the_venue_refused() -> None:
    venue_replace = next(e for e in b.sample_events() if type(e).__name__ == "ReplaceRejected"
                         and e.stage == RequestStage.VENUE)
    assert action_of(venue_replace, 0) == "replace_refused"
    assert action_of(venue_replace, 3) == "replace_refused_partial"
    cancel = next(e for e in b.sample_events() if type(e).__name__ == "CancelRejected")
    assert action_of(cancel._replace(stage=RequestStage.VENUE), 0) == "cancel_refused"


def test_illegal_transition_is_not_a_value_error() -> None:
    # Callers catch it by name; it must not be swallowed by `except ValueError`.
    assert not issubclass(IllegalTransition, ValueError)
