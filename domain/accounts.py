"""Accounts: cash, limits, positions and the trading day's entered exposure."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from domain.limits import RiskLimits
from domain.values import ZERO, ExposureMode, Side

# Enum members as plain module names: on CPython 3.11 a member lookup (Side.BUY) costs
# ~0.1 us, and these run several times per order.
BUY = Side.BUY
GROSS = ExposureMode.GROSS



class Exposure:
    """Notional entered today, by side: open leaves at their exposure price plus fills.

    15c3-5(c)(1)(i): orders *entered* count, not only executions. Kept by side so the day's
    recorded mode can count it gross or net (``domain.values.ExposureMode``).
    """

    # ``gross`` is kept as a running total: the credit controls read it on every order.
    __slots__ = ("buy_entered", "buy_filled", "gross", "sell_entered", "sell_filled")

    def __init__(self) -> None:
        self.buy_entered = ZERO
        self.sell_entered = ZERO
        self.buy_filled = ZERO
        self.sell_filled = ZERO
        self.gross = ZERO

    def value(self, mode: str) -> Decimal:
        if mode == GROSS:
            return self.gross
        return max(self.buy_entered - self.sell_filled, self.sell_entered - self.buy_filled)

    def value_with(self, mode: str, side: str, added: Decimal) -> Decimal:
        """The value if ``added`` more notional were entered on ``side``."""
        if mode == GROSS:
            return self.gross + added
        if side == BUY:
            return max(self.buy_entered + added - self.sell_filled,
                       self.sell_entered - self.buy_filled)
        return max(self.buy_entered - self.sell_filled,
                   self.sell_entered + added - self.buy_filled)

    def enter(self, side: str, notional: Decimal) -> None:
        if side == BUY:
            self.buy_entered += notional
        else:
            self.sell_entered += notional
        self.gross += notional

    def fill(self, side: str, fill_notional: Decimal, released: Decimal) -> None:
        """A fill replaces ``released`` of open exposure with its own notional."""
        change = fill_notional - released
        if side == BUY:
            self.buy_entered += change
            self.buy_filled += fill_notional
        else:
            self.sell_entered += change
            self.sell_filled += fill_notional
        self.gross += change

    def reset(self) -> None:
        self.buy_entered = self.sell_entered = self.buy_filled = self.sell_filled = ZERO
        self.gross = ZERO

    def state(self) -> list[str]:
        return [str(self.buy_entered), str(self.sell_entered), str(self.buy_filled),
                str(self.sell_filled)]

    def restore(self, state: list[str]) -> None:
        self.buy_entered, self.sell_entered, self.buy_filled, self.sell_filled = (
            Decimal(v) for v in state)
        self.gross = self.buy_entered + self.sell_entered


class Account:
    __slots__ = ("account_id", "cash", "day_start_value", "exposure", "limits", "opening",
                 "positions", "restricted_symbols", "sell_open")

    def __init__(
        self,
        account_id: str,
        limits: RiskLimits,
        cash: Decimal = ZERO,
        restricted_symbols: frozenset[str] = frozenset(),
        opening: dict[str, int] | None = None,
    ) -> None:
        self.account_id = account_id
        # Holdings before the log began (settled positions from the configuration): what a
        # long sale may sell. ``positions`` is what the log's fills changed since.
        self.opening: dict[str, int] = dict(opening or {})
        self.limits = limits
        self.cash = cash
        self.restricted_symbols = restricted_symbols
        self.positions: dict[str, int] = {}
        # Reg SHO marking: open quantity of long sells per symbol (a sell beyond the
        # position net of these must be marked short).
        self.sell_open: dict[str, int] = {}
        self.exposure = Exposure()
        # Cash plus positions at the reference prices when the trading day opened: the loss
        # limit's zero (realized + unrealized P&L are measured against it).
        self.day_start_value = cash

    def mark(self, price_of: Callable[[str], Decimal | None]) -> Decimal:
        """Cash plus every position at its reference price (a symbol without one: zero)."""
        value = self.cash
        held = dict(self.opening)
        for symbol, quantity in self.positions.items():
            held[symbol] = held.get(symbol, 0) + quantity
        for symbol, quantity in held.items():
            if quantity:
                price = price_of(symbol)
                if price is not None:
                    value += price * quantity
        return value

    def long_position(self, symbol: str) -> int:
        return self.opening.get(symbol, 0) + self.positions.get(symbol, 0)

    @property
    def credit_limit(self) -> Decimal:
        return self.limits.credit_limit
