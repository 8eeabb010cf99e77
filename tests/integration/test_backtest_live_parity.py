"""Backtest/live parity (issue 9): the same strategy code, fed the same ticks, asks for the
same orders whether it runs live (the strategy runner on the serving engine) or in a
backtest (tick replay on the backtest's own engine and store).

The quotes walk the mid one cent per tick and nothing trades (no liquidity provider live, no
prints in the backtest), so the market maker's quotes are never filled and its decisions
depend on the quotes alone: every difference in the orders would be a difference in how the
two runners drive the same code.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from commands.strategy_runner import StrategyRunner
from domain.events import OrderAccepted, OrderRejected, ReplaceRequested
from domain.market_data import Quote
from domain.strategies import build
from infrastructure.backtest_venue import backtest_settings, run_backtest
from infrastructure.bootstrap import System, bootstrap
from infrastructure.event_store import EventStore
from infrastructure.settings import Settings
from infrastructure.venue_quotes import StoreEvents

T0 = 1_767_623_400_000_000_000  # 2026-01-05 14:30 UTC
SECOND = 1_000_000_000
PARAMS = {"symbol": "AAPL", "tick_size": "0.01", "spread_ticks": 3, "size": 100,
          "max_inventory": 500}


def quotes(n: int = 40) -> list[Quote]:
    """A mid walking up then down a cent per tick, a second apart (past the duplicate
    window, so no quote repeats an order's terms within it)."""
    mids = [Decimal("190.00") + Decimal("0.01") * (i if i < n // 2 else n - i) for i in range(n)]
    return [Quote("SIM", "AAPL", mid - Decimal("0.01"), 500, mid + Decimal("0.01"), 500,
                  T0 + i * SECOND) for i, mid in enumerate(mids)]


def terms(events: list[Any]) -> list[tuple[Any, ...]]:
    """What the strategy asked for, in order: new orders and replaces, with their terms."""
    asked: list[tuple[Any, ...]] = []
    for event in events:
        if isinstance(event, OrderAccepted | OrderRejected) and event.strategy:
            asked.append(("new", event.client_order_id, event.side, event.quantity,
                          event.limit_price))
        elif isinstance(event, ReplaceRequested):
            asked.append(("replace", event.quantity, event.limit_price))
    return asked


@pytest.fixture
def live(tmp_path: Path) -> Iterator[System]:
    settings = Settings(data_dir=tmp_path / "live", database_url=None, read_database_url=None,
                        database_owner_url=None, reader_database_url=None,
                        chain_anchor_file=None, liquidity_provider=False)
    system = bootstrap(settings, start=False)
    try:
        yield system
    finally:
        system.close()


def test_the_same_strategy_and_ticks_give_the_same_orders_live_and_in_a_backtest(
        live: System, tmp_path: Path) -> None:
    ticks = quotes()

    # Live: the runner on the serving engine, each quote handled as it arrives.
    start = live.store.head_position
    strategy = build("market_maker", "mm", PARAMS)
    runner = StrategyRunner(strategy, actor="strategy", account_id="ACC-ALPHA",
                            send=live.engine.execute, clock=lambda: ticks[0].ts_ns)
    runner.start()
    events = StoreEvents(live.store, start)
    for quote in ticks:
        runner.on_quote(quote)
        runner.on_events(events.poll())
    live_events = [e for _, e in live.store.read(start)]

    # Backtest: the same code, built the same way, on the backtest's own store.
    out = tmp_path / "backtest"
    run_backtest(ticks, build("market_maker", "mm", PARAMS), out, seed=1)
    store = EventStore.open(backtest_settings(out), reader=True)
    try:
        backtest_events = [e for _, e in store.read()]
    finally:
        store.close()

    asked_live, asked_backtest = terms(live_events), terms(backtest_events)
    assert len(asked_live) > 10, asked_live  # it quoted both sides and followed the mid
    assert {a[0] for a in asked_live} == {"new", "replace"}
    assert asked_live == asked_backtest
    assert not [e for e in live_events if isinstance(e, OrderRejected)]
