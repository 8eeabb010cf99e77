"""Market data from a file, whatever its kind, as the ``Quote``/``Trade`` stream that a
backtest replays (issue 9): one entry point for the backtester's CLI.

- a NASDAQ TotalView-ITCH 5.0 file (``--itch-date``: the session's date, since ITCH counts
  time from midnight US Eastern): parsed, order books built, top-of-book changes and prints;
- a CSV in the backtester's own format (``ts_ns,type,venue,symbol,...``, what
  ``marketlog backtest`` writes for synthetic paths);
- any other CSV: the generic tick reader (``timestamp,symbol,bid,ask,...`` or
  ``timestamp,symbol,price,size``, infrastructure/ticks.py).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import date
from pathlib import Path

from domain.market_data import Quote, Trade
from domain.order_book import OrderBooks
from infrastructure.backtest_venue import TICK_COLUMNS, read_ticks_csv
from infrastructure.itch import read_itch, session_midnight_ns
from infrastructure.ticks import read_ticks


def market_data(path: Path, itch_date: date | None = None, venue: str = "NASDAQ"
                ) -> Iterator[Quote | Trade]:
    if itch_date is not None:
        return _from_itch(path, itch_date, venue)
    with path.open(newline="") as f:
        header = next(csv.reader(f), [])
    if tuple(header) == TICK_COLUMNS:
        return read_ticks_csv(path)
    return read_ticks(path, venue=venue)


def _from_itch(path: Path, day: date, venue: str) -> Iterator[Quote | Trade]:
    # Non-strict books: a feed joined mid-session (or a filtered extract, as the public
    # sample) names orders it never saw added; those are counted, not fatal.
    books = OrderBooks(venue, strict=False)
    order_level = OrderBooks.ORDER_LEVEL
    for message in read_itch(path, session_midnight_ns(day)):
        if type(message) in order_level:
            yield from books.apply(message)
