"""Tradable instruments."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    tick_size: Decimal
    lot_size: int
    # Previous close: the collar's reference until the symbol trades (15c3-5(c)(1)(ii)).
    # None means no reference, and orders are rejected rather than collared against a default.
    reference_price: Decimal | None
    # Limit Up-Limit Down tier (1: S&P 500, Russell 1000 and some ETPs; 2: the rest).
    luld_tier: int = 2

    def __post_init__(self) -> None:
        if self.tick_size <= 0:
            raise ValueError(f"{self.symbol}: tick_size must be > 0, got {self.tick_size}")
        if self.lot_size <= 0:
            raise ValueError(f"{self.symbol}: lot_size must be > 0, got {self.lot_size}")
        if self.luld_tier not in (1, 2):
            raise ValueError(f"{self.symbol}: luld_tier must be 1 or 2")
        if self.reference_price is not None and self.reference_price <= 0:
            raise ValueError(f"{self.symbol}: reference_price must be > 0")
