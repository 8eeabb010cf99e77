"""ITCH 5.0 throughput: parse alone, and parse + order-book update (``python -m bench.itch``),
each on the existing path (``ItchReader`` tuples, ``OrderBooks.apply``) and the fast path
(``ItchBookBuilder``: one loop, no tuple per message, no Quote/Trade built).

The stream is the public sample repeated with its order references rebased per copy (so
every copy's orders are new orders), with real 2-byte length prefixes, held in memory: the
figures are the handler's, not the disk's. "Parse alone, fast" is the fast path's framing and
field unpacking with the book updates left out (``fast_parse``), so the two fast rows show
what the books cost. Books run non-strict because the sample itself
names 117 orders before adding them (a filtered extract).
"""

from __future__ import annotations

import argparse
import os
import platform
import struct
import time
from pathlib import Path

from bench.conditions import cores, cpu_model
from domain.order_book import OrderBooks
from infrastructure.itch import _SIZE_BY_BYTE, ItchReader, frame, split_messages
from infrastructure.itch_books import _A, _D, _E, _P, _U, _X, ItchBookBuilder

SAMPLE = Path(__file__).parents[1] / "tests" / "data" / "itch" / "ex20101224.TEST_ITCH_50"
# Where each type holds order references (offsets in the message, type byte at 0).
REF_FIELDS = {ord("A"): (11,), ord("F"): (11,), ord("E"): (11,), ord("C"): (11,),
              ord("X"): (11,), ord("D"): (11,), ord("U"): (11, 19)}
_Q = struct.Struct(">Q")


def build_stream(messages_wanted: int) -> tuple[bytes, int]:
    sample = [(t, m) for _, t, m in split_messages(SAMPLE.read_bytes())]
    copies = -(-messages_wanted // len(sample))
    out: list[bytes] = []
    rebase = 10 ** 10  # above every reference in the sample
    for k in range(copies):
        for t, m in sample:
            fields = REF_FIELDS.get(t)
            if fields and k:
                b = bytearray(m)
                for at in fields:
                    _Q.pack_into(b, at, _Q.unpack_from(b, at)[0] + k * rebase)
                out.append(bytes(b))
            else:
                out.append(m)
    return frame(out), len(out)


def fast_parse(stream: bytes) -> int:
    """The fast path's loop without the books: frame, dispatch, unpack the hot fields."""
    sizes = _SIZE_BY_BYTE
    unpack = {ord(t): s.unpack_from for t, s in
              {"A": _A, "D": _D, "E": _E, "X": _X, "U": _U, "P": _P}.items()}
    a_unpack, d_unpack, p_unpack = unpack[65], unpack[68], unpack[80]
    pos, n, fields = 0, len(stream), 0
    while pos + 3 <= n:
        t = stream[pos + 2]
        size = sizes[t]
        length = (stream[pos] << 8) | stream[pos + 1]
        if length != size and length:
            size = length
        end = pos + 2 + size
        if end > n:
            break
        if t == 65:
            fields += len(a_unpack(stream, pos))
        elif t == 68:
            fields += len(d_unpack(stream, pos))
        elif t == 80:
            fields += len(p_unpack(stream, pos))
        elif t in unpack:
            fields += len(unpack[t](stream, pos))
        pos = end
    return fields


def run(stream: bytes, with_books: bool, fast: bool) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds): the cores are shared, so both."""
    start, cpu = time.perf_counter(), time.process_time()
    if fast and with_books:
        ItchBookBuilder(OrderBooks("NASDAQ", strict=False), 0).run(stream)
    elif fast:
        fast_parse(stream)
    elif with_books:
        books = OrderBooks("NASDAQ", strict=False)
        apply = books.apply
        order_level = OrderBooks.ORDER_LEVEL
        for event in ItchReader(0).read(stream):
            if type(event) in order_level:
                apply(event)
    else:
        for _ in ItchReader(0).read(stream):
            pass
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    stream, n = build_stream(args.messages)
    print(f"ITCH 5.0: {n:,} messages, {len(stream) / 1e6:.1f} MB in memory, length-prefixed;"
          f" CPU {cpu_model()}, {cores()}; {platform.python_implementation()}"
          f" {platform.python_version()}; best of {args.repeat}; load average"
          f" {os.getloadavg()[0]:.1f} at start")
    print(f"{'step':<26}{'wall s':>8}{'messages/s':>12}{'CPU s':>8}{'messages/CPU s':>16}")
    for label, books, fast in (("parse alone, existing", False, False),
                               ("parse alone, fast", False, True),
                               ("parse + book, existing", True, False),
                               ("parse + book, fast", True, True)):
        runs = [run(stream, books, fast) for _ in range(args.repeat)]
        wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
        print(f"{label:<26}{wall:>8.2f}{n / wall:>12,.0f}{cpu:>8.2f}{n / cpu:>16,.0f}")

if __name__ == "__main__":
    main()
