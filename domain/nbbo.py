"""The consolidated national best bid and offer across venues (Reg NMS 600(b)(43)).

``NbboBook.update(quote)`` keeps each venue's latest ``Quote`` per symbol and returns the
symbol's ``Nbbo`` after it: the highest bid and the lowest offer over every venue, each with
its venue and that venue's size. Ties at the same price go to the larger size, then to the
quote in place first (earlier ``ts_ns``: the securities information processors rank equal
prices by size and time), then to the venue name so the answer never depends on dict order.
A venue whose side goes empty (``bid``/``ask`` None) simply stops competing on that side.
Venues are few, so each update rescans them: no per-price structure to keep consistent.

Pure: no I/O, no clock; ``ts_ns`` of an Nbbo is the stamp of the quote that produced it.
"""

from __future__ import annotations

from domain.market_data import Nbbo, Quote


class NbboBook:
    __slots__ = ("_since", "current", "quotes")

    def __init__(self) -> None:
        self.quotes: dict[str, dict[str, Quote]] = {}
        # When each venue's current bid / ask price was first quoted (the tie's "earlier").
        self._since: dict[tuple[str, str], tuple[int, int]] = {}
        self.current: dict[str, Nbbo] = {}

    def nbbo(self, symbol: str) -> Nbbo | None:
        return self.current.get(symbol)

    def update(self, quote: Quote) -> Nbbo:
        venues = self.quotes.get(quote.symbol)
        if venues is None:
            venues = self.quotes[quote.symbol] = {}
        key = (quote.symbol, quote.venue)
        previous = venues.get(quote.venue)
        bid_since, ask_since = self._since.get(key, (quote.ts_ns, quote.ts_ns))
        # A size change keeps the price's place in time; a new price starts again.
        if previous is None or previous.bid != quote.bid:
            bid_since = quote.ts_ns
        if previous is None or previous.ask != quote.ask:
            ask_since = quote.ts_ns
        self._since[key] = (bid_since, ask_since)
        venues[quote.venue] = quote

        best_bid = best_ask = None
        bid_rank = ask_rank = None
        for venue, q in venues.items():
            since_bid, since_ask = self._since[(quote.symbol, venue)]
            if q.bid is not None:
                rank = (q.bid, q.bid_size, -since_bid, _reverse(venue))
                if bid_rank is None or rank > bid_rank:
                    bid_rank, best_bid = rank, q
            if q.ask is not None:
                rank_ask = (-q.ask, q.ask_size, -since_ask, _reverse(venue))
                if ask_rank is None or rank_ask > ask_rank:
                    ask_rank, best_ask = rank_ask, q
        nbbo = Nbbo(
            quote.symbol,
            None if best_bid is None else best_bid.bid,
            0 if best_bid is None else best_bid.bid_size,
            None if best_bid is None else best_bid.venue,
            None if best_ask is None else best_ask.ask,
            0 if best_ask is None else best_ask.ask_size,
            None if best_ask is None else best_ask.venue,
            quote.ts_ns)
        self.current[quote.symbol] = nbbo
        return nbbo


def _reverse(venue: str) -> tuple[int, ...]:
    """Orders venue names so that, under ``>``, the alphabetically first one wins."""
    return tuple(-ord(ch) for ch in venue)
