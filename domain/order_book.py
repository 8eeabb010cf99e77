"""Per-symbol level-2 order books built from order-level market data (issue 9).

The vocabulary is the order-level part of NASDAQ TotalView-ITCH 5.0 (add, execute, cancel,
delete, replace, and the prints that do not touch the book), as plain tuples so any
order-level feed can produce them; ``infrastructure/itch.py`` is the first. Prices are ints
in 1/10,000 dollars, as on the wire: Decimal appears only in the ``Quote``/``Trade`` a book
emits (the boundary), through a per-book cache because a day's prices repeat.

Pure: no I/O, no clock; every time is the message's stamp (UTC epoch nanoseconds).

An execute/cancel/delete/replace of an order the book never saw raises ``UnknownOrder``
(strict, the default): ITCH is a complete day's stream from the first message, so an
unknown reference means lost or corrupt input, and a book that carried on would be silently
wrong. A consumer that joins a feed mid-session passes ``strict=False``: those messages are
counted in ``unknown_orders`` and otherwise ignored.
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

from domain.market_data import Quote, Trade

PRICE_SCALE = 10_000  # ITCH prices: 4 implied decimals


class AddOrder(NamedTuple):
    """ITCH A/F: a new resting order (``mpid`` only on F)."""

    locate: int
    ts_ns: int
    ref: int
    side: bytes  # b"B" or b"S"
    shares: int
    symbol: str
    price: int
    mpid: str | None


class OrderExecuted(NamedTuple):
    """ITCH E (``price`` None: at the order's price) and C (``price`` given; a print only
    when ``printable``)."""

    locate: int
    ts_ns: int
    ref: int
    shares: int
    match: int
    price: int | None
    printable: bool


class OrderCancel(NamedTuple):
    """ITCH X: part of an order cancelled."""

    locate: int
    ts_ns: int
    ref: int
    shares: int


class OrderDelete(NamedTuple):
    """ITCH D: the rest of an order cancelled."""

    locate: int
    ts_ns: int
    ref: int


class OrderReplace(NamedTuple):
    """ITCH U: an order replaced by a new one (same side; time priority lost)."""

    locate: int
    ts_ns: int
    ref: int
    new_ref: int
    shares: int
    price: int


class TradePrint(NamedTuple):
    """ITCH P (non-displayed order executed) and Q (cross; ``side`` b" "): a print that
    does not change the displayed book."""

    locate: int
    ts_ns: int
    symbol: str
    side: bytes
    shares: int
    price: int
    match: int


OrderMessage = AddOrder | OrderExecuted | OrderCancel | OrderDelete | OrderReplace | TradePrint


class UnknownOrder(LookupError):
    """An order-level message names an order the book does not hold."""

    def __init__(self, ref: int, message: str) -> None:
        super().__init__(f"{message} of unknown order reference {ref}")
        self.ref = ref


class BookInvariantBroken(ValueError):
    """A message would make a size negative (more executed or cancelled than rests)."""


class Level(NamedTuple):
    price: Decimal
    size: int
    orders: int


class OrderBook:
    """One venue's book in one symbol: price levels with size and order count.

    ``apply`` returns what the message caused, in order: a ``Trade`` for an execution or a
    print, then a ``Quote`` if the top of book (price or size on either side) changed.
    """

    __slots__ = (
        "_decimals",
        "asks",
        "best_ask",
        "best_bid",
        "bids",
        "orders",
        "strict",
        "symbol",
        "ts_ns",
        "unknown_orders",
        "venue",
    )

    def __init__(self, symbol: str, venue: str, strict: bool = True) -> None:
        self.symbol = symbol
        self.venue = venue
        self.strict = strict
        # price -> [size, order count]; lists so a change is one in-place store.
        self.bids: dict[int, list[int]] = {}
        self.asks: dict[int, list[int]] = {}
        # ref -> [is_buy, price, shares]
        self.orders: dict[int, list[int]] = {}
        self.best_bid: int | None = None
        self.best_ask: int | None = None
        self.unknown_orders = 0
        self.ts_ns = 0
        self._decimals: dict[int, Decimal] = {}

    # ------------------------------------------------------------------ queries

    def decimal(self, price: int) -> Decimal:
        d = self._decimals.get(price)
        if d is None:
            d = self._decimals[price] = Decimal(price).scaleb(-4)
        return d

    def quote(self) -> Quote:
        bid, ask = self.best_bid, self.best_ask
        return Quote(
            self.venue, self.symbol,
            None if bid is None else self.decimal(bid),
            0 if bid is None else self.bids[bid][0],
            None if ask is None else self.decimal(ask),
            0 if ask is None else self.asks[ask][0],
            self.ts_ns)

    def top(self) -> tuple[int | None, int, int | None, int]:
        """Best bid, its size, best ask, its size (prices in 1/10,000 dollars)."""
        bid, ask = self.best_bid, self.best_ask
        return (bid, 0 if bid is None else self.bids[bid][0],
                ask, 0 if ask is None else self.asks[ask][0])

    def depth(self, levels: int = 5) -> tuple[list[Level], list[Level]]:
        """The top ``levels`` price levels of each side, best first."""
        bids = sorted(self.bids, reverse=True)[:levels]
        asks = sorted(self.asks)[:levels]
        return ([Level(self.decimal(p), *self.bids[p]) for p in bids],
                [Level(self.decimal(p), *self.asks[p]) for p in asks])

    @property
    def crossed(self) -> bool:
        return (self.best_bid is not None and self.best_ask is not None
                and self.best_bid >= self.best_ask)

    # ------------------------------------------------------------------ updates

    def apply(self, msg: OrderMessage) -> tuple[Quote | Trade, ...]:
        # ``type(msg) is`` (not isinstance): exact, and the cheapest test per message.
        self.ts_ns = msg.ts_ns
        if type(msg) is AddOrder:
            if msg.ref in self.orders:
                raise BookInvariantBroken(f"add of order reference {msg.ref} already resting")
            if msg.shares <= 0:  # refused before the order is stored: nothing half-applied
                raise BookInvariantBroken(f"add of {msg.shares} shares")
            is_buy = msg.side == b"B"
            self.orders[msg.ref] = [is_buy, msg.price, msg.shares]
            if self._add_level(is_buy, msg.price, msg.shares, 1):
                return (self.quote(),)
            return ()
        if type(msg) is OrderExecuted:
            order = self._order(msg.ref, "execute")
            if order is None:
                return ()
            price = order[1]
            moved = self._reduce(msg.ref, order, msg.shares, "execute")
            print_price = price if msg.price is None else msg.price
            events: tuple[Quote | Trade, ...] = ()
            if msg.printable:
                events = (Trade(self.venue, self.symbol, self.decimal(print_price),
                                msg.shares, msg.ts_ns),)
            return (*events, self.quote()) if moved else events
        if type(msg) is OrderCancel:
            order = self._order(msg.ref, "cancel")
            if order is None:
                return ()
            return (self.quote(),) if self._reduce(msg.ref, order, msg.shares,
                                                   "cancel") else ()
        if type(msg) is OrderDelete:
            order = self._order(msg.ref, "delete")
            if order is None:
                return ()
            return (self.quote(),) if self._reduce(msg.ref, order, order[2],
                                                   "delete") else ()
        if type(msg) is OrderReplace:
            order = self._order(msg.ref, "replace")
            if order is None:
                return ()
            if msg.new_ref in self.orders:
                raise BookInvariantBroken(
                    f"replace to order reference {msg.new_ref} already resting")
            if msg.shares <= 0:  # refused before the old order is taken off
                raise BookInvariantBroken(f"replace with {msg.shares} shares")
            buy = bool(order[0])
            moved = self._reduce(msg.ref, order, order[2], "replace")
            self.orders[msg.new_ref] = [buy, msg.price, msg.shares]
            moved = self._add_level(buy, msg.price, msg.shares, 1) or moved
            return (self.quote(),) if moved else ()
        if type(msg) is TradePrint:
            if msg.shares <= 0:
                return ()
            return (Trade(self.venue, self.symbol, self.decimal(msg.price), msg.shares,
                          msg.ts_ns),)
        raise TypeError(f"not an order-level message: {type(msg).__name__}")

    def _order(self, ref: int, what: str) -> list[int] | None:
        order = self.orders.get(ref)
        if order is None:
            if self.strict:
                raise UnknownOrder(ref, what)
            self.unknown_orders += 1
        return order

    def _add_level(self, is_buy: bool, price: int, shares: int, count: int) -> bool:
        """Add to a level; True when the top of book changed."""
        if shares <= 0:
            raise BookInvariantBroken(f"add of {shares} shares")
        if is_buy:
            level = self.bids.get(price)
            if level is None:
                self.bids[price] = [shares, count]
            else:
                level[0] += shares
                level[1] += count
            best = self.best_bid
            if best is None or price >= best:
                self.best_bid = price
                return True
            return False
        level = self.asks.get(price)
        if level is None:
            self.asks[price] = [shares, count]
        else:
            level[0] += shares
            level[1] += count
        best = self.best_ask
        if best is None or price <= best:
            self.best_ask = price
            return True
        return False

    def _reduce(self, ref: int, order: list[int], shares: int, what: str) -> bool:
        """Take ``shares`` off a resting order (removing it at zero); True when the top of
        book changed."""
        remaining = order[2] - shares
        if shares <= 0 or remaining < 0:
            raise BookInvariantBroken(
                f"{what} of {shares} shares of order reference {ref} with {order[2]} resting")
        is_buy, price = order[0], order[1]
        levels = self.bids if is_buy else self.asks
        level = levels[price]
        level[0] -= shares
        if remaining == 0:
            del self.orders[ref]
            level[1] -= 1
            if level[1] == 0:
                del levels[price]
                if is_buy:
                    if price == self.best_bid:
                        self.best_bid = max(levels) if levels else None
                        return True
                    return False
                if price == self.best_ask:
                    self.best_ask = min(levels) if levels else None
                    return True
                return False
        else:
            order[2] = remaining
        return price == (self.best_bid if is_buy else self.best_ask)


class OrderBooks:
    """Every symbol's book on one venue, routed by the feed's stock locate code (ITCH gives
    each symbol a small integer for the day; the order-level messages carry only it)."""

    __slots__ = ("by_locate", "strict", "venue")

    # The message types ``apply`` takes (a feed's other events are for the caller).
    ORDER_LEVEL = frozenset({AddOrder, OrderExecuted, OrderCancel, OrderDelete, OrderReplace,
                             TradePrint})

    def __init__(self, venue: str, strict: bool = True) -> None:
        self.venue = venue
        self.strict = strict
        self.by_locate: dict[int, OrderBook] = {}

    def book(self, symbol: str) -> OrderBook | None:
        for book in self.by_locate.values():
            if book.symbol == symbol:
                return book
        return None

    def apply(self, msg: OrderMessage) -> tuple[Quote | Trade, ...]:
        book = self.by_locate.get(msg.locate)
        if book is None:
            if type(msg) is not AddOrder and type(msg) is not TradePrint:
                if self.strict:
                    raise UnknownOrder(getattr(msg, "ref", 0), type(msg).__name__)
                return ()
            assert isinstance(msg, AddOrder | TradePrint)
            book = self.by_locate[msg.locate] = OrderBook(msg.symbol, self.venue, self.strict)
        return book.apply(msg)
