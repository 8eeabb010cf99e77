"""Market data feeds the reference-price port through the real engine (SQLite and
PostgreSQL): an ITCH-built book and a second venue make the NBBO; orders are collared
against its midpoint, reject ``stale_reference`` when the feed goes quiet, and Rule 201's
bid is the national best bid. Without a board, the default (the venue's own prints, the
previous close) is unchanged."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from commands.models import SubmitOrder
from commands.outcomes import Outcome
from domain.market_data import Quote
from domain.nbbo_reference import MarketDataBoard
from domain.order_book import AddOrder, OrderBook
from infrastructure.bootstrap import System, bootstrap, build_engine
from infrastructure.settings import Settings
from tests.integration.test_engine_trading import Clock

pytestmark = pytest.mark.timeout(180)

SECOND = 1_000_000_000


def buy(cid: str, price: str, quantity: int = 10) -> SubmitOrder:
    return SubmitOrder(client_order_id=cid, account_id="ACC-BETA", symbol="AAPL", side="buy",
                       quantity=quantity, order_type="limit", limit_price=Decimal(price),
                       time_in_force="day", actor="tester")


def one(system: System, command: SubmitOrder) -> dict[str, Any]:
    [outcome] = system.engine.execute([command])
    assert isinstance(outcome, Outcome), outcome
    assert outcome.order is not None
    return outcome.order


def decision(system: System, cid: str) -> Any:
    return next(e for _, e in system.store.read() if getattr(e, "client_order_id", "") == cid
                and type(e).__name__ in ("OrderAccepted", "OrderRejected"))


def feed(board: MarketDataBoard, ts_ns: int) -> None:
    """NASDAQ's book from ITCH adds (bid 250.00 x 300, ask 250.10 x 100) and ARCA's quote
    (bid 250.02 x 200, ask 250.30): NBBO 250.02 (ARCA) / 250.10 (NASDAQ), midpoint 250.06."""
    book = OrderBook("AAPL", "NASDAQ")
    for ref, side, shares, price in ((1, b"B", 300, 2_500_000), (2, b"S", 100, 2_501_000),
                                     (3, b"S", 100, 2_505_000)):
        for event in book.apply(AddOrder(1, ts_ns, ref, side, shares, "AAPL", price, None)):
            board.on_event(event)
    board.on_quote(Quote("ARCA", "AAPL", Decimal("250.02"), 200, Decimal("250.30"), 100, ts_ns))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def board(clock: Clock) -> MarketDataBoard:
    board = MarketDataBoard()
    feed(board, clock.now)
    return board


@pytest.fixture
def system(backend: Settings, clock: Clock, board: MarketDataBoard) -> Iterator[System]:
    s = bootstrap(backend, start=False, clock=clock, market_data=board)
    yield s
    s.close()


def test_orders_are_collared_against_the_nbbo_midpoint(system: System) -> None:
    # The configured previous close is 190.00: against it 250 would be refused and 190
    # accepted. Against the market (midpoint 250.06, collar 10%) it is the other way round.
    assert one(system, buy("near", "250.00"))["status"] == "accepted"
    accepted = decision(system, "near")
    assert (accepted.reference_price, accepted.reference_source) == (
        Decimal("250.06"), "nbbo_midpoint")
    far = one(system, buy("far", "190.00"))
    assert far["status"] == "rejected"
    assert far["reject"]["control"] == "price_collar"
    assert decision(system, "far").reference_price == Decimal("250.06")


def test_a_stale_feed_rejects_and_a_heartbeat_revives_it(
        system: System, clock: Clock, board: MarketDataBoard) -> None:
    clock.now += 301 * SECOND  # reference_max_age_ms = 300000 in the default config
    stale = one(system, buy("stale", "250.00"))
    assert stale["status"] == "rejected"
    assert stale["reject"]["control"] == "stale_reference"
    # Only NASDAQ speaks: the NBBO's bid venue (ARCA) is still silent, so still stale.
    board.heartbeat("NASDAQ", clock.now)
    assert one(system, buy("half", "250.00"))["reject"]["control"] == "stale_reference"
    board.heartbeat("ARCA", clock.now)
    assert one(system, buy("fresh", "250.00"))["status"] == "accepted"


def test_rule_201_reads_the_national_best_bid_also_after_recovery(
        system: System, board: MarketDataBoard) -> None:
    assert system.engine.book.best_bid("AAPL") == Decimal("250.02")  # ARCA's, not NASDAQ's
    board.on_quote(Quote("ARCA", "AAPL", None, 0, Decimal("250.30"), 100, 0))
    assert system.engine.book.best_bid("AAPL") == Decimal("250.00")  # ARCA's bid went empty
    rebuilt = build_engine(system.settings, system.config, system.store, market_data=board)
    assert rebuilt.book.best_bid("AAPL") == Decimal("250.00")
    reference = rebuilt.book.references.reference("AAPL")
    assert reference is not None
    assert (reference.price, reference.source) == (Decimal("250.05"), "nbbo_midpoint")


def test_without_a_board_the_venue_prints_and_previous_close_stay_the_reference(
        backend: Settings, clock: Clock) -> None:
    system = bootstrap(backend, start=False, clock=clock)
    try:
        assert one(system, buy("close", "190.00"))["status"] == "accepted"
        assert decision(system, "close").reference_source == "previous_close"
    finally:
        system.close()


def test_a_feed_thread_writes_while_the_engine_decides(
        system: System, clock: Clock, board: MarketDataBoard) -> None:
    """Every decision records a midpoint the feed actually published (never a torn one)."""
    published = {Decimal("250.06")}
    stop = threading.Event()

    def pump() -> None:
        i = 0
        while not stop.is_set():
            bid = Decimal(25000 + i % 7) / 100
            # NASDAQ's ask 250.10 is never worse than ARCA's: the NBBO is bid / 250.10.
            published.add((bid + Decimal("250.10")) / 2)
            board.on_quote(Quote("ARCA", "AAPL", bid, 500, bid + Decimal("0.10"), 500,
                                 clock.now))
            i += 1

    thread = threading.Thread(target=pump)
    thread.start()
    try:
        for k in range(200):
            one(system, buy(f"t{k}", "250.00", k + 1))  # sizes differ: no duplicates
    finally:
        stop.set()
        thread.join()
    used = {decision(system, f"t{k}").reference_price for k in range(200)}
    assert used <= published, used - published
