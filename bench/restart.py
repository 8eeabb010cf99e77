"""Rows 6 and 7: memory after many finished orders, and restart time, over trading days.

``N`` orders of the benchmark mix go through ``engine.execute`` (group commits of
``batch_max``) into a real SQLite store over ``days`` trading days: ~80% passive DAY limits
rest until the close expires them, ~20% crossing IOCs fill or are cancelled, so by each close
every order of the day has finished. At each close: resident memory (after a full
collection) and what the book keeps (live orders, frozen records of finished orders kept for
idempotent resends during their day and the next). The last day is left open half-way, as a
crash would leave it. Then the restart is timed twice on that store:

* after: the engine as shipped, from its latest trusted snapshot plus the log after it;
* before: a full replay of the log from position 0 (the engine without snapshots).

Run: ``python -m bench.restart N DAYS`` -> JSON on stdout (a fresh interpreter per run).
"""

from __future__ import annotations

import gc
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psutil

from bench.workload import SIM_NS_PER_ORDER, SimClock, bench_config, order_fields
from commands.models import CloseTradingDay, OpenTradingDay, SubmitOrder
from domain.book_snapshot import state_of
from infrastructure.bootstrap import build_engine
from infrastructure.event_store import EventStore
from infrastructure.settings import Settings


class WithoutSnapshots:
    """The store behind the engine's port, hiding its snapshots: recovery as it was before
    snapshots existed (a full replay)."""

    def __init__(self, inner: EventStore) -> None:
        self.inner = inner

    def append(self, events: Any) -> int:
        return self.inner.append(events)

    def read(self, after: int = 0) -> Iterator[tuple[int, Any]]:
        return self.inner.read(after)

    def reset_head(self) -> None:
        self.inner.reset_head()


def measure(orders: int, days: int, batch: int = 2000) -> dict[str, Any]:
    proc = psutil.Process()
    with tempfile.TemporaryDirectory(prefix="marketlog-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp), batch_max=batch)
        config = bench_config()
        store = EventStore.open(settings)
        store.claim_writer()
        clock = SimClock()
        engine = build_engine(settings, config, store, clock)
        engine.run_batch([])
        fields = order_fields(orders, seed=5)
        per_day = orders // days
        first = date.fromisoformat(engine.book.day.date or "2025-06-15")
        closes: list[dict[str, Any]] = []
        gc.collect()
        baseline = proc.memory_info().rss
        sent = 0
        t0 = time.perf_counter()
        for day in range(days):
            target = per_day if day < days - 1 else orders - sent
            done_today = 0
            while done_today < target:
                size = min(batch, target - done_today)
                chunk = [SubmitOrder(**f) for _, f in zip(range(size), fields, strict=False)]
                clock.now += size * SIM_NS_PER_ORDER
                engine.execute(chunk)
                done_today += size
                if day == days - 1 and done_today >= target // 2:
                    break  # the last day stays open half-way: the restart's tail
            sent += done_today
            if day == days - 1:
                break
            engine.execute([
                CloseTradingDay(actor="bench", reason="bench"),
                OpenTradingDay(actor="bench", reason="bench",
                               trading_date=(first + timedelta(days=day + 1)).isoformat())])
            gc.collect()
            book = engine.book
            closes.append({"day": day + 1, "orders": sent,
                           "rss_mib": round(proc.memory_info().rss / 2**20, 1),
                           "live": len(book.orders), "kept_records": len(book.finished)})
        trading_seconds = time.perf_counter() - t0
        live = state_of(engine.book)
        head = store.head_position
        del engine
        gc.collect()

        t0 = time.perf_counter()
        after = build_engine(settings, config, store, clock)
        after_seconds = time.perf_counter() - t0
        assert state_of(after.book) == live, "restart from the snapshot differs from live"
        replayed_from = after.recovered_from_snapshot
        del after
        gc.collect()

        t0 = time.perf_counter()
        before = build_engine(settings, config, WithoutSnapshots(store), clock)  # type: ignore[arg-type]
        before_seconds = time.perf_counter() - t0
        assert state_of(before.book) == live, "full replay differs from live"
        del before
        store.close()
    return {
        "orders": sent, "days": days, "events": head, "trading_seconds": trading_seconds,
        "rss_baseline_mib": round(baseline / 2**20, 1), "closes": closes,
        "restart_after_s": after_seconds, "snapshot_position": replayed_from,
        "tail_events": head - (replayed_from or 0), "restart_before_s": before_seconds,
    }


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]), int(sys.argv[2]))))
