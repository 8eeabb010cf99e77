"""SEC Rule 15c3-5 pre-trade controls, each a small pure function.

Each check returns ``None`` when the order passes, or ``(threshold, observed)`` as strings
when it fails. The caller records the control's name with them in ``OrderRejected``.
Thresholds are the firm's own calibration (``RiskLimits``), recorded with their version.
"""

from __future__ import annotations

from decimal import Decimal

Failure = tuple[str, str] | None

# The order in which controls run for a new order; an acceptance lists all of them.
NEW_ORDER_CONTROLS: tuple[str, ...] = (
    "unknown_account",
    "unknown_symbol",
    "restricted",
    "lot_size",
    "tick_size",
    "max_qty",
    "price_collar",
    "max_notional",
    "duplicate",
    "credit",
    "firm_credit",
)

REPLACE_CONTROLS: tuple[str, ...] = (
    "order_type",
    "min_quantity",
    "lot_size",
    "tick_size",
    "max_qty",
    "price_collar",
    "max_notional",
    "credit",
    "firm_credit",
)


def restricted(symbol: str, firm_list: frozenset[str], account_list: frozenset[str]) -> Failure:
    # 15c3-5(c)(2)(ii): restricted list, firm-wide or per account.
    if symbol in firm_list:
        return ("firm restricted list", symbol)
    if symbol in account_list:
        return ("account restricted list", symbol)
    return None


def lot_size(quantity: int, lot: int) -> Failure:
    # Edges other than the API (FIX, strategies) must not slip a zero or negative size in:
    # a negative quantity would free credit room instead of using it.
    if quantity <= 0 or quantity % lot:
        return (f"multiple of {lot}", str(quantity))
    return None


MAX_PRICE_EXPONENT = 12  # prices are below 10^13: beyond, decimal arithmetic loses exactness


def tick_size(limit_price: Decimal | None, tick: Decimal) -> Failure:
    if limit_price is None:
        return None
    if (not limit_price.is_finite() or limit_price <= 0
            or limit_price.adjusted() > MAX_PRICE_EXPONENT):
        return ("finite positive price below 1E+13", str(limit_price))
    if limit_price % tick:
        return (f"multiple of {tick}", str(limit_price))
    return None


def max_quantity(quantity: int, maximum: int) -> Failure:
    # 15c3-5(c)(1)(ii): erroneous-order size limit; at the limit passes.
    if quantity > maximum:
        return (str(maximum), str(quantity))
    return None


def price_collar(
    limit_price: Decimal | None, reference: Decimal | None, collar_pct: Decimal
) -> Failure:
    # 15c3-5(c)(1)(ii): a missing reference rejects; it never defaults to "no check".
    if reference is None:
        return ("reference price required", "none")
    if limit_price is None:  # market order: valued at the reference, nothing to collar
        return None
    distance = abs(limit_price - reference)
    if distance > reference * collar_pct:  # multiply, not divide: this runs on every order
        return (str(collar_pct), str((distance / reference).quantize(Decimal("0.000001"))))
    return None


def max_notional(notional: Decimal, maximum: Decimal) -> Failure:
    if notional > maximum:
        return (str(maximum), str(notional))
    return None


def duplicate(last_seen_ns: int | None, now_ns: int, window_ns: int) -> Failure:
    # 15c3-5(c)(1)(ii): the same order again within the window, whatever its client id.
    if last_seen_ns is not None and now_ns - last_seen_ns < window_ns:
        return (f"{window_ns}ns", f"{now_ns - last_seen_ns}ns")
    return None


def credit(exposure_before: Decimal, notional: Decimal, limit: Decimal) -> Failure:
    # 15c3-5(c)(1)(i): orders entered (open + filled) count against the limit.
    if exposure_before + notional > limit:
        return (str(limit), str(exposure_before + notional))
    return None
