"""The backtest's venue (queue position, slippage), its system (a store of its own, a feed
clock, seeded ids) and its tick files.

``BacktestVenue`` implements the engine's ``Venue`` port: the engine's venue step releases
orders to it after their decisions are journaled, as with the live simulator. It knows the
market only from the feed (each venue's top of book and the prints), so:
  * a marketable order takes the displayed size at the touch (plus ``slippage_ticks``), and
    what it took is gone until the next quote of that symbol;
  * a limit order that rests joins the back of its level: the displayed size at its price
    is ahead of it (0 at a new best price, unknown below the touch until the level shows);
  * the volume ahead only shrinks: prints at the price consume it, a smaller displayed
    size caps it, and a touch that moves past the price means everything ahead is gone;
  * a resting order fills when a print at its price finds no volume ahead (up to the
    print's size), when the market trades through its price, or when the contra quote
    crosses it — always at the order's own price (it was the maker).
"""

from __future__ import annotations

import csv
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

from commands.backtest import (
    Backtest,
    BacktestConfig,
    BacktestResult,
    BufferedJournal,
    Execution,
    SimClock,
)
from commands.engine import Engine
from domain.book_of_record import BookOfRecord
from domain.market_data import Nbbo, Quote, Trade
from domain.orders import Order
from domain.reference_prices import ReferencePrice
from domain.strategy import Strategy
from domain.values import OrderType, ReferenceSource, Side
from infrastructure.config import load_config
from infrastructure.event_store import EventStore
from infrastructure.settings import Settings
from infrastructure.writer_lock import WriterLock

BUY = Side.BUY
LIMIT = OrderType.LIMIT
LAST_SALE = str(ReferenceSource.LAST_SALE)
# A reference derived from the feed's quotes when the symbol has not printed (the NBBO
# source the market-data work plugs in names itself the same way).
NBBO_MIDPOINT = "nbbo_midpoint"
_UNKNOWN = -1  # volume ahead not known: the level is below the touch
_NONE: tuple[Execution, ...] = ()


class _Resting:
    __slots__ = ("ahead", "order", "price")

    def __init__(self, order: Order, price: Decimal, ahead: int) -> None:
        self.order = order
        self.price = price
        self.ahead = ahead


