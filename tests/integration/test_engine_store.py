"""The engine over the real event store, SQLite and PostgreSQL: one behaviour suite.

Every test runs on both backends through the ``backend`` fixture (tests/conftest.py): group
commit, record before release, idempotent re-sends, restarts, the store's immutability, replay
and exactly-once projections. Failing journals are small fakes at the engine's own port
(``Journal``) wrapped around the real store; everything else is the real thing.
"""

from __future__ import annotations

import itertools
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from commands.engine import Engine, NotRecorded
from commands.models import CancelOrder, CloseTradingDay, Command, ReplaceOrder, SubmitOrder
from commands.outcomes import Outcome
from domain.book_snapshot import state_of
from domain.events import OrderAccepted, OrderFilled
from domain.orders import Order
from infrastructure.bootstrap import System, bootstrap, build_engine, open_read_side
from infrastructure.codec import stored_hash
from infrastructure.postgres_admin import throwaway_database
from infrastructure.settings import Settings
from infrastructure.writer_lock import AnotherWriterRunning
from projections import queries
from projections.rebuild import digest, rebuild
from projections.runner import ProjectionRunner

pytestmark = pytest.mark.timeout(180)

ALPHA, BETA, GAMMA, DELTA = "ACC-ALPHA", "ACC-BETA", "ACC-GAMMA", "ACC-DELTA"
T0 = 1_699_920_000_000_000_000  # 2023-11-14T00:00:00Z: the default calendar's day opens
STEP_NS = 1_000_000_000  # 1 s per clock reading: never inside the 1 s duplicate window


# ------------------------------------------------------------------------------- helpers


class StepClock:
    """Deterministic engine clock shared by every system of a test (restarts continue it)."""

    def __init__(self) -> None:
        self._ticks = itertools.count(1)

    def __call__(self) -> int:
        return T0 + next(self._ticks) * STEP_NS


def submit(account: str, client_order_id: str, side: str = "buy", quantity: int = 100,
           price: str | None = "189.00", symbol: str = "AAPL", tif: str = "day") -> SubmitOrder:
    return SubmitOrder(
        client_order_id=client_order_id, account_id=account, symbol=symbol, side=side,
        quantity=quantity, order_type="limit" if price is not None else "market",
        limit_price=None if price is None else Decimal(price), time_in_force=tif,
        actor="tester")


def cancel(order_id: str) -> CancelOrder:
    return CancelOrder(order_id=uuid.UUID(order_id), actor="tester")


def replace(order_id: str, quantity: int | None = None, price: str | None = None) -> ReplaceOrder:
    return ReplaceOrder(order_id=uuid.UUID(order_id), quantity=quantity,
                        limit_price=None if price is None else Decimal(price), actor="tester")


def ok(outcomes: Sequence[Outcome | BaseException]) -> list[Outcome]:
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise AssertionError(f"command failed: {outcome!r}")
    return list(outcomes)  # type: ignore[arg-type]


def oid(outcome: Outcome) -> str:
    assert outcome.order is not None, outcome
    return str(outcome.order["order_id"])


def resting(engine: Engine) -> dict[str, dict[str, list[tuple[Decimal, list[str]]]]]:
    """The venue's books: per symbol and side, price levels in priority order, FIFO queues."""
    books: dict[str, dict[str, list[tuple[Decimal, list[str]]]]] = {}
    for symbol, book in engine.venue.books.items():  # type: ignore[attr-defined]
        sides = {}
        for name, side in (("bids", book.bids), ("asks", book.asks)):
            prices = side.prices[::-1] if name == "bids" else side.prices
            sides[name] = [(p, [str(e.order_id) for e in side.levels[p]]) for p in prices]
        if sides["bids"] or sides["asks"]:
            books[symbol] = sides
    return books


def engine_state(engine: Engine) -> dict[str, Any]:
    """The whole book of record as a snapshot stores it, and the venue's queues."""
    return {"book": state_of(engine.book), "venue": resting(engine)}


