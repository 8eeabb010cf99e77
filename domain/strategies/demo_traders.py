"""The demo's crowd of traders, as strategies on the plugin API of ``domain.strategy``.

Each trader is a ``BaseStrategy`` whose ``on_timer`` is one decision (the demo wakes the
trader it draws); its orders go through its context (``submit``/``cancel``/``replace``)
and it learns what became of them in ``on_order`` — the one way orders are generated, in
the demo as under ``marketlog serve``. Everything they decide comes from a seeded
``Random`` passed in (``Desk``) and from the NBBO their context reports: no clock.

Three things a breach-every-control session needs do not fit the trading API, and the
demo's context (``DemoContext``, implemented by ``commands.demo_runner.DemoRunner``) adds
them, narrowly:

* ``submit_for(account, ...)``: an order for an account that is not the strategy's own
  (one that does not exist, one not hers, a suspended one) — the entitlement and account
  controls; a real strategy trades for its configured account only;
* ``resend(client_order_id, quantity=None)``: the same client order id again (idempotent)
  or with other fields (a conflict) — a real strategy's client ids are the runner's;
* ``ask_desk(action)``: the risk desk's governance (locates, halts, Rule 201, suspensions,
  the kill-switch and throttle drills by rose and raj). They are operator commands, not
  orders; the short seller's script only says *when*, so the desk's actions and her orders
  stay in one sequence (an order during the halt, after the Rule 201 trigger, while
  suspended, while her kill switch is tripped). ``commands.demo_runner.RiskDesk`` turns
  each action into its commands.
"""

from __future__ import annotations

from decimal import Decimal
from random import Random
from typing import Protocol

from domain.instruments import Instrument
from domain.strategy import BaseStrategy, OrderUpdate, StrategyContext
from domain.values import OrderStatus, Side, TimeInForce

LIVE = (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED)
UNKNOWN_SYMBOL = "XQZT"
UNKNOWN_ACCOUNT = "ACC-OMEGA"


class DemoContext(StrategyContext, Protocol):
    """The strategy context plus the demo's three hooks (see the module docstring)."""

    def submit_for(self, account_id: str, symbol: str, side: str, quantity: int,
                   price: Decimal | None = None, time_in_force: str = "day") -> str: ...

    def resend(self, client_order_id: str, quantity: int | None = None) -> None: ...

    def ask_desk(self, action: str) -> None: ...


