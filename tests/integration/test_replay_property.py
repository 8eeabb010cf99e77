"""Property: whatever commands arrive, in whatever batches, the log replays to the same views.

Random command sequences (submits across three accounts and two symbols priced near the
reference so many cross, cancels and replaces of earlier orders, the occasional end of day)
run through ``engine.execute`` in random batch sizes on a fresh store of the test's backend,
with the projections catching up at random points. Then:

(a) the incrementally built read models equal a from-scratch replay of the journal (digest);
(b) per (account, symbol): the signed fills in the store == positions_view == engine.book;
(c) per order: orders_view filled quantity and notional == the sum of its fills in the store;
and the engine's book of record equals one rebuilt from the store.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.models import (
    CancelOrder,
    CloseTradingDay,
    Command,
    OpenTradingDay,
    ReplaceOrder,
    SubmitOrder,
)
from domain.book_snapshot import state_of
from domain.events import OrderFilled
from domain.values import ZERO, signed_quantity
from infrastructure.bootstrap import System, bootstrap, build_engine
from infrastructure.postgres_admin import throwaway_store
from infrastructure.settings import Settings
from projections.rebuild import digest, rebuild
from projections.tables import orders_view, positions_view

pytestmark = pytest.mark.timeout(600)

ACCOUNTS = ("ACC-ALPHA", "ACC-BETA", "ACC-GAMMA")
SYMBOLS = {"AAPL": Decimal("190.00"), "MSFT": Decimal("410.00")}
TICK = Decimal("0.01")
T0 = 1_699_920_000_000_000_000  # 2023-11-14T00:00:00Z
STEP_NS = 300_000_000  # 0.3 s per cycle: identical orders a cycle apart hit the duplicate check


# ----------------------------------------------------------------------------- scenarios

# Mostly within 1.50 of the reference (so buys and sells cross), now and then far outside the
# 10% price collar; mostly small sizes, now and then above every account's max_qty.
offsets = st.integers(-165, 165).map(lambda t: t if abs(t) <= 150 else 20 * t)  # ticks
quantities = st.integers(1, 320).map(lambda q: q if q <= 300 else 20_000)

submits = st.tuples(
    st.just("submit"),
    st.sampled_from(ACCOUNTS),
    st.sampled_from(sorted(SYMBOLS)),
    st.sampled_from(["buy", "sell", "sell_short"]),
    quantities,
    offsets,
    st.sampled_from(["day", "day", "gtc", "ioc", "fok", "market"]),
)
cancels = st.tuples(st.just("cancel"), st.integers(0, 10_000))
replaces = st.tuples(st.just("replace"), st.integers(0, 10_000),
                     st.one_of(st.none(), st.integers(1, 400)),
                     st.one_of(st.none(), st.integers(-150, 150)))
end_of_day = st.tuples(st.just("eod"))

# 70% submits, 15% cancels, 10% replaces, 5% end of day.
steps = st.integers(0, 19).flatmap(
    lambda k: submits if k < 14 else cancels if k < 17 else replaces if k < 19 else end_of_day)


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    script = draw(st.lists(steps, min_size=15, max_size=80))
    batches, left = [], len(script)
    while left:
        size = min(left, draw(st.integers(1, 12)))
        batches.append((size, draw(st.booleans())))  # (commands, catch up after it?)
        left -= size
    return {"script": script, "batches": batches,
            "projection_batch": draw(st.sampled_from([1, 2, 3, 7, 5000]))}


def to_command(step: tuple[Any, ...], orders: list[tuple[uuid.UUID, str]],
               n: int) -> Command | list[Command] | None:
    kind = step[0]
    if kind == "submit":
        _, account, symbol, side, quantity, offset, tif = step
        market = tif == "market"
        return SubmitOrder(
            client_order_id=f"p-{n}", account_id=account, symbol=symbol, side=side,
            quantity=quantity, order_type="market" if market else "limit",
            limit_price=None if market else SYMBOLS[symbol] + offset * TICK,
            time_in_force="ioc" if market else tif, actor="hypothesis")
    if kind == "eod":  # the day closes (DAY orders expire) and the next one opens
        return [CloseTradingDay(actor="hypothesis"),
                OpenTradingDay(actor="hypothesis",
                               trading_date=(date(2024, 1, 1) + timedelta(days=n)).isoformat())]
    if not orders:
        return None
    target, symbol = orders[step[1] % len(orders)]
    if kind == "cancel":
        return CancelOrder(order_id=target, actor="hypothesis")
    _, _, quantity, offset = step
    if quantity is None and offset is None:
        quantity = 1
    return ReplaceOrder(order_id=target, quantity=quantity, actor="hypothesis",
                        limit_price=None if offset is None else SYMBOLS[symbol] + offset * TICK)


# ------------------------------------------------------------------------------- stores


@contextmanager
def fresh_settings(backend: Settings, admin_url: str | None,
                   projection_batch: int) -> Iterator[Settings]:
    """A brand-new store (and read models) of the backend's kind for one example."""
    data_dir = Path(tempfile.mkdtemp(prefix="ml-prop-"))
    try:
        update: dict[str, Any] = {"data_dir": data_dir, "database_url": None,
                                  "read_database_url": None,
                                  "projection_batch": projection_batch}
        if backend.uses_postgres:
            assert admin_url
            with throwaway_store(admin_url, "mlprop") as urls:
                yield backend.model_copy(update={**update, "database_url": urls.engine})
        else:
            yield backend.model_copy(update=update)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def book_state(system: System) -> Any:
    """The live book and one rebuilt from the store, as snapshots store them."""
    rebuilt = build_engine(system.settings, system.config, system.store)
    return state_of(system.engine.book), state_of(rebuilt.book)


