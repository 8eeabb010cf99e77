"""The in-process simulated venue: a price-time-priority matching engine per symbol.

It crosses orders from different accounts of the firm and, for the demo, against a seeded
synthetic liquidity provider quoting around a random-walk price. The engine releases orders
here only after their acceptance is durable (record before release); every execution is
reported back through a callback and becomes an ``OrderFilled`` event.

Resting entries are the engine's own ``Order`` objects (the engine and the venue share one
thread), so an order's leaves quantity is always the one the book of record holds. Each price
level is queued by ``Order.priority``, the sequence the book of record assigns in log order
(at acceptance, and again when a confirmed replace loses priority): the venue and a restart's
re-release follow one rule, so live and recovered queues cannot disagree.

Market orders trade only up to their protection price (``Order.price_limit``).
"""

from __future__ import annotations

import random
from bisect import bisect_left, insort
from collections.abc import Callable, Iterator
from decimal import Decimal

from domain.instruments import Instrument
from domain.orders import Order
from domain.values import OrderType, Side

# Enum members as plain module names: on CPython 3.11 a member lookup (Side.BUY) costs
# ~0.1 us, and these run several times per order.
BUY = Side.BUY
LIMIT = OrderType.LIMIT



class LiquidityQuote:
    """A resting quote of the synthetic liquidity provider (not the firm's order)."""

    __slots__ = ("filled_quantity", "limit_price", "priority", "quantity", "side")

    def __init__(self, side: str, price: Decimal, quantity: int, priority: float) -> None:
        self.side = side
        self.limit_price = price
        self.quantity = quantity
        self.filled_quantity = 0
        self.priority = priority


Resting = Order | LiquidityQuote
# (taker, maker, quantity, price): the venue reports each execution as it happens.
OnExecution = Callable[[Order, Resting, int, Decimal], None]


def _priority(entry: Resting) -> float:
    return entry.priority


class _Side:
    """One side of a book: price levels in a sorted list, a queue per level in priority."""

    __slots__ = ("levels", "prices")

    def __init__(self) -> None:
        self.prices: list[Decimal] = []  # ascending
        self.levels: dict[Decimal, list[Resting]] = {}

    def add(self, entry: Resting, price: Decimal) -> None:
        level = self.levels.get(price)
        if level is None:
            self.levels[price] = [entry]
            insort(self.prices, price)
        elif level[-1].priority <= entry.priority:
            level.append(entry)  # the usual case: the newest priority joins at the back
        else:
            # Released after an order that the book ranked behind it (pipelined venue
            # steps): the queue follows the book's priority, not arrival.
            insort(level, entry, key=_priority)

    def remove(self, entry: Resting, price: Decimal) -> bool:
        level = self.levels.get(price)
        if level is None:
            return False
        try:
            level.remove(entry)
        except ValueError:
            return False
        if not level:
            self._drop_level(price)
        return True

    def _drop_level(self, price: Decimal) -> None:
        del self.levels[price]
        del self.prices[bisect_left(self.prices, price)]


