"""The ITCH 5.0 feed handler on the public sample: counts per type, books checked against an
independent dict model, both framings, chunked streams, and corrupt input."""

from __future__ import annotations

import io
import struct
from collections import Counter
from pathlib import Path

import pytest

from domain.order_book import (
    AddOrder,
    OrderBooks,
    OrderCancel,
    OrderDelete,
    OrderExecuted,
    OrderReplace,
    TradePrint,
)
from infrastructure.itch import ItchError, ItchReader, frame, read_itch, split_messages

SAMPLE = Path(__file__).parents[1] / "data" / "itch" / "ex20101224.TEST_ITCH_50"
MIDNIGHT = 1_293_166_800 * 1_000_000_000  # 2010-12-24 00:00 US/Eastern
ORDER_LEVEL = (AddOrder, OrderExecuted, OrderCancel, OrderDelete, OrderReplace, TradePrint)


@pytest.fixture(scope="module")
def data() -> bytes:
    return SAMPLE.read_bytes()


@pytest.fixture(scope="module")
def events(data: bytes) -> list:
    return list(read_itch(data, MIDNIGHT))


def test_the_sample_counts_exactly_as_documented(data: bytes, events: list) -> None:
    reader = ItchReader(MIDNIGHT)
    assert len(list(reader.read(SAMPLE))) == 12_012
    assert reader.counts == {"S": 6, "R": 3, "H": 3, "A": 4_997, "F": 3, "E": 198, "X": 45,
                             "D": 1_745, "U": 12, "P": 5_000}
    assert reader.offset == len(data) == 465_048
    assert {e.symbol for e in events if type(e) is AddOrder} == {"ALC", "BOB", "CHAR"}
    assert all(e.mpid for e in events if type(e) is AddOrder and e.mpid is not None)
    # Every length prefix in the sample is zero: the fixed sizes framed it.
    assert all(data[o:o + 2] == b"\0\0" for o, _, _ in split_messages(data))
    times = [e.ts_ns for e in events]
    assert times == sorted(times) and MIDNIGHT < times[0] < MIDNIGHT + 86_400 * 10**9


def model_replay(events: list, locate: int, upto: int) -> tuple[dict, dict]:
    """An independent book: order ref -> (side, price, shares); levels summed at the end.
    References never seen are ignored (the sample is a filtered extract: 117 of its
    executes/deletes name an order added only later)."""
    orders: dict[int, list] = {}
    for e in events[:upto]:
        if getattr(e, "locate", None) != locate:
            continue
        if type(e) is AddOrder:
            orders[e.ref] = [e.side, e.price, e.shares]
        elif type(e) in (OrderExecuted, OrderCancel) and e.ref in orders:
            orders[e.ref][2] -= e.shares
            if orders[e.ref][2] == 0:
                del orders[e.ref]
        elif type(e) is OrderDelete:
            orders.pop(e.ref, None)
        elif type(e) is OrderReplace and e.ref in orders:
            side = orders.pop(e.ref)[0]
            orders[e.new_ref] = [side, e.price, e.shares]
    levels: dict[bytes, Counter] = {b"B": Counter(), b"S": Counter()}
    for side, price, shares in orders.values():
        levels[side][price] += shares
    return dict(levels[b"B"]), dict(levels[b"S"])


@pytest.mark.parametrize("upto", [500, 3_000, 7_777, 12_012])
def test_books_match_an_independent_model_after_message_k(events: list, upto: int) -> None:
    books = OrderBooks("NASDAQ", strict=False)
    for e in events[:upto]:
        if type(e) in ORDER_LEVEL:
            books.apply(e)
    for locate, book in books.by_locate.items():
        bids, asks = model_replay(events, locate, upto)
        assert {p: lv[0] for p, lv in book.bids.items()} == bids
        assert {p: lv[0] for p, lv in book.asks.items()} == asks
        assert book.best_bid == (max(bids) if bids else None)
        assert book.best_ask == (min(asks) if asks else None)
        top_bids, _ = book.depth(3)
        assert [lv.size for lv in top_bids] == [bids[p] for p in sorted(bids, reverse=True)[:3]]


def test_a_strict_book_names_the_unknown_order(events: list) -> None:
    books = OrderBooks("NASDAQ")
    with pytest.raises(LookupError, match="delete of unknown order reference 1440692"):
        for e in events:
            if type(e) in ORDER_LEVEL:
                books.apply(e)


