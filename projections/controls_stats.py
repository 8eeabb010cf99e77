"""The 15c3-5 control statistics view: what the daily 15c3-5 report is made of.

Per trading day: limit use per account and firm-wide (exposure sampled at every decision,
its five-minute maxima, the day's exposure by side), rejections by control and account,
how many orders each control applied to and checked (coverage), fills delivered and their
delay; and the governance events and clock exceptions the report lists. See
projections/tables.py for the rows.

Order independence. The Kafka feed keeps log order only within a partition (one per
account, ``_firm`` for events of no account), so every figure here is a count, a sum or a
maximum with a tie-break on log position, or a row keyed by log position. Running values
are per order or per account (one partition); firm-wide figures come from what each
decision recorded (``firm_exposure_before``), never from a running firm total.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa

from domain import governance_events as gev
from domain.controls import NEW_ORDER_CONTROLS
from domain.events import (
    ClockExceptionRecorded,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    ReplaceRejected,
    ReplaceRequested,
    TradingDayClosed,
    TradingDayOpened,
)
from domain.values import ZERO, RequestStage, Side
from projections.recorded import Recorded, key_of
from projections.tables import (
    control_coverage,
    control_day_accounts,
    control_days,
    control_exposure_buckets,
    control_governance,
    control_open_orders,
    control_rejections,
    decimal_binder,
    decimal_columns,
    fetch_by_keys,
    insert_rows,
    update_rows,
)

BUCKET_NS = 5 * 60 * 1_000_000_000  # the intraday chart's resolution
FIRM = "firm"
OUTSIDE_DAY = ""  # a rejection with no trading day open (the ``session`` control)

# The events the report lists besides orders (items 4-6 and certifications), and the
# strategies' starts and stops (supervisory records of an order entry point).
GOVERNANCE_LISTED: tuple[type[Any], ...] = (
    gev.LimitChangeRequested, gev.LimitChangeApproved, gev.LimitChangeRejected,
    gev.LimitChangeReverted, gev.KillSwitchTripped, gev.KillSwitchReset,
    gev.EntitlementGranted, gev.EntitlementRevoked, gev.UserCreated, gev.UserDisabled,
    gev.AccountSuspended, gev.AccountReinstated, gev.ReportCertified,
    gev.StrategyStarted, gev.StrategyStopped,
)

# Listed in the same rows: item 8's clock exceptions.
REPORT_LISTED: tuple[type[Any], ...] = (*GOVERNANCE_LISTED, ClockExceptionRecorded)

_INDEX = {name: i for i, name in enumerate(NEW_ORDER_CONTROLS)}
_TICK_SIZE = "tick_size"
_STALE_REFERENCE = "stale_reference"


def applicable_controls(event: OrderAccepted | OrderRejected) -> tuple[str, ...]:
    """The new-order controls an order had to pass through (15c3-5 coverage).

    An accepted order: every new-order control. One rejected by control k: the controls
    before k in table order, and k. Not applicable (the control skips itself, see
    domain/controls.py): ``tick_size`` for a market order (no price of its own), and
    ``stale_reference`` when there is no reference price at all (``price_collar`` rejects).
    A rejection by a control outside the table applies none."""
    if isinstance(event, OrderAccepted):
        names: Sequence[str] = NEW_ORDER_CONTROLS
    else:
        k = _INDEX.get(event.control)
        if k is None:
            return ()
        names = NEW_ORDER_CONTROLS[: k + 1]
    skip = set()
    if event.limit_price is None:
        skip.add(_TICK_SIZE)
    if event.reference_price is None:
        skip.add(_STALE_REFERENCE)
    return tuple(n for n in names if n not in skip) if skip else tuple(names)


def checked_controls(event: OrderAccepted | OrderRejected) -> frozenset[str]:
    """The controls the decision records as run: the passed ones, and the rejecting one."""
    if isinstance(event, OrderRejected):
        return frozenset((*event.checks, event.control))
    return frozenset(event.checks)


class _Rows:
    """A table's rows touched by a batch: loaded once, changed in memory, written once."""

    def __init__(self, table: sa.Table, keys: tuple[str, ...]) -> None:
        self.table = table
        self.keys = keys
        self.columns = tuple(c.name for c in table.columns)
        self.values = tuple(c for c in self.columns if c not in keys)
        self.rows: dict[Any, dict[str, Any]] = {}
        self.existing: set[Any] = set()
        self.deleted: set[Any] = set()

    def load(self, conn: sa.Connection, rows: Iterable[Any]) -> None:
        decimals = decimal_columns(self.table)
        for row in rows:
            values = dict(row)
            for name in decimals:
                if values[name] is not None:
                    values[name] = Decimal(values[name])
            key = tuple(values[k] for k in self.keys)
            self.rows[key] = values
            self.existing.add(key)

    def load_dates(self, conn: sa.Connection, dates: set[str]) -> None:
        if dates:
            t = self.table
            self.load(conn, conn.execute(
                sa.select(t).where(t.c.trading_date.in_(sorted(dates)))).mappings())

    def get(self, key: tuple[Any, ...], fresh: dict[str, Any]) -> dict[str, Any]:
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = {**dict(zip(self.keys, key, strict=True)), **fresh}
        return row

    def delete(self, key: tuple[Any, ...]) -> None:
        self.rows.pop(key, None)
        if key in self.existing:
            self.deleted.add(key)

    def flush(self, conn: sa.Connection) -> None:
        bind = decimal_binder(conn)
        decimals = decimal_columns(self.table)

        def value(row: dict[str, Any], name: str) -> Any:
            return bind(row[name]) if name in decimals else row[name]

        created, changed = [], []
        for key, row in self.rows.items():
            if key in self.existing:
                changed.append(tuple(value(row, c) for c in (*self.values, *self.keys)))
            else:
                created.append(tuple(value(row, c) for c in self.columns))
        if self.deleted:
            t = self.table
            pk = [t.c[k] for k in self.keys]
            keys = sorted(self.deleted)
            for start in range(0, len(keys), 1000):
                part = [k[0] for k in keys[start:start + 1000]]
                conn.execute(t.delete().where(pk[0].in_(part)))
        insert_rows(conn, self.table, self.columns, created)
        update_rows(conn, self.table, self.values, self.keys, changed)