class BacktestVenue:
    def __init__(self, tick_sizes: dict[str, Decimal] | None = None,
                 slippage_ticks: int = 0) -> None:
        self.tick_sizes = tick_sizes or {}
        self.slippage_ticks = slippage_ticks
        self.quotes: dict[str, dict[str, Quote]] = {}  # symbol -> venue -> top of book
        self.best: dict[str, Quote] = {}  # symbol -> consolidated top (the NBBO)
        self.last_trade: dict[str, Trade] = {}
        self.taken: dict[str, list[int]] = {}  # symbol -> [bid taken, ask taken] since quote
        self.resting: dict[str, list[_Resting]] = {}

    # ------------------------------------------------------------------ market data

    def on_quote(self, quote: Quote) -> tuple[Execution, ...] | list[Execution]:
        symbol = quote.symbol
        venues = self.quotes.get(symbol)
        if venues is None:
            venues = self.quotes[symbol] = {}
            self.taken[symbol] = [0, 0]
        venues[quote.venue] = quote
        self.best[symbol] = quote if len(venues) == 1 else _consolidated(symbol, venues)
        taken = self.taken[symbol]
        taken[0] = taken[1] = 0
        if symbol in self.resting:
            return self._requeue(symbol, self.best[symbol])
        return _NONE

    def on_trade(self, trade: Trade) -> tuple[Execution, ...] | list[Execution]:
        self.last_trade[trade.symbol] = trade
        resting = self.resting.get(trade.symbol)
        if not resting:
            return _NONE
        executions: list[Execution] = []
        price, volume = trade.price, trade.size
        # Volume at a price goes to earlier priorities first; ours share what the queue
        # ahead of them left over.
        left_at_price = volume
        for r in list(resting):
            order = r.order
            leaves = order.quantity - order.filled_quantity
            buying = order.side == BUY
            if (price < r.price) if buying else (price > r.price):
                quantity = min(leaves, volume)  # traded through: we were better
            elif price == r.price:
                if r.ahead == _UNKNOWN:
                    r.ahead = 0  # the level printed: what was ahead of us traded now
                    continue
                consumed = min(r.ahead, left_at_price)
                r.ahead -= consumed
                quantity = min(leaves, left_at_price - consumed)
                left_at_price -= consumed + quantity
            else:
                continue
            if quantity > 0:
                executions.append((order, quantity, r.price))
                if quantity == leaves:
                    resting.remove(r)
        if not resting:
            del self.resting[trade.symbol]
        return executions

    def _requeue(self, symbol: str, best: Quote) -> list[Execution]:
        executions: list[Execution] = []
        resting = self.resting[symbol]
        for r in list(resting):
            order = r.order
            buying = order.side == BUY
            contra, contra_size = (best.ask, best.ask_size) if buying else (best.bid,
                                                                            best.bid_size)
            if contra is not None and contra_size > 0 and (
                    contra <= r.price if buying else contra >= r.price):
                leaves = order.quantity - order.filled_quantity
                quantity = min(leaves, contra_size)
                executions.append((order, quantity, r.price))
                if quantity == leaves:
                    resting.remove(r)
                continue
            touch, size = (best.bid, best.bid_size) if buying else (best.ask, best.ask_size)
            if touch is None or ((touch < r.price) if buying else (touch > r.price)):
                r.ahead = 0  # the touch left our level: whoever was ahead is gone
            elif touch == r.price:
                r.ahead = size if r.ahead == _UNKNOWN else min(r.ahead, size)
        if not resting:
            del self.resting[symbol]
        return executions

    def nbbo(self, symbol: str) -> Nbbo | None:
        q = self.best.get(symbol)
        if q is None:
            return None
        venues = self.quotes[symbol]
        if len(venues) == 1:
            return Nbbo(symbol, q.bid, q.bid_size, q.venue if q.bid is not None else None,
                        q.ask, q.ask_size, q.venue if q.ask is not None else None, q.ts_ns)
        bid_venue = next((v for v, x in venues.items() if x.bid == q.bid), None)
        ask_venue = next((v for v, x in venues.items() if x.ask == q.ask), None)
        return Nbbo(symbol, q.bid, q.bid_size, bid_venue, q.ask, q.ask_size, ask_venue,
                    q.ts_ns)

    def mid(self, symbol: str) -> float | None:
        q = self.best.get(symbol)
        if q is None or q.bid is None or q.ask is None:
            trade = self.last_trade.get(symbol)
            return None if trade is None else float(trade.price)
        return (float(q.bid) + float(q.ask)) / 2

    # ------------------------------------------------------------------ the Venue port

    def match(self, order: Order, on_execution: Any) -> bool:
        symbol = order.symbol
        buying = order.side == BUY
        limit = order.price_limit
        best = self.best.get(symbol)
        if best is not None:
            price, size = (best.ask, best.ask_size) if buying else (best.bid, best.bid_size)
            taken = self.taken[symbol]
            side = 1 if buying else 0
            available = size - taken[side]
            if price is not None and available > 0 and (
                    limit is None or (price <= limit if buying else price >= limit)):
                quantity = min(order.quantity - order.filled_quantity, available)
                fill_price = price
                if self.slippage_ticks:
                    tick = self.tick_sizes.get(symbol, Decimal("0.01"))
                    slip = tick * self.slippage_ticks
                    fill_price = price + slip if buying else price - slip
                    if limit is not None:
                        fill_price = min(fill_price, limit) if buying else max(fill_price,
                                                                               limit)
                taken[side] += quantity
                on_execution(order, None, quantity, fill_price)
        if (order.quantity > order.filled_quantity and order.order_type == LIMIT
                and order.time_in_force in ("day", "gtc")):
            assert limit is not None
            self._rest(order, limit, best)
        return True

    def _rest(self, order: Order, price: Decimal, best: Quote | None) -> None:
        buying = order.side == BUY
        touch, size = ((best.bid, best.bid_size) if buying else (best.ask, best.ask_size)
                       ) if best is not None else (None, 0)
        if touch is None or (price > touch if buying else price < touch):
            ahead = 0  # a new best price: nobody ahead
        elif price == touch:
            ahead = size  # joins the back of the displayed queue
        else:
            ahead = _UNKNOWN
        self.resting.setdefault(order.symbol, []).append(_Resting(order, price, ahead))

    def can_fill_completely(self, order: Order) -> bool:
        best = self.best.get(order.symbol)
        if best is None:
            return False
        buying = order.side == BUY
        price, size = (best.ask, best.ask_size) if buying else (best.bid, best.bid_size)
        limit = order.price_limit
        if price is None or (limit is not None and (price > limit if buying else price < limit)):
            return False
        available = size - self.taken[order.symbol][1 if buying else 0]
        return available >= order.quantity - order.filled_quantity

    def remove(self, order: Order, price: Any = None) -> bool:
        resting = self.resting.get(order.symbol)
        if not resting:
            return False
        for r in resting:
            if r.order is order:
                resting.remove(r)
                if not resting:
                    del self.resting[order.symbol]
                return True
        return False

    def requote(self) -> None:
        pass  # the market is the feed: nothing moves between ticks

    def best_bid(self, symbol: str) -> Decimal | None:
        best = self.best.get(symbol)
        return None if best is None else best.bid

    def queue_ahead(self, order_id: UUID) -> int | None:
        """The volume ahead of a resting order (None: not resting or unknown)."""
        for resting in self.resting.values():
            for r in resting:
                if r.order.order_id == order_id:
                    return None if r.ahead == _UNKNOWN else r.ahead
        return None


