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
    MARKET_NO_LIQUIDITY = "market_no_liquidity"
    END_OF_DAY = "end_of_day"
    # FINRA Rule 5210 / wash trades: an order never trades against the same account's
    # resting order; the incoming order's remainder is cancelled ("cancel newest").
    SELF_TRADE_PREVENTED = "self_trade_prevented"


ZERO = Decimal(0)


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
