"""Backtests through the real engine and its controls, on a store of their own.

Known answers on hand-made ticks: queue position, latency, fees, a control's rejection,
and determinism (same seed -> the same hash-chained log)."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import pytest

from commands.backtest import BacktestConfig
from domain.backtest_strategies import BuyAndHold, PassiveBid, RandomEntries
from domain.events import OrderFilled, OrderRejected
from domain.market_data import Nbbo, Quote, Trade
from domain.monte_carlo import REGIMES, gbm_path, ticks_from_path
from domain.strategy import BaseStrategy, StrategyContext
from infrastructure.backtest_venue import backtest_settings, run_backtest
from infrastructure.event_store import EventStore

T0 = 1_767_623_400_000_000_000  # 2026-01-05 14:30 UTC
MS = 1_000_000
D = Decimal


def q(ms: int, bid: str, bid_size: int, ask: str, ask_size: int) -> Quote:
    return Quote("SIM", "AAPL", D(bid), bid_size, D(ask), ask_size, T0 + ms * MS)


def tr(ms: int, price: str, size: int) -> Trade:
    return Trade("SIM", "AAPL", D(price), size, T0 + ms * MS)


def events_of(out: Path) -> list[object]:
    store = EventStore.open(backtest_settings(out), reader=True)
    try:
        return [e for _, e in store.read()]
    finally:
        store.close()


def synthetic(seed: int = 1, steps: int = 400) -> list[Quote | Trade]:
    prices = gbm_path(190.0, steps, REGIMES["flat"], 1 / (252 * 390), random.Random(seed))
    return list(ticks_from_path(prices, "AAPL", start_ns=T0, step_ns=1000 * MS))


def test_same_seed_same_log(tmp_path: Path) -> None:
    ticks = synthetic()
    runs = [run_backtest(ticks, RandomEntries("AAPL", seed=5, switch_probability=0.1),
                         tmp_path / f"run{i}", seed=11) for i in range(2)]
    other = run_backtest(ticks, RandomEntries("AAPL", seed=5, switch_probability=0.1),
                         tmp_path / "other-seed", seed=12)
    assert runs[0].orders > 10
    assert runs[0].head_position == runs[1].head_position > 10
    assert runs[0].head_hash == runs[1].head_hash
    assert runs[0].as_dict() == runs[1].as_dict()
    # The seed is the ids' seed: the same trading, another log.
    assert other.metrics == runs[0].metrics
    assert other.head_hash != runs[0].head_hash


def test_feed_time_stamps_every_event(tmp_path: Path) -> None:
    ticks = synthetic(steps=50)
    run_backtest(ticks, BuyAndHold("AAPL", 10), tmp_path / "out", seed=1)
    stamps = [e.ts_ns for e in events_of(tmp_path / "out")]  # type: ignore[attr-defined]
    assert stamps and all(T0 <= s <= ticks[-1].ts_ns for s in stamps)
    assert stamps == sorted(stamps)


class _FatFinger(BaseStrategy):
    strategy_id = "fat-finger"
    symbols = ("AAPL",)

    def __init__(self) -> None:
        self.updates: list[object] = []
        self.sent = False

    def on_quote(self, ctx: StrategyContext, quote: Quote, nbbo: Nbbo) -> None:
        if not self.sent:
            self.sent = True
            ctx.submit("AAPL", "buy", 20_000, nbbo.ask)  # max_qty is 10,000

    def on_order(self, ctx: StrategyContext, update: object) -> None:
        self.updates.append(update)


def test_control_rejects_strategy_order_in_the_store(tmp_path: Path) -> None:
    strategy = _FatFinger()
    result = run_backtest([q(0, "100.00", 500, "100.02", 500)], strategy, tmp_path / "out",
                          seed=1)
    assert result.rejects == {"max_qty": 1}
    rejected = [e for e in events_of(tmp_path / "out") if isinstance(e, OrderRejected)]
    assert [(e.control, e.strategy, e.quantity) for e in rejected] == [
        ("max_qty", "fat-finger", 20_000)]
    assert [u.reject_control for u in strategy.updates] == ["max_qty"]  # type: ignore[attr-defined]


def _fills(out: Path) -> list[tuple[int, int, Decimal, str]]:
    return [((e.ts_ns - T0) // MS, e.fill_quantity, e.fill_price, e.liquidity)
            for e in events_of(out) if isinstance(e, OrderFilled)]


def test_queue_position_back_of_the_level(tmp_path: Path) -> None:
    ticks = [
        q(0, "100.00", 300, "100.02", 300),  # the bid joins behind 300 shares
        tr(1, "100.00", 200),  # 100 still ahead: no fill
        tr(2, "100.00", 150),  # 100 ahead consumed, 50 for us
        q(3, "100.00", 250, "100.02", 300),
        tr(4, "100.00", 80),  # the other 50
        tr(5, "100.00", 80),
    ]
    strategy = PassiveBid("AAPL", 100, "100.00")
    result = run_backtest(ticks, strategy, tmp_path / "out", seed=1)
    assert _fills(tmp_path / "out") == [(2, 50, D("100.00"), "maker"),
                                        (4, 50, D("100.00"), "maker")]
    assert result.metrics.fill_ratio == 1.0


def test_queue_ahead_shrinks_with_the_displayed_size(tmp_path: Path) -> None:
    ticks = [
        q(0, "100.00", 300, "100.02", 300),
        q(1, "100.00", 40, "100.02", 300),  # cancels ahead of us: at most 40 ahead now
        tr(2, "100.00", 100),  # 40 for them, 60 for us
    ]
    run_backtest(ticks, PassiveBid("AAPL", 100, "100.00"), tmp_path / "out", seed=1)
    assert _fills(tmp_path / "out") == [(2, 60, D("100.00"), "maker")]


def test_trade_through_fills_a_resting_order(tmp_path: Path) -> None:
    ticks = [q(0, "100.00", 300, "100.02", 300), tr(1, "99.99", 500)]
    run_backtest(ticks, PassiveBid("AAPL", 100, "100.00"), tmp_path / "out", seed=1)
    assert _fills(tmp_path / "out") == [(1, 100, D("100.00"), "maker")]


def _market_moves() -> list[Quote | Trade]:
    return [q(0, "100.00", 500, "100.02", 500), q(3, "100.10", 500, "100.12", 500),
            q(10, "100.10", 500, "100.12", 500)]


def test_latency_delays_the_fill(tmp_path: Path) -> None:
    run_backtest(_market_moves(), BuyAndHold("AAPL", 100), tmp_path / "fast", seed=1)
    slow = BacktestConfig(feed_latency_ns=1 * MS, order_latency_ns=4 * MS)
    run_backtest(_market_moves(), BuyAndHold("AAPL", 100), tmp_path / "slow", seed=1, config=slow)
    assert _fills(tmp_path / "fast") == [(0, 100, D("100.02"), "taker")]
    # Seen at 1 ms, at the venue at 5 ms: the offer moved at 3 ms.
    assert _fills(tmp_path / "slow") == [(5, 100, D("100.12"), "taker")]


def test_fees_reduce_pnl_by_the_expected_amount(tmp_path: Path) -> None:
    free = run_backtest(_market_moves(), BuyAndHold("AAPL", 100), tmp_path / "free", seed=1)
    fees = BacktestConfig(taker_fee=D("0.003"), maker_fee=D("-0.002"))
    paid = run_backtest(_market_moves(), BuyAndHold("AAPL", 100), tmp_path / "paid", seed=1,
                        config=fees)
    assert free.metrics.final_pnl == pytest.approx(100 * (100.11 - 100.02))
    assert round(free.metrics.final_pnl - paid.metrics.final_pnl, 9) == 0.3
    assert paid.fees == 0.3
    # A maker fill earns the rebate: 100 shares * 0.002.
    ticks = [q(0, "100.00", 300, "100.02", 300), tr(1, "99.99", 500)]
    maker = run_backtest(ticks, PassiveBid("AAPL", 100, "100.00"), tmp_path / "maker", seed=1,
                         config=fees)
    assert round(maker.fees, 9) == -0.2


def test_order_updates_reach_the_strategy(tmp_path: Path) -> None:
    strategy = PassiveBid("AAPL", 100, "100.00")
    run_backtest([q(0, "100.00", 0, "100.02", 300), tr(1, "100.00", 60),
                  tr(2, "100.00", 60)], strategy, tmp_path / "out", seed=1)
    seen = [(u.status, u.filled_quantity, u.last_fill_quantity)  # type: ignore[attr-defined]
            for u in strategy.updates]
    assert seen[:3] == [("accepted", 0, 0), ("partially_filled", 60, 60), ("filled", 100, 40)]


def test_cli_run_monte_carlo_and_walk_forward(tmp_path: Path) -> None:
    import orjson
    from typer.testing import CliRunner

    from api.cli import app
    from infrastructure.backtest_venue import write_ticks_csv

    prices = gbm_path(520.0, 600, REGIMES["bull"], 1 / (252 * 390), random.Random(2))
    ticks = tmp_path / "ticks.csv"
    write_ticks_csv(ticks, ticks_from_path(prices, "SPY", start_ns=T0, step_ns=60_000 * MS))
    runner = CliRunner()
    out = tmp_path / "run"
    r = runner.invoke(app, ["backtest", "run", "--ticks", str(ticks), "--strategy", "trend",
                            "--param", "lookback=10", "--param", "symbol=SPY", "--seed", "3",
                            "--out", str(out), "--sample-ms", "60000"])
    assert r.exit_code == 0, r.output
    data = orjson.loads((out / "backtest.json").read_bytes())
    assert data["orders"] > 0 and "<svg" in (out / "backtest.html").read_text()
    # The backtest's store is an ordinary marketlog store: verify reads it.
    env = {"MARKETLOG_DATA_DIR": str(out), "MARKETLOG_DATABASE_URL": "",
           "MARKETLOG_KAFKA_BOOTSTRAP": ""}
    v = runner.invoke(app, ["verify"], env=env)
    assert v.exit_code == 0, v.output
    assert data["chain_head"]["hash"][:12] in v.output or "ok" in v.output.lower()

    mc = runner.invoke(app, ["backtest", "monte-carlo", "--strategy", "buy-and-hold",
                             "--runs", "4", "--workers", "2", "--steps", "60", "--seed", "5",
                             "--out", str(tmp_path / "mc")])
    assert mc.exit_code == 0, mc.output
    summary = orjson.loads((tmp_path / "mc" / "monte_carlo.json").read_bytes())
    assert summary["runs"] == 4 and set(summary["pnl_percentiles"]) == {
        "p5", "p25", "p50", "p75", "p95"}

    wf = runner.invoke(app, ["backtest", "walk-forward", "--ticks", str(ticks), "--strategy",
                             "trend", "--param", "symbol=SPY", "--grid", "lookback=5,20",
                             "--in-sample", "200", "--out-of-sample", "100",
                             "--out", str(tmp_path / "wf")])
    assert wf.exit_code == 0, wf.output
    report = orjson.loads((tmp_path / "wf" / "walk_forward.json").read_bytes())
    assert len(report["windows"]) == 4
