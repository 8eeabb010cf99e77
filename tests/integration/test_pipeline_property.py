"""Property: the pipelined engine keeps the market's invariants whatever arrives, however
slowly the store commits, across day closes and restarts.

The real engine thread and journal writer run over the real store (SQLite, PostgreSQL),
behind a journal that stalls at random moments, so the engine decides cycle N+1 (cancels,
replaces of resting orders) while cycle N's takers are still to reach the venue. Commands
arrive in waves submitted all at once, priced to cross; between waves the engine is stopped
(a quiescent point) and checked:

* no fill outside the terms in force (limit or protection price), after a confirmed cancel,
  or beyond the order's quantity; log order is time order (``tests.invariants.check_log``);
* the venue and the book of record agree: same resting orders, prices, priority;
* exposure equals what the day's events imply;
* a replay of the log (from its latest snapshot) equals the live book.
"""

from __future__ import annotations

import itertools
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.engine import Engine, NotRecorded
from commands.models import (
    CancelOrder,
    CloseTradingDay,
    Command,
    OpenTradingDay,
    ReplaceOrder,
    SubmitOrder,
)
from commands.outcomes import Outcome
from domain.book_snapshot import state_of
from infrastructure.bootstrap import System, bootstrap, build_engine
from infrastructure.postgres_admin import throwaway_store
from infrastructure.settings import Settings
from tests.invariants import check_exposure, check_log, check_venue_agrees

pytestmark = pytest.mark.timeout(900)

ACCOUNTS = ("ACC-ALPHA", "ACC-BETA", "ACC-GAMMA", "ACC-DELTA")
REFERENCE = Decimal("190.00")
T0 = 1_699_920_000_000_000_000  # 2023-11-14T00:00:00Z


class StallingJournal:
    """The real store behind the engine's port, stalling before some appends (a store that
    commits slowly at random moments)."""

    def __init__(self, inner: Any, rng: random.Random) -> None:
        self.inner = inner
        self.rng = rng

    def append(self, events: Sequence[Any]) -> int:
        pause = self.rng.choice((0, 0, 0, 0.001, 0.003, 0.01, 0.03))
        if pause:
            time.sleep(pause)
        return int(self.inner.append(events))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


orders = st.tuples(
    st.just("submit"), st.sampled_from(ACCOUNTS), st.sampled_from(["buy", "sell"]),
    st.integers(1, 60), st.integers(-12, 12),
    st.sampled_from(["day", "day", "gtc", "ioc", "fok", "market"]))
cancels = st.tuples(st.just("cancel"), st.integers(0, 1000))
replaces = st.tuples(st.just("replace"), st.integers(0, 1000),
                     st.one_of(st.none(), st.integers(1, 80)),
                     st.one_of(st.none(), st.integers(-12, 12)))
step = st.integers(0, 9).flatmap(
    lambda k: orders if k < 6 else cancels if k < 8 else replaces)
wave = st.lists(step, min_size=5, max_size=40)
between = st.sampled_from(["check", "check", "check", "next_day", "restart"])


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    return {"waves": draw(st.lists(st.tuples(wave, between), min_size=2, max_size=6)),
            "batch_max": draw(st.integers(1, 6)),
            "seed": draw(st.integers(0, 2**32 - 1))}


def commands_of(steps: list[tuple[Any, ...]], live: list[uuid.UUID], n: itertools.count
                ) -> list[Command]:
    out: list[Command] = []
    for s in steps:
        if s[0] == "submit":
            _, account, side, quantity, offset, tif = s
            market = tif == "market"
            out.append(SubmitOrder(
                client_order_id=f"w-{next(n)}", account_id=account, symbol="AAPL",
                side=side, quantity=quantity, order_type="market" if market else "limit",
                limit_price=None if market else REFERENCE + offset * Decimal("0.05"),
                time_in_force="ioc" if market else tif, actor="prop"))
        elif live and s[0] == "cancel":
            out.append(CancelOrder(order_id=live[s[1] % len(live)], actor="prop"))
        elif live:
            _, i, quantity, offset = s
            price = None if offset is None else REFERENCE + offset * Decimal("0.05")
            if quantity is None and price is None:
                quantity = 1
            out.append(ReplaceOrder(order_id=live[i % len(live)], quantity=quantity,
                                    limit_price=price, actor="prop"))
    return out


