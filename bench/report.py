"""The daily 15c3-5 report's generation time for a day of 1,000,000 orders (target <= 5 s).

The control statistics tables are filled directly (bulk inserts) with what the projection
leaves for such a day: ``ACCOUNTS`` accounts each sampled in every five-minute bucket of a
24-hour day (the worst case for the intraday series), rejections by every control for every
account, coverage of the 22 new-order controls, 2,000 governance events, and the audit
trail's rows around the chain head (the head is one primary-key lookup, so the trail's
length does not matter). Then the report (JSON dict with its SHA-256), its HTML and its PDF
are timed from those read models, on SQLite and (unless --skip-postgres) PostgreSQL.

Run: ``python -m bench.report [--accounts N] [--skip-postgres]``
"""

from __future__ import annotations

import argparse
import platform
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from api.report_html import render_html
from api.report_pdf import render_pdf
from bench.conditions import cores, cpu_model
from domain.controls import NEW_ORDER_CONTROLS
from infrastructure.bootstrap import read_models_engine
from projections.controls_stats import BUCKET_NS
from projections.report_15c3_5 import daily_report
from projections.schema import migrate
from projections.tables import (
    audit_trail,
    control_coverage,
    control_day_accounts,
    control_days,
    control_exposure_buckets,
    control_governance,
    control_rejections,
    decimal_binder,
    insert_rows,
)

ORDERS = 1_000_000
DATE = "2026-11-27"
OPEN_NS = 1_795_737_600 * 1_000_000_000  # 2026-11-27T00:00:00Z
BUCKETS = 24 * 3600 * 1_000_000_000 // BUCKET_NS
REJECTED = 30_000  # ~3% of the orders, as the durable benchmark's mix


def fill(conn: sa.Connection, accounts: int) -> None:
    """What the projection leaves for a day of ORDERS orders over ``accounts`` accounts."""
    bind = decimal_binder(conn)
    accepted = ORDERS - REJECTED
    limit = Decimal(20_000_000)
    columns = [c.name for c in control_exposure_buckets.columns]
    position = 2
    peaks: dict[str, tuple[Decimal, int, int]] = {}  # scope -> (exposure, at_ns, position)
    for scope in ["firm", *(f"account:ACC-{a:05d}" for a in range(accounts))]:
        rows = []
        for b in range(BUCKETS):
            at = OPEN_NS + b * BUCKET_NS + 1_000
            exposure = Decimal(1_000_000 + (b * 7919 + position) % 9_000_000)
            rows.append((DATE, scope, OPEN_NS + b * BUCKET_NS, bind(exposure),
                         None if scope == "firm" else bind(limit), at, position))
            if scope not in peaks or exposure > peaks[scope][0]:
                peaks[scope] = (exposure, at, position)
            position += 3
        insert_rows(conn, control_exposure_buckets, columns, rows)
    firm = peaks["firm"]
    insert_rows(conn, control_days, [c.name for c in control_days.columns], [(
        DATE, OPEN_NS, 1, None, None, "gross", accepted, REJECTED, 600_000, 60_000_000, 0,
        300_000, 4_000_000, bind(firm[0]), firm[1], firm[2])])
    insert_rows(conn, control_day_accounts, [c.name for c in control_day_accounts.columns], [
        (DATE, f"ACC-{a:05d}", accepted // accounts, REJECTED // accounts, 0, bind(limit),
         bind(Decimal(1_234_567 + a)), bind(Decimal(765_432)), bind(Decimal(500_000)),
         bind(Decimal(400_000)), 600, bind(peaks[f"account:ACC-{a:05d}"][0]), bind(limit),
         peaks[f"account:ACC-{a:05d}"][1], peaks[f"account:ACC-{a:05d}"][2])
        for a in range(accounts)])
    controls = NEW_ORDER_CONTROLS
    insert_rows(conn, control_rejections, [c.name for c in control_rejections.columns], [
        (DATE, c, f"ACC-{a:05d}", 1 + (a + i) % 5) for i, c in enumerate(controls)
        for a in range(accounts)])
    insert_rows(conn, control_coverage, [c.name for c in control_coverage.columns], [
        (DATE, c, ORDERS - i * 1000, ORDERS - i * 1000, 1000) for i, c in enumerate(controls)])
    governance = []
    for n in range(2_000):
        kind = ("KillSwitchTripped", "KillSwitchReset", "EntitlementGranted",
                "LimitChangeRequested")[n % 4]
        body: dict[str, Any] = {"scope": f"account:ACC-{n % accounts:05d}", "reason": "bench",
                                "trigger": "manual", "threshold": "-", "observed": "-",
                                "canceled_orders": [], "username": "bench",
                                "account_id": f"ACC-{n % accounts:05d}",
                                "change_id": f"00000000-0000-0000-0000-{n:012d}",
                                "field": "credit_limit", "old_value": "1", "new_value": "2",
                                "expires_ns": None, "hash": "0" * 64}
        governance.append((10 + n * 800, kind, OPEN_NS + n * 40_000_000_000, "rose",
                           orjson.dumps(body).decode()))
    insert_rows(conn, control_governance, [c.name for c in control_governance.columns],
                governance)
    head = int(ORDERS * 1.66)  # events per order in the benchmark mix
    insert_rows(conn, audit_trail, [c.name for c in audit_trail.columns], [
        (p, "OrderFilled", "00000000-0000-0000-0000-000000000001", 1, OPEN_NS + p, "bench",
         "api", "ACC-00000", None, orjson.dumps({"hash": f"{p:064d}"}).decode())
        for p in range(head - 1000, head + 1)])


