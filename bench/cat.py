"""FINRA CAT order event generation for a large day (projections/cat.py): records per second.

A SQLite read-model database is filled with ``N`` orders' audit-trail rows in the stored
body shape (one ``TradingDayOpened``; per order an ``OrderAccepted``; ~30% get a fill,
~10% a replace; ~60% a cancel at the close), then the day's files are generated twice:
read from the audit trail, mapped, every record validated against its JSON Schema, bzip2.
The rows are written directly (not through the engine) so the run measures the generation
alone; the two generations must give identical bytes.

Run: ``python -m bench.cat [N]`` (default 200,000 orders); prints a table.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from bench.conditions import cores, cpu_model
from projections.cat import Firm, build_files, map_rows, read_day
from projections.tables import audit_trail, insert_rows, metadata

DAY = date(2026, 11, 26)
OPEN_NS = int(datetime(2026, 11, 26, 14, 30, tzinfo=UTC).timestamp()) * 1_000_000_000
FIRM = Firm("MKTL", "A", {"ACC-GAMMA": "P"}, {"ACC-DELTA": "BRKD"})
ACCOUNTS = ("ACC-ALPHA", "ACC-BETA", "ACC-GAMMA", "ACC-DELTA")
SYMBOLS = ("AAPL", "MSFT", "SPY", "TSLA")
COLUMNS = tuple(c.name for c in audit_trail.columns)


def _rows(orders: int, seed: int = 7) -> list[tuple[Any, ...]]:
    rnd = random.Random(seed)
    rows: list[tuple[Any, ...]] = []
    position = 1
    ts = OPEN_NS

    def add(kind: str, aggregate: str, account: str | None, body: dict[str, Any]) -> None:
        nonlocal position, ts
        ts += rnd.randint(1_000, 2_000_000)
        rows.append((position, kind, aggregate, 1, ts, "bench", "api", account,
                     aggregate if account else None, orjson.dumps(body).decode()))
        position += 1

    add("TradingDayOpened", "00000000-0000-4000-8000-000000000001", None,
        {"trading_date": DAY.isoformat()})
    for n in range(orders):
        order_id = f"00000000-0000-4000-8000-{n + 2:012d}"
        account, symbol = rnd.choice(ACCOUNTS), rnd.choice(SYMBOLS)
        side = rnd.choice(("buy", "sell", "sell_short"))
        quantity = rnd.randint(1, 50) * 10
        price = f"{rnd.randint(18_000, 20_000) / 100:.2f}"
        add("OrderAccepted", order_id, account, {
            "order_id": order_id, "account_id": account, "symbol": symbol, "side": side,
            "quantity": quantity, "order_type": "limit", "limit_price": price,
            "time_in_force": rnd.choice(("day", "day", "ioc", "gtc")),
            "client_order_id": f"b-{n}", "trading_date": DAY.isoformat()})
        filled = 0
        if rnd.random() < 0.3:
            filled = quantity // 2
            add("OrderFilled", order_id, account, {
                "symbol": symbol, "side": side, "trade_id": f"T{n}", "fill_quantity": filled,
                "fill_price": price, "cumulative_quantity": filled,
                "leaves_quantity": quantity - filled})
        if rnd.random() < 0.1:
            quantity += 10
            add("OrderReplaced", order_id, account, {
                "symbol": symbol, "quantity": quantity, "limit_price": price})
        if rnd.random() < 0.6:
            add("OrderCanceled", order_id, account, {
                "symbol": symbol, "canceled_quantity": quantity - filled,
                "reason": rnd.choice(("requested", "end_of_day"))})
    return rows


def run(orders: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="marketlog-bench-cat-") as tmp:
        engine = sa.create_engine(f"sqlite:///{Path(tmp) / 'read_models.sqlite'}")
        metadata.create_all(engine)
        with engine.begin() as conn:
            insert_rows(conn, audit_trail, COLUMNS, _rows(orders))
        results = []
        for _ in range(2):
            with engine.connect() as conn:
                started = time.perf_counter()
                rows, in_day = read_day(conn, DAY)
                read_s = time.perf_counter() - started
                files = build_files(map_rows(rows, in_day, FIRM, DAY), FIRM, DAY)
                total_s = time.perf_counter() - started
            results.append((files, read_s, total_s))
        engine.dispose()
    (first, read_s, total_s), (second, _, total2_s) = results
    assert (first.data, first.meta) == (second.data, second.meta), "not deterministic"
    return {"orders": orders, "records": first.records, "counts": first.counts,
            "read_s": read_s, "total_s": min(total_s, total2_s),
            "compressed_bytes": len(first.data)}


def main() -> None:
    orders = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    r = run(orders)
    print(f"CAT order events, one day of {r['orders']:,} orders from a SQLite audit trail "
          f"({cpu_model()}, {cores()}, Python {sys.version.split()[0]})")
    print("| records | read (s) | read + map + validate + bzip2 (s) | records/s | .json.bz2 |")
    print("|---|---|---|---|---|")
    print(f"| {r['records']:,} | {r['read_s']:.2f} | {r['total_s']:.2f} | "
          f"{r['records'] / r['total_s']:,.0f} | {r['compressed_bytes'] / 1e6:.1f} MB |")
    print("per type: " + ", ".join(f"{k} {v:,}" for k, v in r["counts"].items()))


if __name__ == "__main__":
    main()