def _day() -> dict[str, Any]:
    return {"opened_ns": None, "opened_position": None, "closed_ns": None,
            "closed_position": None, "exposure_mode": None, "accepted": 0, "rejected": 0,
            "fills": 0, "fill_quantity": 0, "fill_gaps": 0, "taker_fills": 0,
            "max_fill_delay_ns": None, "firm_peak_exposure": None, "firm_peak_ns": None,
            "firm_peak_position": None}


def _day_account() -> dict[str, Any]:
    return {"accepted": 0, "rejected": 0, "breaches": 0, "credit_limit": None,
            "buy_entered": ZERO, "sell_entered": ZERO, "buy_filled": ZERO,
            "sell_filled": ZERO, "fills": 0, "peak_exposure": None, "peak_limit": None,
            "peak_ns": None, "peak_position": None}


_COUNT = {"orders": 0}
_COVERAGE = {"applicable": 0, "checked": 0, "rejected": 0}
_ORDER_EVENTS_AFTER = (OrderFilled, OrderCanceled, ReplaceRequested, OrderReplaced,
                       ReplaceRejected)


class ControlStatsView:
    name = "control_stats"

    def process(self, conn: sa.Connection, batch: Sequence[Recorded]) -> None:
        relevant = [r for r in batch if isinstance(r.event, _HANDLED)]
        if not relevant:
            return
        b = _Batch()
        later = [key_of(r) for r in relevant if isinstance(r.event, _ORDER_EVENTS_AFTER)]
        if later:
            b.orders.load(conn, fetch_by_keys(conn, control_open_orders, list(set(later))))
        # The dates the batch touches: of its decisions and days, and of the orders it fills.
        dates = {(r.event.trading_date or OUTSIDE_DAY) for r in relevant
                 if isinstance(r.event, (OrderAccepted, OrderRejected, TradingDayOpened,
                                         TradingDayClosed))}
        dates |= {row["trading_date"] for row in b.orders.rows.values()}
        for rows in (b.days, b.accounts, b.buckets, b.rejections, b.coverage):
            rows.load_dates(conn, dates)
        governance = []
        for r in relevant:
            event = r.event
            if isinstance(event, REPORT_LISTED):
                governance.append((r.position, type(event).__name__, event.ts_ns, event.actor,
                                   orjson.dumps(r.body).decode()))
            else:
                b.apply(r.position, key_of(r), event)
        b.flush_coverage()
        for rows in (b.orders, b.days, b.accounts, b.buckets, b.rejections, b.coverage):
            rows.flush(conn)
        insert_rows(conn, control_governance, ("position", "event_type", "ts_ns", "actor",
                                               "payload"), governance)