# ------------------------------------------------------------------------------ property


def check_example(settings_: Settings, scenario: dict[str, Any], scratch: Path) -> None:
    ticks = itertools.count(1)
    system = bootstrap(settings_, start=False, clock=lambda: T0 + next(ticks) * STEP_NS)
    try:
        engine, script = system.engine, iter(scenario["script"])
        orders_made: list[tuple[uuid.UUID, str]] = []
        n = 0
        for size, catch_up in scenario["batches"]:
            batch = []
            for step in itertools.islice(script, size):
                n += 1
                command = to_command(step, orders_made, n)
                if isinstance(command, list):
                    batch.extend(command)
                elif command is not None:
                    batch.append(command)
            for result in engine.execute(batch):
                assert not isinstance(result, BaseException), result
                assert result.kind != "refused" or result.order is not None, result
                if result.order is not None and result.kind == "created":
                    orders_made.append((uuid.UUID(result.order["order_id"]),
                                        result.order["symbol"]))
            if catch_up:
                system.projections.catch_up()
        assert system.projections.catch_up() == system.store.head_position

        # (a) incremental == from scratch
        with system.read_models.connect() as conn:
            live = digest(conn)
            positions = {(r.account_id, r.symbol): r.quantity
                         for r in conn.execute(sa.select(positions_view))}
            orders = {r.order_id: (r.filled_quantity, r.filled_notional)
                      for r in conn.execute(sa.select(orders_view))}
        replay_url = f"sqlite:///{scratch / f'replay-{uuid.uuid4().hex}.sqlite'}"
        assert rebuild(system.store, replay_url, batch_size=5000) == live

        # (b) and (c) from the store's own fills
        signed: dict[tuple[str, str], int] = defaultdict(int)
        per_order: dict[str, tuple[int, Decimal]] = defaultdict(lambda: (0, ZERO))
        for _, event in system.store.read():
            if isinstance(event, OrderFilled):
                signed[(event.account_id, event.symbol)] += signed_quantity(
                    event.side, event.fill_quantity)
                qty, notional = per_order[str(event.order_id)]
                per_order[str(event.order_id)] = (qty + event.fill_quantity,
                                                  notional + event.fill_price * event.fill_quantity)
        for account in system.engine.book.accounts.values():
            for symbol in SYMBOLS:
                key = (account.account_id, symbol)
                assert signed.get(key, 0) == positions.get(key, 0) == \
                    account.positions.get(symbol, 0), key
        assert set(positions) <= set(signed)
        created = {str(e.order_id) for _, e in system.store.read()
                   if type(e).__name__ in ("OrderAccepted", "OrderRejected")}
        assert set(orders) == created
        for order_id, (filled, notional) in orders.items():
            assert (filled, notional) == per_order.get(order_id, (0, ZERO)), order_id

        live_book, recovered_book = book_state(system)
        assert live_book == recovered_book
        assert system.store.verify().ok
    finally:
        system.close()


def test_replay_and_positions_agree_for_any_command_sequence(
        backend: Settings, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    admin_url = request.getfixturevalue("pg_admin_url") if backend.uses_postgres else None

    @settings(max_examples=10 if backend.uses_postgres else 25, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(scenario=scenarios())
    def run(scenario: dict[str, Any]) -> None:
        with fresh_settings(backend, admin_url, scenario["projection_batch"]) as settings_:
            check_example(settings_, scenario, tmp_path)

    run()
