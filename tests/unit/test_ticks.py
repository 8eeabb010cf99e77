"""The generic tick reader: quotes and trades in time order, bad rows named precisely."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from domain.market_data import Quote, Trade
from infrastructure.ticks import TickError, parse_timestamp, read_ticks

T = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ticks.csv"
    path.write_text(text)
    return path


def test_quotes_and_trades_come_out_in_time_order(tmp_path: Path) -> None:
    path = write(tmp_path, (
        "timestamp,symbol,venue,bid,ask,bid_size,ask_size,price,size\n"
        f"{T + 5},XYZ,ARCA,10.00,10.05,100,200,,\n"
        "2023-11-14T22:13:20.000000003Z,XYZ,,,,,,10.02,50\n"
        f"{T + 1},XYZ,NASDAQ,,10.04,,300,,\n"))
    assert list(read_ticks(path, venue="DEFAULT")) == [
        Quote("NASDAQ", "XYZ", None, 0, Decimal("10.04"), 300, T + 1),
        Trade("DEFAULT", "XYZ", Decimal("10.02"), 50, T + 3),
        Quote("ARCA", "XYZ", Decimal("10.00"), 100, Decimal("10.05"), 200, T + 5),
    ]


def test_iso_times_keep_nanoseconds_and_need_a_zone() -> None:
    assert parse_timestamp("2023-11-14T17:13:20.123456789-05:00") == T + 123_456_789
    assert parse_timestamp(str(T)) == T
    with pytest.raises(ValueError, match="offset"):
        parse_timestamp("2023-11-14T22:13:20")


@pytest.mark.parametrize(("row", "line", "column", "reason"), [
    ("yesterday,XYZ,10.0,1", 3, "timestamp", "yesterday"),
    (f"{T},,10.0,1", 3, "symbol", "missing"),
    (f"{T},XYZ,ten,1", 3, "price", "not a number"),
    (f"{T},XYZ,-1,1", 3, "price", "positive"),
    (f"{T},XYZ,10.0,1.5", 3, "size", "whole number"),
    (f"{T},XYZ,10.0,1,extra", 3, None, "more fields"),
])
def test_a_bad_row_names_file_line_and_column(tmp_path: Path, row: str, line: int,
                                              column: str | None, reason: str) -> None:
    path = write(tmp_path, f"timestamp,symbol,price,size\n{T},XYZ,10.0,1\n{row}\n")
    with pytest.raises(TickError, match=reason) as err:
        list(read_ticks(path))
    assert (err.value.path, err.value.line, err.value.column) == (str(path), line, column)
    assert str(path) in str(err.value) and f"line {line}" in str(err.value)


def test_a_crossed_quote_row_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, f"timestamp,symbol,bid,ask,bid_size,ask_size\n{T},X,10.1,10,1,1\n")
    with pytest.raises(TickError, match="line 2, column 'ask': crossed"):
        list(read_ticks(path))


def test_parquet_without_pyarrow_says_so(tmp_path: Path) -> None:
    try:
        import pyarrow  # noqa: F401
        pytest.skip("pyarrow is installed: Parquet files are read")
    except ImportError:
        pass
    path = tmp_path / "ticks.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(TickError, match="pyarrow"):
        list(read_ticks(path))
