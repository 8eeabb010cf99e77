"""The demo's runner: its traders (``domain.strategies.demo_traders``) on the strategy runner,
in engine cycles, deterministically.

``DemoRunner`` is the live ``StrategyRunner`` in batch mode (no ``send``: the crowd takes
each trader's commands, sends a cycle of them through ``Engine.execute`` in this thread and
delivers the outcomes back as ``on_order``), plus the three hooks of ``DemoContext``
(another account, a resend of a client order id, a request to the risk desk) — nothing a
production strategy gets. Unlike under ``marketlog serve``, a kill switch does not stop
the strategy: the drill's point is that the engine refuses its orders (the kill_switch
control) until the desk resets it, and the short seller's script is what resets it.

``RiskDesk`` is the desk's script: each action a trader asks for becomes the governance
commands of ``rose`` (maker) and ``raj`` (checker), or of the trader herself (a locate
request). These are operator commands, not orders, so they stay out of the strategy API.

``Crowd`` draws a trader by weight (the seeded RNG), wakes it (``on_timer`` on a logical
clock: one tick per draw), and gathers what it asked for until the cycle is full; the same
seed gives the same commands in the same order.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from commands.models import (
    ApproveLimitChange,
    Command,
    GrantLocate,
    HaltSymbol,
    ReinstateAccount,
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
from commands.strategy_runner import StrategyRunner, _Tracked
from domain.market_data import Quote
from domain.strategies.demo_traders import DemoTrader
from domain.strategy import OrderUpdate
from domain.values import Source

Execute = Callable[[list[Command]], Sequence[Outcome | BaseException]]
HOUR_NS = 3600 * 1_000_000_000


class _Resend(_Tracked):
    """A resend of a client order id: its answer is not news of the original."""


class DemoRunner(StrategyRunner):
    """A demo trader's context (``DemoContext``) over the runner in batch mode."""

    def __init__(self, trader: DemoTrader, *, session: str, clock: Callable[[], int]) -> None:
        super().__init__(trader, actor=trader.name, account_id=trader.account, send=None,
                         clock=clock, source=Source.DEMO,
                         client_id_prefix=f"{trader.strategy_id}-{session}")
        self.trader = trader
        self.desk_requests: list[str] = []
        self._submitted: dict[str, SubmitOrder] = {}

    def _submit(self, account_id: str, symbol: str, side: str, quantity: int,
                price: Decimal | None, time_in_force: str) -> str:
        client_order_id = super()._submit(account_id, symbol, side, quantity, price,
                                          time_in_force)
        command = self._intents[-1][0]
        assert isinstance(command, SubmitOrder)
        self._submitted[client_order_id] = command
        return client_order_id

    def submit_for(self, account_id: str, symbol: str, side: str, quantity: int,
                   price: Decimal | None = None, time_in_force: str = "day") -> str:
        return self._submit(account_id, symbol, side, quantity, price, time_in_force)

    def resend(self, client_order_id: str, quantity: int | None = None) -> None:
        original = self._submitted[client_order_id]
        command = original if quantity is None else original.model_copy(
            update={"quantity": quantity})
        # Answered with the original order (or a conflict): tracked apart, so the answer
        # cannot change what the runner knows of the original.
        self._intents.append((command, _Resend(client_order_id, original.symbol,
                                               original.side, command.quantity,
                                               original.limit_price)))

    def _apply_outcome(self, command: Command, t: _Tracked,
                       outcome: Outcome | BaseException) -> OrderUpdate | None:
        if isinstance(t, _Resend):
            return None  # the original's outcome again, or a conflict: nothing new
        return super()._apply_outcome(command, t, outcome)

    def ask_desk(self, action: str) -> None:
        self.desk_requests.append(action)

    def _killed(self, scope: str) -> None:
        pass  # a drill: the engine refuses the orders until the desk resets the switch


class RiskDesk:
    """The risk desk's script: an action asked for becomes governance commands."""

    officer, checker = "rose", "raj"

    def __init__(self, rng: random.Random, clock: Callable[[], int],
                 firm_limit: Callable[[str], Any]) -> None:
        self.rng = rng
        self.clock = clock
        self.firm_limit = firm_limit  # the firm's limit in force (read between cycles)

    def _risk(self, command: type[Command], **fields: Any) -> Command:
        return command(actor=self.officer, source=Source.DEMO, **fields)

    def _uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def commands(self, trader: DemoTrader, action: str) -> list[Command]:
        tag = f"strategy:{trader.strategy_id}"
        if action == "locate":
            locate_id = self._uuid()
            return [RequestLocate(locate_id=locate_id, account_id=trader.account, symbol="AAPL",
                                  quantity=2_000, reason="short AAPL", actor=trader.name,
                                  source=Source.DEMO),
                    self._risk(GrantLocate, locate_id=locate_id, quantity=1_500,
                               expires_at_ns=self.clock() + HOUR_NS, reason="easy to borrow")]
        if action == "halt":
            return [self._risk(HaltSymbol, symbol="MSFT", reason="news pending")]
        if action == "resume":
            return [self._risk(ResumeSymbol, symbol="MSFT", reason="news out")]
        if action == "ssr":
            return [self._risk(TriggerShortSaleRestriction, symbol="AAPL",
                               reason="listing market notice (Rule 201)")]
        if action == "suspend":
            return [self._risk(SuspendAccount, account_id="ACC-GAMMA", reason="margin call")]
        if action == "reinstate":
            return [self._risk(ReinstateAccount, account_id="ACC-GAMMA", reason="margin met")]
        if action == "kill":  # a drill: her resting orders are canceled, new ones refused
            return [self._risk(TripKillSwitch, scope=tag, reason="drill")]
        if action == "reset":
            return [self._risk(ResetKillSwitch, scope=tag, reason="drill over")]
        raise ValueError(f"unknown desk action {action!r}")

    def limit_change(self, field: str, value: str, reason: str) -> list[Command]:
        """Maker-checker: rose requests, raj approves."""
        change_id = self._uuid()
        return [self._risk(RequestLimitChange, change_id=change_id, scope="firm", field=field,
                           value=value, reason=reason),
                ApproveLimitChange(change_id=change_id, actor=self.checker, source=Source.DEMO,
                                   reason=reason)]


