"""Order-book invariants under random valid message sequences (hypothesis), and the
errors and emitted quotes/trades of chosen cases."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.market_data import Quote, Trade
from domain.order_book import (
    AddOrder,
    BookInvariantBroken,
    OrderBook,
    OrderCancel,
    OrderDelete,
    OrderExecuted,
    OrderReplace,
    TradePrint,
    UnknownOrder,
)


def add(ref: int, side: bytes, shares: int, price: int, ts: int = 1) -> AddOrder:
    return AddOrder(1, ts, ref, side, shares, "XYZ", price, None)


@st.composite
def sessions(draw: st.DrawFn, non_crossing: bool) -> list:
    """A valid message sequence; with ``non_crossing`` adds never reach the other side (a
    real feed's resting book: a marketable order executes instead of resting)."""
    book: dict[int, list] = {}
    messages = []
    next_ref = 1
    for ts in range(draw(st.integers(1, 120))):
        op = draw(st.sampled_from("AAAEXDU" if book else "A"))
        if op == "A":
            side = draw(st.sampled_from([b"B", b"S"]))
            price = draw(st.integers(90, 110))
            if non_crossing:
                bids = [p for s, p, _ in book.values() if s == b"B"]
                asks = [p for s, p, _ in book.values() if s == b"S"]
                if side == b"B" and asks and price >= min(asks):
                    price = min(asks) - draw(st.integers(1, 3))
                if side == b"S" and bids and price <= max(bids):
                    price = max(bids) + draw(st.integers(1, 3))
            shares = draw(st.integers(1, 500))
            book[next_ref] = [side, price, shares]
            messages.append(AddOrder(1, ts, next_ref, side, shares, "XYZ", price, None))
            next_ref += 1
            continue
        ref = draw(st.sampled_from(sorted(book)))
        side, price, shares = book[ref]
        if op in "EX":
            n = draw(st.integers(1, shares))
            messages.append(OrderExecuted(1, ts, ref, n, ts, None, True) if op == "E"
                            else OrderCancel(1, ts, ref, n))
            book[ref][2] -= n
            if book[ref][2] == 0:
                del book[ref]
        elif op == "D":
            messages.append(OrderDelete(1, ts, ref))
            del book[ref]
        else:
            new_price = price + draw(st.integers(-2, 2))
            if non_crossing:
                others = [p for r, (s, p, _) in book.items() if r != ref and s != side]
                if side == b"B" and others:
                    new_price = min(new_price, min(others) - 1)
                if side == b"S" and others:
                    new_price = max(new_price, max(others) + 1)
            new_shares = draw(st.integers(1, 500))
            messages.append(OrderReplace(1, ts, ref, next_ref, new_shares, new_price))
            del book[ref]
            book[next_ref] = [side, new_price, new_shares]
            next_ref += 1
    return messages


def check_levels(book: OrderBook) -> None:
    for levels in (book.bids, book.asks):
        for size, count in levels.values():
            assert size > 0 and count > 0
    assert sum(lv[1] for lv in book.bids.values()) + sum(
        lv[1] for lv in book.asks.values()) == len(book.orders)
    for is_buy, price, shares in book.orders.values():
        assert shares > 0 and price in (book.bids if is_buy else book.asks)
    assert book.best_bid == (max(book.bids) if book.bids else None)
    assert book.best_ask == (min(book.asks) if book.asks else None)


@settings(max_examples=200, deadline=None)
@given(sessions(non_crossing=False))
def test_sizes_never_go_negative_and_levels_match_the_orders(messages: list) -> None:
    book = OrderBook("XYZ", "NASDAQ")
    last: Quote | None = None
    for m in messages:
        for event in book.apply(m):
            if type(event) is Quote:
                assert event != last
                last = event
        check_levels(book)
    # The last quote emitted is the book's top (a change always emits).
    if last is not None:
        assert last[:6] == book.quote()[:6]


@settings(max_examples=200, deadline=None)
@given(sessions(non_crossing=True))
def test_a_resting_book_fed_without_crossing_adds_is_never_crossed(messages: list) -> None:
    book = OrderBook("XYZ", "NASDAQ")
    for m in messages:
        book.apply(m)
        assert not book.crossed


def test_top_of_book_changes_emit_quotes_and_executions_emit_trades() -> None:
    book = OrderBook("XYZ", "NASDAQ")
    [q] = book.apply(add(1, b"B", 100, 1_000_000))
    assert q == Quote("NASDAQ", "XYZ", Decimal("100"), 100, None, 0, 1)
    assert book.apply(add(2, b"B", 50, 999_900)) == ()  # below the best: no change
    trade, quote = book.apply(OrderExecuted(1, 2, 1, 40, 7, None, True))
    assert trade == Trade("NASDAQ", "XYZ", Decimal("100"), 40, 2)
    assert quote.bid_size == 60
    # C message not printable: no trade, the book still changes.
    [quote] = book.apply(OrderExecuted(1, 3, 1, 60, 8, 1_000_100, False))
    assert quote.bid == Decimal("99.99") and quote.bid_size == 50
    assert book.apply(TradePrint(1, 4, "XYZ", b"B", 10, 1_000_000, 9)) == (
        Trade("NASDAQ", "XYZ", Decimal("100"), 10, 4),)
    assert book.depth(5) == ([(Decimal("99.99"), 50, 1)], [])


def test_unknown_references_raise_or_are_counted() -> None:
    with pytest.raises(UnknownOrder, match="cancel of unknown order reference 42"):
        OrderBook("XYZ", "NASDAQ").apply(OrderCancel(1, 1, 42, 10))
    lenient = OrderBook("XYZ", "NASDAQ", strict=False)
    assert lenient.apply(OrderDelete(1, 1, 42)) == ()
    assert lenient.unknown_orders == 1


def test_overexecution_and_duplicate_references_are_refused_unchanged() -> None:
    book = OrderBook("XYZ", "NASDAQ")
    book.apply(add(1, b"S", 100, 1_000_000))
    with pytest.raises(BookInvariantBroken, match="execute of 101 shares"):
        book.apply(OrderExecuted(1, 2, 1, 101, 1, None, True))
    with pytest.raises(BookInvariantBroken, match="already resting"):
        book.apply(add(1, b"B", 10, 900_000))
    assert book.top() == (None, 0, 1_000_000, 100)
