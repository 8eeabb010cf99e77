"""Deterministic builders: the one place where tests make domain objects.

Every builder returns a fresh object with sensible defaults that any keyword overrides.
Nothing here reads the clock or draws random numbers: order ids come from a counter
(``uuid.UUID(int=n)``) and timestamps from ``T0`` plus a step, so a failing test replays
identically.

Default world (``book()``):

* instruments ``AAPL`` (ref 190.00, tick 0.01, lot 1), ``MSFT`` (ref 410.00),
  ``PENNY`` (ref 0.9500, tick 0.0001, lot 100), ``NEWCO`` (no reference price) and
  ``RSTR`` (on the firm restricted list);
* accounts ``ACC-A`` and ``ACC-B`` with ``limits()`` and 1,000,000 cash, ``ACC-B``
  additionally restricting ``MSFT``;
* firm credit limit 5,000,000 (above the sum of the account limits, so only tests that
  lower it hit ``firm_credit``).

``limits()`` defaults: max qty 1,000, max notional 100,000, collar 10%, credit 500,000,
duplicate window 1 s, version 7 (not 1, so a test can tell the version really is recorded).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from domain import events as ev
from domain import governance_events as gev
from domain.accounts import Account
from domain.book_of_record import LIQUIDITY_PROVIDER, BookOfRecord
from domain.events import OrderAccepted, OrderFilled, OrderRejected
from domain.governance import User
from domain.instruments import Instrument
from domain.limits import FirmLimits, RiskLimits
from domain.orders import Order
from domain.values import CancelReason, OrderType, RequestStage, Side, Source, TimeInForce

T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z in epoch nanoseconds
SECOND = 1_000_000_000
MS = 1_000_000

ACCOUNT = "ACC-A"
OTHER_ACCOUNT = "ACC-B"
ACTOR = "trader-1"
RISK_OFFICER = "risk-1"
SECOND_RISK_OFFICER = "risk-2"
ADMIN = "admin-1"
# Actors the unit and integration tests act as: entitled to every account of the world.
TEST_TRADERS = ("trader-1", "tester", "prop", "hypothesis", "bench", "outage", "crash-test",
                "ops", "anonymous")

class _Counters:
    """Order ids and clock ticks; deterministic, restartable with ``reset()``."""

    def __init__(self) -> None:
        self.ids: Iterator[int] = itertools.count(1)
        self.clock: Iterator[int] = itertools.count(0)

    def restart(self) -> None:
        self.ids = itertools.count(1)
        self.clock = itertools.count(0)


_counters = _Counters()


def reset() -> None:
    """Restart the id and clock counters (tests needing absolute ids call this first)."""
    _counters.restart()


def order_id(n: int | None = None) -> uuid.UUID:
    """``UUID(int=n)``, or the next id of the counter."""
    return uuid.UUID(int=next(_counters.ids) if n is None else n)


def ts(step: int | None = None) -> int:
    """``T0 + step`` seconds-apart ticks; without ``step`` the next tick of the counter.

    Consecutive ``ts()`` values are 10 s apart: further than any default duplicate window,
    so two identical orders built with default timestamps are never duplicates by accident.
    """
    return T0 + (next(_counters.clock) if step is None else step) * 10 * SECOND


def limits(**overrides: Any) -> RiskLimits:
    values: dict[str, Any] = {
        "max_order_quantity": 1_000,
        "max_order_notional": Decimal("100000"),
        "price_collar_pct": Decimal("0.10"),
        "credit_limit": Decimal("500000"),
        "duplicate_window_ns": SECOND,
        "version": 7,
    }
    values.update(overrides)
    return RiskLimits(**values)


def firm(**overrides: Any) -> FirmLimits:
    values: dict[str, Any] = {
        "credit_limit": Decimal("5000000"),
        "restricted_symbols": frozenset({"RSTR"}),
        "defaults": limits(),
    }
    values.update(overrides)
    return FirmLimits(**values)


def instrument(
    symbol: str = "AAPL",
    tick_size: Decimal | str = "0.01",
    lot_size: int = 1,
    reference_price: Decimal | str | None = "190.00",
) -> Instrument:
    return Instrument(
        symbol=symbol,
        tick_size=Decimal(tick_size),
        lot_size=lot_size,
        reference_price=None if reference_price is None else Decimal(reference_price),
    )


def default_instruments() -> list[Instrument]:
    return [
        instrument("AAPL"),
        instrument("MSFT", reference_price="410.00"),
        instrument("PENNY", tick_size="0.0001", lot_size=100, reference_price="0.9500"),
        instrument("NEWCO", reference_price=None),
        instrument("RSTR", reference_price="42.00"),
    ]


def account(
    account_id: str = ACCOUNT,
    cash: Decimal | str = "1000000",
    restricted_symbols: Iterable[str] = (),
    opening: dict[str, int] | None = None,
    **limit_overrides: Any,
) -> Account:
    """An account; keyword arguments other than the named ones override ``limits()``.

    It holds ``OPENING`` of every test symbol unless told otherwise, so the tests' long
    sales pass Reg SHO marking (sells beyond a holding are tested on purpose)."""
    return Account(
        account_id=account_id,
        limits=limits(**limit_overrides),
        cash=Decimal(cash),
        restricted_symbols=frozenset(restricted_symbols),
        opening=dict(OPENING) if opening is None else opening,
    )


OPENING = {"AAPL": 1_000_000, "MSFT": 1_000_000, "PENNY": 100_000_000, "NEWCO": 1_000_000,
           "RSTR": 1_000_000, "SPY": 1_000_000, "TSLA": 1_000_000, "BRKA": 1_000_000}


def default_accounts() -> list[Account]:
    return [account(ACCOUNT), account(OTHER_ACCOUNT, restricted_symbols={"MSFT"})]


TRADING_DATE = "2023-11-14"


def book(
    instruments: Iterable[Instrument] | None = None,
    accounts: Iterable[Account] | None = None,
    firm_limits: FirmLimits | None = None,
    *,
    opened: bool = True,
    users: Iterable[User] | None = None,
    locates: bool = True,
) -> BookOfRecord:
    """A fresh ``BookOfRecord`` over the default world unless told otherwise, with its
    trading day ``TRADING_DATE`` open (orders need one) unless ``opened=False``; the test
    actors entitled to every account, and two risk officers and an admin."""
    accounts = list(default_accounts() if accounts is None else accounts)
    new = BookOfRecord(
        default_instruments() if instruments is None else instruments,
        accounts,
        firm() if firm_limits is None else firm_limits,
        users=test_users([a.account_id for a in accounts]) if users is None else users,
    )
    if opened:
        open_day(new, TRADING_DATE, T0 - SECOND)
    if locates:
        for acc in accounts:
            for symbol in new.instruments:
                grant_locate(new, acc.account_id, symbol, 100_000_000,
                             locate_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{acc.account_id}/{symbol}"))
    return new


def test_users(account_ids: Iterable[str]) -> list[User]:
    ids = frozenset(account_ids)
    return [*(User(name, "trader", ids) for name in TEST_TRADERS),
            User(RISK_OFFICER, "risk_officer"), User(SECOND_RISK_OFFICER, "risk_officer"),
            User(ADMIN, "admin"), User("compliance-1", "compliance"),
            User("auditor-1", "auditor")]


def open_day(b: BookOfRecord, date: str = TRADING_DATE, now_ns: int | None = None,
             close_ns: int | None = None) -> Any:
    return b.open_day(date, "system", Source.SYSTEM, T0 if now_ns is None else now_ns,
                      close_ns, "test")


def submit(b: BookOfRecord, **overrides: Any) -> OrderAccepted | OrderRejected:
    """``b.submit`` with defaults: buy 100 AAPL limit 190.00 DAY for ``ACC-A``.

    ``order_id`` and ``now_ns`` come from the counters unless given; ``client_order_id``
    defaults to ``"c-<order id int>"`` so it is unique per order.
    """
    oid = overrides.pop("order_id", None) or order_id()
    values: dict[str, Any] = {
        "order_id": oid,
        "account_id": ACCOUNT,
        "client_order_id": f"c-{oid.int}",
        "symbol": "AAPL",
        "side": Side.BUY,
        "quantity": 100,
        "order_type": OrderType.LIMIT,
        "limit_price": Decimal("190.00"),
        "time_in_force": TimeInForce.DAY,
        "actor": ACTOR,
        "source": Source.API,
        "now_ns": None,
    }
    if overrides.get("order_type") == OrderType.MARKET and "limit_price" not in overrides:
        values["limit_price"] = None
    values.update(overrides)
    if values["now_ns"] is None:
        values["now_ns"] = ts()
    if isinstance(values["limit_price"], str):
        values["limit_price"] = Decimal(values["limit_price"])
    return b.submit(**values)


def accepted(b: BookOfRecord, **overrides: Any) -> Order:
    """Submit and return the live order; fails the test if a control rejected it."""
    event = submit(b, **overrides)
    assert isinstance(event, OrderAccepted), f"expected acceptance, got {event}"
    return b.orders[event.order_id]


def fill(
    b: BookOfRecord,
    order: Order,
    quantity: int | None = None,
    price: Decimal | str | None = None,
    now_ns: int | None = None,
) -> OrderFilled:
    """Fill ``quantity`` (default: all leaves) at ``price`` (default: the exposure price)."""
    qty = order.quantity - order.filled_quantity if quantity is None else quantity
    px = order.exposure_price if price is None else Decimal(price)
    return b.fill(
        order, qty, px, trade_id=f"t-{order.order_id.int}-{order.version + 1}",
        liquidity="taker", counterparty=LIQUIDITY_PROVIDER,
        now_ns=ts() if now_ns is None else now_ns,
    )


def sample_events() -> list[Any]:
    """One event of every type, with awkward decimals (trailing zeros, exponents, None)."""
    oid = order_id(0xABCDEF)
    common = (oid, 3, T0 + 123_456_789, ACTOR, "api", ACCOUNT, "AAPL")
    day = uuid.UUID(int=0xDA7)
    return [
        ev.OrderAccepted(oid, 1, T0, ACTOR, "api", ACCOUNT, "AAPL", "c-1", Side.BUY, 100,
                         OrderType.LIMIT, Decimal("190.10"), "day", Decimal("190.00"),
                         "last_sale", T0 - 5, None, Decimal("190.10"), Decimal("0E-8"),
                         Decimal("12345.678901234567"), 7, limits().record,
                         ("unknown_account", "credit"), "2023-11-14", "mm-1",
                         ev.FrozenRecord({"rate": "3/2 10/9", "luld": "171.00-209.00"})),
        ev.OrderAccepted(oid, 1, T0, ACTOR, "api", ACCOUNT, "AAPL", "c-1m", Side.SELL, 10,
                         OrderType.MARKET, None, "ioc", Decimal("190.00"), "previous_close",
                         T0 - 9, Decimal("171.00"), Decimal("171.00"), Decimal("0"),
                         Decimal("0"), 7, limits().record, ("session",), "2023-11-14", None,
                         ev.FrozenRecord()),
        ev.OrderRejected(oid, 1, T0, ACTOR, "api", ACCOUNT, "AAPL", "c-2", "sell", 5,
                         OrderType.MARKET, None, "ioc", "price_collar",
                         "reference price required", "none", None, None, None, None, 0, (),
                         None, None),
        ev.OrderRejected(oid, 1, T0, ACTOR, "api", ACCOUNT, "AAPL", "c-3", "buy", 5,
                         "limit", Decimal("1E+3"), "day", "credit", "10", "11",
                         Decimal("190"), "last_sale", T0, Decimal("-0.00"), 2,
                         ("unknown_account",), "2023-11-14", "pairs"),
        ev.OrderFilled(*common[:7], "buy", "t-1", 40, Decimal("189.9999"), 40, 60, "taker",
                       "venue:liquidity-provider"),
        ev.CancelRequested(*common, CancelReason.REQUESTED),
        ev.OrderCanceled(*common, 60, CancelReason.END_OF_DAY),
        ev.CancelRejected(*common, "order is filled", "filled", RequestStage.REQUEST),
        ev.ReplaceRequested(*common, 100, Decimal("190.00"), 200, Decimal("191.5"),
                            Decimal("190.00"), "last_sale", T0, Decimal("19000.00"),
                            Decimal("19000.00"), Decimal("1E+1"), 7, ("order_type", "credit"),
                            ev.FrozenRecord({"locate": "x (10 left)"})),
        ev.OrderReplaced(*common, 100, Decimal("190.00"), 200, Decimal("191.5"), True),
        ev.ReplaceRejected(*common, None, Decimal("250.00"), "price_collar", "0.10", "0.3",
                           RequestStage.REQUEST),
        ev.ReplaceRejected(*common, 10, None, "venue", "> 30 filled", "10", RequestStage.VENUE),
        ev.TradingDayOpened(day, 1, T0, "system", "system", "2023-11-14", "gross",
                            (("AAPL", "190.00"), ("MSFT", "410")), T0 + 3600 * SECOND,
                            "scheduled open"),
        ev.TradingDayClosed(day, 2, T0 + 1, "system", "system", "2023-11-14",
                            (("AAPL", "191.10"),), 3, "scheduled close"),
        ev.EngineRecovered(uuid.UUID(int=0xE1), 1, T0 + 2, "system", "system",
                           "OperationalError: server closed the connection", 41),
        ev.BookSnapshotTaken(uuid.UUID(int=0x5A), 1, T0 + 3, "system", "system", 40,
                             "ab" * 32, 1234),
        ev.ClockExceptionRecorded(uuid.UUID(int=0xE1), 2, T0 + 4, "system", "system",
                                  T0 + 4 - 200_000_000, T0 + 4, 200_000_000, 50_000_000,
                                  "live", "behind", ""),
        ev.ClockExceptionRecorded(uuid.UUID(int=0xE1), 3, T0 + 5, "system", "system",
                                  T0 + 5, T0 + 5 + 200_000_000, 200_000_000, 50_000_000,
                                  "reference", "behind", "time.nist.gov:123"),
        *governance_samples(),
    ]


def governance_samples() -> list[Any]:
    """One of every governance event (issue 7)."""
    g = uuid.UUID(int=0x60)
    at = (T0 + 4, RISK_OFFICER, "api")
    return [
        gev.TradingHalted(g, 1, *at, "AAPL", "news pending"),
        gev.TradingResumed(g, 2, *at, "AAPL", "news out"),
        gev.ShortSaleRestrictionTriggered(g, 3, *at, "AAPL", "2023-11-14", Decimal("171.00"),
                                          Decimal("190.00"), "10% decline"),
        gev.ShortSaleRestrictionTriggered(g, 4, *at, "AAPL", "2023-11-14", None, None,
                                          "listing market notice"),
        gev.LocateRequested(g, 1, *at, ACCOUNT, "AAPL", 500, "desk short"),
        gev.LocateGranted(g, 2, *at, ACCOUNT, "AAPL", 300, T0 + 3600 * SECOND, "easy to borrow"),
        gev.LocateConsumed(g, 3, *at, ACCOUNT, "AAPL", str(uuid.UUID(int=7)), 100, 200),
        gev.LocateExpired(g, 4, *at, ACCOUNT, "AAPL", 200),
        gev.KillSwitchTripped(g, 1, *at, "account:ACC-A", "reject_storm", "5 rejections",
                              "5", "reject storm", (str(uuid.UUID(int=7)),)),
        gev.KillSwitchTripped(g, 3, *at, "firm", "manual", "manual trip", "manual trip",
                              "drill", ()),
        gev.KillSwitchReset(g, 2, *at, "account:ACC-A", "reviewed"),
        gev.LimitChangeRequested(g, 1, *at, "account:ACC-A", "credit_limit", "500000",
                                 "750000.50", "quarter end", T0 + 7200 * SECOND),
        gev.LimitChangeApproved(g, 2, *at, "account:ACC-A", "credit_limit", "500000",
                                "750000.50", 8, "ok", None),
        gev.LimitChangeRejected(g, 2, *at, "firm", "loss_limit", "no"),
        gev.LimitChangeReverted(g, 3, *at, "account:ACC-A", "credit_limit", "500000", 9,
                                "temporary change expired"),
        gev.UserCreated(g, 1, *at, "zoe", "trader", "new hire"),
        gev.UserDisabled(g, 2, *at, "zoe", "left"),
        gev.EntitlementGranted(g, 3, *at, "zoe", ACCOUNT, "desk"),
        gev.EntitlementRevoked(g, 4, *at, "zoe", ACCOUNT, "desk move"),
        gev.ApiKeyIssued(g, 1, *at, "zoe", "abcd1234", "ef" * 32, "first key"),
        gev.ApiKeyRevoked(g, 2, *at, "zoe", "abcd1234", "rotated"),
        gev.AccountSuspended(g, 1, *at, ACCOUNT, "margin call"),
        gev.AccountReinstated(g, 2, *at, ACCOUNT, "paid"),
        gev.AccessDenied(g, 1, *at, "POST /orders", ACCOUNT, "role auditor may not trade"),
        gev.AccessDenied(g, 1, T0, "unauthenticated", "api", "GET /orders", None, "no token"),
        gev.ReportCertified(g, 1, T0 + 5, "compliance-1", "api", "15c3-5", "2023-11-14",
                            "ab" * 32, "reviewed"),
        gev.StrategyStarted(g, 1, T0 + 6, "risk-1", "api", "mm-1", 1, "market_maker",
                            ACCOUNT, ev.FrozenRecord({"size": "10", "symbol": "AAPL"}),
                            "started by risk-1"),
        gev.StrategyStopped(g, 2, T0 + 7, "system", "system", "mm-1", 1,
                            ACCOUNT, "kill switch tripped on strategy:mm-1", 12, 3, ()),
        gev.StrategyStopped(g, 4, T0 + 8, "system", "system", "mm-1", 2,
                            ACCOUNT, "not stopped by the process that ran it", None, None,
                            (str(g),)),
    ]


def grant_locate(b: BookOfRecord, account_id: str = ACCOUNT, symbol: str = "AAPL",
                 quantity: int = 1_000_000, now_ns: int | None = None,
                 expires_ns: int | None = None, locate_id: uuid.UUID | None = None) -> Any:
    """A locate requested and granted by a risk officer (Reg SHO 203(b)(1)); its events.

    ``book()`` grants one per account and symbol unless ``locates=False``, so the tests'
    short sales pass (short sales without a locate are tested on purpose)."""
    now = T0 - SECOND if now_ns is None else now_ns
    locate_id = uuid.uuid4() if locate_id is None else locate_id
    requested = b.gov.request_locate(locate_id, account_id, symbol, quantity, RISK_OFFICER,
                                     Source.API, now, "test borrow")
    granted = b.gov.grant_locate(locate_id, quantity,
                                 4_000_000_000 * SECOND if expires_ns is None else expires_ns,
                                 RISK_OFFICER, Source.API, now, "easy to borrow")
    return [requested, granted]
