"""NASDAQ TotalView-ITCH 5.0 feed handler: binary messages from a file or a stream.

``read_itch(source, midnight_ns)`` yields the messages marketlog uses as tuples: the
order-level ones in ``domain.order_book``'s vocabulary (``AddOrder``, ``OrderExecuted``,
``OrderCancel``, ``OrderDelete``, ``OrderReplace``, ``TradePrint``) plus ``SystemEvent``,
``StockDirectory``, ``TradingStatus`` and ``BrokenTrade``. The other 5.0 types (Reg SHO,
market participant position, MWCB, IPO, LULD collar, operational halt, NOII, RPII, direct
listing) are sized, counted and skipped; so is an unknown type whose length is framed.

Framing: each message follows a 2-byte big-endian length (NASDAQ's binary file format /
SoupBinTCP payloads). Some files carry a zero there (the public sample does); the message's
length is then the fixed size of its type, which needs the type to be known: an unknown type
behind a zero prefix cannot be skipped, so the stream cannot be re-synchronised and reading
stops. Corrupt or truncated input raises ``ItchError`` naming the byte offset (of the length
prefix) and the message type; every message yielded before it was complete and valid, and a
truncated final message is never delivered.

Prices stay ints (1/10,000 dollars); times become UTC epoch nanoseconds: ITCH stamps are
nanoseconds since midnight of the session, so the caller passes that midnight
(``session_midnight_ns`` gives US/Eastern midnight of a date, NASDAQ's convention).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import IO, NamedTuple
from zoneinfo import ZoneInfo

from domain.order_book import (
    AddOrder,
    OrderCancel,
    OrderDelete,
    OrderExecuted,
    OrderReplace,
    TradePrint,
)

CHUNK = 1 << 20


class SystemEvent(NamedTuple):
    locate: int
    ts_ns: int
    code: str  # O start of messages, S start of system hours, Q market open, M close, E, C


class StockDirectory(NamedTuple):
    locate: int
    ts_ns: int
    symbol: str
    market_category: str
    financial_status: str
    round_lot_size: int
    round_lots_only: bool
    luld_tier: str  # "1", "2" or " "


class TradingStatus(NamedTuple):
    locate: int
    ts_ns: int
    symbol: str
    state: str  # H halted, P paused, Q quotation only, T trading
    reason: str


class BrokenTrade(NamedTuple):
    locate: int
    ts_ns: int
    match: int


ItchEvent = (SystemEvent | StockDirectory | TradingStatus | BrokenTrade | AddOrder
             | OrderExecuted | OrderCancel | OrderDelete | OrderReplace | TradePrint)

# The fixed size of every ITCH 5.0 message type (type byte included), from the
# specification's field tables; the zero-prefix framing depends on it.
SIZES: dict[str, int] = {
    "S": 12, "R": 39, "H": 25, "Y": 20, "L": 26, "V": 35, "W": 12, "K": 28, "J": 35,
    "h": 21, "A": 36, "F": 40, "E": 31, "C": 36, "X": 23, "D": 19, "U": 35, "P": 44,
    "Q": 40, "B": 19, "I": 50, "N": 20, "O": 48,
}
# Sized but not turned into events (counted in ``ItchReader.counts``).
SKIPPED_TYPES = frozenset("YLVWKJhINO")

_SIZE_BY_BYTE = [0] * 256
for _t, _n in SIZES.items():
    _SIZE_BY_BYTE[ord(_t)] = _n

# Every format starts at the type byte: skip it (x), stock locate, tracking number, and the
# 6-byte timestamp as a 2-byte high part and a 4-byte low part.
_HEAD = ">xHHHI"
_S = struct.Struct(_HEAD + "c")
_R = struct.Struct(_HEAD + "8sccIcc2scccccIc")
_H = struct.Struct(_HEAD + "8scx4s")
_A = struct.Struct(_HEAD + "QcI8sI")
_F = struct.Struct(_HEAD + "QcI8sI4s")
_E = struct.Struct(_HEAD + "QIQ")
_C = struct.Struct(_HEAD + "QIQcI")
_X = struct.Struct(_HEAD + "QI")
_D = struct.Struct(_HEAD + "Q")
_U = struct.Struct(_HEAD + "QQII")
_P = struct.Struct(_HEAD + "QcI8sIQ")
_Q = struct.Struct(_HEAD + "Q8sIQc")
_B = struct.Struct(_HEAD + "Q")
for _t, _s in {"S": _S, "R": _R, "H": _H, "A": _A, "F": _F, "E": _E, "C": _C, "X": _X,
               "D": _D, "U": _U, "P": _P, "Q": _Q, "B": _B}.items():
    assert _s.size == SIZES[_t], (_t, _s.size)


class ItchError(ValueError):
    """Corrupt or truncated ITCH input, at ``offset`` (of the message's length prefix)."""

    def __init__(self, offset: int, msg_type: int | None, reason: str) -> None:
        self.offset = offset
        self.msg_type = None if msg_type is None else type_name(msg_type)
        what = "" if msg_type is None else f" (message type {self.msg_type})"
        super().__init__(f"ITCH byte offset {offset}{what}: {reason}")


def type_name(byte: int) -> str:
    char = chr(byte)
    return repr(char) if char.isprintable() and byte < 128 else f"0x{byte:02x}"


def session_midnight_ns(day: date, tz: str = "America/New_York") -> int:
    """UTC epoch ns of midnight of ``day`` in ``tz``: what ITCH timestamps count from."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz))
    return int(midnight.timestamp()) * 1_000_000_000


Source = str | Path | bytes | bytearray | memoryview | IO[bytes] | Iterable[bytes]


def _chunks(source: Source) -> Iterator[bytes]:
    if isinstance(source, str | Path):
        with open(source, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
    elif isinstance(source, bytes | bytearray | memoryview):
        yield bytes(source)
    elif hasattr(source, "read"):
        while chunk := source.read(CHUNK):  # type: ignore[union-attr]
            yield chunk
    else:
        for piece in source:
            yield bytes(piece)


class ItchReader:
    """Parses one stream; ``counts`` holds how many messages of each type it read
    (events and skipped types alike), ``offset`` how many bytes it consumed."""

    def __init__(self, midnight_ns: int, strict_sides: bool = True) -> None:
        self.midnight_ns = midnight_ns
        self.strict_sides = strict_sides
        self._counts = [0] * 256
        self.offset = 0
        self._symbols: dict[bytes, str] = {}

    @property
    def counts(self) -> dict[str, int]:
        return {chr(b): n for b, n in enumerate(self._counts) if n}

    @property
    def skipped(self) -> int:
        """Messages read but not delivered (skipped 5.0 types and framed unknown types)."""
        return sum(n for b, n in enumerate(self._counts)
                   if n and (chr(b) in SKIPPED_TYPES or not _SIZE_BY_BYTE[b]))

    def _symbol(self, raw: bytes, offset: int, msg_type: int) -> str:
        try:
            symbol = raw.decode("ascii").rstrip(" ")
        except UnicodeDecodeError:
            raise ItchError(offset, msg_type, f"stock field {raw!r} is not ASCII") from None
        if not symbol or not symbol.isprintable():
            raise ItchError(offset, msg_type, f"stock field {raw!r} is not a symbol")
        self._symbols[raw] = symbol
        return symbol

    def read(self, source: Source) -> Iterator[ItchEvent]:
        tail = b""
        for chunk in _chunks(source):
            buf = tail + chunk if tail else chunk
            consumed = yield from self._parse(buf)
            tail = buf[consumed:]
        if tail:
            msg_type = tail[2] if len(tail) > 2 else None
            want = (f"{len(tail)} bytes left, the length prefix needs 2" if len(tail) < 2
                    else f"truncated: {len(tail) - 2} of the message's bytes present")
            raise ItchError(self.offset, msg_type, want)

    def _parse(self, buf: bytes) -> Iterator[ItchEvent]:
        """Yield every complete message in ``buf``; return the bytes consumed."""
        sizes, counts, symbols = _SIZE_BY_BYTE, self._counts, self._symbols
        midnight = self.midnight_ns
        base = self.offset
        n = len(buf)
        pos = 0
        a_unpack, e_unpack, x_unpack, d_unpack = (_A.unpack_from, _E.unpack_from,
                                                  _X.unpack_from, _D.unpack_from)
        u_unpack, p_unpack = _U.unpack_from, _P.unpack_from
        while pos + 3 <= n:
            length = (buf[pos] << 8) | buf[pos + 1]
            t = buf[pos + 2]
            size = sizes[t]
            if length == 0:
                if not size:
                    raise ItchError(base + pos, t, "unknown message type behind a zero length "
                                    "prefix: its size is unknown, the stream cannot be "
                                    "re-synchronised")
            elif length < size:
                raise ItchError(base + pos, t, f"length prefix {length} is shorter than the "
                                f"{size} bytes of the message type")
            else:
                size = length  # a longer frame: fields a later version appended
            start = pos + 2
            end = start + size
            if end > n:
                break
            counts[t] += 1
            if t in {65, 70}:  # A, F
                if t == 65:
                    locate, _, hi, lo, ref, side, shares, raw, price = a_unpack(buf, start)
                    mpid = None
                else:
                    locate, _, hi, lo, ref, side, shares, raw, price, rawm = _F.unpack_from(
                        buf, start)
                    mpid = rawm.decode("ascii", "replace").rstrip(" ")
                if side not in {b"B", b"S"}:
                    counts[t] -= 1
                    raise ItchError(base + pos, t, f"side {side!r} is neither B nor S")
                symbol = symbols.get(raw)
                if symbol is None:
                    try:
                        symbol = self._symbol(raw, base + pos, t)
                    except ItchError:
                        counts[t] -= 1
                        raise
                pos = end
                self.offset = base + pos
                yield AddOrder(locate, midnight + (hi << 32 | lo), ref, side, shares, symbol,
                               price, mpid)
            elif t == 68:  # D
                locate, _, hi, lo, ref = d_unpack(buf, start)
                pos = end
                self.offset = base + pos
                yield OrderDelete(locate, midnight + (hi << 32 | lo), ref)
            elif t == 69:  # E
                locate, _, hi, lo, ref, shares, match = e_unpack(buf, start)
                pos = end
                self.offset = base + pos
                yield OrderExecuted(locate, midnight + (hi << 32 | lo), ref, shares, match,
                                    None, True)
            elif t == 88:  # X
                locate, _, hi, lo, ref, shares = x_unpack(buf, start)
                pos = end
                self.offset = base + pos
                yield OrderCancel(locate, midnight + (hi << 32 | lo), ref, shares)
            elif t == 85:  # U
                locate, _, hi, lo, ref, new_ref, shares, price = u_unpack(buf, start)
                pos = end
                self.offset = base + pos
                yield OrderReplace(locate, midnight + (hi << 32 | lo), ref, new_ref, shares,
                                   price)
            elif t == 80:  # P
                locate, _, hi, lo, _ref, side, shares, raw, price, match = p_unpack(buf, start)
                symbol = symbols.get(raw)
                if symbol is None:
                    try:
                        symbol = self._symbol(raw, base + pos, t)
                    except ItchError:
                        counts[t] -= 1
                        raise
                pos = end
                self.offset = base + pos
                yield TradePrint(locate, midnight + (hi << 32 | lo), symbol, side, shares,
                                 price, match)
            else:
                event = self._other(buf, start, t, base + pos)
                pos = end
                self.offset = base + pos
                if event is not None:
                    yield event
        return pos

    def _other(self, buf: bytes, start: int, t: int, offset: int) -> ItchEvent | None:
        """The rarer types; None for the skipped ones."""
        midnight = self.midnight_ns
        try:
            if t == 67:  # C
                locate, _, hi, lo, ref, shares, match, printable, price = _C.unpack_from(
                    buf, start)
                return OrderExecuted(locate, midnight + (hi << 32 | lo), ref, shares, match,
                                     price, printable == b"Y")
            if t == 81:  # Q
                locate, _, hi, lo, shares, raw, price, match, _cross = _Q.unpack_from(
                    buf, start)
                symbol = self._symbols.get(raw) or self._symbol(raw, offset, t)
                return TradePrint(locate, midnight + (hi << 32 | lo), symbol, b" ", shares,
                                  price, match)
            if t == 66:  # B
                locate, _, hi, lo, match = _B.unpack_from(buf, start)
                return BrokenTrade(locate, midnight + (hi << 32 | lo), match)
            if t == 83:  # S
                locate, _, hi, lo, code = _S.unpack_from(buf, start)
                return SystemEvent(locate, midnight + (hi << 32 | lo), code.decode("latin-1"))
            if t == 82:  # R
                (locate, _, hi, lo, raw, category, status, lot, lots_only, _cls, _sub, _auth,
                 _sst, _ipo, tier, _etp, _lev, _inv) = _R.unpack_from(buf, start)
                symbol = self._symbols.get(raw) or self._symbol(raw, offset, t)
                return StockDirectory(locate, midnight + (hi << 32 | lo), symbol,
                                      category.decode("latin-1"), status.decode("latin-1"),
                                      lot, lots_only == b"Y", tier.decode("latin-1"))
            if t == 72:  # H
                locate, _, hi, lo, raw, state, reason = _H.unpack_from(buf, start)
                symbol = self._symbols.get(raw) or self._symbol(raw, offset, t)
                return TradingStatus(locate, midnight + (hi << 32 | lo), symbol,
                                     state.decode("latin-1"),
                                     reason.decode("latin-1").rstrip(" "))
        except ItchError:
            self._counts[t] -= 1
            raise
        return None  # a skipped 5.0 type, or an unknown type its length prefix framed


def read_itch(source: Source, midnight_ns: int,
              reader: ItchReader | None = None) -> Iterator[ItchEvent]:
    """The messages of an ITCH 5.0 stream (a path, bytes, a binary file object or an
    iterable of byte chunks). Pass an ``ItchReader`` to see its counts afterwards."""
    return (reader or ItchReader(midnight_ns)).read(source)


def split_messages(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(offset, type byte, message bytes without the prefix) of each message of a complete
    buffer, either framing: for re-framing and for writing test and benchmark streams."""
    pos, n = 0, len(data)
    while pos < n:
        if pos + 3 > n:
            raise ItchError(pos, None, "truncated length prefix")
        length = (data[pos] << 8) | data[pos + 1]
        t = data[pos + 2]
        size = length or _SIZE_BY_BYTE[t]
        if not size:
            raise ItchError(pos, t, "unknown message type behind a zero length prefix")
        if pos + 2 + size > n:
            raise ItchError(pos, t, "truncated")
        yield pos, t, data[pos + 2:pos + 2 + size]
        pos += 2 + size


def frame(messages: Iterable[bytes], zero_prefix: bool = False) -> bytes:
    """Messages joined with 2-byte big-endian length prefixes (or zeros)."""
    pack = struct.Struct(">H").pack
    return b"".join((b"\0\0" if zero_prefix else pack(len(m))) + m for m in messages)
