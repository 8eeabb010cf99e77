"""Generic tick files → ``Quote``/``Trade`` in time order (backtests, other venues' data).

Columns: ``timestamp`` (ISO 8601 with an offset or ``Z``, or integer epoch nanoseconds),
``symbol``, optional ``venue`` (else the ``venue`` argument), and per row either a quote
(``bid``, ``ask``, ``bid_size``, ``ask_size``; an empty bid or ask is an empty side) or a
trade (``price``, ``size``). A file may hold both kinds (a row with a price is a trade).
CSV always; Parquet when pyarrow is installed (it is not a dependency: ``read_ticks`` on a
``.parquet`` file without it raises ``TickError`` saying so).

Rows are returned sorted by time (stable: equal stamps keep file order). A bad row raises
``TickError`` naming the file, the line (1 = the header) and the column; nothing is yielded
from a file with a bad row, because the whole file is read before sorting.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from domain.market_data import Quote, Trade

QUOTE_COLUMNS = ("bid", "ask", "bid_size", "ask_size")
TRADE_COLUMNS = ("price", "size")


class TickError(ValueError):
    def __init__(self, path: Path | str, line: int, column: str | None, reason: str) -> None:
        where = f"{path}, line {line}" + (f", column {column!r}" if column else "")
        super().__init__(f"{where}: {reason}")
        self.path, self.line, self.column = str(path), line, column


def parse_timestamp(text: str) -> int:
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("an ISO 8601 time needs an offset or Z (UTC)")
    whole = int(moment.replace(microsecond=0).timestamp()) * 1_000_000_000
    # datetime keeps microseconds; nanosecond digits are read from the text itself.
    frac = ""
    if "." in text:
        for ch in text.split(".", 1)[1]:
            if not ch.isdigit():
                break
            frac += ch
    return whole + int(frac[:9].ljust(9, "0") or "0")


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise TickError(path, 0, None, "Parquet needs pyarrow (pip install pyarrow)") \
                from None
        table = pq.read_table(path)
        for i, row in enumerate(table.to_pylist(), start=2):
            yield i, {k: ("" if v is None else str(v)) for k, v in row.items()}
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            raise TickError(path, 1, None, "empty file: no header")
        for row in reader:
            yield reader.line_num, row


def _decimal(path: Path, line: int, column: str, text: str | None,
             optional: bool = False) -> Decimal | None:
    if text is None or text.strip() == "":
        if optional:
            return None
        raise TickError(path, line, column, "missing")
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise TickError(path, line, column, f"not a number: {text!r}") from None
    if not value.is_finite() or value <= 0:
        raise TickError(path, line, column, f"not a positive price: {text!r}")
    return value


def _size(path: Path, line: int, column: str, text: str | None) -> int:
    try:
        size = int((text or "").strip())
    except ValueError:
        raise TickError(path, line, column, f"not a whole number: {text!r}") from None
    if size < 0:
        raise TickError(path, line, column, f"negative size: {size}")
    return size


def read_ticks(path: Path | str, venue: str = "FILE") -> Iterator[Quote | Trade]:
    """The file's quotes and trades, in time order."""
    path = Path(path)
    ticks: list[Quote | Trade] = []
    for line, row in _rows(path):
        if None in row:
            raise TickError(path, line, None, "more fields than the header")
        text = row.get("timestamp")
        if not text:
            raise TickError(path, line, "timestamp", "missing")
        try:
            ts = parse_timestamp(text)
        except ValueError as exc:
            raise TickError(path, line, "timestamp", f"{text!r}: {exc}") from None
        symbol = (row.get("symbol") or "").strip()
        if not symbol:
            raise TickError(path, line, "symbol", "missing")
        where = (row.get("venue") or "").strip() or venue
        if (row.get("price") or "").strip():
            price = _decimal(path, line, "price", row["price"])
            assert price is not None
            size = _size(path, line, "size", row.get("size"))
            if size == 0:
                raise TickError(path, line, "size", "a trade of zero shares")
            ticks.append(Trade(where, symbol, price, size, ts))
        elif any(c in row for c in QUOTE_COLUMNS):
            bid = _decimal(path, line, "bid", row.get("bid"), optional=True)
            ask = _decimal(path, line, "ask", row.get("ask"), optional=True)
            bid_size = _size(path, line, "bid_size", row.get("bid_size")) if bid else 0
            ask_size = _size(path, line, "ask_size", row.get("ask_size")) if ask else 0
            if bid is not None and ask is not None and bid > ask:
                raise TickError(path, line, "ask", f"crossed quote: bid {bid} > ask {ask}")
            ticks.append(Quote(where, symbol, bid, bid_size, ask, ask_size, ts))
        else:
            raise TickError(path, line, "price",
                            "neither a trade (price, size) nor a quote (bid, ask, ...)")
    ticks.sort(key=lambda t: t.ts_ns)
    return iter(ticks)
