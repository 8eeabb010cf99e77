"""Row 1 in instructions: callgrind's count per decision, which the machine's neighbours do
not change (wall-clock latency on the shared VM moves 1.5-2x between runs).

    python -m bench.decision_callgrind            # runs valgrind twice, prints the figure
    python -m bench.decision_callgrind --with-commands

Two runs under ``valgrind --tool=callgrind`` differ only in how many orders they decide
after the same start-up and warm-up (bench.decision's loop, engine GC schedule, every
control); the difference in instructions divided by the extra orders is the cost of one
decision. By default the commands are built (and validated by pydantic) for the larger run in
both, so only the decision counts; ``--with-commands`` builds them per run, so each order's
construction counts too: that is how the README's earlier figures were taken (176.4k at
issue 7; this script gives 178.4k on the commit before decision-perf).

Expect about +-2% between identical runs: CPython's type-attribute cache is indexed by
object addresses, so its hit rate moves with the memory layout. ``setarch -R`` (no address
randomisation) is used when available; compare commits on several runs, not one.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

WARMUP = 5_000
BATCH = 2_000


def decide(orders: int, largest: int, *, with_commands: bool) -> None:
    """The measured process: warm-up plus ``orders`` decisions."""
    from bench.workload import SIM_NS_PER_ORDER, NullJournal, SimClock, bench_config, commands
    from commands.garbage_collection import CollectorSchedule
    from infrastructure.bootstrap import build_engine
    from infrastructure.settings import Settings

    cmds = commands(WARMUP + (orders if with_commands else largest), seed=11)
    clock = SimClock()
    with tempfile.TemporaryDirectory(prefix="marketlog-bench-") as tmp:
        engine = build_engine(Settings(data_dir=Path(tmp), batch_max=BATCH), bench_config(),
                              NullJournal(), clock)
    engine.run_batch([])  # the trading day opens
    schedule = CollectorSchedule()
    schedule.take_over()
    events: list[Any] = []
    releases: list[Any] = []
    for i, cmd in enumerate(cmds[:WARMUP + orders]):
        if i % BATCH == 0:
            events.clear()
            releases.clear()
            clock.now += BATCH * SIM_NS_PER_ORDER
            if i:
                schedule.after_cycle()
        engine.decide(cmd, events, releases)


def instructions(orders: int, largest: int, with_commands: bool) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
               "-m", "bench.decision_callgrind", "--child", str(orders), str(largest)]
        if with_commands:
            cmd.append("--with-commands")
        if shutil.which("setarch"):
            cmd = ["setarch", os.uname().machine, "-R", *cmd]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(done.stderr[-2000:])
    return int(found.group(1))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.decision_callgrind")
    p.add_argument("--orders", type=int, default=20_000, help="extra orders in the long run")
    p.add_argument("--with-commands", action="store_true",
                   help="count building and validating each command too (README's method)")
    p.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        decide(args.child[0], args.child[1], with_commands=args.with_commands)
        return
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed")
    short = instructions(0, args.orders, args.with_commands)
    long = instructions(args.orders, args.orders, args.with_commands)
    what = "decision and command construction" if args.with_commands else "decision"
    print(f"callgrind: {(long - short) / args.orders / 1000:.1f}k instructions per {what} "
          f"({args.orders:,} orders after {WARMUP:,} warm-up)")


if __name__ == "__main__":
    main()
