"""The strategies against a fake context (our own port): hand-computed expectations on
scripted quotes. The runner over the real engine is tests/integration/test_strategy_runner.py."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.market_data import Nbbo, Quote
from domain.strategies import MarketMaker, MarketMakerConfig, PairsConfig, PairsTrader
from domain.strategies.pairs import zscore
from domain.strategy import OrderUpdate

D = Decimal


class FakeContext:
    """Records intents; orders rest (market maker) or fill at once (``fill_at_once``)."""

    def __init__(self, fill_at_once: bool = False) -> None:
        self.fill_at_once = fill_at_once
        self.sent: list[tuple] = []
        self.positions: dict[str, int] = {}
        self.orders: dict[str, OrderUpdate] = {}
        self.n = 0

    strategy_id = "test"
    now_ns = 0

    def submit(self, symbol, side, quantity, price=None, time_in_force="day"):
        self.n += 1
        cid = f"test-{self.n}"
        self.sent.append(("submit", symbol, side, quantity, price, time_in_force))
        if self.fill_at_once:
            self.positions[symbol] = self.position(symbol) + (quantity if side == "buy"
                                                             else -quantity)
        else:
            self.orders[cid] = OrderUpdate(cid, cid, symbol, side, "accepted", quantity, 0, 0,
                                           None, price, None, 0)
        return cid

    def cancel(self, cid):
        self.sent.append(("cancel", cid))
        self.orders.pop(cid)

    def replace(self, cid, quantity=None, price=None):
        self.sent.append(("replace", cid, quantity, price))
        self.orders[cid] = self.orders[cid]._replace(quantity=quantity, limit_price=price)

    def position(self, symbol):
        return self.positions.get(symbol, 0)

    def open_orders(self, symbol=None):
        return [o for o in self.orders.values() if symbol is None or o.symbol == symbol]

    def nbbo(self, symbol):
        return None


def quote(symbol: str, bid: str, ask: str) -> tuple[Quote, Nbbo]:
    q = Quote("SIM", symbol, D(bid), 100, D(ask), 100, 0)
    return q, Nbbo(symbol, q.bid, 100, "SIM", q.ask, 100, "SIM", 0)


def mm(**overrides) -> MarketMaker:
    config = dict(symbol="AAPL", tick_size=D("0.01"), spread_ticks=2, size=100,
                  max_inventory=150, skew_ticks_per_unit=D("0.01"))
    return MarketMaker("mm", MarketMakerConfig(**{**config, **overrides}))


def test_market_maker_quotes_around_the_mid_then_requotes_when_it_moves():
    maker, ctx = mm(), FakeContext()
    maker.on_quote(ctx, *quote("AAPL", "100.00", "100.01"))  # mid 100.005: 10000.5 ticks
    # bid: floor(10000.5) - 2 = 9998 ticks; offer: ceil(10000.5) + 2 = 10003 ticks
    assert ctx.sent == [("submit", "AAPL", "buy", 100, D("99.98"), "day"),
                        ("submit", "AAPL", "sell", 100, D("100.03"), "day")]
    ctx.sent.clear()
    maker.on_quote(ctx, *quote("AAPL", "100.00", "100.01"))  # same mid: nothing to do
    assert ctx.sent == []
    maker.on_quote(ctx, *quote("AAPL", "100.10", "100.12"))  # mid 100.11: 10011 ticks
    assert ctx.sent == [("replace", "test-1", 100, D("100.09")),
                        ("replace", "test-2", 100, D("100.13"))]
    assert maker.requotes == 2


def test_market_maker_skews_against_inventory_and_caps_it():
    maker, ctx = mm(), FakeContext()
    ctx.positions["AAPL"] = 100
    maker.on_quote(ctx, *quote("AAPL", "100.00", "100.01"))
    # fair = 10000.5 - 0.01 * 100 = 9999.5 ticks; the bid may add only 150 - 100 = 50
    assert ctx.sent == [("submit", "AAPL", "buy", 50, D("99.97"), "day"),
                        ("submit", "AAPL", "sell", 100, D("100.02"), "day")]
    ctx.sent.clear()
    ctx.positions["AAPL"] = 150  # at the cap: the bid goes, the offer stays
    maker.on_quote(ctx, *quote("AAPL", "100.00", "100.01"))
    # fair = 10000.5 - 1.5 = 9999 ticks: offer 10001 ticks
    assert ctx.sent == [("cancel", "test-1"), ("replace", "test-2", 100, D("100.01"))]


def test_market_maker_leaves_a_pending_side_alone_and_ignores_other_symbols():
    maker, ctx = mm(), FakeContext()
    maker.on_quote(ctx, *quote("MSFT", "400.00", "400.02"))
    assert ctx.sent == []
    maker.on_quote(ctx, *quote("AAPL", "100.00", "100.01"))
    ctx.orders["test-1"] = ctx.orders["test-1"]._replace(status="pending_replace")
    ctx.sent.clear()
    maker.on_quote(ctx, *quote("AAPL", "101.00", "101.01"))
    assert ctx.sent == [("replace", "test-2", 100, D("101.03"))]


def test_market_maker_quotes_again_after_a_refusal_without_waiting_for_the_mid_to_move():
    """A restart's first quotes repeat the previous run's (refused: ``duplicate``): the
    maker sends them again at the next timer or quote once the window since it sent them
    has passed, at the same mid; a control that keeps refusing sees one order a window."""
    maker, ctx = mm(), FakeContext()
    second = 1_000_000_000
    assert maker.timer_interval_ns == 250_000_000
    maker.on_timer(ctx, 0)  # nothing quoted, nothing refused: the timer does nothing
    assert ctx.sent == []
    maker.on_quote(ctx, *quote("AAPL", "100.00", "100.01"))
    bid, offer = ctx.sent
    for cid in ("test-1", "test-2"):  # both refused by a control
        maker.on_order(ctx, ctx.orders.pop(cid)._replace(status="rejected",
                                                         reject_control="duplicate"))
    assert maker.refused == {"buy", "sell"}
    ctx.sent.clear()
    for now in (250_000_000, second - 1):  # within the window: it would be a duplicate
        ctx.now_ns = now
        maker.on_timer(ctx, now)
        maker.on_quote(ctx, *quote("AAPL", "100.00", "100.01"))
    assert ctx.sent == []
    ctx.now_ns = second
    maker.on_timer(ctx, second)  # the mid has not moved
    assert ctx.sent == [bid, offer] and maker.refused == set()
    # Refused again: the next try waits another window; a quote does not hurry it.
    maker.on_order(ctx, ctx.orders.pop("test-3")._replace(status="rejected",
                                                          reject_control="credit"))
    ctx.sent.clear()
    ctx.now_ns = second + 500_000_000
    maker.on_quote(ctx, *quote("AAPL", "100.00", "100.01"))
    assert ctx.sent == []
    ctx.now_ns = 2 * second
    maker.on_quote(ctx, *quote("AAPL", "100.00", "100.01"))
    assert ctx.sent == [bid]
    # With nothing refused the timer leaves the quotes to the quotes.
    ctx.sent.clear()
    ctx.now_ns = 3 * second
    maker.on_timer(ctx, 3 * second)
    assert ctx.sent == []


def test_market_maker_config_refuses_nonsense():
    with pytest.raises(ValueError):
        mm(spread_ticks=0)


def test_zscore_by_hand():
    # [0, 1, 3]: mean 4/3, population variance 42/27, z = (5/3) / sqrt(42/27) = 1.3363...
    assert round(zscore([D(0), D(1), D(3)]), 4) == D("1.3363")
    assert zscore([D(2), D(2)]) is None


def test_pairs_enters_beyond_entry_z_holds_and_exits_inside_exit_z():
    trader = PairsTrader("pairs", PairsConfig("AAA", "BBB", hedge_ratio=D(1), window=3,
                                              entry_z=D("1.2"), exit_z=D("0.5"), size=10))
    ctx = FakeContext(fill_at_once=True)

    def mid(symbol: str, m: str) -> None:
        half = D("0.01")
        trader.on_quote(ctx, *quote(symbol, str(D(m) - half), str(D(m) + half)))

    mid("BBB", "50")  # only one leg known: no sample
    for a in ("50", "51"):  # spreads 0, 1: the window is not full yet
        mid("AAA", a)
    assert ctx.sent == []
    mid("AAA", "53")  # spreads [0, 1, 3]: z = 1.336 > 1.2, the spread is rich: short it
    assert ctx.sent == [("submit", "AAA", "sell", 10, None, "ioc"),
                        ("submit", "BBB", "buy", 10, None, "ioc")]
    assert ctx.positions == {"AAA": -10, "BBB": 10}
    ctx.sent.clear()
    mid("AAA", "51")  # [1, 3, 1]: z = -0.707, outside the exit band: hold
    assert ctx.sent == [] and trader.target == -1
    mid("AAA", "52")  # [3, 1, 2]: z = 0 < 0.5: flatten both legs
    assert ctx.sent == [("submit", "AAA", "buy", 10, None, "ioc"),
                        ("submit", "BBB", "sell", 10, None, "ioc")]
    assert ctx.positions == {"AAA": 0, "BBB": 0}


def test_pairs_hedge_ratio_sizes_the_second_leg():
    config = PairsConfig("AAA", "BBB", hedge_ratio=D("1.5"), window=2, size=10)
    assert config.size_b == 15
    with pytest.raises(ValueError):
        PairsConfig("AAA", "BBB", entry_z=D(1), exit_z=D(2))
