"""The consolidated NBBO across two and three venues, and the reference-price port on it."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from domain.market_data import Quote
from domain.nbbo import NbboBook
from domain.nbbo_reference import MarketDataBoard, NbboReferencePrices
from domain.reference_prices import MarketTape

D = Decimal


def q(venue: str, bid: str | None, bid_size: int, ask: str | None, ask_size: int,
      ts: int = 0, symbol: str = "XYZ") -> Quote:
    return Quote(venue, symbol, None if bid is None else D(bid), bid_size,
                 None if ask is None else D(ask), ask_size, ts)


def test_best_of_three_venues_with_each_sides_venue() -> None:
    book = NbboBook()
    book.update(q("NASDAQ", "10.00", 100, "10.05", 100, 1))
    book.update(q("ARCA", "10.01", 200, "10.06", 100, 2))
    nbbo = book.update(q("BATS", "9.99", 500, "10.04", 300, 3))
    assert nbbo[:7] == ("XYZ", D("10.01"), 200, "ARCA", D("10.04"), 300, "BATS")
    assert nbbo.midpoint == D("10.025") and nbbo.ts_ns == 3


def test_a_side_going_empty_hands_it_to_the_next_venue_or_to_none() -> None:
    book = NbboBook()
    book.update(q("NASDAQ", "10.00", 100, "10.05", 100, 1))
    book.update(q("ARCA", "10.01", 200, "10.06", 100, 2))
    nbbo = book.update(q("ARCA", None, 0, "10.06", 100, 3))
    assert (nbbo.bid, nbbo.bid_venue) == (D("10.00"), "NASDAQ")
    nbbo = book.update(q("NASDAQ", None, 0, "10.05", 100, 4))
    assert (nbbo.bid, nbbo.bid_size, nbbo.bid_venue, nbbo.midpoint) == (None, 0, None, None)
    assert nbbo.ask_venue == "NASDAQ"


def test_ties_go_to_the_larger_size_then_to_the_earlier_price() -> None:
    book = NbboBook()
    book.update(q("NASDAQ", "10.00", 100, "10.05", 100, 1))
    nbbo = book.update(q("ARCA", "10.00", 300, "10.05", 100, 2))
    assert nbbo.bid_venue == "ARCA"  # larger size
    assert nbbo.ask_venue == "NASDAQ"  # same size: NASDAQ quoted 10.05 first
    # A size change at the same price keeps its time: NASDAQ still first on the ask.
    nbbo = book.update(q("NASDAQ", "10.00", 100, "10.05", 100, 5))
    assert nbbo.ask_venue == "NASDAQ"


@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C"]),
                          st.one_of(st.none(), st.integers(90, 110)),
                          st.one_of(st.none(), st.integers(90, 110)),
                          st.integers(1, 9)), min_size=1, max_size=40))
def test_the_nbbo_is_the_best_of_each_venues_latest_quote(updates: list) -> None:
    book = NbboBook()
    latest: dict[str, Quote] = {}
    for ts, (venue, bid, ask, size) in enumerate(updates):
        quote = Quote(venue, "XYZ", None if bid is None else D(bid), size if bid else 0,
                      None if ask is None else D(ask), size if ask else 0, ts)
        latest[venue] = quote
        nbbo = book.update(quote)
        bids = [x.bid for x in latest.values() if x.bid is not None]
        asks = [x.ask for x in latest.values() if x.ask is not None]
        assert nbbo.bid == (max(bids) if bids else None)
        assert nbbo.ask == (min(asks) if asks else None)
        if nbbo.bid is not None:
            assert latest[nbbo.bid_venue].bid == nbbo.bid  # type: ignore[index]
            assert nbbo.bid_size == max(x.bid_size for x in latest.values()
                                        if x.bid == nbbo.bid)


def test_the_reference_is_the_midpoint_else_the_feeds_last_sale_else_the_tape() -> None:
    board = MarketDataBoard()
    tape = MarketTape()
    tape.print_trade("XYZ", D("9.00"), 5)
    refs = NbboReferencePrices(board, fallback=tape)
    assert refs.reference("XYZ") == (D("9.00"), "last_sale", 5)
    board.on_quote(q("NASDAQ", "10.00", 100, None, 0, 10))
    assert refs.reference("XYZ") == (D("9.00"), "last_sale", 5)  # one side: no midpoint
    from domain.market_data import Trade
    board.on_trade(Trade("NASDAQ", "XYZ", D("10.02"), 50, 11))
    assert refs.reference("XYZ") == (D("10.02"), "feed_last_sale", 11)
    board.on_quote(q("ARCA", "9.98", 100, "10.03", 100, 12))
    first = refs.reference("XYZ")
    assert first == (D("10.015"), "nbbo_midpoint", 11)  # NASDAQ last heard at 11 < 12
    assert refs.reference("XYZ") is first  # the same object while nothing changed
    board.heartbeat("NASDAQ", 20)
    assert refs.reference("XYZ") == (D("10.015"), "nbbo_midpoint", 12)
    assert refs.best_bid("XYZ") == D("10.00") and refs.best_bid("ABC") is None
    assert NbboReferencePrices(board, basis="last_sale").reference("XYZ")[1] == "feed_last_sale"
