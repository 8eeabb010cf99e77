"""SEC Rule 15c3-5 pre-trade controls: each at, below and above its limit.

Every rejection must name the control, its threshold, the observed value and the controls
already passed; every acceptance must record the inputs the controls used.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.controls import NEW_ORDER_CONTROLS
from domain.events import OrderAccepted, OrderRejected
from domain.values import OrderStatus, OrderType, Side
from tests import builders as b


def rejected(event: object, control: str) -> OrderRejected:
    """The rejection names ``control`` and lists exactly the controls that ran before it:
    all earlier ones, except those that do not apply (no price of its own for a market
    order's tick size; no reference at all for the staleness check)."""
    assert isinstance(event, OrderRejected), f"expected {control} rejection, got {event}"
    assert event.control == control
    skipped = set()
    if event.order_type == OrderType.MARKET:
        skipped.add("tick_size")
    if event.reference_price is None:
        skipped.add("stale_reference")
    before = NEW_ORDER_CONTROLS[: NEW_ORDER_CONTROLS.index(control)]
    assert event.checks == tuple(c for c in before if c not in skipped)
    return event


def accepted(event: object) -> OrderAccepted:
    assert isinstance(event, OrderAccepted), f"expected acceptance, got {event}"
    return event


# ----------------------------------------------------------------------------- max_qty


@pytest.mark.parametrize("quantity", [999, 1_000])
def test_max_qty_below_and_at_limit_accepted(quantity: int) -> None:
    # 1,000 x 100.00 stays inside max_notional
    book = b.book(instruments=[b.instrument("AAPL", reference_price="100.00")])
    event = accepted(b.submit(book, quantity=quantity, limit_price="100.00"))
    assert event.quantity == quantity


def test_max_qty_one_over_limit_rejected() -> None:
    book = b.book()
    event = rejected(b.submit(book, quantity=1_001), "max_qty")
    assert (event.threshold, event.observed) == ("1000", "1001")
    assert event.limits_version == 7
    assert event.reference_price is None  # not looked up before the collar
    assert event.exposure_before is None


# ------------------------------------------------------------------------ max_notional


def test_max_notional_at_limit_accepted() -> None:
    # 500 x 200.00 = 100,000.00 == max_order_notional
    event = accepted(b.submit(b.book(), quantity=500, limit_price="200.00"))
    assert event.exposure_price * event.quantity == Decimal("100000")


def test_max_notional_below_limit_accepted() -> None:
    accepted(b.submit(b.book(), quantity=500, limit_price="199.99"))


def test_max_notional_one_tick_over_rejected() -> None:
    event = rejected(b.submit(b.book(), quantity=500, limit_price="200.01"), "max_notional")
    assert Decimal(event.threshold) == Decimal("100000")
    assert Decimal(event.observed) == Decimal("100005.00")
    assert event.reference_price == Decimal("190.00")


def test_market_order_valued_at_its_protection_price_for_max_notional() -> None:
    # Reference 190.00, collar 10%: a market buy may fill up to 209.00, never beyond, so the
    # controls value it there (95,000 at the reference could execute at 104,309).
    book = b.book(accounts=[b.account(max_order_notional=Decimal("20900"))])
    ok = accepted(b.submit(book, order_type=OrderType.MARKET, quantity=100))
    assert ok.limit_price is None
    assert ok.protection_price == ok.exposure_price == Decimal("209.00")
    assert book.exposure(b.ACCOUNT) == Decimal("20900")
    assert "tick_size" not in ok.checks  # did not run: no price of its own
    event = rejected(b.submit(book, order_type=OrderType.MARKET, quantity=101), "max_notional")
    assert Decimal(event.observed) == Decimal("21109")


@pytest.mark.parametrize(("symbol", "side", "protection"), [
    ("AAPL", Side.BUY, "209.00"), ("AAPL", Side.SELL, "171.00"),
    ("PENNY", Side.BUY, "1.0450"), ("PENNY", Side.SELL, "0.8550"),
    ("MSFT", Side.BUY, "451.00"), ("MSFT", Side.SELL_SHORT, "369.00"),
])
def test_market_protection_price_is_the_collar_edge_rounded_inwards(
        symbol: str, side: Side, protection: str) -> None:
    quantity = 100
    book = b.book(accounts=[b.account(max_order_notional=Decimal("1000000"),
                                      credit_limit=Decimal("10000000"))])
    event = accepted(b.submit(book, symbol=symbol, side=side, quantity=quantity,
                              order_type=OrderType.MARKET))
    assert event.protection_price == Decimal(protection)


def test_market_protection_rounds_inwards_to_the_tick() -> None:
    # 190.05 x 1.1 = 209.055 -> a buy may pay 209.05 (not 209.06); x 0.9 = 171.045 -> 171.05
    book = b.book(instruments=[b.instrument("AAPL", reference_price="190.05")])
    buy = accepted(b.submit(book, order_type=OrderType.MARKET, quantity=10))
    sell = accepted(b.submit(book, order_type=OrderType.MARKET, quantity=10, side=Side.SELL))
    assert (buy.protection_price, sell.protection_price) == (Decimal("209.05"),
                                                             Decimal("171.05"))


# ------------------------------------------------------------------------ price_collar


@pytest.mark.parametrize("price", ["171.00", "171.01", "190.00", "208.99", "209.00"])
def test_price_collar_inside_and_at_exact_band_edge_accepted(price: str) -> None:
    # reference 190.00, collar 10%: band is [171.00, 209.00] inclusive
    event = accepted(b.submit(b.book(), limit_price=price))
    assert event.reference_price == Decimal("190.00")


@pytest.mark.parametrize(
    ("price", "observed"), [("209.01", "0.100053"), ("170.99", "0.100053"), ("1.00", "0.994737")]
)
def test_price_collar_outside_band_rejected_on_both_sides(price: str, observed: str) -> None:
    event = rejected(b.submit(b.book(), limit_price=price), "price_collar")
    assert event.threshold == "0.10"
    assert event.observed == observed
    assert event.reference_price == Decimal("190.00")


def test_no_reference_price_rejects_limit_order() -> None:
    event = rejected(b.submit(b.book(), symbol="NEWCO", limit_price="10.00"), "price_collar")
    assert (event.threshold, event.observed) == ("reference price required", "none")
    assert event.reference_price is None


def test_no_reference_price_rejects_market_order() -> None:
    event = rejected(
        b.submit(b.book(), symbol="NEWCO", order_type=OrderType.MARKET), "price_collar"
    )
    assert event.observed == "none"


def test_last_trade_replaces_previous_close_as_reference() -> None:
    book = b.book()
    order = b.accepted(book, limit_price="200.00")
    assert book.reference_price("AAPL") == Decimal("190.00")
    assert book.references.reference("AAPL").source == "previous_close"  # type: ignore[union-attr]
    b.fill(book, order, price="200.00")  # against an outside participant: a market print
    assert book.reference_price("AAPL") == Decimal("200.00")
    # 219.00 is 15.3% over the old close but within 10% of the last trade (band 180..220).
    event = accepted(b.submit(book, limit_price="219.00"))
    assert event.reference_price == Decimal("200.00")
    event = rejected(b.submit(book, limit_price="175.00"), "price_collar")
    assert event.reference_price == Decimal("200.00")


def test_first_trade_gives_a_symbol_without_close_a_reference() -> None:
    book = b.book()
    book.tape.print_trade("NEWCO", Decimal("10.00"), b.T0)  # as if a fill had printed
    event = accepted(b.submit(book, symbol="NEWCO", limit_price="10.50", now_ns=b.T0 + 1))
    assert (event.reference_price, event.reference_source, event.reference_ts_ns) == (
        Decimal("10.00"), "last_sale", b.T0)


def test_the_firms_own_crosses_do_not_walk_the_reference() -> None:
    """Two accounts trading with each other at the collar's edge must not move the collar:
    only prints against outside participants are market prices (the issue's 190 -> 334.77)."""
    book = b.book()
    sell = b.accepted(book, account_id=b.OTHER_ACCOUNT, side=Side.SELL, quantity=1,
                      limit_price="209.00")
    buy = b.accepted(book, quantity=1, limit_price="209.00")
    trade = "t-cross"
    book.fill(buy, 1, Decimal("209.00"), trade, "taker", str(sell.order_id), b.ts())
    book.fill(sell, 1, Decimal("209.00"), trade, "maker", str(buy.order_id), b.ts())
    assert book.reference_price("AAPL") == Decimal("190.00")
    event = rejected(b.submit(book, limit_price="229.00", quantity=1), "price_collar")
    assert event.reference_price == Decimal("190.00")


@pytest.mark.parametrize(("age_ms", "passes"), [(0, True), (300_000, True), (300_001, False)])
def test_stale_reference_rejects_a_last_sale_older_than_the_limit(age_ms: int,
                                                                   passes: bool) -> None:
    book = b.book()
    book.tape.print_trade("AAPL", Decimal("191.00"), b.T0)
    event = b.submit(book, now_ns=b.T0 + age_ms * b.MS)
    if passes:
        assert accepted(event).reference_source == "last_sale"
        return
    event = rejected(event, "stale_reference")
    assert (event.threshold, event.observed) == ("300000ms", f"{age_ms}ms")
    assert (event.reference_price, event.reference_ts_ns) == (Decimal("191.00"), b.T0)


def test_previous_close_is_never_stale_within_its_day() -> None:
    event = accepted(b.submit(b.book(), now_ns=b.T0 + 10 * 3600 * b.SECOND))
    assert event.reference_source == "previous_close"


def test_no_open_trading_day_rejects_every_order() -> None:
    book = b.book(opened=False)
    event = rejected(b.submit(book), "session")
    assert (event.threshold, event.observed) == ("open trading day", "no trading day opened")
    assert event.trading_date is None
    b.open_day(book)
    accepted(b.submit(book))
    book.close_day("system", "system", b.ts(), "test")
    event = rejected(b.submit(book), "session")
    assert event.observed == f"closed since {b.TRADING_DATE}"


# ---------------------------------------------------------------------------- credit


def test_credit_open_orders_without_fills_fill_the_limit_then_next_rejected() -> None:
    # 15c3-5(c)(1)(i): orders entered count, not only executions.
    book = b.book()
    for i in range(5):  # 5 open orders of 500 x 200.00 = 100,000 each: 500,000 == limit
        event = accepted(b.submit(book, quantity=500, limit_price="200.00"))
        assert event.exposure_before == Decimal(100000) * i
    account = book.accounts[b.ACCOUNT]
    assert book.exposure(b.ACCOUNT) == Decimal("500000") == account.credit_limit
    assert all(o.filled_quantity == 0 for o in book.orders.values())
    event = rejected(b.submit(book, quantity=1, limit_price="190.00"), "credit")
    assert (event.threshold, event.observed) == ("500000", "500190.00")
    assert event.exposure_before == Decimal("500000")
    assert event.reference_price == Decimal("190.00")
    assert event.limits_version == 7
    assert book.exposure(b.ACCOUNT) == Decimal("500000")  # the rejection adds nothing


def test_credit_exactly_at_limit_accepted_one_cent_over_rejected() -> None:
    book = b.book(accounts=[b.account(credit_limit=Decimal("19000"))])
    rejected(b.submit(book, limit_price="190.01"), "credit")
    accepted(b.submit(book, limit_price="190.00"))
    assert book.exposure(b.ACCOUNT) == Decimal("19000")


def test_credit_released_by_cancel_makes_room_again() -> None:
    book = b.book(accounts=[b.account(credit_limit=Decimal("19000"))])
    order = b.accepted(book)
    rejected(b.submit(book, limit_price="189.00"), "credit")
    book.request_cancel(order, b.ACTOR, "api", b.ts())
    # Pending: the venue may still fill it, so its exposure stays until confirmed.
    rejected(b.submit(book, limit_price="189.00"), "credit")
    book.confirm_cancel(order, b.ts())
    accepted(b.submit(book, limit_price="189.00"))


def test_credit_counts_sells_too() -> None:
    book = b.book(accounts=[b.account(credit_limit=Decimal("19000"))])
    accepted(b.submit(book, side=Side.SELL))
    rejected(b.submit(book, side=Side.SELL_SHORT, quantity=1), "credit")


def test_firm_credit_breach_rejects_while_every_account_is_under_its_own_limit() -> None:
    book = b.book(firm_limits=b.firm(credit_limit=Decimal("150000")))
    accepted(b.submit(book, account_id=b.ACCOUNT, quantity=500, limit_price="200.00"))
    accepted(b.submit(book, account_id=b.OTHER_ACCOUNT, quantity=250, limit_price="200.00"))
    assert book.firm_exposure_value() == Decimal("150000")
    event = rejected(
        b.submit(book, account_id=b.OTHER_ACCOUNT, quantity=1, limit_price="190.00"),
        "firm_credit",
    )
    assert (event.threshold, event.observed) == ("150000", "150190.00")
    assert event.exposure_before == Decimal("50000")  # the account's own, well under 500,000
    for acc in book.accounts.values():
        assert book.exposure(acc.account_id) < acc.credit_limit


# ------------------------------------------------------------------------- duplicate


def _dup_book() -> tuple[object, OrderAccepted]:
    book = b.book()
    first = accepted(b.submit(book, client_order_id="first", now_ns=b.T0))
    return book, first


@pytest.mark.parametrize("delta_ns", [0, 1, b.SECOND - 1])
def test_duplicate_within_window_rejected_even_with_new_client_id(delta_ns: int) -> None:
    book, _ = _dup_book()
    event = rejected(
        b.submit(book, client_order_id="second", now_ns=b.T0 + delta_ns), "duplicate"
    )
    assert (event.threshold, event.observed) == (f"{b.SECOND}ns", f"{delta_ns}ns")
    assert event.reference_price == Decimal("190.00")


@pytest.mark.parametrize("delta_ns", [b.SECOND, b.SECOND + 1, 60 * b.SECOND])
def test_duplicate_at_and_after_window_accepted(delta_ns: int) -> None:
    book, _ = _dup_book()
    accepted(b.submit(book, client_order_id="second", now_ns=b.T0 + delta_ns))


@pytest.mark.parametrize(
    "change",
    [
        {"quantity": 101},
        {"limit_price": "190.01"},
        {"side": Side.SELL},
        {"symbol": "MSFT", "limit_price": "190.00"},
        {"account_id": b.OTHER_ACCOUNT, "symbol": "AAPL"},
    ],
)
def test_not_a_duplicate_when_any_key_field_differs(change: dict[str, object]) -> None:
    book, _ = _dup_book()
    event = b.submit(book, client_order_id="second", now_ns=b.T0 + 1, **change)
    if change.get("symbol") == "MSFT":
        rejected(event, "price_collar")  # got past duplicate: MSFT is 410
    else:
        accepted(event)


def test_rejected_order_is_not_a_duplicate_source() -> None:
    book = b.book(accounts=[b.account(credit_limit=Decimal("10000"))])
    rejected(b.submit(book, client_order_id="x1", now_ns=b.T0), "credit")
    # Same order 1 ns later: must fail credit again, not duplicate.
    rejected(b.submit(book, client_order_id="x2", now_ns=b.T0 + 1), "credit")


def test_duplicate_window_is_per_account_limits() -> None:
    acc = b.account(duplicate_window_ns=10 * b.SECOND)
    book = b.book(accounts=[acc])
    accepted(b.submit(book, now_ns=b.T0))
    rejected(b.submit(book, now_ns=b.T0 + 5 * b.SECOND), "duplicate")
    accepted(b.submit(book, now_ns=b.T0 + 10 * b.SECOND))


def test_duplicate_window_zero_disables_the_check() -> None:
    book = b.book(accounts=[b.account(duplicate_window_ns=0)],
                  firm_limits=b.firm(defaults=b.limits(duplicate_window_ns=0)))
    accepted(b.submit(book, now_ns=b.T0))
    accepted(b.submit(book, now_ns=b.T0))


# ------------------------------------------------------------------------ restricted


def test_firm_restricted_symbol_rejected_for_every_account() -> None:
    book = b.book()
    for acc in (b.ACCOUNT, b.OTHER_ACCOUNT):
        event = rejected(
            b.submit(book, account_id=acc, symbol="RSTR", limit_price="42.00"), "restricted"
        )
        assert (event.threshold, event.observed) == ("firm restricted list", "RSTR")
        assert event.limits_version == 7


def test_account_restricted_symbol_rejected_only_for_that_account() -> None:
    book = b.book()
    event = rejected(
        b.submit(book, account_id=b.OTHER_ACCOUNT, symbol="MSFT", limit_price="410.00"),
        "restricted",
    )
    assert (event.threshold, event.observed) == ("account restricted list", "MSFT")
    accepted(b.submit(book, account_id=b.ACCOUNT, symbol="MSFT", limit_price="410.00",
                      quantity=10))


# ------------------------------------------------------------- unknown symbol / account


def test_unknown_account_rejected() -> None:
    event = rejected(b.submit(b.book(), account_id="ACC-NOPE"), "unknown_account")
    assert (event.threshold, event.observed) == ("configured account", "ACC-NOPE")
    assert event.checks == ("session",)
    assert event.limits_version == 0


def test_unknown_symbol_rejected() -> None:
    event = rejected(b.submit(b.book(), symbol="ZZZZ"), "unknown_symbol")
    assert (event.threshold, event.observed) == ("listed instrument", "ZZZZ")
    assert event.checks == ("session", "unknown_account")


# ------------------------------------------------------------------- lot / tick size


@pytest.mark.parametrize("quantity", [100, 200, 1_000])
def test_lot_size_multiple_accepted(quantity: int) -> None:
    accepted(b.submit(b.book(), symbol="PENNY", quantity=quantity, limit_price="0.9500"))


@pytest.mark.parametrize("quantity", [1, 99, 101, 150])
def test_lot_size_not_a_multiple_rejected(quantity: int) -> None:
    event = rejected(
        b.submit(b.book(), symbol="PENNY", quantity=quantity, limit_price="0.9500"), "lot_size"
    )
    assert (event.threshold, event.observed) == ("multiple of 100", str(quantity))


@pytest.mark.parametrize("price", ["190", "190.0", "190.01", "190.10", "190.000"])
def test_tick_size_multiple_accepted(price: str) -> None:
    accepted(b.submit(b.book(), limit_price=price))


@pytest.mark.parametrize("price", ["190.001", "190.015", "190.0001"])
def test_tick_size_not_a_multiple_rejected(price: str) -> None:
    event = rejected(b.submit(b.book(), limit_price=price), "tick_size")
    assert (event.threshold, event.observed) == ("multiple of 0.01", price)


def test_market_order_has_no_tick_check() -> None:
    accepted(b.submit(b.book(), order_type=OrderType.MARKET))


# ------------------------------------------------------------------- control ordering


def test_first_failing_control_wins_and_checks_list_those_passed() -> None:
    # restricted AND bad lot AND over max qty: restricted runs first.
    event = rejected(
        b.submit(b.book(), symbol="RSTR", quantity=10_001, limit_price="42.001"), "restricted"
    )
    assert event.checks == ("session", "unknown_account", "unknown_symbol",
                            "account_suspended", "entitlement", "kill_switch", "halt")


# ------------------------------------------------------------------------ acceptance


def test_acceptance_records_every_input_the_controls_used() -> None:
    book = b.book()
    b.accepted(book, account_id=b.OTHER_ACCOUNT, quantity=10)  # firm exposure 1,900
    b.accepted(book, quantity=50)  # account exposure 9,500
    oid = b.order_id()
    event = accepted(b.submit(book, order_id=oid, client_order_id="abc", quantity=100,
                              limit_price="191.00", now_ns=b.T0 + 123))
    assert event.order_id == oid
    assert event.version == 1
    assert event.ts_ns == b.T0 + 123
    assert event.client_order_id == "abc"
    assert event.reference_price == Decimal("190.00")
    assert (event.reference_source, event.reference_ts_ns) == ("previous_close", b.T0 - b.SECOND)
    assert event.protection_price is None
    assert event.trading_date == b.TRADING_DATE
    assert event.exposure_price == Decimal("191.00")
    assert event.exposure_before == Decimal("9500.00")
    assert event.firm_exposure_before == Decimal("11400.00")
    assert event.limits_version == 7
    assert event.limits == {
        "max_order_quantity": "1000",
        "max_order_notional": "100000",
        "price_collar_pct": "0.10",
        "credit_limit": "500000",
        "duplicate_window_ns": str(b.SECOND),
        "max_orders_per_second": "1000",
        "max_messages_per_second": "2000",
        "kill_messages_per_second": "5000",
        "reject_storm_count": "200",
        "reject_storm_window_ns": str(10 * b.SECOND),
        "loss_limit": "1000000",
    }
    # The new controls' inputs: messages/orders in the last second before this one (account,
    # then firm: only the order at T0 is that recent), and the LULD band (tier 2: 10%).
    assert event.inputs == {"rate": "1/1 1/1", "luld": "171.0000-209.0000",
                            "firm_limits": "v1"}
    assert event.strategy is None
    assert event.checks == NEW_ORDER_CONTROLS
    order = book.orders[oid]
    assert order.status == OrderStatus.ACCEPTED
    assert book.find(b.ACCOUNT, "abc") is order
    assert book.exposure(b.ACCOUNT) == Decimal("28600.00")
    assert book.firm_exposure_value() == Decimal("30500.00")
    with pytest.raises(TypeError):  # events are deeply immutable
        event.limits["credit_limit"] = "1E+12"  # type: ignore[index]


def test_rejection_records_order_and_changes_no_exposure() -> None:
    book = b.book()
    event = rejected(b.submit(book, quantity=5_000, client_order_id="big"), "max_qty")
    assert event.order_id not in book.orders  # finished: only a frozen record stays
    record = book.finished[event.order_id]
    assert record.status == OrderStatus.REJECTED
    assert record.reject == ("max_qty", "1000", "5000")
    assert book.find(b.ACCOUNT, "big") is record
    assert book.exposure(b.ACCOUNT) == 0
    assert book.firm_exposure_value() == 0


@pytest.mark.parametrize("quantity", [0, -100])
def test_non_positive_quantity_rejected(quantity: int) -> None:
    """BUG: quantity <= 0 passes every control; a negative quantity lowers exposure.

    An order for -100 AAPL is accepted with exposure -19,000, creating credit room
    (15c3-5(c)(1)(i)) for any entry point that skips the API's validation.
    """
    book = b.book()
    event = b.submit(book, quantity=quantity)
    assert isinstance(event, OrderRejected)
    assert book.exposure(b.ACCOUNT) == 0


@pytest.mark.parametrize("price", ["1E+27", "Infinity"])
def test_absurd_limit_price_rejected_not_crashing(price: str) -> None:
    """BUG: a fat-finger price makes tick_size/price_collar raise decimal.InvalidOperation.

    An erroneous order must be rejected and recorded (15c3-5(c)(1)(ii)), not crash the
    engine's decision loop.
    """
    event = b.submit(b.book(), limit_price=price)
    assert isinstance(event, OrderRejected)


# ------------------------------------------------------------------- the control table


def test_the_table_gives_the_decision_order_and_the_coverage_names() -> None:
    from domain.controls import CONTROLS, REPLACE_CONTROLS

    assert tuple(c.name for c in CONTROLS if c.on_new) == NEW_ORDER_CONTROLS
    assert tuple(c.name for c in CONTROLS if c.on_replace) == REPLACE_CONTROLS
    assert len({c.name for c in CONTROLS}) == len(CONTROLS)
    assert all(c.rule and c.inputs for c in CONTROLS)
    # A replace re-runs every control its change can affect.
    for name in ("session", "restricted", "lot_size", "tick_size", "max_qty",
                 "stale_reference", "price_collar", "max_notional", "credit", "firm_credit"):
        assert name in REPLACE_CONTROLS


def test_readme_quotes_the_control_table() -> None:
    from pathlib import Path

    from domain.controls import markdown_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert markdown_table() in readme, "README's control table is out of date: paste " \
        "domain.controls.markdown_table()"


# ------------------------------------------------------------------------ net exposure


def test_net_exposure_lets_a_sell_offset_filled_buys() -> None:
    net = b.book(firm_limits=b.firm(exposure_mode="net"),
                 accounts=[b.account(credit_limit=Decimal("40000"))])
    buy = b.accepted(net, quantity=200, limit_price="190.00")  # 38,000
    b.fill(net, buy, price="190.00")
    # Gross would count 38,000 + 38,000; net counts the worse side: max(38,000 - 0, 38,000 -
    # 38,000) = 38,000, and the sell that closes the position is accepted.
    sell = accepted(b.submit(net, side=Side.SELL, quantity=200, limit_price="190.00"))
    assert sell.exposure_before == Decimal("38000")
    assert net.exposure(b.ACCOUNT) == Decimal("38000")
    gross = b.book(accounts=[b.account(credit_limit=Decimal("40000"))])
    buy = b.accepted(gross, quantity=200, limit_price="190.00")
    b.fill(gross, buy, price="190.00")
    rejected(b.submit(gross, side=Side.SELL, quantity=200, limit_price="190.00"), "credit")


def test_net_exposure_still_counts_open_orders_on_both_sides_at_their_worst() -> None:
    net = b.book(firm_limits=b.firm(exposure_mode="net"),
                 accounts=[b.account(credit_limit=Decimal("40000"))])
    accepted(b.submit(net, quantity=200, limit_price="190.00"))  # open buy 38,000
    # An open sell does not offset an open buy: either could fill without the other.
    accepted(b.submit(net, side=Side.SELL, quantity=200, limit_price="190.00"))
    assert net.exposure(b.ACCOUNT) == Decimal("38000")
    rejected(b.submit(net, quantity=11, limit_price="190.00"), "credit")