def _consolidated(symbol: str, venues: dict[str, Quote]) -> Quote:
    bid: Decimal | None = None
    ask: Decimal | None = None
    bid_size = ask_size = 0
    ts = 0
    for q in venues.values():
        ts = max(ts, q.ts_ns)
        if q.bid is not None and (bid is None or q.bid > bid):
            bid, bid_size = q.bid, q.bid_size
        elif q.bid is not None and q.bid == bid:
            bid_size += q.bid_size
        if q.ask is not None and (ask is None or q.ask < ask):
            ask, ask_size = q.ask, q.ask_size
        elif q.ask is not None and q.ask == ask:
            ask_size += q.ask_size
    return Quote("NBBO", symbol, bid, bid_size, ask, ask_size, ts)


class FeedReferences:
    """The price collar's reference in a backtest: the feed's last print, else its midpoint
    (recorded in each decision with its source and as-of time, so a replay needs no feed)."""

    def __init__(self, venue: BacktestVenue) -> None:
        self.venue = venue
        # The controls ask for a symbol's reference many times per order (collar, LULD,
        # marks): one value per (quote, print) pair, built on first use.
        self._cache: dict[str, tuple[Quote | None, Trade | None, ReferencePrice | None]] = {}

    def reference(self, symbol: str) -> ReferencePrice | None:
        trade = self.venue.last_trade.get(symbol)
        quote = self.venue.best.get(symbol)
        cached = self._cache.get(symbol)
        if cached is not None and cached[0] is quote and cached[1] is trade:
            return cached[2]
        ref: ReferencePrice | None = None
        if quote is not None and quote.bid is not None and quote.ask is not None and (
                trade is None or quote.ts_ns > trade.ts_ns):
            ref = ReferencePrice((quote.bid + quote.ask) / 2, NBBO_MIDPOINT, quote.ts_ns)
        elif trade is not None:
            ref = ReferencePrice(trade.price, LAST_SALE, trade.ts_ns)
        self._cache[symbol] = (quote, trade, ref)
        return ref


