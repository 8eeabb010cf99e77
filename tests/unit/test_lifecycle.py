"""The order lifecycle table: every legal transition, and every other pair refused."""

from __future__ import annotations

import itertools

import pytest

from domain.lifecycle import LIVE_STATUSES, TRANSITIONS, IllegalTransition, transition
from domain.values import OrderStatus as S

ACTIONS = ("accept", "reject", "partial_fill", "fill", "cancel", "replace")

LEGAL: dict[tuple[S, str], S] = {
    (S.SUBMITTED, "accept"): S.ACCEPTED,
    (S.SUBMITTED, "reject"): S.REJECTED,
    (S.ACCEPTED, "partial_fill"): S.PARTIALLY_FILLED,
    (S.ACCEPTED, "fill"): S.FILLED,
    (S.PARTIALLY_FILLED, "partial_fill"): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, "fill"): S.FILLED,
    (S.ACCEPTED, "cancel"): S.CANCELED,
    (S.PARTIALLY_FILLED, "cancel"): S.CANCELED,
    (S.ACCEPTED, "replace"): S.ACCEPTED,
    (S.PARTIALLY_FILLED, "replace"): S.PARTIALLY_FILLED,
}

ILLEGAL = [pair for pair in itertools.product(S, ACTIONS) if pair not in LEGAL]


def test_table_is_exactly_the_reviewed_one() -> None:
    # A change to the lifecycle must be a deliberate change to this test as well.
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


def test_illegal_pairs_cover_the_rest_of_the_grid() -> None:
    assert len(ILLEGAL) + len(LEGAL) == len(S) * len(ACTIONS)
    assert len(ILLEGAL) == 26


def test_unknown_action_raises() -> None:
    with pytest.raises(IllegalTransition):
        transition(S.ACCEPTED, "amend")


@pytest.mark.parametrize("status", [S.REJECTED, S.FILLED, S.CANCELED])
def test_terminal_statuses_allow_nothing(status: S) -> None:
    assert not any(s == status for s, _ in TRANSITIONS)


def test_live_statuses_are_those_that_can_be_filled_canceled_or_replaced() -> None:
    for action in ("fill", "partial_fill", "cancel", "replace"):
        assert {s for (s, a) in TRANSITIONS if a == action} == LIVE_STATUSES


def test_illegal_transition_is_not_a_value_error() -> None:
    # Callers catch it by name; it must not be swallowed by `except ValueError`.
    assert not issubclass(IllegalTransition, ValueError)
