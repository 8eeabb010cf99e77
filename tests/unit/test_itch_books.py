"""The fast path (``ItchBookBuilder``) against the existing one (``read_itch`` +
``OrderBooks.apply``): the same books (best bid/ask, every level's size and order count,
resting orders, unknown-order counts, last stamps), the same Quote/Trade stream, the same
counts and the same errors, on the public sample, on the rebased benchmark stream, on
chunked and zero-prefixed input, and on random message sequences (hypothesis)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.itch import build_stream
from domain.order_book import BookInvariantBroken, OrderBooks, UnknownOrder
from infrastructure.itch import ItchError, ItchReader, frame, split_messages
from infrastructure.itch_books import ItchBookBuilder

SAMPLE = Path(__file__).parents[1] / "data" / "itch" / "ex20101224.TEST_ITCH_50"
MIDNIGHT = 1_293_166_800 * 1_000_000_000


@pytest.fixture(scope="module")
def data() -> bytes:
    return SAMPLE.read_bytes()


def snapshot(books: OrderBooks) -> dict:
    return {locate: (b.symbol, b.best_bid, b.best_ask, dict(sorted(
        (p, tuple(lv)) for p, lv in b.bids.items())), dict(sorted(
        (p, tuple(lv)) for p, lv in b.asks.items())), dict(sorted(
        (r, tuple(o)) for r, o in b.orders.items())), b.unknown_orders, b.ts_ns, b.top(),
        b.depth(5)) for locate, b in sorted(books.by_locate.items())}


def old_path(source: object, strict: bool = False) -> tuple[OrderBooks, list, ItchReader,
                                                             BaseException | None]:
    books, events, reader = OrderBooks("NASDAQ", strict=strict), [], ItchReader(MIDNIGHT)
    error = None
    try:
        for msg in reader.read(source):  # type: ignore[arg-type]
            if type(msg) in OrderBooks.ORDER_LEVEL:
                events.extend(books.apply(msg))
    except (ItchError, UnknownOrder, BookInvariantBroken) as exc:
        error = exc
    return books, events, reader, error


def fast_path(source: object, strict: bool = False, emit: bool = True) -> tuple[
        OrderBooks, list, ItchBookBuilder, BaseException | None]:
    books, events = OrderBooks("NASDAQ", strict=strict), []
    builder = ItchBookBuilder(books, MIDNIGHT, on_event=events.append if emit else None)
    error = None
    try:
        builder.run(source)  # type: ignore[arg-type]
    except (ItchError, UnknownOrder, BookInvariantBroken) as exc:
        error = exc
    return books, events, builder, error


def assert_same(source: object, strict: bool = False) -> tuple[BaseException | None,
                                                               BaseException | None]:
    old_books, old_events, reader, old_error = old_path(source, strict)
    new_books, new_events, builder, new_error = fast_path(source, strict)
    assert snapshot(new_books) == snapshot(old_books)
    assert new_events == old_events
    assert builder.reader.counts == reader.counts
    assert type(new_error) is type(old_error)
    assert str(new_error) == str(old_error)
    quiet_books, quiet_events, _, _ = fast_path(source, strict, emit=False)
    assert snapshot(quiet_books) == snapshot(old_books) and quiet_events == []
    return old_error, new_error


def test_the_whole_sample_gives_the_same_books_events_and_counts(data: bytes) -> None:
    assert_same(data)
    books, _, builder, _ = fast_path(data)
    stats = builder.run(b"")
    assert stats.messages == 12_012 and stats.bytes == len(data) == 465_048
    assert {b.symbol for b in books.by_locate.values()} == {"ALC", "BOB", "CHAR"}


@pytest.mark.parametrize("upto", [1, 14, 500, 3_000, 7_777, 12_011])
def test_the_same_books_after_message_k(data: bytes, upto: int) -> None:
    messages = [m for _, _, m in split_messages(data)][:upto]
    assert_same(frame(messages))
    assert_same(frame(messages, zero_prefix=True))


def test_the_rebased_benchmark_stream_gives_the_same_books() -> None:
    stream, n = build_stream(30_000)
    assert n == 36_036
    assert_same(stream)


def test_chunked_sources_and_longer_frames_give_the_same_books(data: bytes) -> None:
    messages = [m for _, _, m in split_messages(data)]
    extended = [messages[0] + b"\0\0\0", b"Z" + bytes(20), b"Y" + bytes(19), *messages[1:]]
    extended[500] = extended[500] + b"\1\2"  # a longer frame of a hot type
    framed = frame(extended)
    assert_same(framed)
    for size in (1, 7, 997, 65_536):
        chunks = [framed[i:i + size] for i in range(0, len(framed), size)]
        assert snapshot(fast_path(iter(chunks))[0]) == snapshot(old_path(framed)[0])
    assert_same(SAMPLE)


def test_a_strict_book_stops_at_the_same_unknown_order_with_its_offset(data: bytes) -> None:
    _, new_error = assert_same(data, strict=True)
    assert isinstance(new_error, UnknownOrder) and "1440692" in str(new_error)
    at = next(o for o, t, m in split_messages(data)
              if t == ord("D") and struct.unpack_from(">Q", m, 11)[0] == 1440692)
    assert f"ITCH byte offset {at} (message type 'D')" in new_error.__notes__


def test_corrupt_and_truncated_input_fail_alike_with_nothing_half_applied(data: bytes) -> None:
    offsets = [(o, t) for o, t, _ in split_messages(data)]
    first_add = next(o for o, t in offsets if t == ord("A"))
    cases = [data[:-5], data + b"\0"]
    garbage = bytearray(data)
    garbage[offsets[100][0] + 2] = 0x9C
    side = bytearray(data)
    side[first_add + 2 + 19] = ord("Q")
    symbol = bytearray(data)
    symbol[first_add + 2 + 24] = 0xFF
    cases += [bytes(garbage), bytes(side), bytes(symbol)]
    messages = [m for _, _, m in split_messages(data)]
    short = bytearray(frame(messages))
    struct.pack_into(">H", short, sum(2 + len(m) for m in messages[:50]),
                     len(messages[50]) - 1)
    cases.append(bytes(short))
    for case in cases:
        old_error, new_error = assert_same(case)
        assert isinstance(new_error, ItchError)
        assert new_error.offset == old_error.offset  # type: ignore[union-attr]
        assert new_error.msg_type == old_error.msg_type  # type: ignore[union-attr]


def test_book_refusals_are_the_same_and_leave_the_book_unchanged(data: bytes) -> None:
    messages = [m for _, _, m in split_messages(data)]
    first_add = next(m for m in messages if m[:1] == b"A")
    zero = bytearray(first_add)
    struct.pack_into(">QI", zero, 11, 99, 0)  # a new reference, zero shares
    over = bytearray(first_add)
    over[0] = ord("X")
    over = over[:23]
    struct.pack_into(">I", over, 19, 10**9)  # cancel more than rests
    for bad in (first_add, bytes(zero), bytes(over)):
        _, new_error = assert_same(frame([*messages[:400], first_add, bad]))
        assert isinstance(new_error, BookInvariantBroken)


# ---------------------------------------------------------------- random message sequences

_ADD = struct.Struct(">cHHHIQcI8sI")
_REDUCE = struct.Struct(">cHHHIQI")
_DELETE = struct.Struct(">cHHHIQ")
_REPLACE = struct.Struct(">cHHHIQQII")
_PRINT = struct.Struct(">cHHHIQcI8sIQ")
SYMBOLS = {1: b"AAA     ", 2: b"BBB     "}


@st.composite
def itch_messages(draw: st.DrawFn) -> list[bytes]:
    out = []
    for ts in range(draw(st.integers(1, 60))):
        kind = draw(st.sampled_from("AAAAEXDDUP"))
        locate = draw(st.sampled_from([1, 2]))
        ref = draw(st.integers(1, 12))
        price = draw(st.integers(99, 103)) * 100
        shares = draw(st.integers(1, 300))
        if kind == "A":
            out.append(_ADD.pack(b"A", locate, 0, 0, ts, ref, draw(st.sampled_from(b"BS"))
                                 .to_bytes(1, "big"), shares, SYMBOLS[locate], price))
        elif kind in "EX":
            m = _REDUCE.pack(kind.encode(), locate, 0, 0, ts, ref, shares)
            out.append(m + bytes(8) if kind == "E" else m)
        elif kind == "D":
            out.append(_DELETE.pack(b"D", locate, 0, 0, ts, ref))
        elif kind == "U":
            out.append(_REPLACE.pack(b"U", locate, 0, 0, ts, ref, draw(st.integers(1, 12)),
                                     shares, price))
        else:
            out.append(_PRINT.pack(b"P", locate, 0, 0, ts, ref, b"B", shares,
                                   SYMBOLS[locate], price, ts))
    return out


@settings(max_examples=300, deadline=None)
@given(itch_messages(), st.booleans())
def test_random_sequences_give_the_same_books_events_and_errors(
        messages: list[bytes], strict: bool) -> None:
    assert_same(frame(messages), strict=strict)