def seeded_ids(seed: int) -> Callable[[], UUID]:
    """Order and trade ids as ``infrastructure.ids`` makes them, from a seeded prefix: the
    same seed gives the same ids, so the same log (and chain head)."""
    from infrastructure.ids import _UNKNOWN as SAFE_UNKNOWN
    from infrastructure.ids import _VERSION_4, _new, _set_int, _set_safe

    prefix = random.Random(seed).getrandbits(58)
    high = ((prefix >> 10) << 80) | ((prefix & 0x3FF) << 66) | _VERSION_4
    counter = iter(range(1, 2**62))

    def new_id() -> UUID:
        uid = _new(UUID)
        _set_int(uid, high | next(counter))
        _set_safe(uid, SAFE_UNKNOWN)
        return uid

    return new_id


def backtest_settings(out_dir: Path, config_file: Path | None = None) -> Settings:
    """The embedded default in ``out_dir``, whatever MARKETLOG_* says: a backtest never
    writes to the production store."""
    return Settings(data_dir=out_dir, database_url=None, read_database_url=None,
                    database_owner_url=None, reader_database_url=None,
                    chain_anchor_file=None, kafka_bootstrap=None, config_file=config_file,
                    liquidity_provider=False)


@dataclass
class BacktestSystem:
    settings: Settings
    store: EventStore
    engine: Engine
    journal: BufferedJournal
    venue: BacktestVenue
    clock: SimClock
    lock: WriterLock

    def close(self) -> None:
        self.journal.flush()
        self.store.close()
        self.lock.release()


