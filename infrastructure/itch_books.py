"""ITCH 5.0 straight into order books: the fast path beside ``read_itch`` + ``OrderBooks.apply``.

``ItchBookBuilder(books, midnight_ns).run(source)`` parses a stream and applies it to an
``OrderBooks`` in one loop. The hot types (A D E X U P: nearly every message of a trading
day) are unpacked with precompiled structs and applied to the books' dicts in place, with no
tuple per message and no ``Quote``/``Trade`` unless ``on_event`` asks for them; every other
type goes through ``ItchReader`` and ``OrderBooks.apply`` unchanged. The books it leaves are
the ones ``read_itch`` + ``OrderBooks.apply`` would leave (same levels, sizes, order counts,
best prices, unknown-order counts), and with ``on_event`` it emits the same events in the
same order: ``tests/unit/test_itch_books.py`` holds it to that.

Errors are the old path's: ``ItchError`` (byte offset, message type) for corrupt or truncated
input, ``UnknownOrder``/``BookInvariantBroken`` from the books (with a note naming the
message's byte offset). A message is checked whole before anything of it is applied, and
every message before it has been applied, as with the old path.

It writes the ``OrderBook`` internals (``bids``/``asks``: price -> [size, count];
``orders``: ref -> [is_buy, price, shares]; ``best_bid``/``best_ask``; ``ts_ns``;
``unknown_orders``) because a method call per message is what it exists to avoid; a change
to that layout in ``domain/order_book.py`` must change both, and the parity tests fail
otherwise.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple

from domain.market_data import Quote, Trade
from domain.order_book import BookInvariantBroken, OrderBook, OrderBooks, UnknownOrder
from infrastructure.itch import (
    _SIZE_BY_BYTE,
    ItchError,
    ItchEvent,
    ItchReader,
    Source,
    _chunks,
    type_name,
)

# The hot types' fields, read from the length prefix on (skipped: the prefix and the type
# byte). The 2-byte tracking number and the 6-byte timestamp are read as one Q and masked:
# one int instead of three.
_A = struct.Struct(">3xHQQcI8sI")
_D = struct.Struct(">3xHQQ")
_E = struct.Struct(">3xHQQI")
_X = struct.Struct(">3xHQQI")
_U = struct.Struct(">3xHQQQII")
_P = struct.Struct(">3xHQ8xcI8sI")


class ItchRunStats(NamedTuple):
    messages: int  # every message read, skipped types included
    bytes: int
    counts: dict[str, int]  # per type, as ``ItchReader.counts``


class ItchBookBuilder:
    """Feeds ITCH streams into ``books``. ``on_event`` gets each ``Quote``/``Trade`` the books
    emit (None: none are built); ``on_other`` gets the non-book events (``SystemEvent``,
    ``StockDirectory``, ``TradingStatus``, ``BrokenTrade``). ``reader`` holds the counts,
    the symbol cache and ``offset`` (bytes applied so far) across ``run`` calls."""

    def __init__(self, books: OrderBooks, midnight_ns: int,
                 on_event: Callable[[Quote | Trade], object] | None = None,
                 on_other: Callable[[ItchEvent], object] | None = None) -> None:
        self.books = books
        self.reader = ItchReader(midnight_ns)
        self.on_event = on_event
        self.on_other = on_other
        # locate -> (book, its orders, bids, asks): one dict get per message instead of four
        # attribute loads; the dicts are never replaced, so the cache cannot go stale.
        self._state: dict[int, tuple[OrderBook, dict[int, list[int]],
                                     dict[int, list[int]], dict[int, list[int]]]] = {}

    def run(self, source: Source) -> ItchRunStats:
        reader = self.reader
        tail = b""
        for chunk in _chunks(source):
            buf = tail + chunk if tail else chunk
            consumed = self._consume(buf)
            tail = buf[consumed:]
        if tail:
            msg_type = tail[2] if len(tail) > 2 else None
            want = (f"{len(tail)} bytes left, the length prefix needs 2" if len(tail) < 2
                    else f"truncated: {len(tail) - 2} of the message's bytes present")
            raise ItchError(reader.offset, msg_type, want)
        counts = reader.counts
        return ItchRunStats(sum(counts.values()), reader.offset, counts)

    def _book(self, locate: int, symbol: str | None) -> tuple[
            OrderBook, dict[int, list[int]], dict[int, list[int]], dict[int, list[int]]] | None:
        """The locate's cached state; a book is created only for an add or a print (symbol)."""
        books = self.books
        book = books.by_locate.get(locate)
        if book is None:
            if symbol is None:
                return None
            book = books.by_locate[locate] = OrderBook(symbol, books.venue, books.strict)
        state = self._state[locate] = (book, book.orders, book.bids, book.asks)
        return state

    def _slow(self, buf: bytes, pos: int, end: int, base: int) -> None:
        """A rarer type, or a framing oddity: the old path, message by message."""
        reader = self.reader
        reader.offset = base + pos
        for event in reader._parse(buf[pos:end]):
            if type(event) in OrderBooks.ORDER_LEVEL:
                try:
                    emitted = self.books.apply(event)  # type: ignore[arg-type]
                except (UnknownOrder, BookInvariantBroken):
                    reader.offset = base + pos  # the message was not applied
                    raise
                if self.on_event is not None:
                    for out in emitted:
                        self.on_event(out)
            elif self.on_other is not None:
                self.on_other(event)

    def _consume(self, buf: bytes) -> int:
        """Apply every complete message in ``buf``; return the bytes consumed."""
        reader = self.reader
        base = reader.offset
        pos = 0
        try:
            pos = self._loop(buf, base)
        except (UnknownOrder, BookInvariantBroken) as exc:
            at = reader.offset  # _loop records the failing message's offset before raising
            exc.add_note(f"ITCH byte offset {at} (message type {type_name(buf[at - base + 2])})")
            raise
        return pos

    def _loop(self, buf: bytes, base: int) -> int:
        reader = self.reader
        sizes, counts, symbols = _SIZE_BY_BYTE, reader._counts, reader._symbols
        midnight = reader.midnight_ns
        strict = self.books.strict
        emit = self.on_event
        state_get = self._state.get
        new_state = self._book
        slow = self._slow
        a_unpack, d_unpack, e_unpack = _A.unpack_from, _D.unpack_from, _E.unpack_from
        x_unpack, u_unpack, p_unpack = _X.unpack_from, _U.unpack_from, _P.unpack_from
        n = len(buf)
        pos = 0
        # Local counters (a list store per message costs more); flushed however the loop ends.
        na = nd = ne = nx = nu = np = 0
        try:
            while pos + 3 <= n:
                t = buf[pos + 2]
                size = sizes[t]
                length = (buf[pos] << 8) | buf[pos + 1]
                if length != size:
                    if length == 0:
                        pass  # the zero-prefix framing: the type's fixed size
                    elif length < size:
                        reader.offset = base + pos
                        raise ItchError(base + pos, t, f"length prefix {length} is shorter "
                                        f"than the {size} bytes of the message type")
                    else:
                        size = length  # a longer frame: fields a later version appended
                end = pos + 2 + size
                if end > n:
                    break
                if t == 65:  # A: add
                    locate, stamp, ref, side, shares, raw, price = a_unpack(buf, pos)
                    if side == b"B":
                        is_buy = True
                    elif side == b"S":
                        is_buy = False
                    else:
                        slow(buf, pos, end, base)  # raises the reader's ItchError
                        pos = end
                        continue
                    symbol = symbols.get(raw)
                    if symbol is None:
                        slow(buf, pos, end, base)  # validates (or refuses) a new stock field
                        pos = end
                        continue
                    na += 1
                    st = state_get(locate) or new_state(locate, symbol)
                    book, orders, bids, asks = st  # type: ignore[misc]
                    book.ts_ns = midnight + (stamp & _STAMP)
                    if ref in orders:
                        reader.offset = base + pos
                        raise BookInvariantBroken(
                            f"add of order reference {ref} already resting")
                    if shares <= 0:
                        reader.offset = base + pos
                        raise BookInvariantBroken(f"add of {shares} shares")
                    orders[ref] = [is_buy, price, shares]
                    if is_buy:
                        level = bids.get(price)
                        if level is None:
                            bids[price] = [shares, 1]
                        else:
                            level[0] += shares
                            level[1] += 1
                        best = book.best_bid
                        if best is None or price >= best:
                            book.best_bid = price
                            if emit is not None:
                                emit(book.quote())
                    else:
                        level = asks.get(price)
                        if level is None:
                            asks[price] = [shares, 1]
                        else:
                            level[0] += shares
                            level[1] += 1
                        best = book.best_ask
                        if best is None or price <= best:
                            book.best_ask = price
                            if emit is not None:
                                emit(book.quote())
                elif t in _REDUCING:  # D delete, E execute, X cancel
                    if t == 68:
                        locate, stamp, ref = d_unpack(buf, pos)
                        shares = -1
                        nd += 1
                    elif t == 69:
                        locate, stamp, ref, shares = e_unpack(buf, pos)
                        ne += 1
                    else:
                        locate, stamp, ref, shares = x_unpack(buf, pos)
                        nx += 1
                    st = state_get(locate) or new_state(locate, None)
                    if st is None:  # no book for the locate: as OrderBooks.apply
                        if strict:
                            reader.offset = base + pos
                            raise UnknownOrder(ref, _NAMES[t])
                        pos = end
                        continue
                    book, orders, bids, asks = st
                    book.ts_ns = midnight + (stamp & _STAMP)
                    order = orders.get(ref)
                    if order is None:
                        if strict:
                            reader.offset = base + pos
                            raise UnknownOrder(ref, _VERBS[t])
                        book.unknown_orders += 1
                        pos = end
                        continue
                    resting = order[2]
                    if shares < 0:
                        shares = resting
                    remaining = resting - shares
                    if shares <= 0 or remaining < 0:
                        reader.offset = base + pos
                        raise BookInvariantBroken(
                            f"{_VERBS[t]} of {shares} shares of order reference {ref} with "
                            f"{resting} resting")
                    is_buy = order[0]
                    price = order[1]
                    levels = bids if is_buy else asks
                    level = levels[price]
                    level[0] -= shares
                    if remaining:
                        order[2] = remaining
                        moved = price == (book.best_bid if is_buy else book.best_ask)
                    else:
                        del orders[ref]
                        level[1] -= 1
                        moved = False
                        if level[1] == 0:
                            del levels[price]
                            if is_buy:
                                if price == book.best_bid:
                                    book.best_bid = max(levels) if levels else None
                                    moved = True
                            elif price == book.best_ask:
                                book.best_ask = min(levels) if levels else None
                                moved = True
                        else:
                            moved = price == (book.best_bid if is_buy else book.best_ask)
                    if emit is not None:
                        if t == 69:
                            emit(Trade(book.venue, book.symbol, book.decimal(price), shares,
                                       book.ts_ns))
                        if moved:
                            emit(book.quote())
                elif t == 80:  # P: a print off the book
                    locate, stamp, side, shares, raw, price = p_unpack(buf, pos)
                    symbol = symbols.get(raw)
                    if symbol is None:
                        slow(buf, pos, end, base)
                        pos = end
                        continue
                    np += 1
                    st = state_get(locate) or new_state(locate, symbol)
                    book = st[0]  # type: ignore[index]
                    book.ts_ns = ts = midnight + (stamp & _STAMP)
                    if emit is not None and shares > 0:
                        emit(Trade(book.venue, book.symbol, book.decimal(price), shares, ts))
                elif t == 85:  # U: replace
                    locate, stamp, ref, new_ref, shares, price = u_unpack(buf, pos)
                    st = state_get(locate)
                    order = None if st is None else st[1].get(ref)
                    if order is None or new_ref in st[1] or shares <= 0:  # type: ignore[index]
                        slow(buf, pos, end, base)  # unknown order or a refusal: the old path
                        pos = end
                        continue
                    nu += 1
                    book, orders, bids, asks = st  # type: ignore[misc]
                    book.ts_ns = midnight + (stamp & _STAMP)
                    is_buy = order[0]
                    old_price = order[1]
                    del orders[ref]
                    levels = bids if is_buy else asks
                    level = levels[old_price]
                    level[0] -= order[2]
                    level[1] -= 1
                    best = book.best_bid if is_buy else book.best_ask
                    moved = old_price == best
                    if level[1] == 0:
                        del levels[old_price]
                        if moved:
                            best = (max(levels) if is_buy else min(levels)) if levels else None
                    orders[new_ref] = [is_buy, price, shares]
                    level = levels.get(price)
                    if level is None:
                        levels[price] = [shares, 1]
                    else:
                        level[0] += shares
                        level[1] += 1
                    if best is None or (price >= best if is_buy else price <= best):
                        best = price
                        moved = True
                    if is_buy:
                        book.best_bid = best
                    else:
                        book.best_ask = best
                    if moved and emit is not None:
                        emit(book.quote())
                else:
                    if not size:  # an unknown type behind a zero prefix (0 == 0 above)
                        reader.offset = base + pos
                        raise ItchError(base + pos, t, "unknown message type behind a zero "
                                        "length prefix: its size is unknown, the stream "
                                        "cannot be re-synchronised")
                    slow(buf, pos, end, base)
                pos = end
        finally:
            counts[65] += na
            counts[68] += nd
            counts[69] += ne
            counts[88] += nx
            counts[85] += nu
            counts[80] += np
        reader.offset = base + pos
        return pos

_STAMP = (1 << 48) - 1  # the 6-byte timestamp under the 2-byte tracking number it is read with
_REDUCING = frozenset({68, 69, 88})
_NAMES = {68: "OrderDelete", 69: "OrderExecuted", 88: "OrderCancel"}
_VERBS = {68: "delete", 69: "execute", 88: "cancel"}

for _t, _s in {"A": _A, "D": _D, "E": _E, "X": _X, "U": _U, "P": _P}.items():
    assert _s.size <= 2 + _SIZE_BY_BYTE[ord(_t)], (_t, _s.size)
