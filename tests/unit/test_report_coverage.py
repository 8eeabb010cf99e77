"""Which controls an order had to pass (15c3-5 coverage), from its decision event alone,
and the report's pure pieces (times, canonical bytes). No I/O."""

from __future__ import annotations

import hashlib
from decimal import Decimal

from domain.controls import NEW_ORDER_CONTROLS
from domain.events import OrderAccepted, OrderRejected
from domain.values import OrderType
from projections.controls_stats import applicable_controls, checked_controls
from projections.report_15c3_5 import canonical_bytes, firm_limit_at, iso_ns, sealed
from tests import builders as b


def test_an_accepted_limit_order_ran_every_new_order_control() -> None:
    book = b.book()
    event = b.submit(book)
    assert isinstance(event, OrderAccepted)
    assert applicable_controls(event) == NEW_ORDER_CONTROLS
    assert checked_controls(event) == frozenset(NEW_ORDER_CONTROLS)


def test_a_market_order_skips_tick_size_and_still_covers_the_rest() -> None:
    book = b.book()
    event = b.submit(book, order_type=OrderType.MARKET)
    assert isinstance(event, OrderAccepted)
    expected = tuple(n for n in NEW_ORDER_CONTROLS if n != "tick_size")
    assert applicable_controls(event) == expected
    assert set(expected) <= checked_controls(event)


def test_a_rejection_applies_the_controls_up_to_the_rejecting_one() -> None:
    book = b.book()
    event = b.submit(book, quantity=5000)  # limits(): max qty 1,000
    assert isinstance(event, OrderRejected) and event.control == "max_qty"
    upto = NEW_ORDER_CONTROLS[: NEW_ORDER_CONTROLS.index("max_qty") + 1]
    assert applicable_controls(event) == upto
    assert checked_controls(event) == frozenset(upto)


def test_no_reference_price_skips_stale_reference_for_the_collar_to_reject() -> None:
    book = b.book()
    event = b.submit(book, symbol="NEWCO")
    assert isinstance(event, OrderRejected) and event.control == "price_collar"
    assert "stale_reference" not in applicable_controls(event)
    assert set(applicable_controls(event)) == checked_controls(event)


def test_a_decision_missing_a_control_shows_as_a_gap() -> None:
    book = b.book()
    event = b.submit(book)
    assert isinstance(event, OrderAccepted)
    forged = event._replace(checks=tuple(n for n in event.checks if n != "luld"))
    assert "luld" in applicable_controls(forged)
    assert "luld" not in checked_controls(forged)


def test_times_keep_nanoseconds_and_the_seal_is_over_sorted_canonical_json() -> None:
    assert iso_ns(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"
    assert iso_ns(None) is None
    report = sealed({"b": 1, "a": "x"})
    assert canonical_bytes(report) == b'{"a":"x","b":1}'
    assert report["sha256"] == hashlib.sha256(b'{"a":"x","b":1}').hexdigest()


def test_the_firm_limit_in_force_comes_from_its_changes_else_the_configuration() -> None:
    approved = {"position": 10, "type": "LimitChangeApproved", "ts_ns": 100,
                "body": {"old_value": "40000000", "new_value": "700000"}}
    reverted = {"position": 20, "type": "LimitChangeReverted", "ts_ns": 200,
                "body": {"value": "40000000"}}
    changes = [approved, reverted]
    assert firm_limit_at(changes, 50, Decimal(1))[0] == Decimal("40000000")  # old value
    assert firm_limit_at(changes, 150, None)[0] == Decimal("700000")
    assert firm_limit_at(changes, 250, None)[0] == Decimal("40000000")
    assert firm_limit_at([], 250, Decimal(5)) == (
        Decimal(5), "configuration (no firm limit change recorded in the log)")
    assert firm_limit_at([], 250, None) == (None, "not recorded in the log")
