"""Risk limits: per-account settings resolved over the firm's defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from domain.values import ExposureMode, FrozenRecord


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
    version: int = 1
    record: FrozenRecord = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_order_quantity <= 0 or self.max_order_notional <= 0:
            raise ValueError("order size limits must be > 0")
        if not 0 < self.price_collar_pct < 1:
            raise ValueError("price_collar_pct must be a fraction between 0 and 1")
        if self.credit_limit < 0 or self.duplicate_window_ns < 0:
            raise ValueError("credit_limit and duplicate_window must be >= 0")
        # Built once: every acceptance event records these values.
        object.__setattr__(
            self,
            "record",
            FrozenRecord({
                "max_order_quantity": str(self.max_order_quantity),
                "max_order_notional": str(self.max_order_notional),
                "price_collar_pct": str(self.price_collar_pct),
                "credit_limit": str(self.credit_limit),
                "duplicate_window_ns": str(self.duplicate_window_ns),
            }),
        )


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

    def __post_init__(self) -> None:
        if self.reference_max_age_ns <= 0:
            raise ValueError("reference_max_age must be > 0")
        if self.exposure_mode not in ExposureMode.__members__.values():
            raise ValueError(f"exposure_mode must be one of {[m.value for m in ExposureMode]}")
