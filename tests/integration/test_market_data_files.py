"""One entry point reads every kind of market-data file a backtest replays: ITCH 5.0 (books
built from it), the backtester's own tick CSV, and the generic tick CSV."""

from __future__ import annotations

from collections import Counter
from datetime import date
from decimal import Decimal
from pathlib import Path

from domain.market_data import Quote, Trade
from domain.order_book import AddOrder, OrderExecuted, OrderReplace
from infrastructure.backtest_venue import write_ticks_csv
from infrastructure.itch import read_itch, session_midnight_ns
from infrastructure.market_data_files import market_data

SAMPLE = Path(__file__).parents[1] / "data" / "itch" / "ex20101224.TEST_ITCH_50"


def test_an_itch_file_becomes_top_of_book_quotes_and_prints() -> None:
    ticks = list(market_data(SAMPLE, date(2010, 12, 24)))
    kinds = Counter((type(t).__name__, t.symbol) for t in ticks)
    # Every non-cross trade (P) is a print, and every execution (E) of an order the feed
    # added: the sample is a filtered extract in which some executions name orders it never
    # added (their price is unknown, so they cannot print). Counted here independently.
    live: set[int] = set()
    executions = 0
    for message in read_itch(SAMPLE, session_midnight_ns(date(2010, 12, 24))):
        if isinstance(message, AddOrder):
            live.add(message.ref)
        elif isinstance(message, OrderReplace) and message.ref in live:
            live.add(message.new_ref)
        elif isinstance(message, OrderExecuted) and message.ref in live:
            executions += 1
    assert 150 < executions <= 198
    assert sum(n for (kind, _), n in kinds.items() if kind == "Trade") == 5_000 + executions
    assert {s for kind, s in kinds if kind == "Quote"} == {"ALC", "BOB", "CHAR"}
    stamps = [t.ts_ns for t in ticks]
    assert stamps == sorted(stamps)  # the feed's order is time order
    # ITCH counts from midnight US Eastern: 2010-12-24 05:00 UTC.
    assert min(stamps) >= 1_293_166_800_000_000_000


def test_both_csv_formats(tmp_path: Path) -> None:
    ours = tmp_path / "ours.csv"
    written = [Quote("SIM", "AAPL", Decimal("190.00"), 100, Decimal("190.02"), 200, 1_000),
               Trade("SIM", "AAPL", Decimal("190.01"), 50, 2_000)]
    write_ticks_csv(ours, written)
    assert list(market_data(ours)) == written
    generic = tmp_path / "generic.csv"
    generic.write_text("timestamp,symbol,bid,ask,bid_size,ask_size\n"
                       "2026-01-05T14:30:00Z,AAPL,190.00,190.02,100,200\n")
    [quote] = list(market_data(generic, venue="ARCA"))
    assert quote == Quote("ARCA", "AAPL", Decimal("190.00"), 100, Decimal("190.02"), 200,
                          1_767_623_400_000_000_000)