@contextmanager
def fresh_settings(backend: Settings, admin_url: str | None, batch_max: int
                   ) -> Iterator[Settings]:
    data_dir = Path(tempfile.mkdtemp(prefix="ml-pipe-"))
    try:
        update: dict[str, Any] = {"data_dir": data_dir, "database_url": None,
                                  "read_database_url": None, "reader_database_url": None,
                                  "batch_max": batch_max, "snapshot_every": 60}
        if backend.uses_postgres:
            assert admin_url
            with throwaway_store(admin_url) as urls:
                yield backend.model_copy(update={**update, "database_url": urls.engine})
        else:
            yield backend.model_copy(update=update)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def run_wave(engine: Engine, commands: list[Command]) -> list[Outcome | BaseException]:
    futures = [engine.submit(c) for c in commands]  # all at once: the pipeline fills up
    return [f.exception(timeout=60) or f.result() for f in futures]


def check_quiescent(system: System) -> dict[str, int]:
    engine = system.engine
    log = list(system.store.read())
    seen = check_log(log)
    check_exposure(engine.book, log)
    check_venue_agrees(engine.book, engine.venue)
    rebuilt = build_engine(system.settings, system.config, system.store)
    assert state_of(rebuilt.book) == state_of(engine.book), "replay differs from live"
    assert system.store.verify().ok
    return seen


def check_example(settings_: Settings, scenario: dict[str, Any]) -> dict[str, int]:
    ticks = itertools.count(1)
    clock = lambda: T0 + next(ticks) * 50_000_000  # noqa: E731 - 50 ms per reading
    rng = random.Random(scenario["seed"])
    n = itertools.count()
    days = itertools.count(1)
    totals: dict[str, int] = {}
    system = bootstrap(settings_, start=False, clock=clock)
    try:
        live: list[uuid.UUID] = []
        for steps, then in scenario["waves"]:
            engine = system.engine
            engine.journal = StallingJournal(system.store, rng)
            engine.start()
            results = run_wave(engine, commands_of(steps, live, n))
            if then == "next_day":
                results += run_wave(engine, [
                    CloseTradingDay(actor="prop", reason="property"),
                    OpenTradingDay(actor="prop", reason="property",
                                   trading_date=(date(2024, 1, 1)
                                                 + timedelta(days=next(days))).isoformat())])
            engine.stop()
            for r in results:
                # No store failure is injected: every command has a durable outcome.
                assert isinstance(r, Outcome), r
                assert not isinstance(r, NotRecorded)
                if r.order is not None and r.order["status"] in ("accepted",
                                                                 "partially_filled"):
                    live.append(uuid.UUID(r.order["order_id"]))
            engine.journal = system.store
            seen = check_quiescent(system)
            totals = seen
            if then == "restart":
                system.close()
                system = bootstrap(settings_, start=False, clock=clock)
                check_quiescent(system)
    finally:
        system.close()
    return totals


def test_pipelined_engine_keeps_market_invariants(
        backend: Settings, request: pytest.FixtureRequest) -> None:
    admin_url = request.getfixturevalue("pg_admin_url") if backend.uses_postgres else None
    seen: list[dict[str, int]] = []

    @settings(max_examples=6 if backend.uses_postgres else 20, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(scenario=scenarios())
    def run(scenario: dict[str, Any]) -> None:
        with fresh_settings(backend, admin_url, scenario["batch_max"]) as settings_:
            seen.append(check_example(settings_, scenario))

    run()
    print("pipeline property:", {k: sum(s[k] for s in seen) for k in seen[0]})
    # The scenarios did exercise the races: fills, confirmed cancels and replaces.
    assert sum(s["fills"] for s in seen) > 0
    assert sum(s["cancels"] for s in seen) > 0
    assert sum(s["replaces"] for s in seen) > 0


# Resting sells, then in ONE wave takers crossing them, each followed at once by a cancel or
# a replace of a resting sell: with one command per batch and a store that stalls, the
# cancel is decided while the taker's batch is still being written, and the taker fills the
# maker the cancel asked for (the race the pending states exist for). Random scenarios hit
# it only sometimes (a CI run on a busy machine had none in 6 PostgreSQL examples), so it
# is provoked here on purpose, every run.
RACE = {
    "waves": [
        ([("submit", ACCOUNTS[i % len(ACCOUNTS)], "sell", 10, 0, "gtc") for i in range(12)],
         "check"),
        ([step for i in range(12) for step in (
            ("submit", ACCOUNTS[(i + 1) % len(ACCOUNTS)], "buy", 10, 12, "ioc"),
            ("cancel", i) if i % 2 else ("replace", i, 5, 2))], "check"),
    ],
    "batch_max": 1,
    "seed": 5,
}


def test_fills_racing_pending_cancels_and_replaces_keep_the_invariants(
        backend: Settings, request: pytest.FixtureRequest) -> None:
    admin_url = request.getfixturevalue("pg_admin_url") if backend.uses_postgres else None
    with fresh_settings(backend, admin_url, RACE["batch_max"]) as settings_:
        seen = check_example(settings_, RACE)  # every invariant checked inside
    print("provoked race:", seen)
    assert seen["racing_fills"] > 0, "no fill raced a pending request"
