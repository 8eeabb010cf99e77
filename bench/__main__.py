"""``python -m bench`` (``make bench``): the performance table, printed and in
bench/results/latest.md.

Rows: (1) in-memory decision latency, (2) durable throughput on SQLite and PostgreSQL,
(3) resident memory per live order, (4) the naive eventsourcing baseline, (5) orders through
the HTTP API, (6) memory over trading days of finished orders, (7) restart time after them;
the event log on Kafka (bench/kafka.py, skipped without a broker): (8) relay, (9) projector,
(10) end to end, (11) lag under steady load, (12) the Kafka client alone, (13) rebuild
from Kafka, (14) durable throughput with the relay in process; the compliance views (issue
8, each its own process and table): (15) the daily 15c3-5 report, (16) audit-trail
exports, (17) as-of replay, (18) CAT order event files; market data and backtesting (issue
9): (19) ITCH parse and books, (20) the backtest event loop and end to end.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import decision, durable, http, kafka, naive
from bench.conditions import cores, cpu_model, sqlite_settings
from bench.pg import NoPostgres, admin_url, server_settings, throwaway_database, throwaway_store
from bench.workload import MIX_DESCRIPTION, commands
from infrastructure.event_store import EventStore
from infrastructure.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "latest.md"
HEADER = ("#", "Measurement", "Result", "Target", "Status")


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "FAIL")


# Issues 8 and 9's benches, as their own processes: (module, full-run args, --quick args).
SECTION_BENCHES = (
    ("bench.report", ["--skip-postgres"], ["--skip-postgres", "--accounts", "200"]),
    ("bench.exports", ["--rows", "200000"], ["--rows", "50000"]),
    ("bench.as_of", [], ["--orders", "25000", "--snapshot-every", "10000"]),
    ("bench.cat", ["200000"], ["20000"]),
    ("bench.itch", [], ["--messages", "300000", "--repeat", "1"]),
    ("bench.backtest", [], ["100000", "5000"]),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="short run (< 3 minutes)")
    p.add_argument("--orders", type=int, default=None,
                   help="orders per durable run (default 200000; quick 20000)")
    p.add_argument("--decision-orders", type=int, default=200_000,
                   help="timed orders for the in-memory latency (after warm-up)")
    p.add_argument("--memory-orders", type=int, default=None,
                   help="live orders for the memory row (default 1000000; quick 200000)")
    p.add_argument("--naive-orders", type=int, default=None,
                   help="orders per naive baseline (default 3000; quick 1000)")
    p.add_argument("--window", type=int, default=2048, help="in-flight futures (closed loop)")
    p.add_argument("--small-window", type=int, default=64,
                   help="window also run when ack p99 > 10 ms at --window")
    p.add_argument("--batch-max", type=int, default=Settings().batch_max,
                   help="engine batch_max (commands per group commit)")
    p.add_argument("--http-orders", type=int, default=None,
                   help="orders per HTTP run (default 10000; quick 3000)")
    p.add_argument("--restart-orders", type=int, default=None,
                   help="orders over the trading days of rows 6-7 (default 1000000; quick "
                        "100000)")
    p.add_argument("--restart-days", type=int, default=10)
    p.add_argument("--skip-postgres", action="store_true")
    p.add_argument("--skip-kafka", action="store_true", help="skip rows 8-14 (Kafka)")
    p.add_argument("--kafka-events", type=int, default=None,
                   help="events through relay/projector/end to end/client rows 8-12 (default "
                        "300000; quick 50000)")
    p.add_argument("--kafka-rebuild-events", type=int, default=None,
                   help="events of the rebuild row 13 (default 1000000; quick 100000)")
    p.add_argument("--kafka-lag-rate", type=float, default=20_000,
                   help="open-loop orders/s of the lag row 11 (a lower sustainable rate is "
                        "also run when the machine cannot keep it)")
    p.add_argument("--kafka-lag-seconds", type=float, default=None,
                   help="seconds of load per lag run (default 15; quick 5)")
    p.add_argument("--kafka-clients", default=None,
                   help="comma-separated Kafka clients to measure (default: every one "
                        "installed: kafka-python, confluent)")
    p.add_argument("--skip-compliance", action="store_true",
                   help="skip rows 15-20 (report, exports, as-of, CAT, ITCH, backtest)")
    p.add_argument("--skip-recorder-comparison", action="store_true",
                   help="skip the comparison with the library's recorder as shipped")
    a = p.parse_args(argv)
    a.orders = a.orders or (20_000 if a.quick else 200_000)
    a.memory_orders = a.memory_orders or (200_000 if a.quick else 1_000_000)
    a.naive_orders = a.naive_orders or (1_000 if a.quick else 3_000)
    a.http_orders = a.http_orders or (3_000 if a.quick else 10_000)
    a.restart_orders = a.restart_orders or (100_000 if a.quick else 1_000_000)
    a.kafka_events = a.kafka_events or (50_000 if a.quick else 300_000)
    a.kafka_rebuild_events = a.kafka_rebuild_events or (100_000 if a.quick else 1_000_000)
    a.kafka_lag_seconds = a.kafka_lag_seconds or (5.0 if a.quick else 15.0)
    return a


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def durable_rows(r: durable.DurableResult, label: str) -> list[tuple[str, ...]]:
    ok = None
    if r.backend.startswith("PostgreSQL"):
        ok = r.orders_per_s >= 50_000 and r.ack_p99_ms <= 10
    fail = f", {r.failures} FAILED" if r.failures else ""
    return [(
        "2", f"Durable {label} (W={r.window}, {r.orders:,} orders)",
        f"{r.orders_per_s:,.0f} orders/s; {r.events_per_s:,.0f} events/s; "
        f"ack p50 {r.ack_p50_ms:.1f} ms, p99 {r.ack_p99_ms:.1f} ms; "
        f"avg batch {r.avg_batch:,.0f} orders; append p50 {r.append_ms_p50:.1f} ms "
        f"({r.append_share:.0%} of wall time){fail}",
        ">= 50,000 orders/s, ack p99 <= 10 ms" if ok is not None else "-",
        verdict(ok),
    )]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    pg_url: str | None = None
    if not args.skip_postgres:
        try:
            pg_url = admin_url()
        except NoPostgres as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    conditions: list[tuple[str, str]] = [
        ("CPU", f"{cpu_model()}, {cores()}"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
    ]
    if pg_url:
        s = server_settings(pg_url)
        conditions.append(("PostgreSQL", (
            f"{s['server_version']}; fsync={s['fsync']}, "
            f"synchronous_commit={s['synchronous_commit']}, wal_sync_method="
            f"{s['wal_sync_method']}, commit_delay={s['commit_delay']}, "
            f"shared_buffers={s['shared_buffers']}")))
    else:
        conditions.append(("PostgreSQL", "skipped (--skip-postgres)"))
    sq = sqlite_settings()
    conditions += [
        ("SQLite", f"{sq['version']}; journal_mode={sq['journal_mode']}, "
                   f"synchronous={sq['synchronous']}"),
        ("Engine", f"batch_max={args.batch_max}; in-flight window W={args.window} "
                   f"(W={args.small_window} too when ack p99 > 10 ms)"),
        ("Order mix", MIX_DESCRIPTION),
        ("Mode", "quick" if args.quick else "full"),
    ]
    rows: list[tuple[str, ...]] = []

    # 1. In-memory decision latency ------------------------------------------------
    log(f"1/7 decision latency: {args.decision_orders:,} orders x {len(decision.MODES)} GC modes")
    for r in decision.run(args.decision_orders, warmup=20_000):
        ok = r.p50_us <= 8 and r.p99_us <= 20
        label = decision.MODES.get(r.gc_mode) or (
            f"same run, engine's GC schedule, only the {len(decision.BEFORE_ISSUE_7)} controls "
            "of before issue 7 (comparison)")
        rows.append((
            "1", f"Decision latency, {label} ({r.orders:,} orders, "
                 f"{r.rejects:,} rejects)",
            f"p50 {r.p50_us:.2f} us, p99 {r.p99_us:.2f} us, p99.9 {r.p999_us:.1f} us "
            f"(mean {r.mean_us:.2f}, max {r.max_us / 1000:.1f} ms; timer {r.timer_overhead_ns:.0f}"
            f" ns incl.); GC: {r.gc_note()}",
            "p50 <= 8 us, p99 <= 20 us" if r.gc_mode == "engine" else "(reference)",
            verdict(ok) if r.gc_mode == "engine" else "-",
        ))
    gc.collect()

    # 2. Durable throughput ------------------------------------------------------------
    log(f"2/7 durable: generating {args.orders:,} validated orders")
    cmds = commands(args.orders, seed=3)
    log(f"2/7 durable SQLite, W={args.window}")
    with tempfile.TemporaryDirectory(prefix="marketlog-bench-") as tmp:
        store = EventStore.open(Settings(data_dir=Path(tmp)))
        try:
            r = durable.run_closed_loop(store, "SQLite", cmds, args.window, args.batch_max)
        finally:
            store.close()
    rows += durable_rows(r, "SQLite")
    experiments: list[str] = []
    if pg_url:
        log(f"2/7 durable PostgreSQL, W={args.window}")
        with throwaway_store(pg_url) as urls:
            store = durable.open_pg_store(urls.engine)
            try:
                r = durable.run_closed_loop(store, "PostgreSQL", cmds, args.window,
                                            args.batch_max)
            finally:
                store.close()
        rows += durable_rows(r, "PostgreSQL")
        if r.ack_p99_ms > 10:
            log(f"2/7 durable PostgreSQL, W={args.small_window}")
            with throwaway_store(pg_url) as urls:
                store = durable.open_pg_store(urls.engine)
                try:
                    small = durable.run_closed_loop(store, "PostgreSQL", cmds[: args.orders // 2],
                                                    args.small_window, args.batch_max)
                finally:
                    store.close()
            rows += durable_rows(small, "PostgreSQL")
        if not args.skip_recorder_comparison:
            n = min(args.orders, 40_000)
            log(f"2/7 experiment: PostgreSQL recorder insert methods, {n:,} orders")
            for library in (False, True):
                with throwaway_store(pg_url) as urls:
                    # the library's recorder inserts through the owner (sequence, no fencing)
                    store = durable.open_pg_store(urls.owner if library else urls.engine,
                                                  library_recorder=library)
                    try:
                        e = durable.run_closed_loop(store, "PostgreSQL", cmds[:n],
                                                    args.window, args.batch_max)
                        ms, eps = durable.append_micro(store, 5, 2000, seed=41 + library)
                    finally:
                        store.close()
                label = ("library recorder as shipped" if library
                         else "binary-COPY recorder (EventStore default)")
                experiments.append(
                    f"PostgreSQL {label}: {e.orders_per_s:,.0f} orders/s, ack p99 "
                    f"{e.ack_p99_ms:.0f} ms, append p50 {e.append_ms_p50:.1f} ms "
                    f"(W={e.window}, {n:,} orders); direct append of 2,000 orders' events: "
                    f"p50 {ms:.1f} ms, {eps:,.0f} events/s")
    del cmds
    gc.collect()

    # 3. Memory per live order (fresh interpreter) ---------------------------------------
    log(f"3/7 memory: {args.memory_orders:,} live orders (subprocess)")
    out = subprocess.run([sys.executable, "-m", "bench.memory", str(args.memory_orders)],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    m = json.loads(out.stdout.strip().splitlines()[-1])
    rows.append((
        "3", f"Resident memory per live order ({m['orders']:,} resting orders, null journal)",
        f"{m['bytes_per_order']:,.0f} B/order (RSS {m['rss_before_mib']:.0f} -> "
        f"{m['rss_after_mib']:.0f} MiB; {m['open_orders']:,} open, {m['resting']:,} resting; "
        f"tracemalloc off)",
        "<= 1 KiB", verdict(m["bytes_per_order"] <= 1024),
    ))

    # 4. Naive baseline ------------------------------------------------------------------
    log(f"4/7 naive baseline: {args.naive_orders:,} orders per backend")
    rows.append(("4", f"Naive Application+Aggregate, one save per order, SQLite "
                      f"({args.naive_orders:,})",
                 f"{naive.sqlite(args.naive_orders):,.0f} orders/s", "-", "-"))
    if pg_url:
        with throwaway_database(pg_url) as db:
            rate = naive.postgres(db, args.naive_orders)
        rows.append(("4", f"Naive Application+Aggregate, one save per order, PostgreSQL "
                          f"({args.naive_orders:,})", f"{rate:,.0f} orders/s", "-", "-"))

    # 5. Through HTTP ---------------------------------------------------------------------
    for concurrency in (8, 64):
        log(f"5/7 HTTP: {args.http_orders:,} orders, {concurrency} concurrent clients, "
            "with and without authentication")
        runs = {auth: http.run(args.http_orders, concurrency, auth=auth)
                for auth in (False, True, False, True)}  # alternating; the later pair kept
        plain, h = runs[False], runs[True]
        cost = (plain.orders_per_s - h.orders_per_s) / plain.orders_per_s * 100
        rows.append((
            "5", f"POST /orders through uvicorn + FastAPI, SQLite default, {concurrency} "
                 f"concurrent clients on the same machine, Bearer token ({h.orders:,})",
            f"{h.orders_per_s:,.0f} orders/s; response p50 {h.p50_ms:.1f} ms, p99 "
            f"{h.p99_ms:.1f} ms; statuses {dict(sorted(h.statuses.items()))}; without "
            f"authentication (same run): {plain.orders_per_s:,.0f} orders/s, p50 "
            f"{plain.p50_ms:.1f} ms: authentication costs {cost:+.1f}% throughput",
            "auth <= 5%", verdict(cost <= 5)))

    # 6-7. Memory over trading days, restart time (fresh interpreter) ---------------------
    log(f"6/7 memory and restart: {args.restart_orders:,} orders over {args.restart_days} "
        "trading days (subprocess, SQLite)")
    out = subprocess.run([sys.executable, "-m", "bench.restart", str(args.restart_orders),
                          str(args.restart_days)], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    rs = json.loads(out.stdout.strip().splitlines()[-1])
    rss = [c["rss_mib"] for c in rs["closes"]]
    later = rss[len(rss) // 2:]
    flat = max(later) - min(later) <= 0.25 * max(later)
    rows.append((
        "6", f"Memory at each close, {rs['orders']:,} finished orders over {rs['days']} "
             "trading days (SQLite store)",
        f"RSS {rs['rss_baseline_mib']:.0f} MiB at start, then at each close "
        f"{', '.join(f'{r:.0f}' for r in rss)} MiB; live orders after each close "
        f"{max(c['live'] for c in rs['closes'])}, frozen records kept "
        f"{max(c['kept_records'] for c in rs['closes']):,} (a day's)",
        "flat", verdict(flat)))
    rows.append((
        "7", f"Restart after {rs['orders']:,} orders ({rs['events']:,} events), the last day "
             "half-way",
        f"{rs['restart_after_s']:.1f} s from the latest snapshot (+ {rs['tail_events']:,} "
        f"events of tail); {rs['restart_before_s']:.1f} s as a full replay from position 0 "
        "(before snapshots)",
        "<= 5 s", verdict(rs["restart_after_s"] <= 5)))

    # 8-14. The event log on Kafka ----------------------------------------------------------
    if args.skip_kafka:
        conditions.append(("Kafka", "skipped (--skip-kafka)"))
        rows.append(("8-14", "Event log on Kafka (relay, projector, end to end, lag, client, "
                             "rebuild, durable with relay)", "skipped (--skip-kafka)", "-", "-"))
    else:
        try:
            bootstrap = kafka.broker()
        except kafka.NoKafka as exc:
            log(f"8-14/14 Kafka: skipped, no broker: {exc}")
            conditions.append(("Kafka", f"skipped: no broker ({exc})"))
            rows.append(("8-14", "Event log on Kafka (relay, projector, end to end, lag, "
                                 "client, rebuild, durable with relay)",
                         f"skipped: no broker ({exc})", "-", "-"))
        else:
            report = kafka.run(bootstrap, kafka.KafkaOptions(
                events=args.kafka_events, rebuild_events=args.kafka_rebuild_events,
                durable_orders=args.orders, window=args.window, batch_max=args.batch_max,
                lag_rate=args.kafka_lag_rate, lag_seconds=args.kafka_lag_seconds,
                pg_url=pg_url, clients=args.kafka_clients.split(",") if args.kafka_clients
                else None), log)
            conditions += report.conditions
            rows += sorted(report.rows, key=lambda r: int(r[0]))
            experiments += report.notes
        gc.collect()

    # 15-20. Compliance views (issue 8), market data and backtesting (issue 9): each bench
    # prints its own table and conditions.
    if args.skip_compliance:
        log("15-20: skipped (--skip-compliance)")
    else:
        for number, (module, full, quick) in enumerate(SECTION_BENCHES, start=15):
            log(f"{number}/20 {module}")
            out = subprocess.run([sys.executable, "-m", module, *(quick if args.quick else full)],
                                 capture_output=True, text=True, check=False, cwd=ROOT)
            section = out.stdout.strip() or f"failed: {out.stderr.strip()[-2000:]}"
            experiments.append(f"{number}. python -m {module}\n\n{section}")

    elapsed = time.perf_counter() - started
    conditions.append(("Run time", f"{elapsed:.0f} s"))
    text = render_text(conditions, rows, experiments)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(render_markdown(conditions, rows, experiments))
    log(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


def render_text(conditions: list[tuple[str, str]], rows: list[tuple[str, ...]],
                experiments: list[str]) -> str:
    lines = ["marketlog benchmark", "", "Conditions:"]
    width = max(len(k) for k, _ in conditions)
    lines += [f"  {k:<{width}}  {v}" for k, v in conditions]
    lines.append("")
    widths = [max(len(r[i]) for r in (HEADER, *rows)) for i in range(len(HEADER))]
    widths[2] = min(widths[2], 70)

    def wrap(cell: str, w: int) -> list[str]:
        out, cur = [], ""
        for word in cell.split(" "):
            if cur and len(cur) + 1 + len(word) > w:
                out.append(cur)
                cur = word
            else:
                cur = f"{cur} {word}" if cur else word
        return [*out, cur]

    sep = "+-" + "-+-".join("-" * w for w in widths) + "-+"
    lines.append(sep)
    for n, row in enumerate((HEADER, *rows)):
        cells = [wrap(c, widths[i]) if i == 2 else [c] for i, c in enumerate(row)]
        height = max(len(c) for c in cells)
        for k in range(height):
            lines.append("| " + " | ".join(
                (c[k] if k < len(c) else "").ljust(widths[i]) for i, c in enumerate(cells))
                + " |")
        if n == 0:
            lines.append(sep.replace("-", "="))
    lines.append(sep)
    if experiments:
        lines += ["", "Experiments:"] + [f"  - {e}" for e in experiments]
    return "\n".join(lines)


def render_markdown(conditions: list[tuple[str, str]], rows: list[tuple[str, ...]],
                    experiments: list[str]) -> str:
    lines = ["# marketlog benchmark", "", "## Conditions", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in conditions]
    lines += ["", "## Results", "", "| " + " | ".join(HEADER) + " |",
              "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    if experiments:
        lines += ["", "## Experiments", ""] + [f"- {e}" for e in experiments]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