def open_backtest_system(out_dir: Path, seed: int, *, config_file: Path | None = None,
                         slippage_ticks: int = 0, commit_every: int = 20_000
                         ) -> BacktestSystem:
    """A fresh store in ``out_dir`` with an engine on the feed clock and the backtest venue."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / "events.sqlite").exists():
        raise FileExistsError(f"{out_dir} already holds a store: a backtest writes a new one")
    settings = backtest_settings(out_dir, config_file)
    config = load_config(settings.config_file)
    lock = WriterLock(settings, watch=False)
    store: EventStore | None = None
    try:
        store = EventStore.open(settings)
        store.claim_writer()
        venue = BacktestVenue({i.symbol: i.tick_size for i in config.instruments},
                              slippage_ticks)
        references = FeedReferences(venue)

        def new_book() -> BookOfRecord:
            return BookOfRecord(config.instruments, config.new_accounts(), config.firm,
                                references=references, users=config.new_users(),
                                symbol_limits=config.new_symbol_limits())

        clock = SimClock()
        journal = BufferedJournal(store, commit_every)
        # No calendar: the backtest opens and closes its days at the feed's dates. No
        # snapshots: the run is short-lived and replays from the start.
        engine = Engine(new_book, lambda _book: venue, journal, clock, seeded_ids(seed),
                        batch_max=1_000_000, calendar=None, queue_max=1_000_000,
                        snapshot_every=2**62)
        engine.recover()
    except BaseException:
        if store is not None:
            store.close()
        lock.release()
        raise
    return BacktestSystem(settings, store, engine, journal, venue, clock, lock)


def run_backtest(ticks: Iterable[Quote | Trade], strategy: Strategy, out_dir: Path, seed: int,
                 config: BacktestConfig | None = None, *, config_file: Path | None = None,
                 slippage_ticks: int = 0) -> BacktestResult:
    system = open_backtest_system(out_dir, seed, config_file=config_file,
                                  slippage_ticks=slippage_ticks)
    try:
        backtest = Backtest(system.engine, system.venue, system.journal, system.clock,
                            strategy, config or BacktestConfig())
        return backtest.run(ticks)
    finally:
        system.close()


# ---------------------------------------------------------------------- tick files

TICK_COLUMNS = ("ts_ns", "type", "venue", "symbol", "bid", "bid_size", "ask", "ask_size",
                "price", "size")


def read_ticks_csv(path: Path) -> Iterator[Quote | Trade]:
    """A tick file: ``ts_ns,type,venue,symbol,bid,bid_size,ask,ask_size,price,size`` with
    type Q (quote: bid/ask columns) or T (trade: price/size), in time order."""
    with path.open(newline="") as f:
        last = 0
        for line, row in enumerate(csv.DictReader(f), start=2):
            ts = int(row["ts_ns"])
            if ts < last:
                raise ValueError(f"{path.name}:{line}: ticks must be in time order")
            last = ts
            kind = row["type"].strip().upper()
            if kind == "Q":
                yield Quote(row["venue"], row["symbol"], _price(row["bid"]),
                            int(row["bid_size"] or 0), _price(row["ask"]),
                            int(row["ask_size"] or 0), ts)
            elif kind == "T":
                yield Trade(row["venue"], row["symbol"], Decimal(row["price"]),
                            int(row["size"]), ts)
            else:
                raise ValueError(f"{path.name}:{line}: type must be Q or T, not {kind!r}")


def _price(text: str | None) -> Decimal | None:
    return Decimal(text) if text else None


def write_ticks_csv(path: Path, ticks: Iterable[Quote | Trade]) -> int:
    count = 0
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(TICK_COLUMNS)
        for t in ticks:
            if type(t) is Quote:
                w.writerow((t.ts_ns, "Q", t.venue, t.symbol, t.bid or "", t.bid_size,
                            t.ask or "", t.ask_size, "", ""))
            else:
                w.writerow((t.ts_ns, "T", t.venue, t.symbol, "", "", "", "", t.price,
                            t.size))  # type: ignore[union-attr]
            count += 1
    return count


def wall_seconds() -> float:
    """Elapsed-time measurement for reports and benchmarks (not the engine's clock)."""
    return time.perf_counter()


# ---------------------------------------------------------------------- Monte Carlo worker

MC_START_NS = 1_767_623_400_000_000_000  # synthetic paths start 2026-01-05 14:30 UTC
MC_STEP_NS = 60_000_000_000  # one step a minute
MC_SYMBOL = "SPY"


def simulate(spec: Any) -> list[float]:
    """One Monte Carlo run (``commands.monte_carlo.RunSpec``) in a throwaway directory:
    its equity curve. Top-level so that worker processes can import it."""
    import tempfile

    from commands.backtest import make_strategy
    from domain.monte_carlo import REGIMES, gbm_path, ticks_from_path

    rng = random.Random(spec.seed)
    ticks: Iterable[Quote | Trade]
    if spec.regime is not None:
        # One-minute steps of a 6.5-hour day: dt in years.
        prices = gbm_path(520.0, spec.steps, REGIMES[spec.regime], 1 / (252 * 390), rng)
        ticks = ticks_from_path(prices, MC_SYMBOL, start_ns=MC_START_NS, step_ns=MC_STEP_NS)
    else:
        ticks = read_ticks_csv(Path(spec.ticks_file))
    config = BacktestConfig(feed_latency_ns=spec.feed_latency_ns,
                            order_latency_ns=spec.order_latency_ns, capital=spec.capital,
                            sample_ns=MC_STEP_NS)
    with tempfile.TemporaryDirectory(prefix="marketlog-mc-") as tmp:
        result = run_backtest(ticks, make_strategy(spec.strategy, dict(spec.params)),
                              Path(tmp) / "run", spec.seed, config,
                              slippage_ticks=spec.slippage_ticks)
    return [s.equity for s in result.equity]


def evaluator(strategy: str, config: BacktestConfig, seed: int
              ) -> Callable[[Any, dict[str, Any]], BacktestResult]:
    """Walk-forward's evaluation: a backtest of ``strategy`` with the given parameters on a
    slice of ticks, in a throwaway directory."""
    import tempfile

    from commands.backtest import make_strategy

    def evaluate(ticks: Any, params: dict[str, Any]) -> BacktestResult:
        with tempfile.TemporaryDirectory(prefix="marketlog-wf-") as tmp:
            return run_backtest(ticks, make_strategy(strategy, params), Path(tmp) / "run",
                                seed, config)

    return evaluate