class Desk:
    """What every trader shares: the seeded RNG, the instruments' ticks and lots, and the
    orders already sent (only the resender repeats one on purpose, so the duplicate control
    fires exactly when it should)."""

    def __init__(self, rng: Random, instruments: dict[str, Instrument]) -> None:
        self.rng = rng
        self.instruments = instruments
        self._keys: set[tuple[str, str, str, int, Decimal | None]] = set()

    def tick(self, symbol: str) -> Decimal:
        return self.instruments[symbol].tick_size

    def lot(self, symbol: str) -> int:
        return self.instruments[symbol].lot_size

    def mid(self, ctx: StrategyContext, symbol: str) -> Decimal:
        nbbo = ctx.nbbo(symbol)
        mid = None if nbbo is None else nbbo.midpoint
        if mid is None:
            raise LookupError(f"no market in {symbol}")
        return mid

    def mid_ticks(self, ctx: StrategyContext, symbol: str) -> int:
        return int(self.mid(ctx, symbol) / self.tick(symbol))

    def step(self, ctx: StrategyContext, symbol: str) -> int:
        """A sensible quoting increment in ticks (about 2.5 basis points)."""
        return max(1, self.mid_ticks(ctx, symbol) // 4000)

    def price(self, ctx: StrategyContext, symbol: str, ticks_from_mid: int) -> Decimal:
        return max(1, self.mid_ticks(ctx, symbol) + ticks_from_mid) * self.tick(symbol)

    def fresh(self, account: str, symbol: str, side: str, quantity: int,
              price: Decimal | None) -> int:
        """The quantity, bumped by a lot until the order is not one already sent."""
        bump = self.lot(symbol) if symbol in self.instruments else 1
        while (account, symbol, side, quantity, price) in self._keys:
            quantity += bump
        self._keys.add((account, symbol, side, quantity, price))
        return quantity


def _side(rng: Random) -> Side:
    return Side.BUY if rng.random() < 0.5 else Side.SELL


def _away(side: str, ticks: int) -> int:
    """Ticks from mid on the passive side: below for a bid, above for an offer."""
    return -ticks if side == Side.BUY else ticks


class DemoTrader(BaseStrategy):
    """A demo trader: a user on an account, drawn with ``weight``, one decision per timer."""

    name = "trader"
    account = "ACC-ALPHA"
    weight = 1
    timer_interval_ns = 1

    def __init__(self, desk: Desk, strategy_id: str | None = None) -> None:
        self.desk = desk
        self.strategy_id = strategy_id or f"demo-{self.name}"

    def order(self, ctx: DemoContext, symbol: str, side: str, quantity: int,
              price: Decimal | None = None, tif: str = TimeInForce.DAY, *,
              account: str | None = None) -> str:
        account = account or self.account
        quantity = self.desk.fresh(account, symbol, side, quantity, price)
        if account != self.account:
            return ctx.submit_for(account, symbol, side, quantity, price, tif)
        return ctx.submit(symbol, side, quantity, price, tif)

    def on_timer(self, ctx: StrategyContext, now_ns: int) -> None:
        self.act(ctx)  # type: ignore[arg-type]  # the demo runner's context is a DemoContext

    def act(self, ctx: DemoContext) -> None:
        raise NotImplementedError


class MarketMaker(DemoTrader):
    """``maria``: quotes DAY and GTC limits around the mid, cancels her oldest quotes and
    replaces others (price or size)."""

    name, account, weight = "maria", "ACC-ALPHA", 34
    symbols = ("AAPL", "MSFT", "SPY", "TSLA", "PENNY")
    max_live = 30

    def __init__(self, desk: Desk, strategy_id: str | None = None) -> None:
        super().__init__(desk, strategy_id)
        self.live: dict[str, tuple[str, str]] = {}  # insertion order = oldest first

    def act(self, ctx: DemoContext) -> None:
        desk = self.desk
        rng, r = desk.rng, desk.rng.random()
        if self.live and (r < 0.18 or len(self.live) > self.max_live):
            oldest = next(iter(self.live))
            del self.live[oldest]
            ctx.cancel(oldest)
            return
        if self.live and r < 0.36:
            client_order_id = rng.choice(list(self.live))
            symbol, side = self.live[client_order_id]
            if rng.random() < 0.6:  # re-centre the quote on the new mid
                ticks = _away(side, rng.randint(1, 6) * desk.step(ctx, symbol))
                ctx.replace(client_order_id, price=desk.price(ctx, symbol, ticks))
            else:
                ctx.replace(client_order_id, quantity=self.size(symbol))
            return
        symbol = rng.choice(self.symbols)
        side = _side(rng)
        price = desk.price(ctx, symbol, _away(side, rng.randint(1, 6) * desk.step(ctx, symbol)))
        quantity = self.size(symbol)
        tif = TimeInForce.GTC if rng.random() < 0.2 else TimeInForce.DAY
        self.order(ctx, symbol, side, quantity, price, tif)

    def size(self, symbol: str) -> int:
        lot = self.desk.lot(symbol)  # round lots of 100 on PENNY, tens of shares elsewhere
        return self.desk.rng.randint(1, 10) * (5 * lot if lot > 1 else 10)

    def on_order(self, ctx: StrategyContext, update: OrderUpdate) -> None:
        if update.status not in LIVE:
            self.live.pop(update.client_order_id, None)
        elif update.client_order_id not in self.live:
            self.live[update.client_order_id] = (update.symbol, update.side)


class Momentum(DemoTrader):
    """``momo``: market, IOC and FOK orders in the direction of the last move."""

    name, account, weight = "momo", "ACC-DELTA", 24
    symbols = ("AAPL", "MSFT", "SPY", "TSLA", "PENNY", "BRKA")
    symbol_weights = (25, 20, 25, 20, 9, 1)

    def __init__(self, desk: Desk, strategy_id: str | None = None) -> None:
        super().__init__(desk, strategy_id)
        self.last_mid: dict[str, Decimal] = {}

    def act(self, ctx: DemoContext) -> None:
        desk = self.desk
        rng = desk.rng
        symbol = rng.choices(self.symbols, self.symbol_weights)[0]
        mid = desk.mid(ctx, symbol)
        before = self.last_mid.get(symbol, mid)
        self.last_mid[symbol] = mid
        side = Side.BUY if mid > before else Side.SELL if mid < before else _side(rng)
        lot = desk.lot(symbol)
        quantity = 1 if symbol == "BRKA" else rng.randint(1, 8) * 5 * lot
        through = 3 * desk.step(ctx, symbol) * (1 if side == Side.BUY else -1)  # crosses
        r = rng.random()
        if r < 0.40:
            tif = TimeInForce.IOC if rng.random() < 0.3 else TimeInForce.DAY
            self.order(ctx, symbol, side, quantity, None, tif)
        elif r < 0.75:
            self.order(ctx, symbol, side, quantity, desk.price(ctx, symbol, through),
                       TimeInForce.IOC)
        elif r < 0.90:  # all or nothing; sometimes more than the book holds
            quantity *= rng.choice((1, 1, 4))
            self.order(ctx, symbol, side, quantity, desk.price(ctx, symbol, through),
                       TimeInForce.FOK)
        else:
            # Never a resting order: the venue has no self-trade prevention, and his next
            # order would trade against his own resting one (a wash trade).
            self.order(ctx, symbol, side, quantity, desk.price(ctx, symbol, through // 3),
                       TimeInForce.IOC)


class FatFinger(DemoTrader):
    """``fred``: mostly passive limits, but now and then ten times the size (max_qty), too
    much money (max_notional), a price far off the market (price_collar), half a tick
    (tick_size) or an odd lot on the round-lot board (lot_size)."""

    name, account, weight = "fred", "ACC-ALPHA", 12
    symbols = ("AAPL", "MSFT", "SPY", "TSLA", "PENNY", "BRKA")
    slips = ("max_qty", "price_collar", "max_notional", "tick_size", "lot_size")

    def __init__(self, desk: Desk, strategy_id: str | None = None) -> None:
        super().__init__(desk, strategy_id)
        self.slipped = 0

    def act(self, ctx: DemoContext) -> None:
        desk = self.desk
        rng = desk.rng
        if rng.random() >= 0.3:  # an ordinary passive order
            symbol = rng.choice(("AAPL", "MSFT", "SPY"))
            side = _side(rng)
            price = desk.price(ctx, symbol,
                               _away(side, rng.randint(2, 8) * desk.step(ctx, symbol)))
            self.order(ctx, symbol, side, rng.randint(1, 5) * 10, price)
            return
        slip = self.slips[self.slipped % len(self.slips)]
        self.slipped += 1
        side = _side(rng)
        if slip == "max_qty":  # three zeros too many
            quantity = rng.randint(1, 5) * 10_000 + rng.randint(1, 9) * 1000
            self.order(ctx, "AAPL", side, quantity, desk.price(ctx, "AAPL", 0))
        elif slip == "price_collar":  # a digit slipped: 15-60% away from the market
            symbol = rng.choice(("AAPL", "MSFT", "SPY", "TSLA"))
            off = int(desk.mid_ticks(ctx, symbol) * rng.uniform(0.15, 0.6))
            self.order(ctx, symbol, side, rng.randint(1, 5) * 10,
                       desk.price(ctx, symbol, off if rng.random() < 0.5 else -off))
        elif slip == "max_notional":  # within max_qty, but over 1,000,000
            if rng.random() < 0.5:
                self.order(ctx, "BRKA", side, rng.randint(2, 4), desk.price(ctx, "BRKA", 0))
            else:
                self.order(ctx, "MSFT", side, rng.randint(26, 90) * 100,
                           desk.price(ctx, "MSFT", 0))
        elif slip == "tick_size":  # half a tick
            symbol = rng.choice(("AAPL", "MSFT", "SPY"))
            price = (desk.price(ctx, symbol, _away(side, desk.step(ctx, symbol)))
                     + desk.tick(symbol) / 2)
            self.order(ctx, symbol, side, rng.randint(1, 5) * 10, price)
        else:  # lot_size: an odd lot on the round-lot board
            quantity = rng.randint(1, 30) * 100 + rng.randint(1, 99)
            self.order(ctx, "PENNY", side, quantity, desk.price(ctx, "PENNY", 0))


class Restricted(DemoTrader):
    """``rita``: tries restricted symbols (firm-wide RSTR, her account's TSLA), a symbol that
    does not exist, NEWCO (no reference price yet), an account that does not exist and, on
    her account's lower size limit, an order too large, or sells long what she does not hold
    (Reg SHO 200(g): beyond the position a sale is marked short); trades small otherwise."""

    name, account, weight = "rita", "ACC-GAMMA", 6
    symbols = ("AAPL", "MSFT", "SPY", "TSLA", "PENNY")
    probes = ("RSTR", "TSLA", UNKNOWN_SYMBOL, "NEWCO", UNKNOWN_ACCOUNT, "marking", "max_qty")

    def __init__(self, desk: Desk, strategy_id: str | None = None) -> None:
        super().__init__(desk, strategy_id)
        self.probed = 0

    def act(self, ctx: DemoContext) -> None:
        desk = self.desk
        rng = desk.rng
        side = _side(rng)
        if rng.random() >= 0.5:
            symbol = rng.choice(("AAPL", "MSFT", "SPY"))
            through = 2 * desk.step(ctx, symbol) * (1 if side == Side.BUY else -1)
            self.order(ctx, symbol, side, rng.randint(1, 4) * 5,
                       desk.price(ctx, symbol, through), TimeInForce.IOC)
            return
        probe = self.probes[self.probed % len(self.probes)]
        self.probed += 1
        quantity = rng.randint(1, 10) * 10
        if probe == "RSTR":  # firm-wide restricted list
            self.order(ctx, "RSTR", side, quantity, Decimal("42.00"))
        elif probe == "TSLA":  # on ACC-GAMMA's own restricted list
            self.order(ctx, "TSLA", side, quantity, desk.price(ctx, "TSLA", 0))
        elif probe == UNKNOWN_SYMBOL:
            self.order(ctx, UNKNOWN_SYMBOL, side, quantity, Decimal("10.00"))
        elif probe == "NEWCO":  # listed, but no reference price: rejected, never "no check"
            price = None if rng.random() < 0.3 else Decimal(rng.randint(900, 1100)) / 100
            self.order(ctx, "NEWCO", side, quantity, price)
        elif probe == UNKNOWN_ACCOUNT:
            self.order(ctx, "AAPL", side, quantity, desk.price(ctx, "AAPL", 0),
                       account=UNKNOWN_ACCOUNT)
        elif probe == "marking":  # Reg SHO 200(g): a long sale of shares she does not hold
            symbol = rng.choice(("AAPL", "MSFT", "SPY"))
            self.order(ctx, symbol, Side.SELL, rng.randint(10, 19) * 100,
                       desk.price(ctx, symbol, 2 * desk.step(ctx, symbol)))
        else:  # ACC-GAMMA's max_order_quantity is 5000, below the firm default of 10000
            self.order(ctx, "PENNY", side, rng.randint(51, 99) * 100,
                       desk.price(ctx, "PENNY", 0))


class Resender(DemoTrader):
    """``dave``: resends orders — the same order under a new client id within the duplicate
    window (rejected), the same client id again (idempotent: the original outcome, nothing
    journaled) or the same client id with other fields (a conflict, nothing journaled)."""

    name, account, weight = "dave", "ACC-ALPHA", 14
    symbols = ("AAPL", "MSFT", "SPY")

    def act(self, ctx: DemoContext) -> None:
        desk = self.desk
        rng = desk.rng
        symbol = rng.choice(self.symbols)
        side = _side(rng)
        price = desk.price(ctx, symbol, _away(side, rng.randint(2, 10) * desk.step(ctx, symbol)))
        tif = TimeInForce.IOC if rng.random() < 0.5 else TimeInForce.DAY
        quantity = desk.fresh(self.account, symbol, side, rng.randint(1, 10) * 10, price)
        client_order_id = ctx.submit(symbol, side, quantity, price, tif)
        r = rng.random()
        if r < 0.5:  # same order, new client id, within the window: the duplicate control
            ctx.submit(symbol, side, quantity, price, tif)
        elif r < 0.7:  # same client id: idempotent, answered with the original outcome
            ctx.resend(client_order_id)
        elif r < 0.8:  # same client id, different size: a conflict, nothing journaled
            ctx.resend(client_order_id, quantity + 1)


class CreditHog(DemoTrader):
    """``cora``: rests GTC bids below the market until her credit limit (exposure of orders
    *entered*, not only executed) refuses the next one."""

    name, account, weight = "cora", "ACC-BETA", 8
    symbols = ("AAPL", "MSFT", "SPY")

    def act(self, ctx: DemoContext) -> None:
        desk = self.desk
        rng = desk.rng
        symbol = rng.choice(self.symbols)
        # Inside SPY's 5% LULD band (tier 1): the credit limit is what refuses her.
        below = int(desk.mid_ticks(ctx, symbol) * rng.uniform(0.02, 0.045))
        price = desk.price(ctx, symbol, -below)
        quantity = int(Decimal(rng.randint(150, 350) * 1000) / price)
        self.order(ctx, symbol, Side.BUY, quantity, price, TimeInForce.GTC)


class BlockDesk(DemoTrader):
    """``bob``: builds firm-wide exposure with large resting GTC bids far below the market
    until the firm's aggregate limit refuses one — while his own account is still under its
    own limit (15c3-5(c)(1)(i): the firm-wide check) — then pulls his blocks, starts again."""

    name, account, weight = "bob", "ACC-DELTA", 6
    symbols = ("SPY",)
    notional = Decimal(1_900_000)  # under ACC-DELTA's 2,000,000 max_order_notional

    def __init__(self, desk: Desk, strategy_id: str | None = None) -> None:
        super().__init__(desk, strategy_id)
        self.blocks: list[str] = []
        self.refused = False

    def act(self, ctx: DemoContext) -> None:
        if self.refused:
            self.refused = False
            pulled, self.blocks = self.blocks, []
            for block in pulled:
                ctx.cancel(block)
            return
        desk = self.desk
        # Far below the market, yet inside SPY's 5% LULD band (tier 1).
        below = int(desk.mid_ticks(ctx, "SPY") * desk.rng.uniform(0.03, 0.045))
        price = desk.price(ctx, "SPY", -below)
        self.order(ctx, "SPY", Side.BUY, int(self.notional / price), price, TimeInForce.GTC)

    def on_order(self, ctx: StrategyContext, update: OrderUpdate) -> None:
        if update.status in LIVE:
            if update.client_order_id not in self.blocks:
                self.blocks.append(update.client_order_id)
        elif update.reject_control == "firm_credit":
            self.refused = True


class ShortSeller(DemoTrader):
    """``sasha`` (ACC-BETA): sells short under the Reg SHO rules while the risk desk works
    around her — locates requested and granted, a throttle drill, a halt and its resumption,
    a Rule 201 restriction, a suspension, a kill-switch drill on her strategy tag — and now
    and then sends an order for an account not hers. Her script sequences both: desk
    actions go through ``ask_desk``, her orders through her context."""

    name, account, weight = "sasha", "ACC-BETA", 6
    symbols = ("AAPL", "MSFT", "SPY")
    script = ("no_locate", "locate", "short", "throttle", "short", "halt", "halted_order",
              "resume", "ssr", "ssr_short", "not_mine", "suspend", "suspended_order",
              "reinstate", "short", "luld", "kill", "killed_order", "reset", "short")
    desk_actions = frozenset({"locate", "throttle", "halt", "resume", "suspend", "reinstate",
                              "kill", "reset"})

    def __init__(self, desk: Desk, strategy_id: str | None = None) -> None:
        super().__init__(desk, strategy_id or "sasha-shorts")
        self.step = 0
        self.restricted = False

    def act(self, ctx: DemoContext) -> None:
        desk = self.desk
        rng = desk.rng
        what = self.script[self.step % len(self.script)]
        self.step += 1
        symbol = "AAPL"
        if what in self.desk_actions:
            ctx.ask_desk(what)
        elif what == "ssr" and not self.restricted:
            self.restricted = True
            ctx.ask_desk("ssr")
        elif what == "no_locate":  # before any locate: Reg SHO 203(b)(1) refuses it
            self.order(ctx, "MSFT", Side.SELL_SHORT, 10,
                       desk.price(ctx, "MSFT", 5 * desk.step(ctx, "MSFT")))
        elif what == "halted_order":
            self.order(ctx, "MSFT", Side.BUY, 10, desk.price(ctx, "MSFT", -desk.step(ctx, "MSFT")))
        elif what == "ssr_short":  # at the bid or below while restricted: refused
            self.order(ctx, symbol, Side.SELL_SHORT, 10,
                       desk.price(ctx, symbol, -40 * desk.step(ctx, symbol)))
        elif what == "not_mine":  # 15c3-5(c)(2)(iii): ACC-ALPHA is not hers
            self.order(ctx, symbol, Side.BUY, 10,
                       desk.price(ctx, symbol, -desk.step(ctx, symbol)), account="ACC-ALPHA")
        elif what == "suspended_order":
            self.order(ctx, symbol, Side.BUY, 10,
                       desk.price(ctx, symbol, -desk.step(ctx, symbol)), account="ACC-GAMMA")
        elif what == "luld":  # 7% under SPY: inside the firm's 10% collar, outside its 5% band
            self.order(ctx, "SPY", Side.BUY, 10,
                       desk.price(ctx, "SPY", -desk.mid_ticks(ctx, "SPY") * 7 // 100))
        else:  # a short above the bid (also while restricted, and while killed: refused)
            above = desk.price(ctx, symbol, rng.randint(3, 8) * desk.step(ctx, symbol))
            self.order(ctx, symbol, Side.SELL_SHORT, rng.randint(1, 5) * 10, above)


class ThrottleBurst(DemoTrader):
    """``sasha``'s burst in the risk desk's throttle drill: a new strategy tag sending four
    IOC bids at once, into a per-strategy order rate the desk has just cut to two."""

    name, account, weight = "sasha", "ACC-BETA", 0
    symbols = ("AAPL",)
    burst = 4

    def __init__(self, desk: Desk, strategy_id: str | None = None) -> None:
        super().__init__(desk, strategy_id or "sasha-burst")

    def act(self, ctx: DemoContext) -> None:
        step = self.desk.step(ctx, "AAPL")
        for n in range(self.burst):
            self.order(ctx, "AAPL", Side.BUY, 10, self.desk.price(ctx, "AAPL", -(5 + n) * step),
                       TimeInForce.IOC)


class LateTrader(DemoTrader):
    """``lara``: one order after the close (no trading day open: the session control)."""

    name, account, weight = "lara", "ACC-BETA", 0
    symbols = ("AAPL",)

    def act(self, ctx: DemoContext) -> None:
        self.order(ctx, "AAPL", Side.BUY, 10,
                   self.desk.price(ctx, "AAPL", -self.desk.step(ctx, "AAPL")))


def crowd(desk: Desk) -> list[DemoTrader]:
    """The traders drawn by weight through the session."""
    return [MarketMaker(desk), Momentum(desk), FatFinger(desk), Restricted(desk),
            Resender(desk), CreditHog(desk), BlockDesk(desk), ShortSeller(desk)]
