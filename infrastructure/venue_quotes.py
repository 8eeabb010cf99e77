"""Quotes from the simulated venue's own book, until the ITCH/tick feed handlers and the
NBBO (issue 9, another item) feed the strategy runner: the top of each symbol's book (the
synthetic liquidity provider's quotes and the firm's resting orders) as ``Quote``s, one per
symbol whenever its top changed since the last poll."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal

from domain.market_data import Quote
from infrastructure.venue import OrderBook, SimulatedVenue, _Side

VENUE = "SIM"


def _top(side: _Side, best: Decimal | None) -> int:
    if best is None:
        return 0
    return sum(e.quantity - e.filled_quantity for e in list(side.levels.get(best, ())))


class VenueQuotes:
    def __init__(self, venue: SimulatedVenue, symbols: Iterable[str],
                 clock: Callable[[], int]) -> None:
        self.venue = venue
        self.symbols = tuple(symbols)
        self.clock = clock
        self._last: dict[str, tuple[Decimal | None, int, Decimal | None, int]] = {}

    def top(self, book: OrderBook) -> tuple[Decimal | None, int, Decimal | None, int]:
        bid, ask = book.best_bid(), book.best_ask()
        top = (bid, _top(book.bids, bid), ask, _top(book.asks, ask))
        liquidity = self.venue.liquidity
        if (bid is None or ask is None) and liquidity is not None:
            # The liquidity provider quotes only when the engine releases orders to the
            # venue: before the first one (a quiet server) its book is empty. Its mid and
            # the spread it would quote stand in, size 0 (indicative), for the empty side.
            mid = liquidity.mid(book.symbol)
            instrument = liquidity.instruments.get(book.symbol)
            if mid is not None and instrument is not None:
                spread = max(1, liquidity.mid_ticks[book.symbol] // 2000) * instrument.tick_size
                top = (bid if bid is not None else mid - spread, top[1],
                       ask if ask is not None else mid + spread, top[3])
        return top

    def poll(self) -> list[Quote]:
        """The symbols whose top changed. Under ``serve`` the engine thread may be changing
        the book while this reads it: a read that catches a level mid-change is skipped
        and taken at the next poll (quotes are a view of the market, never a decision
        input; the controls use the engine's own reference prices)."""
        quotes = []
        now = self.clock()
        for symbol in self.symbols:
            book = self.venue.books.get(symbol)
            if book is None:
                continue
            try:
                top = self.top(book)
            except (IndexError, KeyError, RuntimeError):
                continue
            if self._last.get(symbol) == top:
                continue
            self._last[symbol] = top
            quotes.append(Quote(VENUE, symbol, top[0], top[1], top[2], top[3], now))
        return quotes


class StoreEvents:
    """The store's events after a position, decoded, in log order (read-only: safe beside
    the engine, like the projection runner)."""

    def __init__(self, store: object, after: int) -> None:
        self.store = store
        self.after = after

    def poll(self) -> list[object]:
        events = []
        for position, event in self.store.read(self.after):  # type: ignore[attr-defined]
            self.after = position
            events.append(event)
        return events
