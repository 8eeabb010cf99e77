"""Accounts: cash, credit limit (in their risk limits), positions and entered exposure."""

from __future__ import annotations

from decimal import Decimal

from domain.limits import RiskLimits
from domain.values import ZERO


class Account:
    __slots__ = ("account_id", "cash", "exposure", "limits", "positions", "restricted_symbols")

    def __init__(
        self,
        account_id: str,
        limits: RiskLimits,
        cash: Decimal = ZERO,
        restricted_symbols: frozenset[str] = frozenset(),
    ) -> None:
        self.account_id = account_id
        self.limits = limits
        self.cash = cash
        self.restricted_symbols = restricted_symbols
        self.positions: dict[str, int] = {}
        # 15c3-5(c)(1)(i): notional of orders *entered* today (open leaves + executions),
        # not only executions.
        self.exposure = ZERO

    @property
    def credit_limit(self) -> Decimal:
        return self.limits.credit_limit
