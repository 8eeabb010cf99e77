"""Market data as the rest of marketlog sees it (issue 9): top-of-book quotes and trade
prints per venue, and the consolidated best bid and offer across venues.

Feed handlers (infrastructure/itch.py, infrastructure/ticks.py) turn venue messages into
these; order books (domain/order_book.py) and the NBBO (domain/nbbo.py) produce them; the
strategy engine and the backtester consume them; the reference-price port reads the NBBO so
that price collars, LULD bands and the Rule 201 bid test use the market. Pure values: no
I/O, no clock (every time is the venue's or the feed's stamp, UTC epoch nanoseconds).
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple


class Quote(NamedTuple):
    """One venue's best bid and offer in a symbol (a side without orders: None and 0)."""

    venue: str
    symbol: str
    bid: Decimal | None
    bid_size: int
    ask: Decimal | None
    ask_size: int
    ts_ns: int


class Trade(NamedTuple):
    """A print: an execution on a venue (ITCH E/C/P messages, a tick file's trade rows)."""

    venue: str
    symbol: str
    price: Decimal
    size: int
    ts_ns: int


class Nbbo(NamedTuple):
    """The national best bid and offer: the best of every venue's quote, with its venue."""

    symbol: str
    bid: Decimal | None
    bid_size: int
    bid_venue: str | None
    ask: Decimal | None
    ask_size: int
    ask_venue: str | None
    ts_ns: int

    @property
    def midpoint(self) -> Decimal | None:
        if self.bid is None or self.ask is None:
            return None
        return (self.bid + self.ask) / 2

    @property
    def crossed(self) -> bool:
        return self.bid is not None and self.ask is not None and self.bid > self.ask
