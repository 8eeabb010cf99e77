"""A seeded trading session on the embedded default: traders that breach every control.

The traders are strategies on the strategy API (``domain.strategies.demo_traders``; their
orders go through a ``StrategyContext``, like any strategy's) run by the demo's
deterministic runner (``commands.demo_runner``). They share the firm's default
configuration (``infrastructure/config/default.toml``):

* ``maria`` (ACC-ALPHA), a market maker quoting DAY and GTC limits around the mid,
  cancelling her oldest quotes and replacing others (price or size);
* ``momo`` (ACC-DELTA), a momentum trader sending market, IOC and FOK orders in the
  direction of the last move;
* ``fred`` (ACC-ALPHA), a fat finger: mostly passive limits, but now and then ten times the
  size (max_qty), too much money (max_notional), a price far off the market (price_collar),
  half a tick (tick_size) or an odd lot on the round-lot board (lot_size);
* ``rita`` (ACC-GAMMA), who tries restricted symbols (firm-wide RSTR, her account's TSLA),
  symbols that do not exist, NEWCO (no reference price yet), an account that does not exist
  and, on her account's lower size limit, an order too large;
* ``dave`` (ACC-ALPHA), who resends orders: the same order under a new client id within the
  duplicate window (rejected), the same client id again (idempotent: the original outcome,
  nothing journaled) or the same client id with other fields (a conflict, nothing journaled);
* ``cora`` (ACC-BETA), who rests GTC bids below the market until her credit limit (exposure
  of orders *entered*, not only executed) refuses the next one;
* ``bob`` (ACC-DELTA), whose blocks run into the firm-wide credit limit;
* ``sasha`` (ACC-BETA, strategy ``sasha-shorts``), who sells short while the risk desk
  (``rose`` and ``raj``: the desk's script in ``commands.demo_runner``, operator commands
  rather than orders) grants locates, halts and resumes, triggers Rule 201, suspends an
  account and drills the kill switch on her tag and the per-strategy throttle (a burst on
  ``sasha-burst``);
* ``lara`` (ACC-BETA), who sends one order after the close (the session control refuses it).

Everything the traders decide comes from ``random.Random(seed)`` and from the venue's
seeded liquidity provider (its mid is the quote they see), so a seed replays the same
session on a fresh store (timestamps aside: the engine's clock is real time; a session
added to an existing log draws from the seed and the log's length). Commands run in cycles
of 50-200 through ``Engine.execute`` (one group commit each, in this thread). The session
is a trading day: it opens (the calendar's date, or the day after the last closed one when
the demo is added to a log with ``--keep``) and ends with a ``CloseTradingDay`` that
expires the DAY orders; the read models are then caught up and the summary is read from
them.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import sqlalchemy as sa

from commands.demo_runner import Crowd, RiskDesk
from commands.models import (
    CancelOrder,
    CloseTradingDay,
    Command,
    OpenTradingDay,
    ReplaceOrder,
    SubmitOrder,
)
from commands.outcomes import Outcome
from domain.controls import NEW_ORDER_CONTROLS
from domain.instruments import Instrument
from domain.market_data import Quote
from domain.strategies import demo_traders
from domain.strategies.demo_traders import Desk
from domain.values import OrderStatus, Source
from infrastructure.bootstrap import System, bootstrap
from infrastructure.clock import utc_now_ns
from infrastructure.config import FirmConfig
from infrastructure.credentials import issue_missing_keys
from infrastructure.event_store import ChainCheck
from infrastructure.settings import Settings
from infrastructure.venue import SyntheticLiquidity
from projections.queries import list_positions
from projections.tables import audit_trail, orders_view

DEFAULT_ORDERS = 5000
DEFAULT_SEED = 42
CYCLE_SIZE = (50, 200)  # commands per engine cycle (one group commit)
SESSION_ACTOR = "session-close"

VENUE = "SIM"  # the venue's synthetic liquidity, as the traders see it

Progress = Callable[[int, int], None]  # (orders sent so far, orders in total)


# --------------------------------------------------------------------------- the result


@dataclass
class DemoResult:
    orders: int
    seed: int
    commands: int
    cycles: int
    events: int
    outcomes: Counter[str]
    rejections: dict[str, dict[str, int]]  # control -> account -> count (from the read model)
    unbreachable: dict[str, str]  # control -> why this configuration cannot breach it
    positions: list[dict[str, Any]]
    fills: int
    trading_seconds: float
    projection_seconds: float
    elapsed_seconds: float
    chain: ChainCheck
    store: str
    read_models: str
    errors: list[str] = field(default_factory=list)
    # Users (name, role, accounts) and where each one's API key was written on first run.
    users: list[tuple[str, str, list[str]]] = field(default_factory=list)
    credentials: dict[str, str] = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        return self.outcomes["accepted"]

    @property
    def rejected(self) -> int:
        return self.outcomes["rejected"]

    @property
    def orders_per_second(self) -> float:
        return self.orders / self.trading_seconds if self.trading_seconds else 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.trading_seconds if self.trading_seconds else 0.0

    def rejections_by_control(self) -> dict[str, int]:
        return {control: sum(self.rejections.get(control, {}).values())
                for control in NEW_ORDER_CONTROLS}

    @property
    def missed_controls(self) -> list[str]:
        """Controls the configuration can breach but this session did not."""
        totals = self.rejections_by_control()
        return [c for c in NEW_ORDER_CONTROLS if not totals[c] and c not in self.unbreachable]


def unbreachable_controls(config: FirmConfig) -> dict[str, str]:
    """Controls no order can breach under this configuration, and why."""
    accounts = config.new_accounts()
    total = sum((a.credit_limit for a in accounts), Decimal(0))
    found = {
        "stale_reference": "the venue's liquidity provider prints throughout the session",
    }
    if accounts and total <= config.firm.credit_limit:
        found["firm_credit"] = (f"firm credit limit {config.firm.credit_limit} is at least the "
                                f"sum of the account credit limits ({total})")
    return found


# --------------------------------------------------------------------------- running


def run_demo(settings: Settings, *, orders: int = DEFAULT_ORDERS, seed: int = DEFAULT_SEED,
             progress: Progress | None = None) -> DemoResult:
    """Bootstrap the system without its threads, run the session, close the system."""
    if not settings.liquidity_provider:
        raise ValueError("the demo needs Settings(liquidity_provider=True)")
    system = bootstrap(settings, start=False)
    try:
        written = issue_missing_keys(system)
        result = run_session(system, orders=orders, seed=seed, progress=progress)
        result.users = [(u.username, u.role, sorted(u.accounts))
                        for u in system.engine.book.gov.users.values()]
        result.credentials = {user: str(path) for user, path in written.items()}
        return result
    finally:
        system.close()


def run_session(system: System, *, orders: int = DEFAULT_ORDERS, seed: int = DEFAULT_SEED,
                progress: Progress | None = None) -> DemoResult:
    if orders < 1:
        raise ValueError("orders must be at least 1")
    engine, store = system.engine, system.store
    start_position, start_ns = store.head_position, utc_now_ns()
    # A session added to an existing log (--keep) draws other orders than the first one: the
    # same orders again within the duplicate window would be (rightly) rejected as duplicates.
    rng = random.Random(seed if start_position == 0 else f"{seed}/{start_position}")
    liquidity = engine.venue.liquidity
    if not isinstance(liquidity, SyntheticLiquidity):
        raise ValueError("the demo needs the venue's liquidity provider: "
                         "Settings(liquidity_provider=True)")
    instruments = {i.symbol: i for i in system.config.instruments}
    desk = Desk(rng, instruments)
    crowd = Crowd(
        demo_traders.crowd(desk), rng=rng, session=f"s{start_position}",
        desk=RiskDesk(rng, utc_now_ns, lambda name: getattr(engine.book.firm, name)),
        execute=engine.execute, market=partial(_quotes, liquidity, instruments),
        burst=demo_traders.ThrottleBurst(desk))
    outcomes: Counter[str] = Counter()
    errors: list[str] = []
    sent = commands = cycles = 0

    started = time.perf_counter()
    opening = _open_day(system)
    if opening is not None:
        errors.append(opening)
    while sent < orders:
        results = crowd.cycle(rng.randint(*CYCLE_SIZE), orders - sent)
        if not results:
            break  # every trader stopped (see the errors)
        cycles += 1
        commands += len(results)
        for command, outcome in results:
            sent += isinstance(command, SubmitOrder)
            outcomes[_classify(command, outcome)] += 1
            if isinstance(outcome, BaseException):
                errors.append(f"{type(command).__name__} by {command.actor}: {outcome!r}")
        if progress is not None:
            progress(sent, orders)

    close = engine.execute([CloseTradingDay(actor=SESSION_ACTOR, source=Source.DEMO,
                                            reason="demo session ends")])[0]
    cycles += 1
    commands += 1
    if isinstance(close, Outcome) and close.kind == "done":
        outcomes["end_of_day_canceled"] += (close.detail or {}).get("expiring_orders", 0)
    else:
        errors.append(f"CloseTradingDay: {close!r}")
    # A late order after the close: no trading day is open, so the session control refuses.
    for command, outcome in crowd.alone(demo_traders.LateTrader(desk)):
        commands += 1
        outcomes[_classify(command, outcome)] += 1
    cycles += 1
    errors += crowd.errors
    trading_seconds = time.perf_counter() - started

    caught_up = time.perf_counter()
    system.projections.catch_up()
    projection_seconds = time.perf_counter() - caught_up

    with system.read_models.connect() as conn:
        rejections = _rejections(conn, start_ns)
        fills = conn.execute(
            sa.select(sa.func.count()).select_from(audit_trail).where(
                audit_trail.c.position > start_position,
                audit_trail.c.event_type == "OrderFilled")
        ).scalar_one()
        positions = list_positions(conn)
    chain = store.verify()
    settings = system.settings
    return DemoResult(
        orders=sent, seed=seed, commands=commands, cycles=cycles,
        events=store.head_position - start_position, outcomes=outcomes,
        rejections=rejections, unbreachable=unbreachable_controls(system.config),
        positions=positions, fills=fills, trading_seconds=trading_seconds,
        projection_seconds=projection_seconds,
        elapsed_seconds=time.perf_counter() - started, chain=chain,
        store=(_redacted(settings.database_url) if settings.database_url
               else str(settings.sqlite_store_path.resolve())),
        read_models=(_redacted(settings.read_models_url) if settings.read_database_url
                     or settings.database_url
                     else str((settings.data_dir / "read_models.sqlite").resolve())),
        errors=errors)


def _quotes(liquidity: SyntheticLiquidity, instruments: dict[str, Instrument],
            now: int) -> list[Quote]:
    """The liquidity provider's mid of each symbol, a tick either side (its midpoint)."""
    quotes = []
    for symbol, instrument in instruments.items():
        mid = liquidity.mid(symbol)
        if mid is not None:
            tick = instrument.tick_size
            quotes.append(Quote(VENUE, symbol, mid - tick, 0, mid + tick, 0, now))
    return quotes