def timed(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="marketlog-bench-report-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'read.sqlite'}"


@contextmanager
def postgres_database() -> Iterator[str]:
    from bench.pg import admin_url, throwaway_database

    with throwaway_database(admin_url()) as url:
        # SQLAlchemy's bare postgresql:// means psycopg2; marketlog uses psycopg 3.
        yield url.replace("postgresql://", "postgresql+psycopg://", 1)


def measure(name: str, url: str, accounts: int) -> list[str]:
    migrate(url)
    engine = read_models_engine(url)
    try:
        start = time.perf_counter()
        with engine.begin() as conn:
            fill(conn, accounts)
        filled = time.perf_counter() - start
        with engine.connect() as conn:
            seconds, report = timed(lambda: daily_report(conn, DATE, Decimal(40_000_000)))
        html_s, html = timed(lambda: render_html(report))
        pdf_s, pdf = timed(lambda: render_pdf(report), repeat=1)
        size = len(orjson.dumps(report))
        return [f"| {name} | {seconds:.2f} s | {html_s:.2f} s ({len(html) // 1024:,} KiB) | "
                f"{pdf_s:.2f} s ({len(pdf) // 1024:,} KiB) | {size // 1024:,} KiB | "
                f"{filled:.1f} s | {'yes' if seconds <= 5 else 'NO'} |"]
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    rows = (args.accounts + 1) * BUCKETS
    print(f"# 15c3-5 report from the read models: a day of {ORDERS:,} orders "
          f"({REJECTED:,} rejected), {args.accounts:,} accounts, {rows:,} exposure buckets, "
          f"{len(NEW_ORDER_CONTROLS) * args.accounts:,} rejection rows, 2,000 governance "
          "events")
    print(f"# {cpu_model()}, {cores()}; CPython {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}; best of 3 (PDF: one run)")
    print("| database | report (dict + SHA-256) | HTML | PDF | JSON size | fill tables | "
          "≤ 5 s |")
    print("|---|---|---|---|---|---|---|")
    with sqlite_database() as url:
        print("\n".join(measure("SQLite", url, args.accounts)), flush=True)
    if not args.skip_postgres:
        with postgres_database() as url:
            print("\n".join(measure("PostgreSQL", url, args.accounts)), flush=True)


if __name__ == "__main__":
    main()
