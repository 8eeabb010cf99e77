"""A recorded feed played live under the serving engine (issue 9, paper trading): its ticks
re-stamped to the wall clock and paced as recorded, its NBBO the engine's reference price,
its quotes what the desk's strategies trade on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import pytest

from domain.events import OrderAccepted, ReplaceRequested
from domain.market_data import Quote
from domain.nbbo_reference import MarketDataBoard
from infrastructure.bootstrap import System, bootstrap
from infrastructure.clock import utc_now_ns
from infrastructure.feed_player import FeedPlayer
from infrastructure.settings import Settings, StrategySpec

MS = 1_000_000
T0 = 1_293_200_000_000_000_000  # a recording from 2010


def recorded(n: int, step_ms: int) -> list[Quote]:
    return [Quote("REC", "AAPL", Decimal("190.00") + Decimal("0.01") * i, 300,
                  Decimal("190.04") + Decimal("0.01") * i, 300, T0 + i * step_ms * MS)
            for i in range(n)]


def test_ticks_are_restamped_to_now_and_paced_as_recorded() -> None:
    board = MarketDataBoard()
    player = FeedPlayer(recorded(4, 100), board, speed=1.0)
    queue = player.subscribe({"AAPL"})
    other = player.subscribe({"MSFT"})
    started = utc_now_ns()
    player.start()
    deadline = time.monotonic() + 5
    while not player.finished:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    got = list(queue.poll())
    assert [q.bid for q in got] == [Decimal("190.00") + Decimal("0.01") * i for i in range(4)]
    assert got[0].ts_ns >= started
    # Paced as recorded: 100 ms apart (a little later, never earlier).
    gaps = [b.ts_ns - a.ts_ns for a, b in pairwise(got)]
    assert all(90 * MS <= g < 400 * MS for g in gaps), gaps
    assert other.poll() == []
    assert board.nbbo["AAPL"].bid == Decimal("190.03")
    assert player.describe() == {"played": 4, "finished": True, "error": None}


def test_a_bad_file_stops_the_feed_with_its_error() -> None:
    def ticks() -> Iterator[Quote]:
        yield recorded(1, 1)[0]
        raise ValueError("line 3: bid 'x' is no price")

    player = FeedPlayer(ticks(), MarketDataBoard(), speed=1000.0)
    player.start()
    player.stop()
    assert player.finished and player.error == "ValueError: line 3: bid 'x' is no price"


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[System]:
    ticks = tmp_path / "aapl.csv"
    ticks.write_text("timestamp,symbol,venue,bid,ask,bid_size,ask_size\n" + "".join(
        f"{T0 + i * 50 * MS},AAPL,REC,{Decimal('190.00') + Decimal('0.01') * i},"
        f"{Decimal('190.04') + Decimal('0.01') * i},300,300\n" for i in range(60)))
    settings = Settings(
        data_dir=tmp_path / "data", database_url=None, read_database_url=None,
        database_owner_url=None, reader_database_url=None, chain_anchor_file=None,
        liquidity_provider=False, market_data_file=ticks, strategy_poll_seconds=0.01,
        strategies=[StrategySpec(id="mm", kind="market_maker", start=True,
                                 params={"symbol": "AAPL", "spread_ticks": 2, "size": 100})])
    system = bootstrap(settings)
    try:
        yield system
    finally:
        system.close()


def test_a_strategy_trades_on_the_played_feed_and_orders_are_checked_against_its_nbbo(
        serving: System) -> None:
    deadline = time.monotonic() + 15
    while not serving.feed.finished:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)  # the desk's last poll
    events = [e for _, e in serving.store.read()]
    accepted = [e for e in events if isinstance(e, OrderAccepted) and e.strategy == "mm"]
    replaces = [e for e in events if isinstance(e, ReplaceRequested)
                and e.order_id in {a.order_id for a in accepted}]
    assert {e.side for e in accepted} == {"buy", "sell"}  # quoted both sides
    assert len(replaces) >= 5  # and followed the feed's mid as it moved
    mids = {Decimal("190.02") + Decimal("0.01") * i for i in range(60)}
    for event in [*accepted, *replaces]:
        # The collar's reference is the feed's NBBO midpoint, stamped now (not in 2010).
        assert event.reference_source == "nbbo_midpoint"
        assert event.reference_price in mids
        assert event.reference_ts_ns > utc_now_ns() - 60 * 1_000_000_000
        # The strategy quoted around the feed's mid, two ticks away (plus its skew).
        assert event.limit_price is not None
        assert abs(event.limit_price - event.reference_price) <= Decimal("0.05")
    assert serving.feed.describe()["played"] == 60
