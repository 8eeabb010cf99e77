"""Row 3: resident memory per live order in the engine (run in a fresh interpreter).

``n`` passive, non-crossing DAY limit orders go through ``engine.execute`` in cycles of
``batch_max`` over a null journal (memory is the subject, not I/O), so each order is in the
book of record (orders, client-id index) and rests in the venue. Commands are generated per
cycle and dropped, so only what the engine keeps is counted: RSS after - RSS before, after
a full collection, tracemalloc off. Run: ``python -m bench.memory N`` -> JSON on stdout.
"""

from __future__ import annotations

import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.workload import SIM_NS_PER_ORDER, NullJournal, SimClock, bench_config, order_fields
from commands.models import SubmitOrder
from infrastructure.bootstrap import build_engine
from infrastructure.settings import Settings


def measure(n: int, batch: int = 2000) -> dict[str, float]:
    clock = SimClock()
    with tempfile.TemporaryDirectory(prefix="marketlog-bench-") as tmp:
        engine = build_engine(Settings(data_dir=Path(tmp), batch_max=batch), bench_config(),
                              NullJournal(), clock)
    engine.run_batch([])  # the calendar's trading day opens (orders need one)
    fields = order_fields(n, seed=21, crossing_pct=0.0, reject_pct=0.0)
    # Warm the interpreter paths (first cycle allocates caches, not per-order state).
    proc = psutil.Process()
    gc.collect()
    before = proc.memory_info().rss
    t0 = time.perf_counter()
    live = 0
    while live < n:
        chunk = [SubmitOrder(**f) for _, f in zip(range(min(batch, n - live)), fields,
                                                  strict=False)]
        clock.now += len(chunk) * SIM_NS_PER_ORDER
        engine.execute(chunk)
        live += len(chunk)
    seconds = time.perf_counter() - t0
    del chunk
    gc.collect()
    after = proc.memory_info().rss
    book = engine.book
    open_orders = sum(1 for o in book.orders.values() if o.status == "accepted")
    resting = sum(len(level) for b in engine.venue.books.values()  # type: ignore[attr-defined]
                  for side in (b.bids, b.asks) for level in side.levels.values())
    return {
        "orders": n,
        "open_orders": open_orders,
        "resting": resting,
        "rss_before_mib": before / 2**20,
        "rss_after_mib": after / 2**20,
        "bytes_per_order": (after - before) / n,
        "seconds": seconds,
    }


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]))))