def recovered_state(system: System) -> dict[str, Any]:
    """What a fresh engine rebuilt from the store holds (the store is the truth)."""
    return engine_state(build_engine(system.settings, system.config, system.store))


def read_digest(system: System) -> str:
    with system.read_models.connect() as conn:
        return digest(conn)


def stored_events(system: System, after: int = 0) -> list[tuple[int, Any]]:
    return list(system.store.read(after))


class SpyJournal:
    """The real store behind the engine's Journal port, recording every append."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.appends: list[list[Any]] = []

    def append(self, events: Sequence[Any]) -> int:
        position = self.inner.append(events)
        self.appends.append(list(events))
        return position

    def read(self, after: int = 0) -> Iterator[tuple[int, Any]]:
        return self.inner.read(after)

    def reset_head(self) -> None:
        self.inner.reset_head()


class FailingJournal(SpyJournal):
    """Raises once, on the ``fail_on``-th append (1-based) that ``counts``; otherwise the real
    store. By default every append counts."""

    def __init__(self, inner: Any, fail_on: int,
                 counts: Callable[[Sequence[Any]], bool] = lambda _events: True) -> None:
        super().__init__(inner)
        self.fail_on = fail_on
        self.counts = counts
        self.calls = 0

    def append(self, events: Sequence[Any]) -> int:
        if self.counts(events):
            self.calls += 1
            if self.calls == self.fail_on:
                raise OSError("simulated journal failure (disk full)")
        return super().append(events)


def carries_decisions(events: Sequence[Any]) -> bool:
    return any(hasattr(e, "client_order_id") for e in events)


class SpyVenue:
    """The real venue, recording what the engine released to it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.released: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def match(self, order: Order, on_execution: Any) -> None:
        self.released.append(("match", str(order.order_id)))
        self.inner.match(order, on_execution)

    def remove(self, order: Order, price: Any = None) -> bool:
        self.released.append(("remove", str(order.order_id)))
        return bool(self.inner.remove(order, price))

    def can_fill_completely(self, order: Order) -> bool:
        self.released.append(("fok-check", str(order.order_id)))
        return bool(self.inner.can_fill_completely(order))


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


class Systems:
    """Bootstraps systems (engine not threaded) on the test's store; each is closed once."""

    def __init__(self, settings: Settings, clock: StepClock) -> None:
        self.settings = settings
        self.clock = clock
        self.open: list[System] = []

    def __call__(self) -> System:
        system = bootstrap(self.settings, start=False, clock=self.clock)
        self.open.append(system)
        return system

    def restart(self, system: System) -> System:
        """Close a system and bootstrap a new one on the same store (a process restart)."""
        self.open.remove(system)
        system.close()
        return self()

    def close_all(self) -> None:
        while self.open:
            self.open.pop().close()


@pytest.fixture
def open_system(backend: Settings, clock: StepClock) -> Iterator[Systems]:
    systems = Systems(backend, clock)
    yield systems
    systems.close_all()