def test_real_length_prefixes_and_any_chunking_give_identical_results(
        data: bytes, events: list) -> None:
    framed = frame(m for _, _, m in split_messages(data))
    assert len(framed) == len(data) and framed != data
    assert list(read_itch(framed, MIDNIGHT)) == events
    chunks = [framed[i:i + 997] for i in range(0, len(framed), 997)]
    assert list(read_itch(iter(chunks), MIDNIGHT)) == events
    assert list(read_itch(io.BytesIO(data), MIDNIGHT)) == events


def test_a_longer_frame_and_a_framed_unknown_type_are_skipped_and_counted(
        data: bytes, events: list) -> None:
    messages = [m for _, _, m in split_messages(data)]
    extended = [messages[0] + b"\0\0\0", b"Z" + bytes(20), b"Y" + bytes(19), *messages[1:]]
    reader = ItchReader(MIDNIGHT)
    assert list(reader.read(frame(extended))) == events
    assert reader.counts["Z"] == 1 and reader.counts["Y"] == 1 and reader.skipped == 2


def test_a_truncated_final_message_is_not_delivered(data: bytes) -> None:
    offsets = [o for o, _, _ in split_messages(data)]
    last = offsets[-1]
    delivered: list = []
    with pytest.raises(ItchError) as err:
        delivered.extend(read_itch(data[:-5], MIDNIGHT))
    assert err.value.offset == last and err.value.msg_type == repr(chr(data[last + 2]))
    assert f"offset {last}" in str(err.value)
    assert len(delivered) == 12_011


def test_a_garbage_type_byte_behind_a_zero_prefix_stops_at_its_offset(data: bytes) -> None:
    offsets = [o for o, _, _ in split_messages(data)]
    at = offsets[100]
    corrupt = bytearray(data)
    corrupt[at + 2] = 0x9C
    delivered: list = []
    with pytest.raises(ItchError, match=f"offset {at} \\(message type 0x9c\\).*re-synchron"):
        delivered.extend(read_itch(bytes(corrupt), MIDNIGHT))
    assert len(delivered) == 100


def test_a_length_prefix_shorter_than_the_type_is_an_error(data: bytes) -> None:
    messages = [m for _, _, m in split_messages(data)]
    framed = bytearray(frame(messages))
    at = sum(2 + len(m) for m in messages[:50])
    assert framed[at + 2:at + 3] == messages[50][:1]
    struct.pack_into(">H", framed, at, len(messages[50]) - 1)
    with pytest.raises(ItchError, match=f"offset {at} .*shorter than the {len(messages[50])}"):
        list(read_itch(bytes(framed), MIDNIGHT))


def test_a_corrupt_side_or_symbol_is_an_error_naming_the_add(data: bytes) -> None:
    first_add = next(o for o, t, _ in split_messages(data) if t == ord("A"))
    corrupt = bytearray(data)
    corrupt[first_add + 2 + 19] = ord("Q")  # the side byte
    with pytest.raises(ItchError, match=f"offset {first_add} \\(message type 'A'\\): side"):
        list(read_itch(bytes(corrupt), MIDNIGHT))
    corrupt = bytearray(data)
    corrupt[first_add + 2 + 24] = 0xFF  # the stock field
    with pytest.raises(ItchError, match=f"offset {first_add} .*not ASCII"):
        list(read_itch(bytes(corrupt), MIDNIGHT))


def test_a_lone_length_byte_at_the_end_is_truncation(data: bytes) -> None:
    with pytest.raises(ItchError, match=f"offset {len(data)}: 1 bytes left"):
        list(read_itch(data + b"\0", MIDNIGHT))


def test_executions_and_prints_become_trades_with_decimal_prices(events: list) -> None:
    books = OrderBooks("NASDAQ", strict=False)
    trades = [x for e in events if type(e) in ORDER_LEVEL for x in books.apply(e)
              if type(x).__name__ == "Trade"]
    prints = [e for e in events if type(e) is TradePrint]
    assert len(trades) >= len(prints) == 5_000
    first = prints[0]
    assert any(t.price * 10_000 == first.price and t.ts_ns == first.ts_ns for t in trades)
