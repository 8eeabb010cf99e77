"""Value types shared by commands, events and read models."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"
    SELL_SHORT = "sell_short"


class OrderType(StrEnum):
    LIMIT = "limit"
    MARKET = "market"


class TimeInForce(StrEnum):
    DAY = "day"
    IOC = "ioc"
    FOK = "fok"
    GTC = "gtc"


class OrderStatus(StrEnum):
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    # FIX OrdStatus 6 and E: requested, not yet confirmed by the venue; the order can still
    # trade at its current terms until the venue confirms (ARCHITECTURE rule 10).
    PENDING_CANCEL = "pending_cancel"
    PENDING_REPLACE = "pending_replace"


class Source(StrEnum):
    """Through what an action entered the system; recorded on every event."""

    API = "api"
    CLI = "cli"
    DEMO = "demo"
    SYSTEM = "system"
    VENUE = "venue"
    FIX = "fix"
    STRATEGY = "strategy"


class CancelReason(StrEnum):
    REQUESTED = "requested"
    IOC_REMAINDER = "ioc_remainder"
    FOK_UNFILLED = "fok_unfilled"
    # A market order's remainder when no liquidity is left within its protection price.
    MARKET_NO_LIQUIDITY = "market_no_liquidity"
    END_OF_DAY = "end_of_day"
    # FINRA Rule 5210 / wash trades: an order never trades against the same account's
    # resting order; the incoming order's remainder is cancelled ("cancel newest").
    SELF_TRADE_PREVENTED = "self_trade_prevented"
    # A kill switch tripped: its KillSwitchTripped event (just before) names every order it
    # canceled, and each cancel request carries this reason.
    KILL_SWITCH = "kill_switch"
    # A strategy's run ended: its StrategyStopped event (just before) names every order of
    # the strategy's tag on the run's account it canceled, and each cancel request carries
    # this reason, so no quote of a stopped strategy rests unmanaged (stale quotes).
    STRATEGY_STOPPED = "strategy_stopped"


class Role(StrEnum):
    """What a user may do (api/access.py holds the table of endpoints per role)."""

    TRADER = "trader"  # trades and reads the accounts they are entitled to
    RISK_OFFICER = "risk_officer"  # halts, locates, kill switches, approves limit changes
    COMPLIANCE = "compliance"  # reads everything, changes nothing
    AUDITOR = "auditor"  # reads everything, changes nothing
    ADMIN = "admin"  # users, keys, entitlements, trading days


class KillTrigger(StrEnum):
    """Why a kill switch tripped."""

    MANUAL = "manual"  # a risk officer
    LOSS_LIMIT = "loss_limit"  # realized + unrealized at the reference price
    REJECT_STORM = "reject_storm"  # N rejections within the window
    MESSAGE_RATE = "message_rate"  # messages per second beyond the kill threshold


class ExposureMode(StrEnum):
    """How an account's credit exposure is counted (15c3-5(c)(1)(i)); recorded per trading day.

    gross: every buy and sell entered counts (open leaves at their price, fills at theirs).
    net: the worse side if every open order of that side filled and none of the other:
         max(buys entered - sells filled, sells entered - buys filled).
    """

    GROSS = "gross"
    NET = "net"


class ReferenceSource(StrEnum):
    """Where a reference price came from (recorded with every decision that used it)."""

    LAST_SALE = "last_sale"  # the venue's last print against an outside participant
    BEST_BID = "venue_best_bid"  # the venue's best bid (Rule 201's bid test, until NBBO)
    PREVIOUS_CLOSE = "previous_close"  # valid for the trading day until the symbol prints
    NBBO_MIDPOINT = "nbbo_midpoint"  # market data: the consolidated quote's midpoint
    FEED_LAST_SALE = "feed_last_sale"  # market data: the last print on any venue's feed


class RequestStage(StrEnum):
    """Where a cancel or replace was refused: by a control on request, or by the venue."""

    REQUEST = "request"
    VENUE = "venue"


ZERO = Decimal(0)


class FrozenRecord(dict[str, str]):
    """A read-only str -> str mapping for events (deeply immutable, serialises as a JSON
    object: orjson writes dict subclasses as objects)."""

    __slots__ = ()

    def _refuse(self, *_args: object, **_kwargs: object) -> None:
        raise TypeError("events are immutable")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]
    __ior__ = _refuse  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))


def signed_quantity(side: str, quantity: int) -> int:
    """Position change of a fill: buys add, sells and short sales subtract."""
    return quantity if side == Side.BUY else -quantity


_PRICE_QUANTUM = Decimal("0.00000001")


def price_text(value: Decimal | None) -> str | None:
    """The one textual form of a price everywhere (API, read models, reports).

    Quantized to 1e-8 and stripped of trailing zeros, so 190, 190.00 and 190.000 all read
    "190" whether they come from the engine, SQLite text or PostgreSQL NUMERIC.
    """
    if value is None:
        return None
    text = format(value.quantize(_PRICE_QUANTUM).normalize(), "f")
    return "0" if text in ("-0", "0E-8") else text
