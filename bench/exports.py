"""Record exports (issue 8): records/s of the JSON-lines and CSV renderings and of a whole
``marketlog export`` (both files and the manifest), with the peak resident memory growth
while exporting.

The audit trail is written directly into a throwaway SQLite read-model database (migrated by
projections/schema.py): each row is a real stored record (the deterministic sample events of
tests/builders.py, encoded and hash-chained by infrastructure/codec.py at its position), so
payload sizes are what the log holds. The export then runs exactly as the CLI's does
(projections/exports.py: keyset pages of ``PAGE`` rows). Memory is sampled every 5 ms in a
thread; "flat" means the growth does not follow the row count (two sizes are run).

Run: ``python -m bench.exports [--rows N]`` (default 200,000; a second run at a quarter).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa

from bench.conditions import cores, cpu_model
from domain.events import ORDER_EVENTS
from infrastructure import codec
from projections import exports
from projections.queries import NS_PER_S
from projections.schema import migrate
from projections.tables import audit_trail
from tests import builders as b

_ORDER_EVENTS = frozenset(cls.__name__ for cls in ORDER_EVENTS)


def fill(path: Path, n: int, chunk: int = 20_000) -> None:
    """``n`` audit rows at positions 1..n, one transaction per chunk (never all in memory)."""
    samples = [*b.sample_events(), *b.governance_samples()]
    conn = sqlite3.connect(path)
    columns = [c.name for c in audit_trail.columns]
    sql = (f"INSERT INTO audit_trail ({', '.join(columns)}) "
           f"VALUES ({', '.join('?' for _ in columns)})")
    prev = codec.GENESIS_HASH
    start_ns = 1_764_000_000 * NS_PER_S
    try:
        for first in range(1, n + 1, chunk):
            rows = []
            for position in range(first, min(first + chunk, n + 1)):
                event = samples[position % len(samples)]
                event = event._replace(ts_ns=start_ns + position * 10_000)  # 100k events/s
                _topic, state, prev = codec.encode_record(event, position, prev)
                # The row projections/audit.py writes (exports.audit_row), made from the
                # event itself: decoding each record back would triple the set-up time.
                key = str(event[0])
                kind = type(event).__name__
                rows.append((position, kind, key, event[1], event.ts_ns, event.actor,
                             event.source, getattr(event, "account_id", None),
                             key if kind in _ORDER_EVENTS else None, state.decode()))
            conn.executemany(sql, rows)
            conn.commit()
    finally:
        conn.close()


class PeakRss:
    """The highest RSS seen while running (sampled), against the RSS at the start."""

    def __init__(self, every_s: float = 0.005) -> None:
        self.proc = psutil.Process()
        self.every_s = every_s
        self.stop = threading.Event()
        self.start = self.peak = 0

    def __enter__(self) -> PeakRss:
        gc.collect()
        self.start = self.peak = self.proc.memory_info().rss
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.wait(self.every_s):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *_: Any) -> None:
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.start) / 2**20


def _drain(chunks: Iterator[bytes], path: Path) -> int:
    size = 0
    with open(path, "wb") as f:
        for chunk in chunks:
            f.write(chunk)
            size += len(chunk)
    return size


def run(n: int, tmp: Path) -> list[dict[str, Any]]:
    db = tmp / f"read-models-{n}.sqlite"
    url = f"sqlite:///{db}"
    migrate(url)
    t0 = time.perf_counter()
    fill(db, n)
    fill_s = time.perf_counter() - t0
    engine = sa.create_engine(url)
    sel = exports.Selection(through=n)
    head = exports.ChainHead(n, "0" * 64)
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("JSONL", lambda: _drain(exports.jsonl_chunks(exports.rows(engine, sel)),
                                 tmp / "audit.jsonl")),
        ("CSV", lambda: _drain(exports.csv_chunks(exports.rows(engine, sel)),
                               tmp / "audit.csv")),
        ("export (JSONL + CSV + manifest)",
         lambda: exports.write_export(engine, sel, head, "bench", tmp / f"out-{n}")),
    ]
    results = []
    try:
        for name, case in cases:
            case()  # warm: the file in the page cache, the statement compiled
            with PeakRss() as rss:
                t, cpu = time.perf_counter(), time.process_time()
                case()
                seconds, cpu_s = time.perf_counter() - t, time.process_time() - cpu
            results.append({"rows": n, "case": name, "seconds": seconds, "cpu_s": cpu_s,
                            "records_per_s": n / seconds, "records_per_cpu_s": n / cpu_s,
                            "rss_growth_mib": rss.growth_mib,
                            "rss_start_mib": rss.start / 2**20, "fill_s": fill_s})
    finally:
        engine.dispose()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args(argv)
    sizes = sorted({max(1_000, args.rows // 4), args.rows})
    print(f"# marketlog record exports — {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"machine: {cpu_model()}, {cores()}, {psutil.virtual_memory().total / 2**30:.1f} GiB;"
          f" CPython {platform.python_version()}, SQLite {sqlite3.sqlite_version}; "
          f"read models: a SQLite file in {tempfile.gettempdir()} (WAL off, as migrated); "
          f"keyset pages of {exports.PAGE:,} rows; pid {os.getpid()}")
    results = []
    with tempfile.TemporaryDirectory(prefix="marketlog-bench-exports-") as tmp:
        for n in sizes:
            results.extend(run(n, Path(tmp)))
    print()
    print("| rows | export | seconds | records/s (wall) | records per CPU second | "
          "peak RSS growth | RSS at start |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['rows']:,} | {r['case']} | {r['seconds']:.2f} | "
              f"{r['records_per_s']:,.0f} | {r['records_per_cpu_s']:,.0f} | "
              f"{r['rss_growth_mib']:.1f} MiB | {r['rss_start_mib']:.0f} MiB |")
    print()
    load = os.getloadavg()
    print(f"load average during the run: {load[0]:.1f} (1 min), {load[1]:.1f} (5 min) on "
          f"{os.cpu_count()} cores: the wall-clock rate is shared with whatever else runs; "
          "the CPU-second rate is this process's own")
    print(f"audit rows generated at {results[-1]['rows'] / results[-1]['fill_s']:,.0f} rows/s "
          "(encoded and hash-chained like the store's records)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