def _open_day(system: System) -> str | None:
    """Open the session's trading day unless one is open: today's date, or the day after the
    last closed one (a demo added with --keep to a log whose today is already closed)."""
    system.engine.execute([])  # the calendar's own opening, if one is due
    book = system.engine.book
    if book.day.is_open:
        return None
    today = system.engine.context.trading_date(utc_now_ns())
    last = book.day.last_closed_date
    if last is not None and today <= last:
        today = (date.fromisoformat(last) + timedelta(days=1)).isoformat()
    opened = system.engine.execute([OpenTradingDay(
        actor=SESSION_ACTOR, source=Source.DEMO, trading_date=today,
        reason="demo session")])[0]
    if isinstance(opened, Outcome) and opened.kind == "done":
        return None
    return f"OpenTradingDay: {opened!r}"


def _classify(command: Command, outcome: Outcome | BaseException) -> str:
    if isinstance(outcome, BaseException):
        return "error"
    if isinstance(command, SubmitOrder):
        if outcome.kind == "created":
            assert outcome.order is not None
            return "rejected" if outcome.order["status"] == OrderStatus.REJECTED else "accepted"
        return {"existing": "idempotent_resend"}.get(outcome.kind, outcome.kind)
    if not isinstance(command, CancelOrder | ReplaceOrder):
        return f"governance_{outcome.kind}"  # halts, locates, suspensions (issue 7)
    name = "cancel" if isinstance(command, CancelOrder) else "replace"
    return f"{name}_{'done' if outcome.kind == 'updated' else outcome.kind}"


def _rejections(conn: sa.Connection, since_ns: int) -> dict[str, dict[str, int]]:
    o = orders_view.c
    rows = conn.execute(
        sa.select(o.reject_control, o.account_id, sa.func.count())
        .where(o.status == OrderStatus.REJECTED, o.created_ns >= since_ns)
        .group_by(o.reject_control, o.account_id)
        .order_by(o.reject_control, o.account_id)
    ).tuples()
    result: dict[str, dict[str, int]] = {}
    for control, account, count in rows:
        result.setdefault(control, {})[account] = count
    return result


def _redacted(url: str) -> str:
    return str(sa.make_url(url).render_as_string(hide_password=True))

