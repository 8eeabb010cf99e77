"""The book of record: fills, cancels, replaces, end of day, versions and replay."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.book_of_record import BookOfRecord
from domain.controls import REPLACE_CONTROLS
from domain.events import (
    CancelRejected,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    ReplaceRejected,
)
from domain.orders import Order
from domain.values import CancelReason, OrderStatus, OrderType, Side, TimeInForce
from tests import builders as b

# --------------------------------------------------------------------------- helpers


class Recorder:
    """Wraps a book and keeps every event its decisions produced, in order."""

    def __init__(self, factory: Callable[[], BookOfRecord] = b.book) -> None:
        self.factory = factory  # builds the same starting book again, for replay
        self.book = factory()
        self.events: list[Any] = []

    def submit(self, **kw: Any) -> OrderAccepted | OrderRejected:
        e = b.submit(self.book, **kw)
        self.events.append(e)
        return e

    def fill(self, order: Order, quantity: int | None = None, price: Any = None) -> OrderFilled:
        e = b.fill(self.book, order, quantity, price)
        self.events.append(e)
        return e

    def cancel(self, order: Order, reason: str = CancelReason.REQUESTED) -> Any:
        e = self.book.cancel(order, b.ACTOR, "api", b.ts(), reason)
        self.events.append(e)
        return e

    def replace(self, order: Order, quantity: int | None, price: Any) -> Any:
        px = None if price is None else Decimal(price)
        e = self.book.replace(order, quantity, px, b.ACTOR, "api", b.ts())
        self.events.append(e)
        return e

    def end_of_day(self) -> list[OrderCanceled]:
        es = self.book.end_of_day("system", "system", b.ts())
        self.events.extend(es)
        return es


def snapshot(book: BookOfRecord) -> dict[str, Any]:
    return {
        "orders": {
            oid: {slot: getattr(o, slot) for slot in Order.__slots__}
            for oid, o in book.orders.items()
        },
        "by_client_id": {k: o.order_id for k, o in book.by_client_id.items()},
        "accounts": {
            aid: (a.exposure, dict(a.positions), a.cash) for aid, a in book.accounts.items()
        },
        "firm_exposure": book.firm_exposure,
        "last_trade": dict(book.last_trade),
        "events_applied": book.events_applied,
    }


def replay(rec: Recorder) -> BookOfRecord:
    fresh = rec.factory()
    for e in rec.events:
        fresh.apply(e)
    return fresh


def expected_exposure(book: BookOfRecord, account_id: str) -> Decimal:
    return sum(
        (
            o.filled_notional + o.leaves_quantity * o.exposure_price
            for o in book.orders.values()
            if o.account_id == account_id
        ),
        Decimal(0),
    )


def assert_invariants(book: BookOfRecord) -> None:
    for aid, acc in book.accounts.items():
        assert acc.exposure == expected_exposure(book, aid), aid
    assert book.firm_exposure == sum((a.exposure for a in book.accounts.values()), Decimal(0))


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


# ----------------------------------------------------------------------------- fills


def test_partial_then_full_fill(rec: Recorder) -> None:
    order = b.accepted(rec.book, quantity=100, limit_price="190.00")
    acc = rec.book.accounts[b.ACCOUNT]
    cash0 = acc.cash

    e1 = rec.fill(order, 40, "189.50")
    assert (e1.version, e1.cumulative_quantity, e1.leaves_quantity) == (2, 40, 60)
    assert e1.actor == "venue" and e1.source == "venue"
    assert order.status == OrderStatus.PARTIALLY_FILLED
    assert order.leaves_quantity == 60
    assert acc.positions["AAPL"] == 40
    assert acc.cash == cash0 - Decimal("7580.00")
    # exposure moves from the limit price to the fill price on the filled part
    assert acc.exposure == Decimal("7580.00") + 60 * Decimal("190.00")
    assert rec.book.firm_exposure == acc.exposure
    assert order.average_fill_price == Decimal("189.50")

    e2 = rec.fill(order, 60, "189.00")
    assert (e2.version, e2.cumulative_quantity, e2.leaves_quantity) == (3, 100, 0)
    assert order.status == OrderStatus.FILLED
    assert order.leaves_quantity == 0
    assert acc.positions["AAPL"] == 100
    assert acc.cash == cash0 - Decimal("7580.00") - Decimal("11340.00")
    assert acc.exposure == Decimal("18920.00") == order.filled_notional
    assert order.average_fill_price == Decimal("189.20")
    assert rec.book.last_trade["AAPL"] == Decimal("189.00")
    assert_invariants(rec.book)


@pytest.mark.parametrize("side", [Side.SELL, Side.SELL_SHORT])
def test_sell_fill_lowers_position_and_raises_cash(side: Side) -> None:
    book = b.book()
    order = b.accepted(book, side=side, quantity=10)
    cash0 = book.accounts[b.ACCOUNT].cash
    b.fill(book, order, price="191.00")
    acc = book.accounts[b.ACCOUNT]
    assert acc.positions["AAPL"] == -10
    assert acc.cash == cash0 + Decimal("1910.00")
    assert acc.exposure == Decimal("1910.00")  # gross: sells count toward exposure


def test_market_order_fill_moves_exposure_from_reference_to_fill_price() -> None:
    book = b.book()
    order = b.accepted(book, order_type=OrderType.MARKET, quantity=10)
    assert book.accounts[b.ACCOUNT].exposure == Decimal("1900.00")
    b.fill(book, order, price="195.00")
    assert book.accounts[b.ACCOUNT].exposure == Decimal("1950.00")
    assert_invariants(book)


@pytest.mark.parametrize("quantity", [0, -1, 101])
def test_fill_quantity_outside_leaves_refused(quantity: int) -> None:
    book = b.book()
    order = b.accepted(book, quantity=100)
    with pytest.raises(ValueError, match="venue reported"):
        b.fill(book, order, quantity, "190.00")
    assert order.version == 1 and order.filled_quantity == 0


def test_fill_on_canceled_or_rejected_order_refused() -> None:
    book = b.book()
    order = b.accepted(book)
    book.cancel(order, b.ACTOR, "api", b.ts())
    with pytest.raises(ValueError):
        b.fill(book, order, 1, "190.00")
    rej = b.submit(book, quantity=5_000)
    with pytest.raises(ValueError):
        b.fill(book, book.orders[rej.order_id], 1, "190.00")


# ---------------------------------------------------------------------------- cancel


def test_cancel_releases_exposure_of_leaves(rec: Recorder) -> None:
    order = b.accepted(rec.book, quantity=100, limit_price="190.00")
    rec.fill(order, 30, "189.00")
    e = rec.cancel(order)
    assert isinstance(e, OrderCanceled)
    assert (e.version, e.canceled_quantity, e.reason) == (3, 70, CancelReason.REQUESTED)
    assert order.status == OrderStatus.CANCELED
    assert order.leaves_quantity == 0
    assert rec.book.accounts[b.ACCOUNT].exposure == Decimal("5670.00")
    assert rec.book.firm_exposure == Decimal("5670.00")
    assert_invariants(rec.book)


@pytest.mark.parametrize("terminal", ["filled", "canceled", "rejected"])
def test_cancel_of_terminal_order_is_cancel_rejected_and_bumps_version(terminal: str) -> None:
    book = b.book()
    if terminal == "rejected":
        order = book.orders[b.submit(book, quantity=5_000).order_id]
    else:
        order = b.accepted(book)
        if terminal == "filled":
            b.fill(book, order)
        else:
            book.cancel(order, b.ACTOR, "api", b.ts())
    before = (order.version, book.accounts[b.ACCOUNT].exposure, book.events_applied)
    e = book.cancel(order, b.ACTOR, "api", b.ts())
    assert isinstance(e, CancelRejected)
    assert e.status == terminal
    assert e.reason == f"order is {terminal}"
    assert e.version == before[0] + 1 == order.version
    assert book.accounts[b.ACCOUNT].exposure == before[1]
    assert book.events_applied == before[2] + 1
    assert order.status == terminal


# --------------------------------------------------------------------------- replace


def test_replace_price_and_quantity_up_passes(rec: Recorder) -> None:
    order = b.accepted(rec.book, quantity=100, limit_price="190.00")
    e = rec.replace(order, 200, "195.00")
    assert isinstance(e, OrderReplaced)
    assert (e.old_quantity, e.old_limit_price, e.quantity, e.limit_price) == (
        100, Decimal("190.00"), 200, Decimal("195.00"))
    assert e.version == 2
    assert e.exposure_before == Decimal("19000.00")
    assert e.reference_price == Decimal("190.00")
    assert e.limits_version == 7
    assert e.checks == REPLACE_CONTROLS
    assert (order.quantity, order.limit_price, order.exposure_price) == (
        200, Decimal("195.00"), Decimal("195.00"))
    assert rec.book.accounts[b.ACCOUNT].exposure == Decimal("39000.00")
    assert_invariants(rec.book)


def test_replace_after_partial_fill_revalues_only_leaves(rec: Recorder) -> None:
    order = b.accepted(rec.book, quantity=100, limit_price="190.00")
    rec.fill(order, 40, "189.00")
    e = rec.replace(order, None, "192.00")
    assert isinstance(e, OrderReplaced)
    assert order.status == OrderStatus.PARTIALLY_FILLED
    assert rec.book.accounts[b.ACCOUNT].exposure == 40 * Decimal("189.00") + 60 * Decimal(
        "192.00")
    assert_invariants(rec.book)


def test_replace_failing_collar_rejected(rec: Recorder) -> None:
    order = b.accepted(rec.book)
    e = rec.replace(order, None, "210.00")
    assert isinstance(e, ReplaceRejected)
    assert (e.control, e.threshold) == ("price_collar", "0.10")
    assert e.requested_limit_price == Decimal("210.00")
    assert e.requested_quantity is None
    assert e.version == 2 == order.version
    assert order.limit_price == Decimal("190.00")
    assert rec.book.accounts[b.ACCOUNT].exposure == Decimal("19000.00")


def test_replace_failing_credit_rejected() -> None:
    book = b.book(accounts=[b.account(credit_limit=Decimal("30000"))])
    order = b.accepted(book)
    e = book.replace(order, 200, None, b.ACTOR, "api", b.ts())
    assert isinstance(e, ReplaceRejected)
    assert (e.control, e.threshold, e.observed) == ("credit", "30000", "38000.00")
    assert order.quantity == 100


def test_replace_failing_firm_credit_rejected() -> None:
    book = b.book(firm_limits=b.firm(credit_limit=Decimal("20000")))
    order = b.accepted(book)
    e = book.replace(order, 110, None, b.ACTOR, "api", b.ts())
    assert isinstance(e, ReplaceRejected)
    assert e.control == "firm_credit"


@pytest.mark.parametrize(
    ("quantity", "price", "control"),
    [(1_001, None, "max_qty"), (None, "190.001", "tick_size"), (600, None, "max_notional")],
)
def test_replace_reruns_size_and_tick_controls(
    quantity: int | None, price: str | None, control: str
) -> None:
    book = b.book()
    order = b.accepted(book)
    e = book.replace(order, quantity, None if price is None else Decimal(price), b.ACTOR,
                     "api", b.ts())
    assert isinstance(e, ReplaceRejected)
    assert e.control == control


def test_replace_reducing_exposure_allowed_even_above_limit() -> None:
    # The account is over its limit (e.g. a fill above the limit price); shrinking must pass.
    book = b.book(accounts=[b.account(credit_limit=Decimal("19000"))])
    order = b.accepted(book, quantity=100, limit_price="190.00")
    b.fill(book, order, 10, "199.00")  # exposure now 19,090 > 19,000
    assert book.accounts[b.ACCOUNT].exposure > book.accounts[b.ACCOUNT].credit_limit
    e = book.replace(order, 50, None, b.ACTOR, "api", b.ts())
    assert isinstance(e, OrderReplaced), e
    e = book.replace(order, None, Decimal("189.00"), b.ACTOR, "api", b.ts())
    assert isinstance(e, OrderReplaced), e
    # ... but increasing it again is refused.
    e = book.replace(order, 110, None, b.ACTOR, "api", b.ts())  # 10 x 199 + 100 x 189
    assert isinstance(e, ReplaceRejected)
    assert (e.control, e.observed) == ("credit", "20890.00")
    assert_invariants(book)


@pytest.mark.parametrize("quantity", [30, 20, 0])
def test_replace_quantity_not_above_filled_rejected(quantity: int) -> None:
    book = b.book()
    order = b.accepted(book)
    b.fill(book, order, 30, "190.00")
    e = book.replace(order, quantity, None, b.ACTOR, "api", b.ts())
    assert isinstance(e, ReplaceRejected)
    assert (e.control, e.threshold, e.observed) == ("min_quantity", "> 30 filled", str(quantity))
    assert order.quantity == 100


def test_replace_down_to_just_above_filled_passes() -> None:
    book = b.book()
    order = b.accepted(book)
    b.fill(book, order, 30, "190.00")
    assert isinstance(book.replace(order, 31, None, b.ACTOR, "api", b.ts()), OrderReplaced)
    assert order.leaves_quantity == 1
    assert_invariants(book)


def test_replace_market_order_rejected() -> None:
    book = b.book()
    order = b.accepted(book, order_type=OrderType.MARKET)
    e = book.replace(order, 50, None, b.ACTOR, "api", b.ts())
    assert isinstance(e, ReplaceRejected)
    assert (e.control, e.threshold, e.observed) == ("order_type", "limit order", "market")


def test_replace_terminal_order_rejected() -> None:
    book = b.book()
    order = b.accepted(book)
    b.fill(book, order)
    e = book.replace(order, 200, None, b.ACTOR, "api", b.ts())
    assert isinstance(e, ReplaceRejected)
    assert (e.control, e.observed) == ("order_status", "filled")
    assert order.version == 3


# ------------------------------------------------------------------------ end of day


def test_end_of_day_cancels_only_live_day_orders(rec: Recorder) -> None:
    day_open = b.accepted(rec.book, quantity=10)
    day_partial = b.accepted(rec.book, quantity=20)
    rec.fill(day_partial, 5)
    day_filled = b.accepted(rec.book, quantity=30)
    rec.fill(day_filled)
    gtc = b.accepted(rec.book, quantity=40, time_in_force=TimeInForce.GTC)
    rejected = rec.book.orders[b.submit(rec.book, quantity=5_000).order_id]

    events = rec.end_of_day()
    assert {e.order_id for e in events} == {day_open.order_id, day_partial.order_id}
    assert all(e.reason == CancelReason.END_OF_DAY for e in events)
    assert all(e.actor == "system" for e in events)
    assert {e.order_id: e.canceled_quantity for e in events} == {
        day_open.order_id: 10, day_partial.order_id: 15}
    assert day_filled.status == OrderStatus.FILLED
    assert gtc.status == OrderStatus.ACCEPTED
    assert rejected.status == OrderStatus.REJECTED
    assert rec.book.accounts[b.ACCOUNT].exposure == (
        5 * Decimal("190.00") + 30 * Decimal("190.00") + 40 * Decimal("190.00"))
    assert rec.end_of_day() == []
    assert_invariants(rec.book)


# ----------------------------------------------------------------- find / versions


def test_find_by_account_and_client_order_id() -> None:
    book = b.book()
    b.accepted(book, client_order_id="same")
    other = b.accepted(book, account_id=b.OTHER_ACCOUNT, client_order_id="same")
    mine = book.find(b.ACCOUNT, "same")
    assert mine is not None and mine.account_id == b.ACCOUNT
    assert book.find(b.OTHER_ACCOUNT, "same") is other
    assert book.find(b.ACCOUNT, "missing") is None
    assert book.find("ACC-NOPE", "same") is None


def test_find_returns_rejected_orders_too() -> None:
    book = b.book()
    b.submit(book, client_order_id="big", quantity=5_000)
    found = book.find(b.ACCOUNT, "big")
    assert found is not None and found.status == OrderStatus.REJECTED


def test_versions_increase_by_one_per_event(rec: Recorder) -> None:
    order = b.accepted(rec.book, quantity=100)
    rec.events.append(None)  # placeholder: acceptance was made outside the recorder
    rec.fill(order, 10)
    rec.replace(order, 90, None)
    rec.replace(order, None, "300.00")  # rejected: collar
    rec.fill(order, 10)
    rec.cancel(order)
    rec.cancel(order)  # rejected: already canceled
    rec.replace(order, 50, None)  # rejected: not live
    versions = [e.version for e in rec.events[1:]]
    assert versions == list(range(2, 2 + len(versions)))
    assert order.version == versions[-1]


def test_events_applied_counts_every_event(rec: Recorder) -> None:
    order = b.accepted(rec.book)
    b.submit(rec.book, quantity=5_000)
    rec.fill(order, 1)
    rec.cancel(order)
    rec.cancel(order)
    assert rec.book.events_applied == 5


# ---------------------------------------------------------------------------- replay


def _scenario() -> Recorder:
    rec = Recorder(lambda: b.book(firm_limits=b.firm(credit_limit=Decimal("200000"))))
    a1 = rec.submit(quantity=100)
    a2 = rec.submit(account_id=b.OTHER_ACCOUNT, order_type=OrderType.MARKET, quantity=50)
    rec.submit(symbol="RSTR", limit_price="42.00")  # restricted
    rec.submit(quantity=5_000)  # max_qty
    rec.submit(symbol="NEWCO", limit_price="1.00")  # no reference
    a3 = rec.submit(symbol="PENNY", quantity=1_000, limit_price="0.9500",
                    time_in_force=TimeInForce.GTC, side=Side.SELL_SHORT)
    o1, o2, o3 = (rec.book.orders[e.order_id] for e in (a1, a2, a3))
    rec.fill(o1, 40, "189.50")
    rec.fill(o2, 50, "191.25")
    rec.replace(o1, 150, "192.00")
    rec.replace(o1, None, "250.00")  # collar
    rec.fill(o1, 10, "192.00")
    rec.fill(o3, 300, "0.9499")
    rec.cancel(o2)  # filled -> CancelRejected
    now = b.ts()
    rec.submit(quantity=7, now_ns=now)
    rec.submit(quantity=7, now_ns=now + 1)  # duplicate
    rec.submit(quantity=500, limit_price="200.00", account_id=b.OTHER_ACCOUNT)
    rec.submit(quantity=500, limit_price="200.00", account_id=b.OTHER_ACCOUNT)  # firm credit
    rec.end_of_day()
    return rec


def test_replay_of_scenario_rebuilds_identical_state() -> None:
    rec = _scenario()
    kinds = {type(e) for e in rec.events}
    assert kinds == {OrderAccepted, OrderRejected, OrderFilled, OrderCanceled, OrderReplaced,
                     ReplaceRejected, CancelRejected}
    replayed = replay(rec)
    assert snapshot(replayed) == snapshot(rec.book)
    assert_invariants(rec.book)


def test_replayed_book_makes_the_same_next_decisions() -> None:
    rec = _scenario()
    replayed = replay(rec)
    now = b.ts()
    for book in (rec.book, replayed):
        e = b.submit(book, order_id=b.order_id(10_000), quantity=1, now_ns=now)
        assert isinstance(e, OrderAccepted)
        e = b.submit(book, order_id=b.order_id(10_001), quantity=1, now_ns=now + 1)
        assert isinstance(e, OrderRejected) and e.control == "duplicate"
    assert snapshot(replayed) == snapshot(rec.book)


# ------------------------------------------------------------- property: invariants

_action = st.one_of(
    st.tuples(
        st.just("submit"),
        st.sampled_from([b.ACCOUNT, b.OTHER_ACCOUNT]),
        st.sampled_from(["AAPL", "MSFT", "NEWCO"]),
        st.sampled_from(list(Side)),
        st.integers(1, 500),
        st.one_of(st.none(), st.integers(-20, 20)),  # None = market; else offset in 1.00s
        st.sampled_from([TimeInForce.DAY, TimeInForce.GTC]),
    ),
    st.tuples(st.just("fill"), st.integers(0, 50), st.integers(1, 600), st.integers(-15, 15)),
    st.tuples(st.just("cancel"), st.integers(0, 50)),
    st.tuples(st.just("replace"), st.integers(0, 50), st.one_of(st.none(), st.integers(1, 500)),
              st.one_of(st.none(), st.integers(-20, 20))),
    st.tuples(st.just("end_of_day")),
)


def _run(actions: list[tuple[Any, ...]]) -> Recorder:
    b.reset()
    # Limits low enough that credit and firm_credit rejections happen often.
    rec = Recorder(lambda: b.book(
        accounts=[b.account(b.ACCOUNT, credit_limit=Decimal("150000")),
                  b.account(b.OTHER_ACCOUNT, credit_limit=Decimal("150000"))],
        firm_limits=b.firm(credit_limit=Decimal("250000"))))
    refs = {"AAPL": Decimal(190), "MSFT": Decimal(410), "NEWCO": Decimal(10)}

    def pick(i: int) -> Order | None:
        orders = list(rec.book.orders.values())
        return orders[i % len(orders)] if orders else None

    for act in actions:
        kind = act[0]
        if kind == "submit":
            _, acc, sym, side, qty, ticks, tif = act
            price = None if ticks is None else refs[sym] + ticks
            rec.submit(account_id=acc, symbol=sym, side=side, quantity=qty,
                       order_type=OrderType.MARKET if price is None else OrderType.LIMIT,
                       limit_price=price, time_in_force=tif)
        elif kind == "fill":
            order = pick(act[1])
            if order is None or order.status not in (OrderStatus.ACCEPTED,
                                                     OrderStatus.PARTIALLY_FILLED):
                continue
            qty = 1 + (act[2] - 1) % (order.quantity - order.filled_quantity)
            price = (rec.book.reference_price(order.symbol) or refs[order.symbol]) + act[3]
            rec.fill(order, qty, max(price, Decimal("0.01")))
        elif kind == "cancel":
            order = pick(act[1])
            if order is not None:
                rec.cancel(order)
        elif kind == "replace":
            order = pick(act[1])
            if order is not None:
                price = None if act[3] is None else refs[order.symbol] + act[3]
                rec.replace(order, act[2], price)
        else:
            rec.end_of_day()
        assert_invariants(rec.book)
    return rec


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_action, min_size=5, max_size=60))
def test_property_exposure_invariants_and_replay(actions: list[tuple[Any, ...]]) -> None:
    rec = _run(actions)
    for acc in rec.book.accounts.values():
        assert acc.exposure >= 0
    assert snapshot(replay(rec)) == snapshot(rec.book)
