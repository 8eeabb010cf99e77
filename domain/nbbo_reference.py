"""Market data behind the reference-price port: the NBBO midpoint (or the feed's last sale)
for price collars and LULD, the national best bid for Rule 201.

Two threads meet here, and never share a mutable structure:

- the **feed thread** (one writer) calls ``MarketDataBoard.on_quote``/``on_trade``/
  ``heartbeat``; it alone touches the ``NbboBook`` and publishes its results as immutable
  tuples (``Nbbo``, ``Trade``, int times) by a single dict store per symbol or venue;
- the **engine thread** reads those dicts with a single ``dict.get``.

A dict store and a dict get of one key are atomic in CPython (the GIL, and per-dict locks
in free-threaded builds), and the values are never mutated after publication, so the engine
sees either the previous or the next NBBO of a symbol, never a torn one, without a lock on
its hot path (ARCHITECTURE rule 3). The engine may see the bid of one update and the ask of
the next only across two calls, which is the nature of a live feed; each decision records
the one reference it used, so replay never asks the feed again (rule 4).

Staleness: a reference's as-of time is when the feed last heard from the venues quoting the
NBBO (any message of theirs, ``heartbeat`` included), not when the NBBO last changed: a
quiet symbol on a live feed is current, a venue that went silent is not. The existing
``stale_reference`` control then rejects when that is older than ``reference_max_age``.
"""

from __future__ import annotations

from decimal import Decimal

from domain.market_data import Nbbo, Quote, Trade
from domain.nbbo import NbboBook
from domain.reference_prices import ReferencePrice, ReferencePrices
from domain.values import ReferenceSource

NBBO_MIDPOINT = ReferenceSource.NBBO_MIDPOINT
FEED_LAST_SALE = ReferenceSource.FEED_LAST_SALE

MIDPOINT = "midpoint"
LAST_SALE = "last_sale"


class MarketDataBoard:
    """The latest NBBO and last sale per symbol, and when each venue was last heard."""

    __slots__ = ("heard", "last_sale", "nbbo", "nbbo_book")

    def __init__(self) -> None:
        self.nbbo_book = NbboBook()  # the feed thread's alone
        self.nbbo: dict[str, Nbbo] = {}
        self.last_sale: dict[str, Trade] = {}
        self.heard: dict[str, int] = {}

    # ---------------------------------------------------------------- the feed thread

    def on_quote(self, quote: Quote) -> Nbbo:
        nbbo = self.nbbo_book.update(quote)
        self.heard[quote.venue] = max(quote.ts_ns, self.heard.get(quote.venue, 0))
        self.nbbo[quote.symbol] = nbbo
        return nbbo

    def on_trade(self, trade: Trade) -> None:
        self.heard[trade.venue] = max(trade.ts_ns, self.heard.get(trade.venue, 0))
        self.last_sale[trade.symbol] = trade

    def on_event(self, event: Quote | Trade) -> None:
        if type(event) is Quote:
            self.on_quote(event)
        elif type(event) is Trade:
            self.on_trade(event)

    def heartbeat(self, venue: str, ts_ns: int) -> None:
        """The venue is alive at ``ts_ns`` (a feed's heartbeat or any message of it)."""
        self.heard[venue] = max(ts_ns, self.heard.get(venue, 0))


class NbboReferencePrices:
    """``ReferencePrices`` from a ``MarketDataBoard``, falling back to ``fallback`` (the book
    of record's ``MarketTape``: the venue's own outside prints, else the previous close)
    for a symbol the feed has no usable price for.

    ``basis``: ``"midpoint"`` (NBBO midpoint when both sides are quoted, else the feed's last
    sale) or ``"last_sale"`` (the feed's last sale only)."""

    __slots__ = ("_cache", "basis", "board", "fallback")

    def __init__(self, board: MarketDataBoard, fallback: ReferencePrices | None = None,
                 basis: str = MIDPOINT) -> None:
        if basis not in (MIDPOINT, LAST_SALE):
            raise ValueError(f"reference basis must be {MIDPOINT!r} or {LAST_SALE!r}")
        self.board = board
        self.fallback = fallback
        self.basis = basis
        # symbol -> (the published value it came from, its as-of, the ReferencePrice): the
        # same object while neither changes, so the LULD band cache (keyed by identity)
        # stays warm.
        self._cache: dict[str, tuple[object, int, ReferencePrice]] = {}

    def reference(self, symbol: str) -> ReferencePrice | None:
        board = self.board
        if self.basis == MIDPOINT:
            nbbo = board.nbbo.get(symbol)
            if nbbo is not None and nbbo.bid is not None and nbbo.ask is not None \
                    and not nbbo.crossed:
                heard = board.heard
                as_of = min(heard.get(nbbo.bid_venue or "", 0),
                            heard.get(nbbo.ask_venue or "", 0))
                cached = self._cache.get(symbol)
                if cached is not None and cached[0] is nbbo and cached[1] == as_of:
                    return cached[2]
                # Exact: half of a sum of decimals needs at most one more place.
                reference = ReferencePrice((nbbo.bid + nbbo.ask) / 2, NBBO_MIDPOINT, as_of)
                self._cache[symbol] = (nbbo, as_of, reference)
                return reference
        trade = board.last_sale.get(symbol)
        if trade is not None:
            as_of = max(trade.ts_ns, board.heard.get(trade.venue, 0))
            cached = self._cache.get(symbol)
            if cached is not None and cached[0] is trade and cached[1] == as_of:
                return cached[2]
            reference = ReferencePrice(trade.price, FEED_LAST_SALE, as_of)
            self._cache[symbol] = (trade, as_of, reference)
            return reference
        return None if self.fallback is None else self.fallback.reference(symbol)

    def best_bid(self, symbol: str) -> Decimal | None:
        """The national best bid (Rule 201's bid test); None without a quoted bid."""
        nbbo = self.board.nbbo.get(symbol)
        return None if nbbo is None else nbbo.bid

