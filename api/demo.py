"""A seeded trading session on the embedded default: scripted traders that breach every control.

Six traders share the firm's default configuration (``infrastructure/config/default.toml``):

* ``maria`` (ACC-ALPHA), a market maker quoting DAY and GTC limits around the venue's mid,
  cancelling her oldest quotes and replacing others (price or size);
* ``momo`` (ACC-DELTA), a momentum trader sending market, IOC and FOK orders in the
  direction of the last move;
* ``fred`` (ACC-ALPHA), a fat finger: mostly passive limits, but now and then ten times the
  size (max_qty), too much money (max_notional), a price far off the market (price_collar),
  half a tick (tick_size) or an odd lot on the round-lot board (lot_size);
* ``rita`` (ACC-GAMMA), who tries restricted symbols (firm-wide RSTR, her account's TSLA),
  symbols that do not exist, NEWCO (no reference price yet), an account that does not exist
  and, on her account's lower size limit, an order too large;
* ``dave`` (ACC-ALPHA), who resends orders: the same order under a new client id within the
  duplicate window (rejected), the same client id again (idempotent: the original outcome,
  nothing journaled) or the same client id with other fields (a conflict, nothing journaled);
* ``lara`` (ACC-BETA), who sends one order after the close (the session control refuses it);
* ``cora`` (ACC-BETA), who rests GTC bids below the market until her credit limit (exposure
  of orders *entered*, not only executed) refuses the next one.

Everything the traders decide comes from ``random.Random(seed)`` and from the venue's
seeded liquidity provider, so a seed replays the same session on a fresh store (timestamps
aside: the engine's clock is real time; a session added to an existing log draws from the
seed and the log's length). Commands run in cycles of 50-200 through ``Engine.execute``
(one group commit each, in this thread). The session is a trading day: it opens (the
calendar's date, or the day after the last closed one when the demo is added to a log with
``--keep``) and ends with a ``CloseTradingDay`` that expires the DAY orders; the read
models are then caught up and the summary is read from them.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from commands.models import (
    ApproveLimitChange,
    CancelOrder,
    CloseTradingDay,
    Command,
    GrantLocate,
    HaltSymbol,
    OpenTradingDay,
    ReinstateAccount,
    ReplaceOrder,
    RequestLimitChange,
    RequestLocate,
    ResetKillSwitch,
    ResumeSymbol,
    SubmitOrder,
    SuspendAccount,
    TriggerShortSaleRestriction,
    TripKillSwitch,
)
from commands.outcomes import Outcome
from domain.controls import NEW_ORDER_CONTROLS
from domain.values import OrderStatus, OrderType, Side, Source, TimeInForce
from infrastructure.bootstrap import System, bootstrap
from infrastructure.clock import utc_now_ns
from infrastructure.config import FirmConfig
from infrastructure.credentials import issue_missing_keys
from infrastructure.event_store import ChainCheck
from infrastructure.settings import Settings
from infrastructure.venue import SyntheticLiquidity
from projections.queries import list_positions
from projections.tables import audit_trail, orders_view

DEFAULT_ORDERS = 5000
DEFAULT_SEED = 42
CYCLE_SIZE = (50, 200)  # commands per engine cycle (one group commit)
SESSION_ACTOR = "session-close"

LIVE = (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED)
UNKNOWN_SYMBOL = "XQZT"
UNKNOWN_ACCOUNT = "ACC-OMEGA"

Progress = Callable[[int, int], None]  # (orders sent so far, orders in total)


# --------------------------------------------------------------------------- the desk


class Desk:
    """What every trader shares: the seeded RNG, prices from the venue, client ids."""

    def __init__(self, system: System, rng: random.Random, session: str = "s0") -> None:
        liquidity = system.engine.venue.liquidity
        if not isinstance(liquidity, SyntheticLiquidity):
            raise ValueError("the demo needs the venue's liquidity provider: "
                             "Settings(liquidity_provider=True)")
        self.rng = rng
        self.engine = system.engine
        self.session = session  # in client ids, so a session added with --keep is new orders
        self.liquidity = liquidity
        self.instruments = {i.symbol: i for i in system.config.instruments}
        self._sequence: Counter[str] = Counter()
        # (account, symbol, side, quantity, price) already sent: only the duplicate resender
        # repeats one on purpose, so the duplicate control fires exactly when it should.
        self._keys: set[tuple[str, str, str, int, Decimal | None]] = set()

    def firm_limits(self) -> Any:
        """The firm's limits in force (read between cycles: the engine is idle then)."""
        return self.engine.book.firm

    def tick(self, symbol: str) -> Decimal:
        return self.instruments[symbol].tick_size

    def lot(self, symbol: str) -> int:
        return self.instruments[symbol].lot_size

    def mid(self, symbol: str) -> Decimal:
        mid = self.liquidity.mid(symbol)
        assert mid is not None, f"no liquidity in {symbol}"
        return mid

    def mid_ticks(self, symbol: str) -> int:
        return int(self.mid(symbol) / self.tick(symbol))

    def step(self, symbol: str) -> int:
        """A sensible quoting increment in ticks (about 2.5 basis points)."""
        return max(1, self.mid_ticks(symbol) // 4000)

    def price(self, symbol: str, ticks_from_mid: int) -> Decimal:
        ticks = max(1, self.mid_ticks(symbol) + ticks_from_mid)
        return ticks * self.tick(symbol)

    def client_id(self, trader: str) -> str:
        self._sequence[trader] += 1
        return f"{trader}-{self.session}-{self._sequence[trader]:06d}"

    def order(self, trader: Trader, symbol: str, side: Side, quantity: int,
              price: Decimal | None = None, tif: TimeInForce = TimeInForce.DAY, *,
              account: str | None = None, strategy: str | None = None) -> SubmitOrder:
        account = account or trader.account
        bump = self.lot(symbol) if symbol in self.instruments else 1
        while (account, symbol, side, quantity, price) in self._keys:
            quantity += bump
        self._keys.add((account, symbol, side, quantity, price))
        return SubmitOrder(
            client_order_id=self.client_id(trader.name), account_id=account, symbol=symbol,
            side=side, quantity=quantity,
            order_type=OrderType.MARKET if price is None else OrderType.LIMIT,
            limit_price=price, time_in_force=tif, strategy=strategy, actor=trader.name,
            source=Source.DEMO)


# --------------------------------------------------------------------------- the traders


class Trader:
    name = "trader"
    account = "ACC-ALPHA"
    weight = 1

    def act(self, desk: Desk) -> list[Command]:
        raise NotImplementedError

    def observe(self, command: Command, outcome: Outcome | BaseException) -> None:
        """Learn what became of a command (live orders to cancel or replace later)."""


def _side(rng: random.Random) -> Side:
    return Side.BUY if rng.random() < 0.5 else Side.SELL


def _away(side: Side, ticks: int) -> int:
    """Ticks from mid on the passive side: below for a bid, above for an offer."""
    return -ticks if side == Side.BUY else ticks


class MarketMaker(Trader):
    name, account, weight = "maria", "ACC-ALPHA", 34
    symbols = ("AAPL", "MSFT", "SPY", "TSLA", "PENNY")
    max_live = 30

    def __init__(self) -> None:
        self.live: dict[UUID, tuple[str, Side]] = {}  # insertion order = oldest first

    def act(self, desk: Desk) -> list[Command]:
        rng, r = desk.rng, desk.rng.random()
        if self.live and (r < 0.18 or len(self.live) > self.max_live):
            oldest = next(iter(self.live))
            del self.live[oldest]
            return [CancelOrder(order_id=oldest, actor=self.name, source=Source.DEMO)]
        if self.live and r < 0.36:
            order_id = rng.choice(list(self.live))
            symbol, side = self.live[order_id]
            if rng.random() < 0.6:  # re-centre the quote on the new mid
                price = desk.price(symbol, _away(side, rng.randint(1, 6) * desk.step(symbol)))
                return [ReplaceOrder(order_id=order_id, limit_price=price, actor=self.name,
                                     source=Source.DEMO)]
            quantity = self.size(desk, symbol)
            return [ReplaceOrder(order_id=order_id, quantity=quantity, actor=self.name,
                                 source=Source.DEMO)]
        symbol = rng.choice(self.symbols)
        side = _side(rng)
        price = desk.price(symbol, _away(side, rng.randint(1, 6) * desk.step(symbol)))
        quantity = self.size(desk, symbol)
        tif = TimeInForce.GTC if rng.random() < 0.2 else TimeInForce.DAY
        return [desk.order(self, symbol, side, quantity, price, tif)]

    @staticmethod
    def size(desk: Desk, symbol: str) -> int:
        lot = desk.lot(symbol)  # round lots of 100 on PENNY, tens of shares elsewhere
        return desk.rng.randint(1, 10) * (5 * lot if lot > 1 else 10)

    def observe(self, command: Command, outcome: Outcome | BaseException) -> None:
        if not isinstance(outcome, Outcome) or outcome.order is None:
            return
        order = outcome.order
        order_id = UUID(order["order_id"])
        if order["status"] in LIVE:
            if isinstance(command, SubmitOrder):
                self.live[order_id] = (order["symbol"], Side(order["side"]))
        else:
            self.live.pop(order_id, None)


class Momentum(Trader):
    name, account, weight = "momo", "ACC-DELTA", 24
    symbols = ("AAPL", "MSFT", "SPY", "TSLA", "PENNY", "BRKA")
    symbol_weights = (25, 20, 25, 20, 9, 1)

    def __init__(self) -> None:
        self.last_mid: dict[str, Decimal] = {}

    def act(self, desk: Desk) -> list[Command]:
        rng = desk.rng
        symbol = rng.choices(self.symbols, self.symbol_weights)[0]
        mid = desk.mid(symbol)
        before = self.last_mid.get(symbol, mid)
        self.last_mid[symbol] = mid
        side = Side.BUY if mid > before else Side.SELL if mid < before else _side(rng)
        lot = desk.lot(symbol)
        quantity = 1 if symbol == "BRKA" else rng.randint(1, 8) * 5 * lot
        through = 3 * desk.step(symbol) * (1 if side == Side.BUY else -1)  # crosses the spread
        r = rng.random()
        if r < 0.40:
            tif = TimeInForce.IOC if rng.random() < 0.3 else TimeInForce.DAY
            return [desk.order(self, symbol, side, quantity, None, tif)]
        if r < 0.75:
            return [desk.order(self, symbol, side, quantity, desk.price(symbol, through),
                               TimeInForce.IOC)]
        if r < 0.90:  # all or nothing; sometimes more than the book holds
            quantity *= rng.choice((1, 1, 4))
            return [desk.order(self, symbol, side, quantity, desk.price(symbol, through),
                               TimeInForce.FOK)]
        # Never a resting order: the venue has no self-trade prevention, and a momentum
        # trader's next order would trade against his own resting one (a wash trade).
        return [desk.order(self, symbol, side, quantity, desk.price(symbol, through // 3),
                           TimeInForce.IOC)]


class FatFinger(Trader):
    name, account, weight = "fred", "ACC-ALPHA", 12
    slips = ("max_qty", "price_collar", "max_notional", "tick_size", "lot_size")

    def __init__(self) -> None:
        self.slipped = 0

    def act(self, desk: Desk) -> list[Command]:
        rng = desk.rng
        if rng.random() >= 0.3:  # an ordinary passive order
            symbol = rng.choice(("AAPL", "MSFT", "SPY"))
            side = _side(rng)
            price = desk.price(symbol, _away(side, rng.randint(2, 8) * desk.step(symbol)))
            return [desk.order(self, symbol, side, rng.randint(1, 5) * 10, price)]
        slip = self.slips[self.slipped % len(self.slips)]
        self.slipped += 1
        side = _side(rng)
        if slip == "max_qty":  # three zeros too many
            quantity = rng.randint(1, 5) * 10_000 + rng.randint(1, 9) * 1000
            return [desk.order(self, "AAPL", side, quantity, desk.price("AAPL", 0))]
        if slip == "price_collar":  # a digit slipped: 15-60% away from the market
            symbol = rng.choice(("AAPL", "MSFT", "SPY", "TSLA"))
            off = int(desk.mid_ticks(symbol) * rng.uniform(0.15, 0.6))
            return [desk.order(self, symbol, side, rng.randint(1, 5) * 10,
                               desk.price(symbol, off if rng.random() < 0.5 else -off))]
        if slip == "max_notional":  # within max_qty, but over 1,000,000
            if rng.random() < 0.5:
                return [desk.order(self, "BRKA", side, rng.randint(2, 4), desk.price("BRKA", 0))]
            return [desk.order(self, "MSFT", side, rng.randint(26, 90) * 100,
                               desk.price("MSFT", 0))]
        if slip == "tick_size":  # half a tick
            symbol = rng.choice(("AAPL", "MSFT", "SPY"))
            price = desk.price(symbol, _away(side, desk.step(symbol))) + desk.tick(symbol) / 2
            return [desk.order(self, symbol, side, rng.randint(1, 5) * 10, price)]
        # lot_size: an odd lot on the round-lot board
        quantity = rng.randint(1, 30) * 100 + rng.randint(1, 99)
        return [desk.order(self, "PENNY", side, quantity, desk.price("PENNY", 0))]


class Restricted(Trader):
    """Tries what the firm does not allow her to trade; trades small otherwise."""

    name, account, weight = "rita", "ACC-GAMMA", 6
    probes = ("RSTR", "TSLA", UNKNOWN_SYMBOL, "NEWCO", UNKNOWN_ACCOUNT, "max_qty")

    def __init__(self) -> None:
        self.probed = 0

    def act(self, desk: Desk) -> list[Command]:
        rng = desk.rng
        side = _side(rng)
        if rng.random() >= 0.5:
            symbol = rng.choice(("AAPL", "MSFT", "SPY"))
            through = 2 * desk.step(symbol) * (1 if side == Side.BUY else -1)
            return [desk.order(self, symbol, side, rng.randint(1, 4) * 5,
                               desk.price(symbol, through), TimeInForce.IOC)]
        probe = self.probes[self.probed % len(self.probes)]
        self.probed += 1
        quantity = rng.randint(1, 10) * 10
        if probe == "RSTR":  # firm-wide restricted list
            return [desk.order(self, "RSTR", side, quantity, Decimal("42.00"))]
        if probe == "TSLA":  # on ACC-GAMMA's own restricted list
            return [desk.order(self, "TSLA", side, quantity, desk.price("TSLA", 0))]
        if probe == UNKNOWN_SYMBOL:
            return [desk.order(self, UNKNOWN_SYMBOL, side, quantity, Decimal("10.00"))]
        if probe == "NEWCO":  # listed, but no reference price: rejected, never "no check"
            price = None if rng.random() < 0.3 else Decimal(rng.randint(900, 1100)) / 100
            return [desk.order(self, "NEWCO", side, quantity, price)]
        if probe == UNKNOWN_ACCOUNT:
            return [desk.order(self, "AAPL", side, quantity, desk.price("AAPL", 0),
                               account=UNKNOWN_ACCOUNT)]
        # ACC-GAMMA's max_order_quantity is 5000, below the firm default of 10000
        quantity = rng.randint(51, 99) * 100
        return [desk.order(self, "PENNY", side, quantity, desk.price("PENNY", 0))]


class Resender(Trader):
    name, account, weight = "dave", "ACC-ALPHA", 14

    def act(self, desk: Desk) -> list[Command]:
        rng = desk.rng
        symbol = rng.choice(("AAPL", "MSFT", "SPY"))
        side = _side(rng)
        price = desk.price(symbol, _away(side, rng.randint(2, 10) * desk.step(symbol)))
        tif = TimeInForce.IOC if rng.random() < 0.5 else TimeInForce.DAY
        order = desk.order(self, symbol, side, rng.randint(1, 10) * 10, price, tif)
        r = rng.random()
        if r < 0.5:  # same order, new client id, within the window: the duplicate control
            return [order, order.model_copy(update={"client_order_id": desk.client_id(self.name)})]
        if r < 0.7:  # same client id: idempotent, answered with the original outcome
            return [order, order]
        if r < 0.8:  # same client id, different size: a conflict, nothing journaled
            return [order, order.model_copy(update={"quantity": order.quantity + 1})]
        return [order]


class CreditHog(Trader):
    """Rests GTC bids below the market until the credit limit refuses the next one."""

    name, account, weight = "cora", "ACC-BETA", 8

    def act(self, desk: Desk) -> list[Command]:
        rng = desk.rng
        symbol = rng.choice(("AAPL", "MSFT", "SPY"))
        # Inside SPY's 5% LULD band (tier 1): the credit limit is what refuses her.
        below = int(desk.mid_ticks(symbol) * rng.uniform(0.02, 0.045))
        price = desk.price(symbol, -below)
        quantity = int(Decimal(rng.randint(150, 350) * 1000) / price)
        return [desk.order(self, symbol, Side.BUY, quantity, price, TimeInForce.GTC)]


class BlockDesk(Trader):
    """Builds firm-wide exposure with large resting GTC bids far below the market until the
    firm's aggregate limit refuses one — while its own account is still under its own limit
    (15c3-5(c)(1)(i): the firm-wide check) — then pulls its blocks and starts again."""

    name, account, weight = "bob", "ACC-DELTA", 6
    notional = Decimal(1_900_000)  # under ACC-DELTA's 2,000,000 max_order_notional

    def __init__(self) -> None:
        self.blocks: list[UUID] = []
        self.refused = False

    def act(self, desk: Desk) -> list[Command]:
        if self.refused:
            self.refused = False
            pulled, self.blocks = self.blocks, []
            return [CancelOrder(order_id=block, actor=self.name, source=Source.DEMO)
                    for block in pulled]
        rng = desk.rng
        # Far below the market, yet inside SPY's 5% LULD band (tier 1).
        below = int(desk.mid_ticks("SPY") * rng.uniform(0.03, 0.045))
        price = desk.price("SPY", -below)
        quantity = int(self.notional / price)
        return [desk.order(self, "SPY", Side.BUY, quantity, price, TimeInForce.GTC)]

    def observe(self, command: Command, outcome: Outcome | BaseException) -> None:
        if not isinstance(command, SubmitOrder) or not isinstance(outcome, Outcome):
            return
        order = outcome.order
        if order is None:
            return
        if order["status"] in LIVE:
            self.blocks.append(UUID(order["order_id"]))
        elif order["reject"] and order["reject"]["control"] == "firm_credit":
            self.refused = True


class ShortSeller(Trader):
    """Sells short on ACC-BETA under the Reg SHO rules, while the risk desk (``rose``) works
    around her: locates requested and granted, a halt and its resumption, a Rule 201
    restriction, a suspension, and now and then an order for an account not hers."""

    name, account, weight = "sasha", "ACC-BETA", 6
    desk_officer, desk_checker = "rose", "raj"
    script = ("no_locate", "locate", "short", "throttle", "short", "halt", "halted_order",
              "resume", "ssr", "ssr_short", "not_mine", "suspend", "suspended_order", "reinstate",
              "short", "luld", "kill", "killed_order", "reset", "short")

    def __init__(self) -> None:
        self.step = 0
        self.restricted = False

    def _risk(self, command: type[Command], **fields: Any) -> Command:
        return command(actor=self.desk_officer, source=Source.DEMO,  # type: ignore[call-arg]
                       **fields)

    def act(self, desk: Desk) -> list[Command]:
        rng = desk.rng
        what = self.script[self.step % len(self.script)]
        self.step += 1
        symbol = "AAPL"
        above = desk.price(symbol, rng.randint(3, 8) * desk.step(symbol))  # above the bid
        short = desk.order(self, symbol, Side.SELL_SHORT, rng.randint(1, 5) * 10, above,
                           strategy=f"{self.name}-shorts")
        if what == "no_locate":  # before any locate: Reg SHO 203(b)(1) refuses it
            return [desk.order(self, "MSFT", Side.SELL_SHORT, 10,
                               desk.price("MSFT", 5 * desk.step("MSFT")))]
        if what == "locate":
            locate_id = uuid.UUID(int=rng.getrandbits(128), version=4)
            expires = utc_now_ns() + 3600 * 1_000_000_000
            return [RequestLocate(locate_id=locate_id, account_id=self.account, symbol=symbol,
                                  quantity=2_000, reason="short AAPL", actor=self.name,
                                  source=Source.DEMO),
                    self._risk(GrantLocate, locate_id=locate_id, quantity=1_500,
                               expires_at_ns=expires, reason="easy to borrow")]
        if what == "throttle":
            return self._throttle(desk)
        if what == "halt":
            return [self._risk(HaltSymbol, symbol="MSFT", reason="news pending")]
        if what == "halted_order":
            return [desk.order(self, "MSFT", Side.BUY, 10, desk.price("MSFT", -desk.step("MSFT")))]
        if what == "resume":
            return [self._risk(ResumeSymbol, symbol="MSFT", reason="news out")]
        if what == "ssr":
            if self.restricted:
                return [short]
            self.restricted = True
            return [self._risk(TriggerShortSaleRestriction, symbol=symbol,
                               reason="listing market notice (Rule 201)")]
        if what == "ssr_short":  # at the bid or below while restricted: refused
            return [desk.order(self, symbol, Side.SELL_SHORT, 10,
                               desk.price(symbol, -40 * desk.step(symbol)))]
        if what == "not_mine":  # 15c3-5(c)(2)(iii): ACC-ALPHA is not hers
            return [desk.order(self, symbol, Side.BUY, 10, desk.price(symbol, -desk.step(symbol)),
                               account="ACC-ALPHA")]
        if what == "suspend":
            return [self._risk(SuspendAccount, account_id="ACC-GAMMA", reason="margin call")]
        if what == "suspended_order":
            return [desk.order(self, symbol, Side.BUY, 10, desk.price(symbol, -desk.step(symbol)),
                               account="ACC-GAMMA")]
        if what == "reinstate":
            return [self._risk(ReinstateAccount, account_id="ACC-GAMMA", reason="margin met")]
        if what == "luld":  # 7% under SPY: inside the firm's 10% collar, outside its 5% band
            return [desk.order(self, "SPY", Side.BUY, 10,
                               desk.price("SPY", -desk.mid_ticks("SPY") * 7 // 100))]
        if what == "kill":  # a drill: her resting orders are canceled, new ones refused
            return [self._risk(TripKillSwitch, scope=f"strategy:{self.name}-shorts",
                               reason="drill")]
        if what == "killed_order":
            return [short]
        if what == "reset":
            return [self._risk(ResetKillSwitch, scope=f"strategy:{self.name}-shorts",
                               reason="drill over")]
        return [short]


    def _throttle(self, desk: Desk) -> list[Command]:
        """A governed cut of the per-strategy order rate (requested by rose, approved by raj:
        maker-checker), a burst of a new strategy that runs into it (15c3-5 throttle), and
        the limit restored the same way, all in one engine cycle: a second is far longer
        than the burst, so exactly the orders past the cut are refused, whatever the timing."""
        field, cut, burst = "strategy_max_orders_per_second", 2, 4
        before = str(getattr(desk.firm_limits(), field))
        cut_id, restore_id = (uuid.UUID(int=desk.rng.getrandbits(128), version=4)
                              for _ in range(2))
        orders = [desk.order(self, "AAPL", Side.BUY, 10,
                             desk.price("AAPL", -(5 + n) * desk.step("AAPL")),
                             TimeInForce.IOC, strategy=f"{self.name}-burst")
                  for n in range(burst)]
        return [
            self._risk(RequestLimitChange, change_id=cut_id, scope="firm", field=field,
                       value=str(cut), reason="throttle drill"),
            ApproveLimitChange(change_id=cut_id, actor=self.desk_checker, source=Source.DEMO,
                               reason="throttle drill"),
            *orders,
            self._risk(RequestLimitChange, change_id=restore_id, scope="firm", field=field,
                       value=before, reason="throttle drill over"),
            ApproveLimitChange(change_id=restore_id, actor=self.desk_checker,
                               source=Source.DEMO, reason="throttle drill over"),
        ]


def traders() -> list[Trader]:
    return [MarketMaker(), Momentum(), FatFinger(), Restricted(), Resender(), CreditHog(),
            BlockDesk(), ShortSeller()]


# --------------------------------------------------------------------------- the result


@dataclass
class DemoResult:
    orders: int
    seed: int
    commands: int
    cycles: int
    events: int
    outcomes: Counter[str]
    rejections: dict[str, dict[str, int]]  # control -> account -> count (from the read model)
    unbreachable: dict[str, str]  # control -> why this configuration cannot breach it
    positions: list[dict[str, Any]]
    fills: int
    trading_seconds: float
    projection_seconds: float
    elapsed_seconds: float
    chain: ChainCheck
    store: str
    read_models: str
    errors: list[str] = field(default_factory=list)
    # Users (name, role, accounts) and where each one's API key was written on first run.
    users: list[tuple[str, str, list[str]]] = field(default_factory=list)
    credentials: dict[str, str] = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        return self.outcomes["accepted"]

    @property
    def rejected(self) -> int:
        return self.outcomes["rejected"]

    @property
    def orders_per_second(self) -> float:
        return self.orders / self.trading_seconds if self.trading_seconds else 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.trading_seconds if self.trading_seconds else 0.0

    def rejections_by_control(self) -> dict[str, int]:
        return {control: sum(self.rejections.get(control, {}).values())
                for control in NEW_ORDER_CONTROLS}

    @property
    def missed_controls(self) -> list[str]:
        """Controls the configuration can breach but this session did not."""
        totals = self.rejections_by_control()
        return [c for c in NEW_ORDER_CONTROLS if not totals[c] and c not in self.unbreachable]


def unbreachable_controls(config: FirmConfig) -> dict[str, str]:
    """Controls no order can breach under this configuration, and why."""
    accounts = config.new_accounts()
    total = sum((a.credit_limit for a in accounts), Decimal(0))
    found = {
        "stale_reference": "the venue's liquidity provider prints throughout the session",
    }
    if accounts and total <= config.firm.credit_limit:
        found["firm_credit"] = (f"firm credit limit {config.firm.credit_limit} is at least the "
                                f"sum of the account credit limits ({total})")
    return found


# --------------------------------------------------------------------------- running


def run_demo(settings: Settings, *, orders: int = DEFAULT_ORDERS, seed: int = DEFAULT_SEED,
             progress: Progress | None = None) -> DemoResult:
    """Bootstrap the system without its threads, run the session, close the system."""
    if not settings.liquidity_provider:
        raise ValueError("the demo needs Settings(liquidity_provider=True)")
    system = bootstrap(settings, start=False)
    try:
        written = issue_missing_keys(system)
        result = run_session(system, orders=orders, seed=seed, progress=progress)
        result.users = [(u.username, u.role, sorted(u.accounts))
                        for u in system.engine.book.gov.users.values()]
        result.credentials = {user: str(path) for user, path in written.items()}
        return result
    finally:
        system.close()


def run_session(system: System, *, orders: int = DEFAULT_ORDERS, seed: int = DEFAULT_SEED,
                progress: Progress | None = None) -> DemoResult:
    if orders < 1:
        raise ValueError("orders must be at least 1")
    engine, store = system.engine, system.store
    start_position, start_ns = store.head_position, utc_now_ns()
    # A session added to an existing log (--keep) draws other orders than the first one: the
    # same orders again within the duplicate window would be (rightly) rejected as duplicates.
    rng = random.Random(seed if start_position == 0 else f"{seed}/{start_position}")
    desk = Desk(system, rng, session=f"s{start_position}")
    crowd = traders()
    weights = [t.weight for t in crowd]
    outcomes: Counter[str] = Counter()
    errors: list[str] = []
    sent = commands = cycles = 0

    started = time.perf_counter()
    opening = _open_day(system)
    if opening is not None:
        errors.append(opening)
    while sent < orders:
        size = rng.randint(*CYCLE_SIZE)
        batch: list[tuple[Trader, Command]] = []
        while len(batch) < size and sent < orders:
            trader = rng.choices(crowd, weights)[0]
            for command in trader.act(desk):
                if isinstance(command, SubmitOrder):
                    if sent == orders:
                        break
                    sent += 1
                batch.append((trader, command))
        results = engine.execute([command for _, command in batch])
        cycles += 1
        commands += len(batch)
        for (trader, command), outcome in zip(batch, results, strict=True):
            outcomes[_classify(command, outcome)] += 1
            if isinstance(outcome, BaseException):
                errors.append(f"{type(command).__name__} by {trader.name}: {outcome!r}")
            trader.observe(command, outcome)
        if progress is not None:
            progress(sent, orders)

    close = engine.execute([CloseTradingDay(actor=SESSION_ACTOR, source=Source.DEMO,
                                            reason="demo session ends")])[0]
    cycles += 1
    commands += 1
    if isinstance(close, Outcome) and close.kind == "done":
        outcomes["end_of_day_canceled"] += (close.detail or {}).get("expiring_orders", 0)
    else:
        errors.append(f"CloseTradingDay: {close!r}")
    # A late order after the close: no trading day is open, so the session control refuses.
    late = SubmitOrder(client_order_id=desk.client_id("lara"), account_id="ACC-BETA",
                       symbol="AAPL", side=Side.BUY, quantity=10, order_type=OrderType.LIMIT,
                       limit_price=desk.price("AAPL", -desk.step("AAPL")),
                       time_in_force=TimeInForce.DAY, actor="lara", source=Source.DEMO)
    late_outcome = engine.execute([late])[0]
    commands += 1
    cycles += 1
    outcomes[_classify(late, late_outcome)] += 1
    trading_seconds = time.perf_counter() - started

    caught_up = time.perf_counter()
    system.projections.catch_up()
    projection_seconds = time.perf_counter() - caught_up

    with system.read_models.connect() as conn:
        rejections = _rejections(conn, start_ns)
        fills = conn.execute(
            sa.select(sa.func.count()).select_from(audit_trail).where(
                audit_trail.c.position > start_position,
                audit_trail.c.event_type == "OrderFilled")
        ).scalar_one()
        positions = list_positions(conn)
    chain = store.verify()
    settings = system.settings
    return DemoResult(
        orders=sent, seed=seed, commands=commands, cycles=cycles,
        events=store.head_position - start_position, outcomes=outcomes,
        rejections=rejections, unbreachable=unbreachable_controls(system.config),
        positions=positions, fills=fills, trading_seconds=trading_seconds,
        projection_seconds=projection_seconds,
        elapsed_seconds=time.perf_counter() - started, chain=chain,
        store=(_redacted(settings.database_url) if settings.database_url
               else str(settings.sqlite_store_path.resolve())),
        read_models=(_redacted(settings.read_models_url) if settings.read_database_url
                     or settings.database_url
                     else str((settings.data_dir / "read_models.sqlite").resolve())),
        errors=errors)


def _open_day(system: System) -> str | None:
    """Open the session's trading day unless one is open: today's date, or the day after the
    last closed one (a demo added with --keep to a log whose today is already closed)."""
    system.engine.execute([])  # the calendar's own opening, if one is due
    book = system.engine.book
    if book.day.is_open:
        return None
    today = system.engine.context.trading_date(utc_now_ns())
    last = book.day.last_closed_date
    if last is not None and today <= last:
        today = (date.fromisoformat(last) + timedelta(days=1)).isoformat()
    opened = system.engine.execute([OpenTradingDay(
        actor=SESSION_ACTOR, source=Source.DEMO, trading_date=today,
        reason="demo session")])[0]
    if isinstance(opened, Outcome) and opened.kind == "done":
        return None
    return f"OpenTradingDay: {opened!r}"


def _classify(command: Command, outcome: Outcome | BaseException) -> str:
    if isinstance(outcome, BaseException):
        return "error"
    if isinstance(command, SubmitOrder):
        if outcome.kind == "created":
            assert outcome.order is not None
            return "rejected" if outcome.order["status"] == OrderStatus.REJECTED else "accepted"
        return {"existing": "idempotent_resend"}.get(outcome.kind, outcome.kind)
    if not isinstance(command, CancelOrder | ReplaceOrder):
        return f"governance_{outcome.kind}"  # halts, locates, suspensions (issue 7)
    name = "cancel" if isinstance(command, CancelOrder) else "replace"
    return f"{name}_{'done' if outcome.kind == 'updated' else outcome.kind}"


def _rejections(conn: sa.Connection, since_ns: int) -> dict[str, dict[str, int]]:
    o = orders_view.c
    rows = conn.execute(
        sa.select(o.reject_control, o.account_id, sa.func.count())
        .where(o.status == OrderStatus.REJECTED, o.created_ns >= since_ns)
        .group_by(o.reject_control, o.account_id)
        .order_by(o.reject_control, o.account_id)
    ).tuples()
    result: dict[str, dict[str, int]] = {}
    for control, account, count in rows:
        result.setdefault(control, {})[account] = count
    return result


def _redacted(url: str) -> str:
    return str(sa.make_url(url).render_as_string(hide_password=True))