Batch = list[tuple[DemoRunner | None, Command]]


class Crowd:
    """Draws the traders by weight and runs what they ask for in engine cycles."""

    throttle_field, throttle_cut = "strategy_max_orders_per_second", 2

    def __init__(self, traders: Sequence[DemoTrader], *, rng: random.Random, session: str,
                 desk: RiskDesk, execute: Execute, market: Callable[[int], list[Quote]],
                 burst: DemoTrader | None = None) -> None:
        self.rng = rng
        self.desk = desk
        self.execute = execute
        self.market = market  # the quotes the traders see (between cycles)
        self.session = session
        self.now = 0  # logical time: one tick per draw
        self.runners = [self.runner(t) for t in traders]
        self.burst = None if burst is None else self.runner(burst)
        self.refresh()

    def runner(self, trader: DemoTrader) -> DemoRunner:
        runner = DemoRunner(trader, session=self.session, clock=lambda: self.now)
        runner.start()
        return runner

    def refresh(self) -> None:
        quotes = self.market(self.now)
        for runner in (*self.runners, *([self.burst] if self.burst else [])):
            for quote in quotes:
                runner.on_quote(quote)

    def cycle(self, size: int, budget: int) -> list[tuple[Command, Outcome | BaseException]]:
        """Up to ``size`` commands (at most ``budget`` new orders) in one engine cycle."""
        batch: Batch = []
        running = [r for r in self.runners if r.running and r.trader.weight > 0]
        weights = [r.trader.weight for r in running]
        while running and len(batch) < size and budget > 0:
            runner = self.rng.choices(running, weights)[0]
            budget -= self._wake(runner, batch, budget)
        return self._run(batch)

    def alone(self, trader: DemoTrader) -> list[tuple[Command, Outcome | BaseException]]:
        """One trader's decision in a cycle of its own (the late order after the close)."""
        runner = self.runner(trader)
        self.runners.append(runner)  # its errors are the session's; never drawn (weight 0)
        for quote in self.market(self.now):
            runner.on_quote(quote)
        batch: Batch = []
        self._wake(runner, batch, None)
        return self._run(batch)

    def _wake(self, runner: DemoRunner, batch: Batch, budget: int | None) -> int:
        self.now += 1
        runner.on_timer(self.now)
        requests, runner.desk_requests = runner.desk_requests, []
        sent = 0
        for action in requests:
            if action == "throttle" and self.burst is not None:
                sent += self._throttle(batch, budget)
            else:
                batch += [(None, c) for c in self.desk.commands(runner.trader, action)]
        taken = runner.take(None if budget is None else budget - sent)
        batch += [(runner, c) for c in taken]
        return sent + sum(isinstance(c, SubmitOrder) for c in taken)

    def _throttle(self, batch: Batch, budget: int | None) -> int:
        """A governed cut of the per-strategy order rate, a burst of a new strategy tag that
        runs into it (15c3-5 throttle) and the limit restored, all in one engine cycle: a
        second is far longer than the burst, so exactly the orders past the cut are
        refused, whatever the timing."""
        assert self.burst is not None
        before = str(self.desk.firm_limit(self.throttle_field))
        batch += [(None, c) for c in self.desk.limit_change(
            self.throttle_field, str(self.throttle_cut), "throttle drill")]
        self.now += 1
        self.burst.on_timer(self.now)
        taken = self.burst.take(budget)
        batch += [(self.burst, c) for c in taken]
        batch += [(None, c) for c in self.desk.limit_change(
            self.throttle_field, before, "throttle drill over")]
        return sum(isinstance(c, SubmitOrder) for c in taken)

    def _run(self, batch: Batch) -> list[tuple[Command, Outcome | BaseException]]:
        if not batch:
            return []
        outcomes = self.execute([command for _, command in batch])
        answers: dict[int, tuple[DemoRunner, list[Outcome | BaseException]]] = {}
        for (runner, _), outcome in zip(batch, outcomes, strict=True):
            if runner is not None:
                answers.setdefault(id(runner), (runner, []))[1].append(outcome)
        for runner, answered in answers.values():
            runner.deliver(answered)
        self.refresh()
        return [(command, outcome) for (_, command), outcome in
                zip(batch, outcomes, strict=True)]

    @property
    def errors(self) -> list[str]:
        return [f"{r.trader.name}: {e}" for r in self.runners for e in r.errors]
