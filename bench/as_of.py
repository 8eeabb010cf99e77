"""As-of replay speed (issue 8, item 3): ``python -m bench.as_of [--orders N]``.

Builds a log of the benchmark mix (bench/workload.py) through the real engine into a real
SQLite store (group commits of ``batch_max``, a simulated clock at 50k orders/s, snapshots
every ``--snapshot-every`` events as the engine takes them), then measures, in events of the
log per second of wall time:

(a) ``marketlog replay --until T`` into a fresh SQLite database (the CLI command itself,
    in process, progress bar to a null console): every read model (orders, positions,
    audit) as of T. The replay reads the whole log (it filters by time), so its rate is
    counted over the events read; T is the middle and the end of the log.
(b) what ``GET /positions?as_of=T`` runs (infrastructure/as_of.py): the cut (binary search
    for T's log position) and the fold of the fills up to it; counted over the events up to
    the cut. And what ``/accounts``, ``/orders`` and ``/limits`` with ``as_of`` run: the
    engine's recovery on the log cut at T, from the latest snapshot before it (and, for
    comparison, with no snapshot: a replay from the start).

Target (issue 8): >= 50,000 events/s. Prints a table with the conditions.
"""

from __future__ import annotations

import argparse
import gc
import io
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from bench.conditions import cores, cpu_model, sqlite_settings
from bench.workload import MIX_DESCRIPTION, SIM_NS_PER_ORDER, SimClock, bench_config, commands
from infrastructure import as_of
from infrastructure.bootstrap import build_engine
from infrastructure.event_store import EventStore
from infrastructure.settings import Settings

TARGET = 50_000


class NoSnapshots:
    """The store with its snapshots hidden: the as-of book replayed from the start."""

    def __init__(self, inner: EventStore) -> None:
        self.inner = inner

    def select(self, after: int, limit: int) -> Any:
        return self.inner.select(after, limit)

    def _snapshot_below(self, below: int | None) -> None:
        return None


def build_log(settings: Settings, orders: int, batch: int) -> tuple[EventStore, float]:
    store = EventStore.open(settings)
    store.claim_writer()
    clock = SimClock()
    engine = build_engine(settings, bench_config(), store, clock)
    engine.run_batch([])
    t0 = time.perf_counter()
    pending = commands(orders, seed=11)
    for i in range(0, orders, batch):
        chunk = pending[i:i + batch]
        clock.now += len(chunk) * SIM_NS_PER_ORDER
        engine.run_batch([(c, None) for c in chunk])  # snapshots when due, as in service
    return store, time.perf_counter() - t0


def ts_at(store: EventStore, position: int) -> int:
    [(_, _, state)] = store.select(position - 1, 1)
    return int(orjson.loads(state)["ts_ns"])


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    gc.collect()
    t0 = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t0


def replay_until(settings: Settings, into: str, until_iso: str, *options: str) -> float:
    env = {"MARKETLOG_DATA_DIR": str(settings.data_dir), "MARKETLOG_DATABASE_URL": None,
           "MARKETLOG_READ_DATABASE_URL": None, "MARKETLOG_KAFKA_BOOTSTRAP": None,
           "COLUMNS": "120"}
    from api.cli import app

    gc.collect()
    t0 = time.perf_counter()
    result = CliRunner().invoke(app, ["replay", "--into", into, "--until", until_iso,
                                            *options], env=env)
    elapsed = time.perf_counter() - t0
    if result.exit_code != 0:
        raise RuntimeError(f"replay failed: {result.output}")
    return elapsed


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.as_of", description=__doc__)
    p.add_argument("--orders", type=int, default=125_000,
                   help="orders of the mix (~1.66 events each; default ~200k events)")
    p.add_argument("--batch-max", type=int, default=2000)
    p.add_argument("--snapshot-every", type=int, default=50_000)
    args = p.parse_args(argv)
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="marketlog-bench-asof-") as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", batch_max=args.batch_max,
                            snapshot_every=args.snapshot_every, database_url=None,
                            read_database_url=None, chain_anchor_file=None)
        store, build_s = build_log(settings, args.orders, args.batch_max)
        head = store.stored_head()
        config = bench_config()
        print(f"log: {head:,} events from {args.orders:,} orders in {build_s:.1f} s "
              f"({head / build_s:,.0f} events/s)", file=sys.stderr)
        for label, position in (("middle", head // 2), ("end", head)):
            when = ts_at(store, position)
            iso = as_of.iso_ns(when)
            cut, cut_s = timed(as_of.cut_at, store, when)
            _, pos_s = timed(as_of.positions_at, store, cut.position)
            total = cut_s + pos_s
            rows.append((f"GET /positions?as_of= ({label}): cut + fold of fills",
                         f"{cut.position:,} events", f"{total * 1000:,.0f} ms "
                         f"(cut {cut_s * 1000:.1f} ms)", f"{cut.position / total:,.0f}"))
            built, book_s = timed(as_of.book_at, store, config, cut.position)
            tail = cut.position - (built.from_snapshot or 0)
            rows.append((f"as-of book ({label}): snapshot at {built.from_snapshot or 0:,} "
                         f"+ {tail:,} events", f"{cut.position:,} events",
                         f"{book_s * 1000:,.0f} ms", f"{cut.position / book_s:,.0f} "
                         f"(tail: {tail / book_s:,.0f})"))
            _, full_s = timed(as_of.book_at, NoSnapshots(store), config, cut.position)
            rows.append((f"as-of book ({label}): no snapshot, from the start",
                         f"{cut.position:,} events", f"{full_s * 1000:,.0f} ms",
                         f"{cut.position / full_s:,.0f}"))
            for what, options in (("all views", ()),
                                  ("positions only", ("--projection", "positions"))):
                into = f"sqlite:///{Path(tmp) / f'replay-{label}-{len(options)}.sqlite'}"
                replay_s = replay_until(settings, into, iso, *options)
                rows.append((f"marketlog replay --until ({label}) into fresh SQLite, {what}",
                             f"{cut.position:,} events", f"{replay_s:,.1f} s",
                             f"{cut.position / replay_s:,.0f}"))
        store.close()
    sql = sqlite_settings()
    out = io.StringIO()
    out.write("# as-of replay (issue 8, item 3)\n\n")
    out.write(f"- machine: {cpu_model()}, {cores()}; Python {platform.python_version()}; "
              f"SQLite {sql['version']} {sql['journal_mode']} synchronous={sql['synchronous']}\n")
    out.write(f"- log: {head:,} events, {args.orders:,} orders of the mix ({MIX_DESCRIPTION}); "
              f"snapshots every {args.snapshot_every:,} events; one process, store-fed\n")
    out.write(f"- target: >= {TARGET:,} events/s\n\n")
    out.write("| measurement | events | time | events/s |\n|---|---|---|---|\n")
    for r in rows:
        out.write("| " + " | ".join(r) + " |\n")
    print(out.getvalue())


if __name__ == "__main__":
    main()
