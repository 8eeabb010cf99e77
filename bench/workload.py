"""The benchmark's firm configuration and order mix (shared by every measurement).

Mix: 8 accounts x 4 symbols. ~80% passive DAY limit orders priced 1..128 steps of 3 ticks
away from the reference on their own side (they rest, never cross each other), ~20% IOC
limits priced through the whole passive band (they take liquidity: fills and, when the
contra side is thin, an IOC-remainder cancel are journaled too), and ~3% deliberate rejects
(price collar, max quantity, restricted symbol; 1% each).

The (account, symbol, side, quantity, price level) of consecutive orders is a permutation
of 2**18 combinations, so the duplicate-order control (1 s window) never fires on the mix:
a key repeats only 262,144 orders later (>= 5 s at the simulated 50k orders/s, and at any
rate under 262k orders/s in real time).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from commands.models import SubmitOrder
from infrastructure.config import FirmConfig, parse_config

ACCOUNTS = tuple(f"ACC-{n:02d}" for n in range(1, 9))
SYMBOLS = (("AAPL", "190.00"), ("MSFT", "410.00"), ("SPY", "520.00"), ("TSLA", "250.00"))
RESTRICTED = ("RSTR", "42.00")
TICK = Decimal("0.01")
STEP_TICKS = 3  # passive price levels are 3 ticks apart: 1..128 levels -> up to ~2% away
CROSS_TICKS = 400  # crossing orders: 400..527 ticks through the reference
MAX_QTY = 10_000
KEY_BITS = 18  # 3 account + 2 symbol + 1 side + 5 quantity + 7 price level
SIM_NS_PER_ORDER = 20_000  # simulated clock for in-memory runs: 50k orders/s

MIX_DESCRIPTION = (
    "8 accounts x 4 symbols; ~80% passive DAY limits (rest, within 2% of reference), "
    "~20% crossing IOC limits (fills + IOC cancels journaled), ~3% rejects "
    "(collar, max qty, restricted; 1% each); qty 100..3200"
)


def bench_config() -> FirmConfig:
    """A firm with limits large enough that only the deliberate rejects reject."""
    return parse_config(BENCH_CONFIG)


BENCH_CONFIG: dict[str, Any] = {
        "firm": {
            "credit_limit": "1000000000000000",
            "restricted_symbols": [RESTRICTED[0]],
            "defaults": {
                "version": 1,
                "max_order_quantity": MAX_QTY,
                "max_order_notional": "1000000000",
                "price_collar_pct": "0.10",
                "credit_limit": "1000000000000000",
                "duplicate_window_ms": 1000,
                # Every control runs on every order; these thresholds only never trip on the
                # mix (8 accounts at up to 50k orders/s in all).
                "max_orders_per_second": 1_000_000,
                "max_messages_per_second": 2_000_000,
                "kill_messages_per_second": 4_000_000,
                "reject_storm_count": 1_000_000,
                "loss_limit": "1000000000000",
            },
            "max_orders_per_second": 10_000_000,
            "max_messages_per_second": 20_000_000,
            "kill_messages_per_second": 40_000_000,
            "loss_limit": "1000000000000",
        },
        "instruments": [
            {"symbol": s, "tick_size": str(TICK), "lot_size": 1, "reference_price": p}
            for s, p in (*SYMBOLS, RESTRICTED)
        ],
        "accounts": [{"account_id": a, "cash": "100000000",
                      # Long sales within the holding: Reg SHO marking passes them.
                      "opening_positions": {s: 1_000_000_000 for s, _ in SYMBOLS}}
                     for a in ACCOUNTS],
        "users": [{"username": "bench", "role": "trader", "accounts": list(ACCOUNTS)}],
}


@dataclass(frozen=True)
class MixStats:
    passive: int = 0
    crossing: int = 0
    rejects: int = 0


def order_fields(n: int, seed: int = 1, *, crossing_pct: float = 0.20,
                 reject_pct: float = 0.03, prefix: str = "C") -> Iterator[dict[str, Any]]:
    """``n`` order bodies (as a JSON client would send them: prices as strings)."""
    rng = random.Random(seed)
    perm = list(range(1 << KEY_BITS))
    rng.shuffle(perm)
    refs = [int(Decimal(p) / TICK) for _, p in SYMBOLS]
    for i in range(n):
        key = perm[i & ((1 << KEY_BITS) - 1)]
        account = ACCOUNTS[key & 7]
        sym = (key >> 3) & 3
        buy = (key >> 5) & 1
        quantity = 100 * (1 + ((key >> 6) & 31))
        level = key >> 11  # 0..127
        symbol = SYMBOLS[sym][0]
        tif = "day"
        r = rng.random()
        if r < reject_pct:
            kind = int(r / reject_pct * 3)
            if kind == 0:  # price collar: 25% through the reference
                ticks = refs[sym] * 5 // 4 if buy else refs[sym] * 3 // 4
            else:
                ticks = refs[sym] - (level + 1) * STEP_TICKS if buy else \
                    refs[sym] + (level + 1) * STEP_TICKS
                if kind == 1:
                    quantity = MAX_QTY * 2
                else:
                    symbol = RESTRICTED[0]
                    ticks = int(Decimal(RESTRICTED[1]) / TICK)
        elif r < reject_pct + crossing_pct:
            tif = "ioc"
            offset = CROSS_TICKS + level
            ticks = refs[sym] + offset if buy else refs[sym] - offset
        else:
            offset = (level + 1) * STEP_TICKS
            ticks = refs[sym] - offset if buy else refs[sym] + offset
        yield {
            "client_order_id": f"{prefix}{i:09d}",
            "account_id": account,
            "symbol": symbol,
            "side": "buy" if buy else "sell",
            "quantity": quantity,
            "order_type": "limit",
            "limit_price": f"{ticks // 100}.{ticks % 100:02d}",
            "time_in_force": tif,
            "actor": "bench",
            "source": "strategy",
        }


def commands(n: int, seed: int = 1, **kwargs: Any) -> list[SubmitOrder]:
    """``n`` validated SubmitOrder commands (pydantic validation as at the API edge)."""
    return [SubmitOrder(**f) for f in order_fields(n, seed, **kwargs)]


class NullJournal:
    """A journal that keeps nothing: append returns an increasing position."""

    def __init__(self) -> None:
        self.position = 0

    def append(self, events: Any) -> int:
        self.position += len(events)
        return self.position

    def read(self, after: int = 0) -> Iterator[tuple[int, Any]]:
        return iter(())

    def reset_head(self) -> None:
        pass


class SimClock:
    """A clock the caller advances: the decision's ``now`` without a syscall."""

    def __init__(self, start_ns: int = 1_750_000_000_000_000_000) -> None:
        self.now = start_ns

    def __call__(self) -> int:
        return self.now


def percentiles(samples: Any, *qs: float) -> list[float]:
    """Nearest-rank percentiles of a sequence of numbers (sorted copy)."""
    ordered = sorted(samples)
    if not ordered:
        return [float("nan")] * len(qs)
    last = len(ordered) - 1
    return [float(ordered[min(last, round(q / 100 * last))]) for q in qs]
