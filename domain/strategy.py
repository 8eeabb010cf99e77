"""The strategy plugin API (issue 9): what a strategy implements and what it may call.

A strategy is a plain class with a ``strategy_id`` (the tag on every order it sends, so the
per-strategy throttles and kill switches of 15c3-5 apply to it) and callbacks. It never
touches the engine, a clock or the network: it reacts to market data and to its own orders'
events through a ``StrategyContext`` that a runner implements. The live runner (under
``marketlog serve``, paper trading against the simulated venue) and the backtester (tick
replay) implement the same context, so the same strategy code runs in both; every order it
asks for becomes a ``SubmitOrder``/``CancelOrder``/``ReplaceOrder`` command through the
engine and all its controls, like an order from REST.

Callbacks run one at a time (a runner never calls a strategy from two threads). Orders a
callback asks for are sent after it returns, in the order asked.
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple, Protocol, runtime_checkable

from domain.market_data import Nbbo, Quote, Trade


class OrderUpdate(NamedTuple):
    """What became of one of the strategy's orders (after each of its events)."""

    client_order_id: str
    order_id: str | None  # None when the engine rejected the command before an order existed
    symbol: str
    side: str
    status: str  # domain.values.OrderStatus
    quantity: int
    filled_quantity: int
    last_fill_quantity: int  # of the event this update follows, 0 if not a fill
    last_fill_price: Decimal | None
    limit_price: Decimal | None
    reject_control: str | None  # the 15c3-5 control that refused it, if one did
    ts_ns: int


class StrategyContext(Protocol):
    """What a strategy may ask of its runner."""

    @property
    def strategy_id(self) -> str: ...

    @property
    def now_ns(self) -> int:
        """The time of the event being handled (feed time in a backtest)."""
        ...

    def submit(self, symbol: str, side: str, quantity: int, price: Decimal | None = None,
               time_in_force: str = "day") -> str:
        """Ask for a new order (a market order when ``price`` is None); its client order id."""
        ...

    def cancel(self, client_order_id: str) -> None: ...

    def replace(self, client_order_id: str, quantity: int | None = None,
                price: Decimal | None = None) -> None: ...

    def position(self, symbol: str) -> int:
        """The strategy's net position in the symbol from its own fills (short: negative)."""
        ...

    def open_orders(self, symbol: str | None = None) -> list[OrderUpdate]:
        """The strategy's orders still working, newest update of each."""
        ...

    def nbbo(self, symbol: str) -> Nbbo | None:
        """The latest consolidated quote of a symbol, if any."""
        ...


@runtime_checkable
class Strategy(Protocol):
    """Implement the callbacks you need; the others may do nothing.

    ``timer_interval_ns``: how often ``on_timer`` is called (0: never)."""

    strategy_id: str
    symbols: tuple[str, ...]
    timer_interval_ns: int

    def on_start(self, ctx: StrategyContext) -> None: ...

    def on_quote(self, ctx: StrategyContext, quote: Quote, nbbo: Nbbo) -> None:
        """A venue's top of book changed (``nbbo``: the consolidated quote after it)."""
        ...

    def on_trade(self, ctx: StrategyContext, trade: Trade) -> None: ...

    def on_order(self, ctx: StrategyContext, update: OrderUpdate) -> None: ...

    def on_timer(self, ctx: StrategyContext, now_ns: int) -> None: ...

    def on_stop(self, ctx: StrategyContext) -> None: ...


class BaseStrategy:
    """Callbacks that do nothing: subclass and override what the strategy needs."""

    strategy_id = "strategy"
    symbols: tuple[str, ...] = ()
    timer_interval_ns = 0

    def on_start(self, ctx: StrategyContext) -> None:
        pass

    def on_quote(self, ctx: StrategyContext, quote: Quote, nbbo: Nbbo) -> None:
        pass

    def on_trade(self, ctx: StrategyContext, trade: Trade) -> None:
        pass

    def on_order(self, ctx: StrategyContext, update: OrderUpdate) -> None:
        pass

    def on_timer(self, ctx: StrategyContext, now_ns: int) -> None:
        pass

    def on_stop(self, ctx: StrategyContext) -> None:
        pass
