"""Risk limits: per-account settings resolved over the firm's defaults."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from domain.values import ExposureMode, FrozenRecord

SECOND_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """The thresholds of the per-order and per-account pre-trade controls.

    ``version`` is recorded in every decision so an examiner can tell which calibration
    a decision used (15c3-5: thresholds are the firm's and must be documented).
    """

    max_order_quantity: int
    max_order_notional: Decimal
    price_collar_pct: Decimal  # fraction: 0.10 = within 10% of the reference price
    credit_limit: Decimal
    duplicate_window_ns: int
    # 15c3-5(c)(1)(ii) throttle (sliding one-second window): new orders accepted, and
    # messages (new, cancel, replace; accepted or not) per second.
    max_orders_per_second: int = 1_000
    max_messages_per_second: int = 2_000
    # Kill-switch triggers (FINRA practice): a message rate beyond this trips the account's
    # switch; so do ``reject_storm_count`` rejections within ``reject_storm_window_ns``, and
    # a loss (realized + unrealized at the reference price) beyond ``loss_limit``.
    kill_messages_per_second: int = 5_000
    reject_storm_count: int = 200
    reject_storm_window_ns: int = 10 * SECOND_NS
    loss_limit: Decimal = Decimal(1_000_000)
    version: int = 1
    record: FrozenRecord = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_order_quantity <= 0 or self.max_order_notional <= 0:
            raise ValueError("order size limits must be > 0")
        if not 0 < self.price_collar_pct < 1:
            raise ValueError("price_collar_pct must be a fraction between 0 and 1")
        if self.credit_limit < 0 or self.duplicate_window_ns < 0:
            raise ValueError("credit_limit and duplicate_window must be >= 0")
        _positive(self, "max_orders_per_second", "max_messages_per_second",
                  "kill_messages_per_second", "reject_storm_count", "reject_storm_window_ns")
        if self.loss_limit < 0:
            raise ValueError("loss_limit must be >= 0")
        # Built once: every acceptance event records these values.
        object.__setattr__(self, "record", FrozenRecord(
            {f.name: str(getattr(self, f.name)) for f in fields(self)
             if f.name not in ("version", "record")}))


def _positive(limits: Any, *names: str) -> None:
    for name in names:
        if getattr(limits, name) <= 0:
            raise ValueError(f"{name} must be > 0")


@dataclass(frozen=True, slots=True)
class SymbolLimits:
    """Per-symbol thresholds (a symbol scope of the governed limits)."""

    max_order_quantity: int = 1_000_000_000
    version: int = 1

    def __post_init__(self) -> None:
        _positive(self, "max_order_quantity")


@dataclass(frozen=True, slots=True)
class FirmLimits:
    # 15c3-5(c)(1)(i): the firm-wide aggregate is checked as well as each customer's.
    credit_limit: Decimal
    restricted_symbols: frozenset[str]
    defaults: RiskLimits
    # A last sale older than this is no reference (stale_reference): a feed that stopped
    # updating must not anchor the price collar. The previous close is exempt (valid for
    # its trading day until the symbol prints).
    reference_max_age_ns: int = 300 * 1_000_000_000
    # How credit exposure is counted; recorded in each TradingDayOpened.
    exposure_mode: str = ExposureMode.GROSS
    # Firm-wide throttle and kill triggers, and those of every strategy tag.
    max_orders_per_second: int = 50_000
    max_messages_per_second: int = 100_000
    kill_messages_per_second: int = 250_000
    loss_limit: Decimal = Decimal(10_000_000)
    strategy_max_orders_per_second: int = 1_000
    strategy_max_messages_per_second: int = 2_000
    strategy_reject_storm_count: int = 200
    version: int = 1
    # "v<version>", made once: the firm-wide controls record it on every acceptance.
    version_text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "version_text", f"v{self.version}")
        if self.reference_max_age_ns <= 0:
            raise ValueError("reference_max_age must be > 0")
        _positive(self, "max_orders_per_second", "max_messages_per_second",
                  "kill_messages_per_second", "strategy_max_orders_per_second",
                  "strategy_max_messages_per_second", "strategy_reject_storm_count")
        if self.loss_limit < 0 or self.credit_limit < 0:
            raise ValueError("loss_limit and credit_limit must be >= 0")
        if self.exposure_mode not in ExposureMode.__members__.values():
            raise ValueError(f"exposure_mode must be one of {[m.value for m in ExposureMode]}")


# ------------------------------------------------------------------ governed thresholds

# What a limit change may touch, per kind of scope (FINRA: limits changed without control
# are examiners' first finding; every one of these goes through maker-checker).
_ACCOUNT_FIELDS = ("max_order_quantity", "max_order_notional", "price_collar_pct",
                   "credit_limit", "duplicate_window_ns", "max_orders_per_second",
                   "max_messages_per_second", "kill_messages_per_second", "reject_storm_count",
                   "reject_storm_window_ns", "loss_limit")
_FIRM_FIELDS = ("credit_limit", "reference_max_age_ns", "max_orders_per_second",
                "max_messages_per_second", "kill_messages_per_second", "loss_limit",
                "strategy_max_orders_per_second", "strategy_max_messages_per_second",
                "strategy_reject_storm_count")
GOVERNED: dict[str, tuple[str, ...]] = {
    "account": _ACCOUNT_FIELDS,
    "firm": _FIRM_FIELDS,
    "symbol": ("max_order_quantity",),
}


def split_scope(scope: str) -> tuple[str, str | None]:
    """"account:ACC-1" -> ("account", "ACC-1"); "firm" -> ("firm", None)."""
    kind, _, key = scope.partition(":")
    return kind, (key or None)


def parse_value(limits: Any, name: str, text: str) -> Any:
    """The text of a new value in the type of the field it replaces (ValueError if not)."""
    current = getattr(limits, name)
    try:
        if isinstance(current, Decimal):
            value: Any = Decimal(text)
            if not value.is_finite():
                raise ValueError
            return value
        return int(text)
    except (ValueError, InvalidOperation):
        kind = "a decimal number" if isinstance(current, Decimal) else "an integer"
        raise ValueError(f"{name}: {text!r} is not {kind}") from None


def with_value(limits: Any, name: str, value: Any, version: int | None = None) -> Any:
    """The limits with one value changed and the next version, or ``version`` (validated as
    at load: a value the configuration would refuse is refused here too)."""
    changed: Callable[..., Any] = replace
    return changed(limits, **{name: value,
                              "version": limits.version + 1 if version is None else version})
