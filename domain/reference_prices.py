"""The reference-price port: the price a decision compares an order with, where it came from
and as of when (15c3-5(c)(1)(ii): price collars against a reference price).

The book of record asks a ``ReferencePrices`` for each symbol and records all three parts in
its decision, so a replay never needs the source again. ``MarketTape`` is the implementation
derived from the log itself: the venue's last print against an outside participant, else the
previous close of the trading day. Fills between two of the firm's own accounts do not move
it: an order must be checked against the market, never against prices the firm printed to
itself (two accounts could otherwise walk the collar one trade at a time). The market-data
feed handlers plug an NBBO-based source into the same port.
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple, Protocol

from domain.values import ReferenceSource

# Counterparty prefix of outside participants (the venue's liquidity providers, other firms).
OUTSIDE_PARTICIPANT = "venue:"

# Enum members as plain module names: on CPython 3.11 a member lookup (Side.BUY) costs
# ~0.1 us, and these run several times per order.
LAST_SALE = ReferenceSource.LAST_SALE
PREVIOUS_CLOSE = ReferenceSource.PREVIOUS_CLOSE



class ReferencePrice(NamedTuple):
    price: Decimal
    source: str  # domain.values.ReferenceSource
    as_of_ns: int


class ReferencePrices(Protocol):
    def reference(self, symbol: str) -> ReferencePrice | None: ...


class MarketTape:
    """Last outside print per symbol, and the trading day's previous closes."""

    __slots__ = ("last_sale", "previous_close")

    def __init__(self) -> None:
        self.last_sale: dict[str, ReferencePrice] = {}
        self.previous_close: dict[str, ReferencePrice] = {}

    def reference(self, symbol: str) -> ReferencePrice | None:
        last = self.last_sale.get(symbol)
        return last if last is not None else self.previous_close.get(symbol)

    def print_trade(self, symbol: str, price: Decimal, ts_ns: int) -> None:
        self.last_sale[symbol] = ReferencePrice(price, LAST_SALE, ts_ns)

    def new_day(self, closes: dict[str, Decimal], ts_ns: int) -> None:
        """Yesterday's prints are history: today starts from the previous closes."""
        self.last_sale.clear()
        self.previous_close = {
            symbol: ReferencePrice(price, PREVIOUS_CLOSE, ts_ns)
            for symbol, price in closes.items()
        }

    def closing_prices(self, fallback: dict[str, Decimal]) -> dict[str, Decimal]:
        """Today's closes: the last print, else the previous close, else ``fallback``."""
        closes = dict(fallback)
        closes.update((s, r.price) for s, r in self.previous_close.items())
        closes.update((s, r.price) for s, r in self.last_sale.items())
        return closes