_HANDLED: tuple[type[Any], ...] = (OrderAccepted, OrderRejected, *_ORDER_EVENTS_AFTER,
                                   TradingDayOpened, TradingDayClosed, *REPORT_LISTED)


class _Batch:
    def __init__(self) -> None:
        self.orders = _Rows(control_open_orders, ("order_id",))
        self.days = _Rows(control_days, ("trading_date",))
        self.accounts = _Rows(control_day_accounts, ("trading_date", "account_id"))
        self.buckets = _Rows(control_exposure_buckets, ("trading_date", "scope", "bucket_ns"))
        self.rejections = _Rows(control_rejections, ("trading_date", "control", "account_id"))
        self.coverage = _Rows(control_coverage, ("trading_date", "control"))
        # (date, applicable, checked, rejecting control) -> orders: most orders share one
        # shape, so coverage is counted per shape and spread over the controls once.
        self.shapes: Counter[tuple[str, tuple[str, ...], frozenset[str], str | None]] = \
            Counter()

    def apply(self, position: int, key: str, e: Any) -> None:
        match e:
            case OrderAccepted():
                self._accepted(position, key, e)
            case OrderRejected():
                self._rejected(e)
            case TradingDayOpened():
                day = self.days.get((e.trading_date,), _day())
                if day["opened_ns"] is None:  # a restart mid-day resumes the same day
                    day.update(opened_ns=e.ts_ns, opened_position=position,
                               exposure_mode=e.exposure_mode)
            case TradingDayClosed():
                self.days.get((e.trading_date,), _day()).update(
                    closed_ns=e.ts_ns, closed_position=position)
            case _:
                order = self.orders.rows.get((key,))
                if order is not None:  # None: an order of a replay cut before it (--until)
                    self._order_event(position, key, order, e)

    def _accepted(self, position: int, key: str, e: OrderAccepted) -> None:
        date, account = e.trading_date, e.account_id
        self.days.get((date,), _day())["accepted"] += 1
        row = self.accounts.get((date, account), _day_account())
        row["accepted"] += 1
        notional = e.exposure_price * e.quantity
        _enter(row, e.side, notional)
        limit = Decimal(e.limits["credit_limit"])
        row["credit_limit"] = limit
        # 15c3-5(c)(1)(i): the exposure with this order, as the credit controls compared it
        # (gross: exposure before + the order's notional).
        after = e.exposure_before + notional
        if after > limit:
            row["breaches"] += 1
        self._sample(date, "account:" + account, e.ts_ns, position, after, limit)
        self._sample(date, FIRM, e.ts_ns, position, e.firm_exposure_before + notional, None)
        self.shapes[(date, applicable_controls(e), checked_controls(e), None)] += 1
        self.orders.get((key,), {
            "trading_date": date, "account_id": account, "side": e.side,
            "quantity": e.quantity, "filled_quantity": 0, "exposure_price": e.exposure_price,
            "reserved": ZERO, "released_ns": e.ts_ns})

    def _rejected(self, e: OrderRejected) -> None:
        date = e.trading_date or OUTSIDE_DAY
        self.days.get((date,), _day())["rejected"] += 1
        self.accounts.get((date, e.account_id), _day_account())["rejected"] += 1
        self.rejections.get((date, e.control, e.account_id), _COUNT)["orders"] += 1
        self.shapes[(date, applicable_controls(e), checked_controls(e), e.control)] += 1

    def _order_event(self, position: int, key: str, o: dict[str, Any], e: Any) -> None:
        date = o["trading_date"]
        row = self.accounts.get((date, o["account_id"]), _day_account())
        side = o["side"]
        match e:
            case OrderFilled():
                notional = e.fill_price * e.fill_quantity
                released = o["exposure_price"] * e.fill_quantity
                _enter(row, side, notional - released)
                row["buy_filled" if side == Side.BUY else "sell_filled"] += notional
                row["fills"] += 1
                day = self.days.get((date,), _day())
                day["fills"] += 1
                day["fill_quantity"] += e.fill_quantity
                if e.cumulative_quantity != o["filled_quantity"] + e.fill_quantity:
                    day["fill_gaps"] += 1  # an execution report missing before this one
                o["filled_quantity"] = e.cumulative_quantity
                if e.liquidity == "taker":
                    day["taker_fills"] += 1
                    delay = e.ts_ns - o["released_ns"]
                    if day["max_fill_delay_ns"] is None or delay > day["max_fill_delay_ns"]:
                        day["max_fill_delay_ns"] = delay
                if not e.leaves_quantity:
                    self._finish(key, o, row)
            case OrderCanceled():
                _enter(row, side, -o["exposure_price"] * e.canceled_quantity)
                self._finish(key, o, row)
            case ReplaceRequested():
                if e.reserved_exposure:
                    _enter(row, side, e.reserved_exposure)
                    o["reserved"] = e.reserved_exposure
                limit = row["credit_limit"]
                after = e.exposure_before + e.reserved_exposure
                if limit is not None and after > limit:
                    row["breaches"] += 1
                self._sample(date, "account:" + o["account_id"], e.ts_ns, position, after, limit)
                self._sample(date, FIRM, e.ts_ns, position,
                             e.firm_exposure_before + e.reserved_exposure, None)
            case OrderReplaced():
                filled = o["filled_quantity"]
                old = o["exposure_price"] * (o["quantity"] - filled) + o["reserved"]
                new = e.limit_price * (e.quantity - filled)
                _enter(row, side, new - old)
                o.update(quantity=e.quantity, exposure_price=e.limit_price, reserved=ZERO,
                         released_ns=e.ts_ns)
            case ReplaceRejected():
                if e.stage == RequestStage.VENUE and o["reserved"]:
                    _enter(row, side, -o["reserved"])
                    o["reserved"] = ZERO

    def _finish(self, key: str, o: dict[str, Any], row: dict[str, Any]) -> None:
        # A finished order gives back a replace's reservation the venue never applied.
        if o["reserved"]:
            _enter(row, o["side"], -o["reserved"])
        self.orders.delete((key,))

    def _sample(self, date: str, scope: str, ts_ns: int, position: int, exposure: Decimal,
                limit: Decimal | None) -> None:
        bucket = self.buckets.get((date, scope, ts_ns - ts_ns % BUCKET_NS), {
            "exposure": exposure, "credit_limit": limit, "at_ns": ts_ns,
            "at_position": position})
        if _higher(exposure, position, bucket["exposure"], bucket["at_position"]):
            bucket.update(exposure=exposure, credit_limit=limit, at_ns=ts_ns,
                          at_position=position)
        if scope == FIRM:
            day = self.days.get((date,), _day())
            if _higher(exposure, position, day["firm_peak_exposure"], day["firm_peak_position"]):
                day.update(firm_peak_exposure=exposure, firm_peak_ns=ts_ns,
                           firm_peak_position=position)
        else:
            row = self.accounts.get((date, scope.removeprefix("account:")), _day_account())
            if _higher(exposure, position, row["peak_exposure"], row["peak_position"]):
                row.update(peak_exposure=exposure, peak_limit=limit, peak_ns=ts_ns,
                           peak_position=position)

    def flush_coverage(self) -> None:
        for (date, applicable, checked, rejecting), orders in self.shapes.items():
            for control in applicable:
                row = self.coverage.get((date, control), _COVERAGE)
                row["applicable"] += orders
                if control in checked:
                    row["checked"] += orders
                if control == rejecting:
                    row["rejected"] += orders


def _higher(exposure: Decimal, position: int, best: Decimal | None, at: int | None) -> bool:
    # The highest sample; on a tie the earliest in the log (the same on either feed).
    return best is None or exposure > best or (exposure == best and position < (at or 0))


def _enter(row: dict[str, Any], side: str, notional: Decimal) -> None:
    # domain.accounts.Exposure: everything but a buy is sell-side exposure.
    row["buy_entered" if side == Side.BUY else "sell_entered"] += notional