@pytest.fixture
def fresh_read_url(backend: Settings, tmp_path: Path,
                   request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty read-model database on the same backend, for replay."""
    if not backend.uses_postgres:
        yield f"sqlite:///{tmp_path / 'replayed.sqlite'}"
        return
    admin: str = request.getfixturevalue("pg_admin_url")
    with throwaway_database(admin, "mlreplay") as url:
        yield "postgresql+psycopg://" + url.split("://", 1)[1]


def trading_session(engine: Engine) -> dict[str, str]:
    """A mixed workload: resting, crossing, partial fills, cancels, replaces, rejects."""
    ids: dict[str, str] = {}
    first = ok(engine.execute([
        submit(ALPHA, "a-bid-1", "buy", 100, "189.00"),
        submit(BETA, "b-bid-1", "buy", 200, "188.50"),
        submit(GAMMA, "g-ask-1", "sell", 150, "191.00"),
        submit(DELTA, "d-ask-1", "sell", 80, "191.50", symbol="AAPL", tif="gtc"),
        submit(ALPHA, "a-msft-1", "buy", 10, "409.00", symbol="MSFT"),
        submit(BETA, "b-big", "buy", 20_000, "189.00"),  # max_qty
        submit(GAMMA, "g-collar", "buy", 10, "250.00"),  # price collar
        submit(GAMMA, "g-tsla", "buy", 10, "250.00", symbol="TSLA"),  # restricted
        submit("ACC-NOBODY", "n-1", "buy", 10, "189.00"),  # unknown account
    ]))
    for outcome in first:
        ids[outcome.order["client_order_id"]] = oid(outcome)  # type: ignore[index]
    crossing = ok(engine.execute([
        submit(DELTA, "d-sell-1", "sell", 250, "188.50"),  # takes a-bid-1 then part of b-bid-1
        submit(BETA, "b-buy-2", "buy", 100, "191.00", tif="ioc"),  # lifts part of g-ask-1
        submit(ALPHA, "a-mkt-1", "sell", 10, None, symbol="MSFT"),  # market; no bid -> canceled
    ]))
    for outcome in crossing:
        ids[outcome.order["client_order_id"]] = oid(outcome)  # type: ignore[index]
    ok(engine.execute([
        replace(ids["g-ask-1"], quantity=40),  # smaller: keeps its place
        cancel(ids["a-msft-1"]),
        cancel(ids["a-bid-1"]),  # already filled: CancelRejected
        replace(ids["b-big"], quantity=10),  # rejected order: ReplaceRejected
        submit(DELTA, "d-buy-3", "buy", 30, "191.00"),  # fills against g-ask-1
    ]))
    return ids


# ------------------------------------------------------------------------ group commit


def test_one_execute_journals_its_decisions_in_one_append_in_decision_order(
        open_system: Systems) -> None:
    system = open_system()
    engine = system.engine
    spy = engine.journal = SpyJournal(system.store)
    commands: list[Command] = [
        submit((ALPHA, BETA, GAMMA, DELTA)[n % 4], f"gc-{n}", "buy", 10 + n, f"18{5 + n % 4}.00")
        for n in range(12)
    ]
    commands.insert(3, submit(BETA, "gc-rejected", "buy", 50_000, "189.00"))
    commands.insert(7, submit("ACC-NOBODY", "gc-unknown", "buy", 5, "189.00"))
    before = system.store.head_position

    outcomes = ok(engine.execute(commands))

    assert [o.kind for o in outcomes] == ["created"] * len(commands)
    assert len(spy.appends) == 1, "no fills: the whole batch is one transaction"
    assert len(spy.appends[0]) == len(commands)
    log = stored_events(system, before)
    assert [p for p, _ in log] == list(range(before + 1, before + len(commands) + 1))
    assert [e.client_order_id for _, e in log] == [c.client_order_id for c in commands]
    assert [str(e.order_id) for _, e in log] == [oid(o) for o in outcomes]
    assert engine.committed_position == system.store.head_position == before + len(commands)
    assert [type(e).__name__ for _, e in log].count("OrderRejected") == 2


def test_decisions_are_journaled_before_the_fills_they_cause(
        open_system: Systems) -> None:
    system = open_system()
    engine = system.engine
    ok(engine.execute([submit(ALPHA, "rest-1", "buy", 100, "189.00"),
                       submit(BETA, "rest-2", "buy", 100, "188.00")]))
    spy = engine.journal = SpyJournal(system.store)
    before = system.store.head_position

    outcomes = ok(engine.execute([
        submit(GAMMA, "take-1", "sell", 150, "188.00"),
        submit(DELTA, "rest-3", "sell", 10, "195.00"),
        submit(DELTA, "take-2", "sell", 50, "188.00"),
    ]))

    assert len(spy.appends) == 2, "one append for the decisions, one for the venue's results"
    assert [type(e) for e in spy.appends[0]] == [OrderAccepted] * 3
    assert all(type(e) is OrderFilled for e in spy.appends[1])
    log = stored_events(system, before)
    kinds = [type(e) for _, e in log]
    assert kinds[:3] == [OrderAccepted] * 3 and set(kinds[3:]) == {OrderFilled}
    # The acknowledgement shows the fills journaled in the same cycle.
    assert [o.order["filled_quantity"] for o in outcomes] == [150, 0, 50]  # type: ignore[index]
    assert [o.order["status"] for o in outcomes] == [  # type: ignore[index]
        "filled", "accepted", "filled"]
    fills = [e for _, e in log if type(e) is OrderFilled]
    assert sum(f.fill_quantity for f in fills if f.side == "sell") == 200
    assert sum(f.fill_quantity for f in fills if f.side == "buy") == 200
    assert engine_state(engine) == recovered_state(system)


def test_engine_thread_acknowledges_only_durable_orders(backend: Settings,
                                                        clock: StepClock) -> None:
    system = bootstrap(backend, start=True, clock=clock)
    try:
        futures = [system.engine.submit(submit((ALPHA, BETA)[n % 2], f"thr-{n}", "buy",
                                               1 + n, "180.00")) for n in range(300)]
        outcomes = [f.result(timeout=60) for f in futures]
        assert {o.kind for o in outcomes} == {"created"}
        stored = {str(e[0]) for _, e in system.store.read()}
        assert {oid(o) for o in outcomes} <= stored
        assert system.engine.batches <= 300
    finally:
        system.close()


def test_pipelined_engine_survives_a_failed_write_with_batches_in_flight(
        open_system: Systems) -> None:
    """The engine thread decides batch N+1 while N is written; when a write fails, later
    batches (decided on top of it) must not be written either, and every answer is durable
    or NotRecorded."""
    system = open_system()
    engine = system.engine
    engine.batch_max = 10  # many small batches, several in flight at the failure
    engine.journal = FailingJournal(system.store, fail_on=3, counts=carries_decisions)
    engine.start()
    try:
        commands = [submit((ALPHA, BETA)[n % 2], f"pipe-{n}", ("buy", "sell")[n % 3 == 0],
                           1 + n % 7, ("189.00", "189.50", "190.00")[n % 3]) for n in range(200)]
        futures = [engine.submit(c) for c in commands]
        results = [f.exception(timeout=60) or f.result() for f in futures]
    finally:
        engine.stop()
    lost = [c for c, r in zip(commands, results, strict=True) if isinstance(r, NotRecorded)]
    answered = [(c, r) for c, r in zip(commands, results, strict=True) if isinstance(r, Outcome)]
    assert lost, "the failed write must have cost some batch its durability"
    assert len(lost) + len(answered) == len(commands)
    assert engine_state(engine) == recovered_state(system)
    decisions = [e for _, e in stored_events(system) if hasattr(e, "client_order_id")]
    by_client_id = {(e.account_id, e.client_order_id): e for e in decisions}
    assert len(by_client_id) == len(decisions), "no order is journaled twice"
    for command, outcome in answered:
        assert (command.account_id, command.client_order_id) in by_client_id
        assert outcome.order["order_id"] == str(  # type: ignore[index]
            by_client_id[(command.account_id, command.client_order_id)].order_id)
    for command in lost:
        assert (command.account_id, command.client_order_id) not in by_client_id
    assert system.store.verify().ok
    # NotRecorded means "safe to resend": they go through now, once each.
    again = ok(engine.execute(lost))
    assert {o.kind for o in again} == {"created"}
    assert engine_state(engine) == recovered_state(system)


# ------------------------------------------------------------------ record before release


def test_failed_decision_journal_releases_nothing_and_answers_not_recorded(
        open_system: Systems) -> None:
    system = open_system()
    engine = system.engine
    resting_sell = ok(engine.execute([submit(ALPHA, "ask-1", "sell", 100, "189.00")]))[0]
    head = system.store.head_position
    durable_before = engine_state(engine)
    venue = engine.venue = SpyVenue(engine.venue)  # type: ignore[assignment]
    engine.journal = FailingJournal(system.store, fail_on=1)

    results = engine.execute([
        submit(BETA, "bid-cross", "buy", 100, "190.00"),  # would trade with ask-1
        submit(GAMMA, "bid-rest", "buy", 50, "188.00"),  # would rest
        submit(ALPHA, "ask-1", "sell", 100, "189.00"),  # re-send: journals nothing
        cancel(oid(resting_sell)),
    ])

    assert isinstance(results[0], NotRecorded)
    assert isinstance(results[1], NotRecorded)
    assert isinstance(results[3], NotRecorded)
    resent = results[2]
    assert isinstance(resent, Outcome) and resent.kind == "existing"
    assert resent.order == resting_sell.order
    assert venue.released == [], "nothing may reach the venue before it is journaled"
    assert system.store.head_position == head
    assert [e for _, e in stored_events(system, head)] == []
    # The engine rebuilt itself from the store: exactly the durable state, nothing else.
    assert engine_state(engine) == durable_before == recovered_state(system)
    assert engine.book.find(BETA, "bid-cross") is None
    assert resting(engine)["AAPL"] == {"bids": [], "asks": [(Decimal("189.00"),
                                                             [oid(resting_sell)])]}

    # NotRecorded means "safe to resend": the same commands now go through, once.
    again = ok(engine.execute([submit(BETA, "bid-cross", "buy", 100, "190.00"),
                               submit(GAMMA, "bid-rest", "buy", 50, "188.00")]))
    assert [o.kind for o in again] == ["created", "created"]
    assert again[0].order["status"] == "filled"  # type: ignore[index]
    assert engine_state(engine) == recovered_state(system)


def test_failed_fill_journal_answers_only_durable_state(
        open_system: Systems) -> None:
    system = open_system()
    engine = system.engine
    ok(engine.execute([submit(ALPHA, "ask-1", "sell", 100, "189.00")]))
    head = system.store.head_position
    engine.journal = FailingJournal(system.store, fail_on=2)  # decisions ok, fills fail

    result = engine.execute([submit(BETA, "bid-cross", "buy", 100, "190.00")])[0]

    stored = [e for _, e in stored_events(system, head)]
    # The acceptance was durable; the lost venue step ran again during recovery, so its
    # fills (taker, then maker) were journaled by the recovery, once.
    assert [type(e) for e in stored] == [OrderAccepted, OrderFilled, OrderFilled]
    assert isinstance(result, Outcome)
    # Acknowledged with what is durable: the recovered order, filled by the recovery.
    assert result.kind == "created"
    assert result.order["status"] == "filled"  # type: ignore[index]
    assert result.order["filled_quantity"] == 100  # type: ignore[index]
    assert engine.committed_position == system.store.head_position
    assert engine_state(engine) == recovered_state(system)


def test_recovery_after_a_failed_fill_journal_leaves_no_crossed_book(
        open_system: Systems) -> None:
    """After the fills of a released order failed to journal, the recovered venue holds the
    accepted buy at 190 and the sell at 189 both resting: a crossed book that never trades."""
    system = open_system()
    engine = system.engine
    ok(engine.execute([submit(ALPHA, "ask-1", "sell", 100, "189.00")]))
    engine.journal = FailingJournal(system.store, fail_on=2)
    engine.execute([submit(BETA, "bid-cross", "buy", 100, "190.00")])

    for symbol, book in engine.venue.books.items():  # type: ignore[attr-defined]
        bid, ask = book.best_bid(), book.best_ask()
        assert bid is None or ask is None or bid < ask, (
            f"{symbol}: crossed book after recovery, bid {bid} >= ask {ask}")


# ------------------------------------------------------------------------- idempotency


def test_resend_returns_the_original_outcome_and_journals_nothing(
        open_system: Systems) -> None:
    system = open_system()
    engine = system.engine
    original, rejected = ok(engine.execute([
        submit(ALPHA, "idem-1", "buy", 100, "185.00"),
        submit(BETA, "idem-rej", "buy", 50_000, "185.00"),
    ]))
    assert rejected.order["status"] == "rejected"  # type: ignore[index]
    head = system.store.head_position

    same, same_rejected = ok(engine.execute([submit(ALPHA, "idem-1", "buy", 100, "185.00"),
                                             submit(BETA, "idem-rej", "buy", 50_000, "185.00")]))
    assert (same.kind, same.order) == ("existing", original.order)
    assert (same_rejected.kind, same_rejected.order) == ("existing", rejected.order)
    assert system.store.head_position == head

    # Twice in one batch: one order, one event.
    first, second = ok(engine.execute([submit(GAMMA, "idem-2", "buy", 7, "185.00"),
                                       submit(GAMMA, "idem-2", "buy", 7, "185.00")]))
    assert (first.kind, second.kind) == ("created", "existing")
    assert oid(first) == oid(second)
    assert system.store.head_position == head + 1

    # The same client id for a different order: a conflict, nothing journaled.
    conflict = ok(engine.execute([submit(ALPHA, "idem-1", "buy", 101, "185.00")]))[0]
    assert conflict.kind == "conflict" and conflict.detail == {"fields": ["quantity"]}
    assert oid(conflict) == oid(original)
    assert system.store.head_position == head + 1


def test_resend_after_restart_returns_the_original_outcome(
        open_system: Systems) -> None:
    system = open_system()
    original, rejected = ok(system.engine.execute([
        submit(ALPHA, "idem-1", "buy", 100, "185.00"),
        submit(GAMMA, "idem-rej", "buy", 10, "250.00"),  # price collar
    ]))
    head = system.store.head_position

    system = open_system.restart(system)

    same, same_rejected = ok(system.engine.execute([
        submit(ALPHA, "idem-1", "buy", 100, "185.00"),
        submit(GAMMA, "idem-rej", "buy", 10, "250.00"),
    ]))
    assert (same.kind, same.order) == ("existing", original.order)
    assert (same_rejected.kind, same_rejected.order) == ("existing", rejected.order)
    assert same_rejected.order["reject"]["control"] == "price_collar"  # type: ignore[index]
    assert system.store.head_position == head


# ------------------------------------------------------------------------------ restart


def test_journal_and_projections_survive_a_restart(open_system: Systems) -> None:
    system = open_system()
    ids = trading_session(system.engine)
    system.projections.catch_up()
    state, view_digest = engine_state(system.engine), read_digest(system)
    check = system.store.verify()
    assert check.ok and check.events == system.store.head_position
    with system.read_models.connect() as conn:
        orders = queries.list_orders(conn, limit=5000)
        positions = queries.list_positions(conn)
    assert state == recovered_state(system)

    system = open_system.restart(system)

    assert engine_state(system.engine) == state
    assert system.engine.committed_position == check.head_position
    assert system.projections.catch_up() == check.head_position
    assert read_digest(system) == view_digest
    with system.read_models.connect() as conn:
        assert queries.list_orders(conn, limit=5000) == orders
        assert queries.list_positions(conn) == positions
    assert system.store.verify() == check

    # Trading continues across the restart and the hash chain with it.
    after = ok(system.engine.execute([
        submit(ALPHA, "post-1", "buy", 60, "191.00"),  # takes the 20 left of g-ask-1
        cancel(ids["b-bid-1"]),
    ]))
    assert after[0].order["filled_quantity"] == 20  # type: ignore[index]
    assert after[1].order["status"] == "canceled"  # type: ignore[index]
    closing = ok(system.engine.execute([CloseTradingDay(actor="tester")]))[0]
    # post-1's remainder expires; d-ask-1 is GTC and carries over.
    assert closing.detail == {"trading_date": "2023-11-14", "expiring_orders": 1}
    system.projections.catch_up()
    continued = system.store.verify()
    assert continued.ok, continued
    assert continued.events == system.store.head_position > check.events
    first_new = system.store.select(check.head_position, 1)[0]
    prev_row = system.store.select(check.head_position - 1, 1)[0]
    assert orjson.loads(first_new[2])["prev_hash"] == stored_hash(prev_row[2])
    assert engine_state(system.engine) == recovered_state(system)
    assert resting(system.engine)["AAPL"]["asks"] == [(Decimal("191.50"), [ids["d-ask-1"]])]


def test_recovery_keeps_time_priority_of_replaced_orders(
        open_system: Systems) -> None:
    """A replace that raises the size loses time priority live; a restart must not undo it."""
    system = open_system()
    first, second = ok(system.engine.execute([submit(ALPHA, "prio-a", "buy", 100, "189.00"),
                                              submit(BETA, "prio-b", "buy", 100, "189.00")]))
    ok(system.engine.execute([replace(oid(first), quantity=150)]))
    live_queue = resting(system.engine)["AAPL"]["bids"]
    assert live_queue == [(Decimal("189.00"), [oid(second), oid(first)])]

    system = open_system.restart(system)

    assert resting(system.engine)["AAPL"]["bids"] == live_queue, (
        "after a restart the replaced order must stay behind the one that kept its place")
    taker = ok(system.engine.execute([submit(GAMMA, "prio-take", "sell", 100, "189.00")]))[0]
    filled = [e for _, e in system.store.read() if type(e) is OrderFilled
              and e.liquidity == "maker"]
    assert taker.order["status"] == "filled"  # type: ignore[index]
    assert [str(f.order_id) for f in filled] == [oid(second)]


# -------------------------------------------------------------------------- immutability


def test_store_refuses_update_and_delete(open_system: Systems, backend: Settings,
                                         request: pytest.FixtureRequest) -> None:
    system = open_system()
    trading_session(system.engine)
    before = system.store.verify()
    assert before.ok and before.events > 0
    first = "notification_id = 1" if backend.uses_postgres else "rowid = 1"
    statements = [
        "UPDATE stored_events SET state = state",
        f"UPDATE stored_events SET topic = 'forged' WHERE {first}",
        f"DELETE FROM stored_events WHERE {first}",
        "DELETE FROM stored_events",
    ]
    if backend.uses_postgres:
        statements.append("TRUNCATE stored_events")
        assert backend.database_url
        # Even the owner of the table is refused by its trigger; the engine's role is refused
        # by the privilege system before any trigger runs (ARCHITECTURE rule 11).
        owner: str = request.getfixturevalue("pg_owner_url")
        for url, refusal in ((owner, "immutable"), (backend.database_url, "permission denied")):
            for sql in statements:
                with psycopg.connect(url) as conn:
                    with pytest.raises(psycopg.Error, match=refusal):
                        conn.execute(sql)
                    conn.rollback()
    else:
        conn = sqlite3.connect(backend.sqlite_store_path)
        try:
            for sql in statements:
                with pytest.raises(sqlite3.DatabaseError, match="immutable"):
                    conn.execute(sql)
                conn.rollback()
        finally:
            conn.close()
    assert system.store.verify() == before
    assert len(stored_events(system)) == before.events


# ------------------------------------------------------------------ replay, exactly-once


def test_replay_into_a_fresh_database_matches_the_live_read_models(
        open_system: Systems, fresh_read_url: str, tmp_path: Path) -> None:
    system = open_system()
    trading_session(system.engine)
    system.projections.catch_up()
    live = read_digest(system)

    assert rebuild(system.store, fresh_read_url) == live
    # And across dialects: a SQLite replay of either store reads the same.
    assert rebuild(system.store, f"sqlite:///{tmp_path / 'cross.sqlite'}", batch_size=7) == live
    with pytest.raises(ValueError, match="empty database"):
        rebuild(system.store, fresh_read_url)


def test_catch_up_applies_every_event_exactly_once(open_system: Systems) -> None:
    system = open_system()
    trading_session(system.engine)
    head = system.store.head_position
    assert system.projections.catch_up() == head
    once = read_digest(system)
    with system.read_models.connect() as conn:
        assert set(queries.projection_positions(conn).values()) == {head}

    assert system.projections.catch_up() == head
    assert read_digest(system) == once
    # A second runner (a restarted process) over the same views skips what was applied.
    for batch_size in (1, 3, 5000):
        assert ProjectionRunner(system.read_models, system.store, batch_size).catch_up() == head
        assert read_digest(system) == once
    with system.read_models.connect() as conn:
        assert set(queries.projection_positions(conn).values()) == {head}
        audit = queries.audit_events(conn, limit=10_000)
    assert [a["position"] for a in audit] == list(range(1, head + 1))

    # New events are applied once, on top.
    ok(system.engine.execute([submit(DELTA, "late-1", "buy", 5, "180.00")]))
    assert system.projections.catch_up() == head + 1
    assert ProjectionRunner(system.read_models, system.store).catch_up() == head + 1
    with system.read_models.connect() as conn:
        late = queries.list_orders(conn, account_id=DELTA, limit=5000)
    assert [o["client_order_id"] for o in late].count("late-1") == 1


# ------------------------------------------------------------------ self-trade prevention


def test_an_order_never_trades_against_its_own_account(open_system: Systems) -> None:
    """FINRA 5210 (wash trades): the incoming order's remainder is cancelled, the resting
    order of the same account stays and still trades with another account."""
    system = open_system()
    engine = system.engine
    own_ask = ok(engine.execute([submit(ALPHA, "ask", "sell", 100, "189.00")]))[0]
    buy = ok(engine.execute([submit(ALPHA, "bid", "buy", 100, "190.00")]))[0]
    assert buy.order["status"] == "canceled"  # type: ignore[index]
    assert buy.order["filled_quantity"] == 0  # type: ignore[index]
    canceled = [e for _, e in stored_events(system) if type(e).__name__ == "OrderCanceled"]
    assert [e.reason for e in canceled] == ["self_trade_prevented"]
    assert resting(engine)["AAPL"]["asks"] == [(Decimal("189.00"), [oid(own_ask)])]
    other = ok(engine.execute([submit(BETA, "bid", "buy", 100, "190.00")]))[0]
    assert other.order["status"] == "filled"  # type: ignore[index]
    assert engine_state(engine) == recovered_state(system)


def test_fill_or_kill_counts_no_liquidity_behind_its_own_resting_order(
        open_system: Systems) -> None:
    system = open_system()
    engine = system.engine
    ok(engine.execute([submit(BETA, "ask-1", "sell", 50, "189.00"),
                       submit(ALPHA, "ask-2", "sell", 50, "189.00"),
                       submit(GAMMA, "ask-3", "sell", 50, "189.00")]))
    fok = ok(engine.execute([submit(ALPHA, "fok", "buy", 100, "190.00", tif="fok")]))[0]
    # 50 from BETA, then ALPHA's own order stops matching: all or nothing means nothing.
    assert fok.order["status"] == "canceled"  # type: ignore[index]
    assert fok.order["filled_quantity"] == 0  # type: ignore[index]
    assert not [e for _, e in stored_events(system) if type(e).__name__ == "OrderFilled"]


# ------------------------------------------------------------------ one writer per store


def test_a_second_engine_on_the_same_store_is_refused(open_system: Systems) -> None:
    system = open_system()
    with pytest.raises(AnotherWriterRunning, match="one engine per store"):
        open_system()
    # The read side (queries, audits, replays) opens beside the running engine.
    read = open_read_side(system.settings)
    try:
        assert read.projections.catch_up() == system.store.head_position
    finally:
        read.close()
    again = open_system.restart(system)  # the lock goes with the engine that held it
    assert again.engine.committed_position == system.store.head_position
