"""ITCH 5.0 throughput: parse alone, and parse + order-book update (``python -m bench.itch``).

The stream is the public sample repeated with its order references rebased per copy (so
every copy's orders are new orders), with real 2-byte length prefixes, held in memory: the
figures are the handler's, not the disk's. Books run non-strict because the sample itself
names 117 orders before adding them (a filtered extract).
"""

from __future__ import annotations

import argparse
import struct
import time
from pathlib import Path

from bench.conditions import cores, cpu_model
from domain.order_book import OrderBooks
from infrastructure.itch import ItchReader, frame, split_messages

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


def run(stream: bytes, with_books: bool) -> float:
    reader = ItchReader(0)
    start = time.perf_counter()
    if with_books:
        books = OrderBooks("NASDAQ", strict=False)
        apply = books.apply
        order_level = OrderBooks.ORDER_LEVEL
        for event in reader.read(stream):
            if type(event) in order_level:
                apply(event)
    else:
        for _ in reader.read(stream):
            pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    stream, n = build_stream(args.messages)
    print(f"ITCH 5.0: {n:,} messages, {len(stream) / 1e6:.1f} MB in memory, length-prefixed;"
          f" CPU {cpu_model()}, {cores()}; best of {args.repeat}")
    print(f"{'step':<28}{'seconds':>10}{'messages/s':>14}")
    for label, books in (("parse alone", False), ("parse + book update", True)):
        best = min(run(stream, books) for _ in range(args.repeat))
        print(f"{label:<28}{best:>10.2f}{n / best:>14,.0f}")


if __name__ == "__main__":
    main()