class OrderBook:
    __slots__ = ("asks", "bids", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids = _Side()
        self.asks = _Side()

    def best_bid(self) -> Decimal | None:
        return self.bids.prices[-1] if self.bids.prices else None

    def best_ask(self) -> Decimal | None:
        return self.asks.prices[0] if self.asks.prices else None

    def resting(self) -> Iterator[tuple[Resting, Decimal]]:
        for side in (self.bids, self.asks):
            for price in side.prices:
                for entry in side.levels[price]:
                    yield entry, price

    def available(self, side: str, limit: Decimal | None, account_id: str) -> int:
        """Quantity a taker of ``account_id`` on ``side`` could execute at ``limit`` (None =
        market): matching stops at the account's own first resting order (self-trade
        prevention), so counting does too."""
        contra = self.asks if side == BUY else self.bids
        prices = contra.prices if side == BUY else reversed(contra.prices)
        total = 0
        for price in prices:
            if limit is not None and (price > limit if side == BUY else price < limit):
                break
            for entry in contra.levels[price]:
                if isinstance(entry, Order) and entry.account_id == account_id:
                    return total
                total += entry.quantity - entry.filled_quantity
        return total


class SimulatedVenue:
    def __init__(self, instruments: dict[str, Instrument],
                 liquidity: SyntheticLiquidity | None = None,
                 priority_now: Callable[[], int] = lambda: 0) -> None:
        self.instruments = instruments
        self.books = {symbol: OrderBook(symbol) for symbol in instruments}
        self.liquidity = liquidity
        # The book of record's priority sequence: the liquidity provider's quotes queue
        # after every firm order ranked so far.
        self.priority_now = priority_now

    def match(self, order: Order, on_execution: OnExecution) -> bool:
        """Execute against the contra side, best price first, then time; rest a limit remainder
        only for DAY/GTC (the engine cancels IOC/FOK/market remainders).

        Returns False, without resting anything, when the next execution would be against
        the same account's resting order (self-trade prevention: the engine cancels the
        remainder of the incoming order)."""
        book = self.books[order.symbol]
        buying = order.side == BUY
        contra = book.asks if buying else book.bids
        limit = order.price_limit
        while order.quantity > order.filled_quantity and contra.prices:
            price = contra.prices[0] if buying else contra.prices[-1]
            if limit is not None and (price > limit if buying else price < limit):
                break
            level = contra.levels[price]
            maker = level[0]
            if isinstance(maker, Order) and maker.account_id == order.account_id:
                return False
            quantity = min(order.quantity - order.filled_quantity,
                           maker.quantity - maker.filled_quantity)
            if isinstance(maker, LiquidityQuote):
                maker.filled_quantity += quantity
            on_execution(order, maker, quantity, price)
            if maker.filled_quantity >= maker.quantity:
                del level[0]
                if not level:
                    contra._drop_level(price)
        if (order.quantity > order.filled_quantity and order.order_type == LIMIT
                and order.time_in_force in ("day", "gtc")):
            assert limit is not None
            (book.bids if buying else book.asks).add(order, limit)
        return True

    def can_fill_completely(self, order: Order) -> bool:
        limit = order.price_limit
        needed = order.quantity - order.filled_quantity
        book = self.books[order.symbol]
        return book.available(order.side, limit, order.account_id) >= needed

    def remove(self, order: Order, price: Decimal | None = None) -> bool:
        """Pull a resting order (cancel, or before a replace re-enters it)."""
        price = order.limit_price if price is None else price
        if price is None:
            return False
        book = self.books[order.symbol]
        return (book.bids if order.side == BUY else book.asks).remove(order, price)

    def best_bid(self, symbol: str) -> Decimal | None:
        """The venue's best bid (the reference-price port's bid for Rule 201)."""
        book = self.books.get(symbol)
        return None if book is None else book.best_bid()

    def requote(self) -> None:
        if self.liquidity is not None:
            self.liquidity.requote(self.books, self.priority_now() + 0.5)

    def resting(self) -> Iterator[tuple[Resting, Decimal]]:
        """Every resting entry with the price level it rests at (for invariant checks)."""
        for book in self.books.values():
            yield from book.resting()


class SyntheticLiquidity:
    """A seeded market maker: quotes a few levels around a random-walk mid per symbol."""

    def __init__(self, instruments: dict[str, Instrument], seed: int, levels: int = 5,
                 lots_per_level: tuple[int, int] = (1, 20)) -> None:
        self.rng = random.Random(seed)
        self.levels = levels
        self.lots_per_level = lots_per_level
        self.instruments = {s: i for s, i in instruments.items() if i.reference_price}
        self.mid_ticks = {
            s: int(i.reference_price / i.tick_size)  # type: ignore[operator]
            for s, i in self.instruments.items()
        }
        self.quotes: list[tuple[str, LiquidityQuote]] = []

    def mid(self, symbol: str) -> Decimal | None:
        instrument = self.instruments.get(symbol)
        if instrument is None:
            return None
        return self.mid_ticks[symbol] * instrument.tick_size

    def requote(self, books: dict[str, OrderBook], priority: float) -> None:
        for symbol, quote in self.quotes:
            if quote.filled_quantity < quote.quantity:
                side = books[symbol].bids if quote.side == BUY else books[symbol].asks
                side.remove(quote, quote.limit_price)
        self.quotes.clear()
        for symbol, instrument in self.instruments.items():
            # Random walk of ±0.02% per requote, at least one tick, never below ten ticks.
            step = max(1, self.mid_ticks[symbol] // 5000)
            walked = self.mid_ticks[symbol] + self.rng.choice((-step, 0, step))
            self.mid_ticks[symbol] = max(10, walked)
            spread = max(1, self.mid_ticks[symbol] // 2000)
            book = books[symbol]
            # Quotes only rest: one that would cross a resting firm order is not placed, so
            # the book never stands crossed waiting for a taker.
            best_bid, best_ask = book.best_bid(), book.best_ask()
            for level in range(self.levels):
                for side, sign in ((BUY, -1), (Side.SELL, 1)):
                    ticks = self.mid_ticks[symbol] + sign * (spread + level * spread)
                    price = ticks * instrument.tick_size
                    size = self.rng.randint(*self.lots_per_level) * instrument.lot_size
                    if ticks <= 0 or (
                        (best_ask is not None and price >= best_ask) if side == BUY
                        else (best_bid is not None and price <= best_bid)
                    ):
                        continue
                    quote = LiquidityQuote(side, price, size, priority)
                    (book.bids if side == BUY else book.asks).add(quote, price)
                    self.quotes.append((symbol, quote))
