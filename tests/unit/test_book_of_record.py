"""The book of record: fills, pending cancels and replaces, trading days, memory, replay."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.book_of_record import BookOfRecord, DayError
from domain.book_snapshot import restore, state_of
from domain.controls import REPLACE_CONTROLS
from domain.events import (
    CancelRejected,
    CancelRequested,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    ReplaceRejected,
    ReplaceRequested,
    TradingDayClosed,
    TradingDayOpened,
)
from domain.lifecycle import LIVE_STATUSES
from domain.orders import Order
from domain.values import CancelReason, OrderStatus, OrderType, RequestStage, Side, TimeInForce
from tests import builders as b

# --------------------------------------------------------------------------- helpers


class Recorder:
    """Wraps a book and keeps every event its decisions produced, in order."""

    def __init__(self, factory: Callable[[], BookOfRecord] = b.book) -> None:
        self.factory = factory  # builds the same starting book again, for replay
        self.book = factory()
        self.events: list[Any] = []

    def keep(self, event: Any) -> Any:
        self.events.append(event)
        return event

    def submit(self, **kw: Any) -> OrderAccepted | OrderRejected:
        event = self.keep(b.submit(self.book, **kw))
        for follow_up in self.book.take_follow_ups():  # a locate consumed, a kill switch
            self.keep(follow_up)
        return event

    def accepted(self, **kw: Any) -> Order:
        event = self.submit(**kw)
        assert isinstance(event, OrderAccepted), event
        return self.book.orders[event.order_id]

    def fill(self, order: Order, quantity: int | None = None, price: Any = None) -> OrderFilled:
        event = self.keep(b.fill(self.book, order, quantity, price))
        for follow_up in self.book.take_follow_ups():  # a Rule 201 trigger
            self.keep(follow_up)
        return event

    def cancel(self, order: Any) -> Any:
        return self.keep(self.book.request_cancel(order, b.ACTOR, "api", b.ts()))

    def confirm_cancel(self, order: Order) -> Any:
        return self.keep(self.book.confirm_cancel(order, b.ts()))

    def replace(self, order: Any, quantity: int | None, price: Any) -> Any:
        px = None if price is None else Decimal(price)
        event = self.keep(self.book.request_replace(order, quantity, px, b.ACTOR, "api",
                                                    b.ts()))
        for follow_up in self.book.take_follow_ups():
            self.keep(follow_up)
        return event

    def confirm_replace(self, order: Order) -> Any:
        return self.keep(self.book.confirm_replace(order, b.ts()))

    def close_day(self) -> list[Any]:
        closed, cancels = self.book.close_day("system", "system", b.ts(), "test")
        self.events += [closed, *cancels]
        return [closed, *cancels]

    def open_day(self, date: str) -> TradingDayOpened:
        return self.keep(self.book.open_day(date, "system", "system", b.ts(), None, "test"))


def replay(rec: Recorder) -> BookOfRecord:
    fresh = rec.factory()
    for e in rec.events:
        fresh.apply(e)
    return fresh


def fills_since_open(events: list[Any]) -> list[OrderFilled]:
    today: list[OrderFilled] = []
    for e in events:
        if isinstance(e, TradingDayOpened):
            today = []
        elif isinstance(e, OrderFilled):
            today.append(e)
    return today


def assert_exposure_is_what_the_day_implies(book: BookOfRecord, events: list[Any]) -> None:
    """Gross exposure, independently: today's fills at their prices plus every live order's
    leaves at its exposure price plus what pending replaces hold back."""
    expected: dict[str, Decimal] = dict.fromkeys(book.accounts, Decimal(0))
    for f in fills_since_open(events):
        expected[f.account_id] += f.fill_price * f.fill_quantity
    for o in book.orders.values():
        assert o.status in LIVE_STATUSES, o.status  # finished orders left memory
        reserved = o.pending_replace.reserved if o.pending_replace else 0
        expected[o.account_id] += o.exposure_price * (o.quantity - o.filled_quantity) + reserved
    for account_id, value in expected.items():
        assert book.accounts[account_id].exposure.value("gross") == value, account_id
    assert book.firm_exposure.value("gross") == sum(expected.values(), Decimal(0))


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


# ----------------------------------------------------------------------------- fills


def test_partial_then_full_fill(rec: Recorder) -> None:
    order = rec.accepted(quantity=100, limit_price="190.00")
    acc = rec.book.accounts[b.ACCOUNT]
    cash0 = acc.cash

    e1 = rec.fill(order, 40, "189.50")
    assert (e1.version, e1.cumulative_quantity, e1.leaves_quantity) == (2, 40, 60)
    assert e1.actor == "venue" and e1.source == "venue"
    assert order.status == OrderStatus.PARTIALLY_FILLED
    assert acc.positions["AAPL"] == 40
    assert acc.cash == cash0 - Decimal("7580.00")
    # exposure moves from the limit price to the fill price on the filled part
    assert rec.book.exposure(b.ACCOUNT) == Decimal("7580.00") + 60 * Decimal("190.00")
    assert order.average_fill_price == Decimal("189.50")

    e2 = rec.fill(order, 60, "189.00")
    assert (e2.version, e2.cumulative_quantity, e2.leaves_quantity) == (3, 100, 0)
    assert order.status == OrderStatus.FILLED
    assert acc.positions["AAPL"] == 100
    assert rec.book.exposure(b.ACCOUNT) == Decimal("18920.00") == order.filled_notional
    # Finished: out of the engine's memory, a frozen record kept for idempotent resends.
    assert order.order_id not in rec.book.orders
    record = rec.book.finished[order.order_id]
    assert (record.status, record.filled_quantity, record.version) == ("filled", 100, 3)
    assert rec.book.find(b.ACCOUNT, order.client_order_id) is record
    assert rec.book.reference_price("AAPL") == Decimal("189.00")  # printed to the tape
    assert_exposure_is_what_the_day_implies(rec.book, rec.events)


@pytest.mark.parametrize("side", [Side.SELL, Side.SELL_SHORT])
def test_sell_fill_lowers_position_and_raises_cash(side: Side) -> None:
    book = b.book()
    order = b.accepted(book, side=side, quantity=10)
    cash0 = book.accounts[b.ACCOUNT].cash
    b.fill(book, order, price="191.00")
    acc = book.accounts[b.ACCOUNT]
    assert acc.positions["AAPL"] == -10
    assert acc.cash == cash0 + Decimal("1910.00")
    assert book.exposure(b.ACCOUNT) == Decimal("1910.00")  # gross: sells count too


def test_market_order_fill_moves_exposure_from_protection_to_fill_price() -> None:
    book = b.book()
    order = b.accepted(book, order_type=OrderType.MARKET, quantity=10)
    assert book.exposure(b.ACCOUNT) == Decimal("2090.00")  # protection 209.00
    b.fill(book, order, 4, price="195.00")
    assert book.exposure(b.ACCOUNT) == Decimal("780.00") + 6 * Decimal("209.00")


@pytest.mark.parametrize("quantity", [0, -1, 101])
def test_fill_quantity_outside_leaves_refused(quantity: int) -> None:
    book = b.book()
    order = b.accepted(book, quantity=100)
    with pytest.raises(ValueError, match="venue reported"):
        b.fill(book, order, quantity, "190.00")
    assert order.version == 1 and order.filled_quantity == 0


def test_fill_on_a_finished_order_refused() -> None:
    book = b.book()
    order = b.accepted(book)
    book.request_cancel(order, b.ACTOR, "api", b.ts())
    book.confirm_cancel(order, b.ts())
    with pytest.raises(ValueError):
        b.fill(book, order, 1, "190.00")


# ---------------------------------------------------------------- cancel: a request


def test_cancel_is_pending_until_the_venue_confirms(rec: Recorder) -> None:
    order = rec.accepted(quantity=100, limit_price="190.00")
    rec.fill(order, 30, "189.00")
    requested = rec.cancel(order)
    assert isinstance(requested, CancelRequested)
    assert order.status == OrderStatus.PENDING_CANCEL
    # The venue has not seen the cancel: the order may still trade, and its exposure stays.
    assert rec.book.exposure(b.ACCOUNT) == 30 * Decimal("189.00") + 70 * Decimal("190.00")
    rec.fill(order, 20, "190.00")  # a fill racing the cancel
    assert order.status == OrderStatus.PENDING_CANCEL
    confirmed = rec.confirm_cancel(order)
    assert isinstance(confirmed, OrderCanceled)
    assert (confirmed.version, confirmed.canceled_quantity, confirmed.reason) == (
        5, 50, CancelReason.REQUESTED)
    assert confirmed.actor == "venue"
    assert order.status == OrderStatus.CANCELED
    assert rec.book.exposure(b.ACCOUNT) == Decimal("5670.00") + Decimal("3800.00")
    assert order.order_id not in rec.book.orders
    assert_exposure_is_what_the_day_implies(rec.book, rec.events)


def test_a_cancel_that_reaches_the_venue_too_late_is_refused_there(rec: Recorder) -> None:
    order = rec.accepted(quantity=100)
    rec.cancel(order)
    rec.fill(order)  # filled before the cancel arrived
    assert order.status == OrderStatus.FILLED
    refused = rec.confirm_cancel(order)
    assert isinstance(refused, CancelRejected)
    assert (refused.stage, refused.status) == (RequestStage.VENUE, "filled")
    assert refused.version == 4 == rec.book.finished[order.order_id].version
    assert_exposure_is_what_the_day_implies(rec.book, rec.events)


def test_a_second_cancel_while_one_is_pending_is_refused(rec: Recorder) -> None:
    order = rec.accepted()
    rec.cancel(order)
    again = rec.cancel(order)
    assert isinstance(again, CancelRejected)
    assert (again.reason, again.stage) == ("cancel already pending", RequestStage.REQUEST)
    assert order.status == OrderStatus.PENDING_CANCEL and order.version == 3


@pytest.mark.parametrize("terminal", ["filled", "canceled", "rejected"])
def test_cancel_of_a_finished_order_is_refused_and_bumps_its_record(terminal: str) -> None:
    book = b.book()
    if terminal == "rejected":
        target: Any = book.finished[b.submit(book, quantity=5_000).order_id]
    else:
        order = b.accepted(book)
        if terminal == "filled":
            b.fill(book, order)
        else:
            book.request_cancel(order, b.ACTOR, "api", b.ts())
            book.confirm_cancel(order, b.ts())
        target = book.lookup(order.order_id)
    version = target.version
    exposure, applied = book.exposure(b.ACCOUNT), book.events_applied
    e = book.request_cancel(target, b.ACTOR, "api", b.ts())
    assert isinstance(e, CancelRejected)
    assert (e.status, e.reason, e.stage) == (terminal, f"order is {terminal}",
                                             RequestStage.REQUEST)
    assert e.version == version + 1 == book.lookup(target.order_id).version  # type: ignore[union-attr]
    assert book.exposure(b.ACCOUNT) == exposure
    assert book.events_applied == applied + 1


# --------------------------------------------------------------- replace: a request


def test_replace_is_pending_and_the_old_terms_trade_until_confirmed(rec: Recorder) -> None:
    order = rec.accepted(quantity=100, limit_price="190.00")
    e = rec.replace(order, 200, "195.00")
    assert isinstance(e, ReplaceRequested)
    assert (e.old_quantity, e.old_limit_price, e.quantity, e.limit_price) == (
        100, Decimal("190.00"), 200, Decimal("195.00"))
    assert e.version == 2 and e.exposure_before == Decimal("19000.00")
    assert (e.reference_price, e.reference_source) == (Decimal("190.00"), "previous_close")
    assert e.reserved_exposure == Decimal("20000.00")  # 200 x 195 - 100 x 190
    assert e.checks == tuple(c for c in REPLACE_CONTROLS)
    assert order.status == OrderStatus.PENDING_REPLACE
    assert (order.quantity, order.limit_price) == (100, Decimal("190.00"))  # not yet
    # The increase is held back against the limits while the venue has not confirmed.
    assert rec.book.exposure(b.ACCOUNT) == Decimal("39000.00")
    rec.fill(order, 10, "190.00")  # the venue still trades the old terms
    confirmed = rec.confirm_replace(order)
    assert isinstance(confirmed, OrderReplaced)
    assert confirmed.lost_priority
    assert (order.quantity, order.limit_price, order.exposure_price) == (
        200, Decimal("195.00"), Decimal("195.00"))
    assert order.status == OrderStatus.PARTIALLY_FILLED
    assert rec.book.exposure(b.ACCOUNT) == Decimal("1900.00") + 190 * Decimal("195.00")
    assert_exposure_is_what_the_day_implies(rec.book, rec.events)


def test_a_smaller_size_keeps_priority_a_new_price_loses_it(rec: Recorder) -> None:
    order = rec.accepted(quantity=100)
    first = order.priority
    rec.replace(order, 50, None)
    assert not rec.confirm_replace(order).lost_priority
    assert order.priority == first
    rec.replace(order, None, "189.00")
    assert rec.confirm_replace(order).lost_priority
    assert order.priority > first


def test_the_venue_refuses_a_replace_below_what_filled_meanwhile(rec: Recorder) -> None:
    order = rec.accepted(quantity=100)
    rec.replace(order, 40, "191.00")
    rec.fill(order, 60, "190.00")
    refused = rec.confirm_replace(order)
    assert isinstance(refused, ReplaceRejected)
    assert (refused.control, refused.stage, refused.threshold) == (
        "venue", RequestStage.VENUE, "> 60 filled")
    assert order.status == OrderStatus.PARTIALLY_FILLED
    assert (order.quantity, order.limit_price) == (100, Decimal("190.00"))
    assert order.pending_replace is None
    assert_exposure_is_what_the_day_implies(rec.book, rec.events)


def test_a_replace_refused_at_the_venue_after_a_full_fill_releases_its_reservation(
        rec: Recorder) -> None:
    order = rec.accepted(quantity=100)
    rec.replace(order, 150, None)
    rec.fill(order, 100)
    assert order.order_id not in rec.book.orders
    refused = rec.confirm_replace(order)
    assert isinstance(refused, ReplaceRejected) and refused.stage == RequestStage.VENUE
    assert rec.book.exposure(b.ACCOUNT) == Decimal("19000.00")
    assert_exposure_is_what_the_day_implies(rec.book, rec.events)


def test_a_replace_while_a_request_is_pending_is_refused(rec: Recorder) -> None:
    order = rec.accepted()
    rec.replace(order, 90, None)
    e = rec.replace(order, 80, None)
    assert isinstance(e, ReplaceRejected)
    assert (e.control, e.observed, e.stage) == ("pending_request", "pending_replace",
                                                RequestStage.REQUEST)
    rec.confirm_replace(order)
    rec.cancel(order)
    e = rec.replace(order, 70, None)
    assert (e.control, e.observed) == ("pending_request", "pending_cancel")


def test_a_cancel_may_follow_a_pending_replace_and_both_resolve_in_order(
        rec: Recorder) -> None:
    order = rec.accepted()
    rec.replace(order, None, "191.00")
    assert isinstance(rec.cancel(order), CancelRequested)
    assert order.status == OrderStatus.PENDING_CANCEL
    assert isinstance(rec.confirm_replace(order), OrderReplaced)
    assert order.status == OrderStatus.PENDING_CANCEL
    assert isinstance(rec.confirm_cancel(order), OrderCanceled)
    assert rec.book.exposure(b.ACCOUNT) == 0
    assert_exposure_is_what_the_day_implies(rec.book, rec.events)


def test_replace_failing_collar_rejected(rec: Recorder) -> None:
    order = rec.accepted()
    e = rec.replace(order, None, "210.00")
    assert isinstance(e, ReplaceRejected)
    assert (e.control, e.threshold, e.stage) == ("price_collar", "0.10", RequestStage.REQUEST)
    assert e.requested_limit_price == Decimal("210.00") and e.requested_quantity is None
    assert e.version == 2 == order.version
    assert order.status == OrderStatus.ACCEPTED
    assert rec.book.exposure(b.ACCOUNT) == Decimal("19000.00")


@pytest.mark.parametrize(("firm", "control", "observed"), [
    (False, "credit", "38000.00"), (True, "firm_credit", "38000.00")])
def test_replace_failing_credit_rejected(firm: bool, control: str, observed: str) -> None:
    book = (b.book(firm_limits=b.firm(credit_limit=Decimal("30000"))) if firm
            else b.book(accounts=[b.account(credit_limit=Decimal("30000"))]))
    order = b.accepted(book)
    e = book.request_replace(order, 200, None, b.ACTOR, "api", b.ts())
    assert isinstance(e, ReplaceRejected)
    assert (e.control, e.observed) == (control, observed)
    assert order.quantity == 100 and order.status == OrderStatus.ACCEPTED


@pytest.mark.parametrize(
    ("quantity", "price", "control"),
    [(1_001, None, "max_qty"), (None, "190.001", "tick_size"), (600, None, "max_notional")],
)
def test_replace_reruns_size_and_tick_controls(
    quantity: int | None, price: str | None, control: str
) -> None:
    book = b.book()
    order = b.accepted(book)
    e = book.request_replace(order, quantity, None if price is None else Decimal(price),
                             b.ACTOR, "api", b.ts())
    assert isinstance(e, ReplaceRejected) and e.control == control


def test_replace_reruns_the_restricted_list() -> None:
    book = b.book(accounts=[b.account(), b.account(b.OTHER_ACCOUNT)])
    order = b.accepted(book, account_id=b.OTHER_ACCOUNT, symbol="MSFT", limit_price="410.00",
                       quantity=10)
    book.accounts[b.OTHER_ACCOUNT].restricted_symbols = frozenset({"MSFT"})  # type: ignore[misc]
    e = book.request_replace(order, 5, None, b.ACTOR, "api", b.ts())
    assert isinstance(e, ReplaceRejected) and e.control == "restricted"


def test_replace_reducing_exposure_allowed_even_above_limit() -> None:
    book = b.book(accounts=[b.account(credit_limit=Decimal("19000"))])
    order = b.accepted(book, quantity=100, limit_price="190.00")
    b.fill(book, order, 10, "199.00")  # exposure now 19,090 > 19,000
    e = book.request_replace(order, 50, None, b.ACTOR, "api", b.ts())
    assert isinstance(e, ReplaceRequested) and e.reserved_exposure == 0
    book.confirm_replace(order, b.ts())
    e = book.request_replace(order, None, Decimal("189.00"), b.ACTOR, "api", b.ts())
    assert isinstance(e, ReplaceRequested), e
    book.confirm_replace(order, b.ts())
    e = book.request_replace(order, 110, None, b.ACTOR, "api", b.ts())  # 10 x 199 + 100 x 189
    assert isinstance(e, ReplaceRejected)
    assert (e.control, e.observed) == ("credit", "20890.00")


@pytest.mark.parametrize("quantity", [30, 20, 0])
def test_replace_quantity_not_above_filled_rejected(quantity: int) -> None:
    book = b.book()
    order = b.accepted(book)
    b.fill(book, order, 30, "190.00")
    e = book.request_replace(order, quantity, None, b.ACTOR, "api", b.ts())
    assert isinstance(e, ReplaceRejected)
    assert (e.control, e.threshold, e.observed) == ("min_quantity", "> 30 filled", str(quantity))


def test_replace_market_order_rejected() -> None:
    book = b.book()
    order = b.accepted(book, order_type=OrderType.MARKET)
    e = book.request_replace(order, 50, None, b.ACTOR, "api", b.ts())
    assert isinstance(e, ReplaceRejected)
    assert (e.control, e.threshold, e.observed) == ("order_type", "limit order", "market")


def test_replace_of_a_finished_order_rejected() -> None:
    book = b.book()
    order = b.accepted(book)
    b.fill(book, order)
    e = book.request_replace(book.finished[order.order_id], 200, None, b.ACTOR, "api", b.ts())
    assert isinstance(e, ReplaceRejected)
    assert (e.control, e.observed, e.version) == ("order_status", "filled", 3)


# ------------------------------------------------------------------------ trading days


def test_close_requests_the_cancel_of_live_day_orders_only(rec: Recorder) -> None:
    day_open = rec.accepted(quantity=10)
    day_partial = rec.accepted(quantity=20)
    rec.fill(day_partial, 5)
    day_filled = rec.accepted(quantity=30)
    rec.fill(day_filled)
    gtc = rec.accepted(quantity=40, time_in_force=TimeInForce.GTC)
    already = rec.accepted(quantity=50)
    rec.cancel(already)

    closed, *cancels = rec.close_day()
    assert isinstance(closed, TradingDayClosed)
    assert closed.expiring_orders == 2
    assert ("AAPL", "190.00") in closed.closing_prices
    assert {e.order_id for e in cancels} == {day_open.order_id, day_partial.order_id}
    assert all(isinstance(e, CancelRequested) and e.reason == CancelReason.END_OF_DAY
               and e.actor == "system" for e in cancels)
    for order in (day_open, day_partial, already):
        confirmed = rec.confirm_cancel(order)
        assert isinstance(confirmed, OrderCanceled)
    assert gtc.status == OrderStatus.ACCEPTED
    assert set(rec.book.orders) == {gtc.order_id}
    with pytest.raises(DayError):
        rec.book.close_day("system", "system", b.ts(), "twice")


def test_next_day_resets_exposure_to_the_orders_carried_over(rec: Recorder) -> None:
    gtc = rec.accepted(quantity=40, time_in_force=TimeInForce.GTC)
    rec.fill(gtc, 10, "190.00")
    done = rec.accepted(quantity=30, side=Side.SELL)
    rec.fill(done, price="191.00")  # a print: tomorrow's previous close
    assert rec.book.exposure(b.ACCOUNT) == Decimal("13330.00")
    rec.close_day()
    opened = rec.open_day("2023-11-15")
    assert opened.exposure_mode == "gross"
    assert ("AAPL", "191.00") in opened.previous_closes
    # Yesterday's executions no longer count: only the GTC order's leaves carry over.
    assert rec.book.exposure(b.ACCOUNT) == 30 * Decimal("190.00")
    assert rec.book.firm_exposure_value() == 30 * Decimal("190.00")
    ref = rec.book.references.reference("AAPL")
    assert ref is not None and (ref.price, ref.source) == (Decimal("191.00"), "previous_close")
    assert_exposure_is_what_the_day_implies(rec.book, rec.events)


def test_a_day_cannot_open_twice_or_reopen_a_closed_date(rec: Recorder) -> None:
    with pytest.raises(DayError, match="is open"):
        rec.open_day("2023-11-15")
    rec.close_day()
    with pytest.raises(DayError, match="not after"):
        rec.open_day(b.TRADING_DATE)
    rec.open_day("2023-11-16")  # a date may be skipped (a holiday)
    assert rec.book.day.date == "2023-11-16" and rec.book.day.is_open


def test_finished_orders_leave_memory_after_their_day_and_the_next(rec: Recorder) -> None:
    order = rec.accepted(client_order_id="keep-me")
    rec.fill(order)
    rec.close_day()
    rec.open_day("2023-11-15")
    # The day after: a resend is still recognised.
    assert rec.book.find(b.ACCOUNT, "keep-me") is not None
    rec.close_day()
    rec.open_day("2023-11-16")
    assert rec.book.find(b.ACCOUNT, "keep-me") is None
    assert order.order_id not in rec.book.finished
    assert replay_state(rec) == state_of(rec.book)


# ----------------------------------------------------------------- versions / lookups


def test_find_by_account_and_client_order_id() -> None:
    book = b.book()
    b.accepted(book, client_order_id="same")
    other = b.accepted(book, account_id=b.OTHER_ACCOUNT, client_order_id="same")
    mine = book.find(b.ACCOUNT, "same")
    assert mine is not None and mine.account_id == b.ACCOUNT
    assert book.find(b.OTHER_ACCOUNT, "same") is other
    assert book.find(b.ACCOUNT, "missing") is None


def test_versions_increase_by_one_per_event(rec: Recorder) -> None:
    order = rec.accepted(quantity=100)
    rec.fill(order, 10)
    rec.replace(order, 90, None)
    rec.confirm_replace(order)
    rec.replace(order, None, "300.00")  # refused: collar
    rec.fill(order, 10)
    rec.cancel(order)
    rec.cancel(order)  # refused: already pending
    rec.confirm_cancel(order)
    rec.cancel(order)  # refused: finished
    rec.replace(order, 50, None)  # refused: finished
    versions = [e.version for e in rec.events if e.order_id == order.order_id]
    assert versions == list(range(1, 1 + len(versions)))
    assert rec.book.lookup(order.order_id).version == versions[-1]  # type: ignore[union-attr]


def test_events_applied_counts_every_event(rec: Recorder) -> None:
    applied = rec.book.events_applied  # the day's opening
    order = rec.accepted()
    rec.submit(quantity=5_000)
    rec.fill(order, 1)
    rec.cancel(order)
    rec.cancel(order)
    rec.confirm_cancel(order)
    assert rec.book.events_applied == applied + 6


# ---------------------------------------------------------------------------- replay


def replay_state(rec: Recorder) -> dict[str, Any]:
    return state_of(replay(rec))


def _scenario() -> Recorder:
    rec = Recorder(lambda: b.book(firm_limits=b.firm(credit_limit=Decimal("200000"))))
    o1 = rec.accepted(quantity=100)
    o2 = rec.accepted(account_id=b.OTHER_ACCOUNT, order_type=OrderType.MARKET, quantity=50)
    rec.submit(symbol="RSTR", limit_price="42.00")  # restricted
    rec.submit(quantity=5_000)  # max_qty
    rec.submit(symbol="NEWCO", limit_price="1.00")  # no reference
    o3 = rec.accepted(symbol="PENNY", quantity=1_000, limit_price="0.9500",
                      time_in_force=TimeInForce.GTC, side=Side.SELL_SHORT)
    rec.fill(o1, 40, "189.50")
    rec.fill(o2, 50, "191.25")
    rec.replace(o1, 150, "192.00")
    rec.replace(o1, None, "250.00")  # pending
    rec.fill(o1, 10, "190.00")
    rec.confirm_replace(o1)
    rec.fill(o3, 300, "0.9499")
    rec.cancel(rec.book.finished[o2.order_id])  # filled -> CancelRejected
    now = b.ts()
    rec.submit(quantity=7, now_ns=now)
    rec.submit(quantity=7, now_ns=now + 1)  # duplicate
    rec.submit(quantity=500, limit_price="200.00", account_id=b.OTHER_ACCOUNT)
    rec.submit(quantity=500, limit_price="200.00", account_id=b.OTHER_ACCOUNT)  # firm credit
    rec.cancel(o3)
    rec.close_day()
    rec.open_day("2023-11-15")
    rec.confirm_cancel(o3)
    return rec


def test_replay_of_scenario_rebuilds_identical_state() -> None:
    rec = _scenario()
    kinds = {type(e).__name__ for e in rec.events}
    assert kinds >= {"OrderAccepted", "OrderRejected", "OrderFilled", "CancelRequested",
                     "OrderCanceled", "CancelRejected", "ReplaceRequested", "OrderReplaced",
                     "ReplaceRejected", "TradingDayClosed", "TradingDayOpened"}
    assert replay_state(rec) == state_of(rec.book)
    assert_exposure_is_what_the_day_implies(rec.book, rec.events)


def test_snapshot_restores_the_same_state_and_the_same_next_decisions() -> None:
    rec = _scenario()
    restored = rec.factory()
    restore(restored, state_of(rec.book))
    assert state_of(restored) == state_of(rec.book)
    now = b.ts()
    for book in (rec.book, restored):
        e = b.submit(book, order_id=b.order_id(10_000), quantity=1, now_ns=now)
        assert isinstance(e, OrderAccepted)
        e = b.submit(book, order_id=b.order_id(10_001), quantity=1, now_ns=now + 1)
        assert isinstance(e, OrderRejected) and e.control == "duplicate"
    assert state_of(restored) == state_of(rec.book)


def test_snapshot_refuses_accounts_the_configuration_no_longer_has() -> None:
    rec = _scenario()
    smaller = b.book(accounts=[b.account()], opened=False)
    with pytest.raises(ValueError, match="no longer has"):
        restore(smaller, state_of(rec.book))


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
    st.tuples(st.just("venue"), st.integers(0, 50)),  # the venue reaches a pending request
    st.tuples(st.just("next_day")),
)


def _run(actions: list[tuple[Any, ...]]) -> Recorder:
    b.reset()
    # Limits low enough that credit and firm_credit rejections happen often.
    rec = Recorder(lambda: b.book(
        accounts=[b.account(b.ACCOUNT, credit_limit=Decimal("150000")),
                  b.account(b.OTHER_ACCOUNT, credit_limit=Decimal("150000"))],
        firm_limits=b.firm(credit_limit=Decimal("250000"))))
    refs = {"AAPL": Decimal(190), "MSFT": Decimal(410), "NEWCO": Decimal(10)}
    day = [15]

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
            if order is None:
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
        elif kind == "venue":
            order = pick(act[1])
            if order is not None and order.pending_replace is not None:
                rec.confirm_replace(order)
            elif order is not None and order.pending_cancel is not None:
                rec.confirm_cancel(order)
        else:
            for order in list(rec.book.orders.values()):  # the venue catches up first
                if order.pending_replace is not None:
                    rec.confirm_replace(order)
                if order.pending_cancel is not None:
                    rec.confirm_cancel(order)
            _, *cancels = rec.close_day()
            for c in cancels:
                rec.confirm_cancel(rec.book.orders[c.order_id])
            rec.open_day(f"2023-11-{day[0]:02d}")
            day[0] += 1
        assert_exposure_is_what_the_day_implies(rec.book, rec.events)
    return rec


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_action, min_size=5, max_size=60))
def test_property_exposure_invariants_replay_and_snapshot(actions: list[tuple[Any, ...]]) -> None:
    rec = _run(actions)
    live = state_of(rec.book)
    assert replay_state(rec) == live
    restored = rec.factory()
    restore(restored, live)
    assert state_of(restored) == live
    for o in rec.book.orders.values():
        assert o.filled_quantity <= o.quantity
