"""Risk governance held by the book of record: who may trade what, halts and the short-sale
rules, locates, throttle windows, kill switches and governed limits.

Like the rest of the book it changes only by applying events (``handlers``), so a restart
or a replay rebuilds it exactly; the decisions that create those events live here too
(pure, no I/O) and are called by the engine's handlers through the book.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.governance_events import (
    AccessDenied,
    AccountReinstated,
    AccountSuspended,
    ApiKeyIssued,
    ApiKeyRevoked,
    EntitlementGranted,
    EntitlementRevoked,
    KillSwitchReset,
    KillSwitchTripped,
    LimitChangeApproved,
    LimitChangeRejected,
    LimitChangeRequested,
    LimitChangeReverted,
    LocateConsumed,
    LocateExpired,
    LocateGranted,
    LocateRequested,
    ReportCertified,
    ShortSaleRestrictionTriggered,
    StrategyStarted,
    StrategyStopped,
    TradingHalted,
    TradingResumed,
    UserCreated,
    UserDisabled,
)
from domain.limits import GOVERNED, SECOND_NS, SymbolLimits, parse_value, split_scope, with_value
from domain.values import CancelReason, FrozenRecord, KillTrigger, Role, Source

if TYPE_CHECKING:
    from domain.book_of_record import BookOfRecord

_NAMESPACE = uuid.UUID("6d61726b-6574-4c6f-a720-676f7665726e")
SYSTEM = "system"
FIRM = "firm"
SSR_DROP = Decimal("0.90")  # Rule 201: a decline of 10% or more from the previous close


def _id(kind: str, key: str) -> UUID:
    return uuid.uuid5(_NAMESPACE, f"{kind}:{key}")


def symbol_id(symbol: str) -> UUID:
    return _id("symbol", symbol)


def switch_id(scope: str) -> UUID:
    return _id("kill-switch", scope)


def user_id(username: str) -> UUID:
    return _id("user", username)


def account_uuid(account_id: str) -> UUID:
    return _id("account", account_id)


def strategy_uuid(strategy_id: str) -> UUID:
    return _id("strategy", strategy_id)


def account_scope(account_id: str) -> str:
    return f"account:{account_id}"


def strategy_scope(strategy: str) -> str:
    return f"strategy:{strategy}"


class Refused(Exception):
    """A governance command the rules do not allow; nothing is recorded.

    ``denied``: refused for who asked (a role or entitlement), which the API answers 403
    and records as an ``AccessDenied``; otherwise the request itself is wrong (409)."""

    def __init__(self, reason: str, denied: bool = False) -> None:
        super().__init__(reason)
        self.denied = denied


class User:
    __slots__ = ("accounts", "active", "role", "username")

    def __init__(self, username: str, role: str, accounts: frozenset[str] = frozenset(),
                 active: bool = True) -> None:
        self.username = username
        self.role = role
        self.accounts = accounts
        self.active = active


class Locate:
    __slots__ = ("account_id", "expires_ns", "granted", "locate_id", "remaining", "requested",
                 "status", "symbol")

    def __init__(self, locate_id: UUID, account_id: str, symbol: str, requested: int) -> None:
        self.locate_id = locate_id
        self.account_id = account_id
        self.symbol = symbol
        self.requested = requested
        self.granted = 0
        self.remaining = 0
        self.expires_ns = 0
        self.status = "requested"  # requested, granted, expired

    def usable(self, now_ns: int) -> int:
        return self.remaining if self.status == "granted" and now_ns < self.expires_ns else 0


def trim(q: deque[int], cutoff: int) -> int:
    """Drop timestamps at or before ``cutoff``; the count left (a sliding window). Only
    applying an event trims, so a replay holds exactly what the live book held."""
    while q and q[0] <= cutoff:
        q.popleft()
    return len(q)


def within(q: deque[int], cutoff: int) -> int:
    """How many timestamps are after ``cutoff``, changing nothing (decisions read only)."""
    n = len(q)
    i = 0
    while i < n and q[i] <= cutoff:  # stale ones are few: every append trims
        i += 1
    return n - i


BUCKET_NS = 1_000_000  # the throttle's resolution: one millisecond
WINDOW_BUCKETS = SECOND_NS // BUCKET_NS


class Rate:
    """Messages and new orders in a sliding second (15c3-5 throttle), at millisecond
    resolution: per-millisecond counts and running totals, so a check costs a few integer
    operations however many orders the second held. Only ``add`` (applying an event) drops
    expired buckets; ``counts`` (a decision) changes nothing, so a replay holds exactly what
    the live book held."""

    __slots__ = ("buckets", "messages", "orders")

    def __init__(self) -> None:
        self.buckets: deque[list[int]] = deque()  # [millisecond, orders, messages]
        self.orders = 0
        self.messages = 0

    def add(self, ts_ns: int, order: int) -> None:
        ms = ts_ns // BUCKET_NS
        buckets = self.buckets
        self.orders += order
        self.messages += 1
        if buckets:
            last = buckets[-1]
            if last[0] == ms:  # the usual case in a burst
                last[1] += order
                last[2] += 1
                return
            cutoff = ms - WINDOW_BUCKETS
            while buckets and buckets[0][0] <= cutoff:
                _, orders, messages = buckets.popleft()
                self.orders -= orders
                self.messages -= messages
        buckets.append([ms, order, 1])

    def counts(self, now_ns: int) -> tuple[int, int]:
        """(orders, messages) within the second before ``now_ns``."""
        cutoff = now_ns // BUCKET_NS - WINDOW_BUCKETS
        orders, messages = self.orders, self.messages
        buckets = self.buckets
        if not buckets or buckets[0][0] > cutoff:
            return orders, messages  # the usual case: nothing expired since the last add
        for bucket in buckets:  # expired buckets are at the front
            if bucket[0] > cutoff:
                break
            orders -= bucket[1]
            messages -= bucket[2]
        return orders, messages


NO_RATE = Rate()  # the counts of a key that never sent anything


class Windows:
    """Throttle rates per account, strategy tag ("strategy:<tag>") and the firm (""), and
    reject-storm windows (timestamps: rejections are few) per account and strategy tag."""

    __slots__ = ("rates", "rejects")

    def __init__(self) -> None:
        self.rates: dict[str, Rate] = {}
        self.rejects: dict[str, deque[int]] = {}

    def rate(self, key: str) -> Rate:
        rate = self.rates.get(key)
        if rate is None:
            rate = self.rates[key] = Rate()
        return rate

    def count_rejects(self, key: str, now_ns: int, window_ns: int) -> int:
        q = self.rejects.get(key)
        return 0 if q is None else within(q, now_ns - window_ns)

    def add_reject(self, key: str, ts_ns: int, window_ns: int) -> None:
        q = self.rejects.get(key)
        if q is None:
            q = self.rejects[key] = deque()
        trim(q, ts_ns - window_ns)  # memory stays bounded through a long replay
        q.append(ts_ns)

    def state(self) -> dict[str, Any]:
        return {"rates": {k: [list(b) for b in r.buckets] for k, r in self.rates.items()
                          if r.buckets},
                "rejects": {k: list(q) for k, q in self.rejects.items() if q}}

    def restore(self, saved: dict[str, Any]) -> None:
        self.rates = {}
        for key, buckets in saved["rates"].items():
            rate = self.rates[key] = Rate()
            rate.buckets = deque(list(b) for b in buckets)
            rate.orders = sum(b[1] for b in buckets)
            rate.messages = sum(b[2] for b in buckets)
        self.rejects = {k: deque(v) for k, v in saved["rejects"].items()}


class Governance:
    """The governed state of one book of record."""

    def __init__(self, book: BookOfRecord, users: list[User],
                 symbol_limits: dict[str, SymbolLimits] | None = None) -> None:
        self.book = book
        self.versions: dict[UUID, int] = {}  # aggregate id -> last version applied
        self.users: dict[str, User] = {u.username: u for u in users}
        self.keys: dict[str, tuple[str, str]] = {}  # key sha256 -> (key_id, username)
        self.key_ids: dict[str, tuple[UUID, str, str]] = {}  # key_id -> (uuid, user, sha)
        self.suspended: set[str] = set()
        self.halted: dict[str, str] = {}  # symbol -> reason
        self.ssr: dict[str, str] = {}  # symbol -> trading date of the trigger
        self.prior_date: str | None = None  # the trading day before today (Rule 201)
        self.locates: dict[UUID, Locate] = {}
        self.tripped: dict[str, KillSwitchTripped] = {}  # scope -> the trip in force
        self.windows = Windows()
        self.firm_rate = self.windows.rate("")  # firm-wide throttle counts, read every order
        self.symbol_limits: dict[str, SymbolLimits] = dict(symbol_limits or {})
        self.pending: dict[UUID, LimitChangeRequested] = {}
        # Approved changes that revert by themselves: change id -> (approval, value before).
        self.temporary: dict[UUID, tuple[LimitChangeApproved, str]] = {}
        # Fills since the last loss-limit sweep: the engine's scheduling aid, not state of the
        # log (a sweep that finds nothing records nothing), so no snapshot holds it.
        self.fills_since_sweep = 0
        self.denials = 0
        # Paper-trading strategies: id -> (its last run, whether that run is still open,
        # the run's account).
        self.strategies: dict[str, tuple[int, bool, str]] = {}
        # LULD bands by symbol, with the reference they were computed from (decision cache).
        self.bands: dict[str, tuple[Any, Decimal, Decimal, str]] = {}

    # ------------------------------------------------------------------ queries

    def version_after(self, aggregate: UUID) -> int:
        return self.versions.get(aggregate, 0) + 1

    def role_of(self, actor: str) -> str | None:
        if actor == SYSTEM:
            return Role.ADMIN  # the engine's own schedule and first-run set-up
        user = self.users.get(actor)
        return None if user is None or not user.active else user.role

    def entitled(self, actor: str, account_id: str) -> bool:
        user = self.users.get(actor)
        return user is not None and user.active and account_id in user.accounts

    def ssr_active(self, symbol: str) -> bool:
        since = self.ssr.get(symbol)
        day = self.book.day
        return since is not None and day.is_open and since in (day.date, self.prior_date)

    def located(self, account_id: str, symbol: str, quantity: int, now_ns: int
                ) -> Locate | None:
        """The first granted, unexpired locate covering ``quantity`` (one locate per order)."""
        for locate in self.locates.values():
            if (locate.account_id == account_id and locate.symbol == symbol
                    and locate.usable(now_ns) >= quantity):
                return locate
        return None

    def available(self, account_id: str, symbol: str, now_ns: int) -> int:
        return max((loc.usable(now_ns) for loc in self.locates.values()
                    if loc.account_id == account_id and loc.symbol == symbol), default=0)

    def limits_of(self, scope: str) -> Any:
        kind, key = split_scope(scope)
        book = self.book
        if kind == "firm" and key is None:
            return book.firm
        if kind == "account" and key in book.accounts:
            return book.accounts[key].limits
        if kind == "symbol" and key in book.instruments:
            return self.symbol_limits.get(key) or SymbolLimits()
        raise Refused(f"unknown limit scope {scope!r} (firm, account:<id> or symbol:<symbol>)")

    def reject_window(self, key: str) -> int:
        account = self.book.accounts.get(key)
        return (account.limits if account is not None else self.book.firm.defaults
                ).reject_storm_window_ns

    def pnl(self, account_id: str) -> Decimal:
        """Today's P&L of an account: realized + unrealized at the reference price."""
        return self.book.accounts[account_id].mark(self.book.reference_price) - \
            self.book.accounts[account_id].day_start_value

    def next_expiry(self) -> int | None:
        times = [c.expires_ns for c, _ in self.temporary.values() if c.expires_ns is not None]
        times += [loc.expires_ns for loc in self.locates.values() if loc.status == "granted"]
        return min(times, default=None)

    # ------------------------------------------------------------------ decisions

    def _require(self, actor: str, *roles: str) -> str:
        role = self.role_of(actor)
        if role not in roles:
            raise Refused(f"{actor!r} ({role or 'unknown user'}) may not do this; "
                          f"needs the role {' or '.join(roles)}", denied=True)
        return role

    def _next(self, aggregate: UUID) -> int:
        return self.versions.get(aggregate, 0) + 1

    def halt(self, symbol: str, halted: bool, actor: str, source: str, now_ns: int,
             reason: str) -> TradingHalted | TradingResumed:
        self._require(actor, Role.RISK_OFFICER, Role.ADMIN)
        if symbol not in self.book.instruments:
            raise Refused(f"unknown symbol {symbol}")
        if halted == (symbol in self.halted):
            raise Refused(f"{symbol} is already {'halted' if halted else 'trading'}")
        sid = symbol_id(symbol)
        cls = TradingHalted if halted else TradingResumed
        event = cls(sid, self._next(sid), now_ns, actor, source, symbol, reason)
        self.apply(event)
        return event

    def trigger_ssr(self, symbol: str, actor: str, source: str, now_ns: int, reason: str,
                    price: Decimal | None = None) -> ShortSaleRestrictionTriggered:
        day = self.book.day
        if not day.is_open or day.date is None:
            raise Refused("no trading day is open")
        if symbol not in self.book.instruments:
            raise Refused(f"unknown symbol {symbol}")
        if price is None:  # the listing market's notice, entered by the risk desk
            self._require(actor, Role.RISK_OFFICER)
        if self.ssr.get(symbol) == day.date:
            raise Refused(f"{symbol} is already restricted today")
        close = self.book.tape.previous_close.get(symbol)
        sid = symbol_id(symbol)
        event = ShortSaleRestrictionTriggered(
            sid, self._next(sid), now_ns, actor, source, symbol, day.date, price,
            None if close is None else close.price, reason)
        self.apply(event)
        return event

    def after_print(self, symbol: str, price: Decimal, now_ns: int
                    ) -> ShortSaleRestrictionTriggered | None:
        """Rule 201's trigger: a print at or below 90% of the previous close."""
        day = self.book.day
        close = self.book.tape.previous_close.get(symbol)
        if (close is None or not day.is_open or self.ssr.get(symbol) == day.date
                or price > close.price * SSR_DROP):
            return None
        return self.trigger_ssr(symbol, SYSTEM, Source.SYSTEM, now_ns,
                                f"print {price} at or below 90% of the previous close "
                                f"{close.price}", price)

    def request_locate(self, locate_id: UUID, account_id: str, symbol: str, quantity: int,
                       actor: str, source: str, now_ns: int, reason: str) -> LocateRequested:
        if locate_id in self.versions:
            raise Refused(f"locate id {locate_id} is already used")
        if account_id not in self.book.accounts or symbol not in self.book.instruments:
            raise Refused(f"unknown account {account_id} or symbol {symbol}")
        if not (self.entitled(actor, account_id)
                or self.role_of(actor) == Role.RISK_OFFICER):
            raise Refused(f"{actor!r} is not entitled to {account_id}", denied=True)
        if quantity <= 0:
            raise Refused("quantity must be > 0")
        event = LocateRequested(locate_id, 1, now_ns, actor, source, account_id, symbol,
                                quantity, reason)
        self.apply(event)
        return event

    def grant_locate(self, locate_id: UUID, quantity: int, expires_ns: int, actor: str,
                     source: str, now_ns: int, reason: str) -> LocateGranted:
        self._require(actor, Role.RISK_OFFICER)
        locate = self.locates.get(locate_id)
        if locate is None or locate.status != "requested":
            raise Refused(f"no pending locate request {locate_id}")
        if not 0 < quantity <= locate.requested:
            raise Refused(f"granted quantity must be between 1 and {locate.requested}")
        if expires_ns <= now_ns:
            raise Refused("expiry must be in the future")
        event = LocateGranted(locate_id, self._next(locate_id), now_ns, actor, source,
                              locate.account_id, locate.symbol, quantity, expires_ns, reason)
        self.apply(event)
        return event

    def consume_locate(self, locate: Locate, order_id: UUID, quantity: int, now_ns: int,
                       actor: str, source: str) -> LocateConsumed:
        event = LocateConsumed(locate.locate_id, self._next(locate.locate_id), now_ns, actor,
                               source, locate.account_id, locate.symbol, str(order_id),
                               quantity, locate.remaining - quantity)
        self.apply(event)
        return event

    def trip(self, scope: str, trigger: str, threshold: str, observed: str, actor: str,
             source: str, now_ns: int, reason: str) -> list[Any]:
        """Trip a switch: the trip, then a cancel request for each resting order in scope."""
        if trigger == KillTrigger.MANUAL:
            self._require(actor, Role.RISK_OFFICER)
        self._check_scope(scope)
        if scope in self.tripped:
            raise Refused(f"kill switch {scope} is already tripped")
        book = self.book
        resting = [o for o in book.live_orders() if in_scope(scope, o.account_id, o.strategy)
                   and o.pending_cancel is None]
        sid = switch_id(scope)
        event = KillSwitchTripped(sid, self._next(sid), now_ns, actor, source, scope, trigger,
                                  threshold, observed, reason,
                                  tuple(str(o.order_id) for o in resting))
        self.apply(event)
        cancels = [book.request_cancel(o, SYSTEM, Source.SYSTEM, now_ns,
                                       CancelReason.KILL_SWITCH) for o in resting]
        return [event, *cancels]

    def reset(self, scope: str, actor: str, source: str, now_ns: int, reason: str
              ) -> KillSwitchReset:
        # Reset only by a named role with a recorded reason (FINRA practice; COMPLIANCE.md).
        self._require(actor, Role.RISK_OFFICER)
        if scope not in self.tripped:
            raise Refused(f"kill switch {scope} is not tripped")
        sid = switch_id(scope)
        event = KillSwitchReset(sid, self._next(sid), now_ns, actor, source, scope, reason)
        self.apply(event)
        return event

    def _check_scope(self, scope: str) -> None:
        kind, key = split_scope(scope)
        if scope == FIRM or (kind == "strategy" and key):
            return
        if kind == "account" and key in self.book.accounts:
            return
        raise Refused(f"unknown scope {scope!r} (firm, account:<id> or strategy:<tag>)")

    def after_reject(self, account_id: str, strategy: str | None, control: str, now_ns: int,
                     actor: str, source: str) -> list[Any]:
        """Automatic trips a rejection can cause: a reject storm, a message-rate breach."""
        book, windows = self.book, self.windows
        account = book.accounts.get(account_id)
        if account is None:
            return []
        limits = account.limits
        events: list[Any] = []
        scope = account_scope(account_id)
        if scope not in self.tripped:
            if control == "rate":
                _, rate = windows.rates.get(account_id, NO_RATE).counts(now_ns)
                if rate > limits.kill_messages_per_second:
                    events += self.trip(scope, KillTrigger.MESSAGE_RATE,
                                        f"{limits.kill_messages_per_second} messages/s",
                                        f"{rate} messages/s", SYSTEM, Source.SYSTEM, now_ns,
                                        "message-rate breach")
            storm = windows.count_rejects(account_id, now_ns, limits.reject_storm_window_ns)
            if scope not in self.tripped and storm >= limits.reject_storm_count:
                events += self.trip(scope, KillTrigger.REJECT_STORM,
                                    f"{limits.reject_storm_count} rejections in "
                                    f"{limits.reject_storm_window_ns // SECOND_NS}s",
                                    str(storm), SYSTEM, Source.SYSTEM, now_ns, "reject storm")
        if strategy is not None:
            tag = strategy_scope(strategy)
            storm = windows.count_rejects(tag, now_ns, limits.reject_storm_window_ns)
            count = book.firm.strategy_reject_storm_count
            if tag not in self.tripped and storm >= count:
                events += self.trip(tag, KillTrigger.REJECT_STORM, f"{count} rejections",
                                    str(storm), SYSTEM, Source.SYSTEM, now_ns, "reject storm")
        _, rate = windows.rates.get("", NO_RATE).counts(now_ns)
        if FIRM not in self.tripped and rate > book.firm.kill_messages_per_second:
            events += self.trip(FIRM, KillTrigger.MESSAGE_RATE,
                                f"{book.firm.kill_messages_per_second} messages/s",
                                f"{rate} messages/s", SYSTEM, Source.SYSTEM, now_ns,
                                "firm-wide message-rate breach")
        return events

    def sweep(self, now_ns: int) -> list[Any]:
        """What time and the market decide by themselves: loss-limit trips, temporary limit
        changes and locates reaching their expiry."""
        events: list[Any] = []
        book = self.book
        if self.fills_since_sweep and book.day.is_open:
            total = Decimal(0)
            for account_id, account in book.accounts.items():
                pnl = self.pnl(account_id)
                total += pnl
                scope = account_scope(account_id)
                if scope not in self.tripped and -pnl > account.limits.loss_limit:
                    events += self.trip(scope, KillTrigger.LOSS_LIMIT,
                                        str(account.limits.loss_limit), str(-pnl), SYSTEM,
                                        Source.SYSTEM, now_ns, "loss limit")
            if FIRM not in self.tripped and -total > book.firm.loss_limit:
                events += self.trip(FIRM, KillTrigger.LOSS_LIMIT, str(book.firm.loss_limit),
                                    str(-total), SYSTEM, Source.SYSTEM, now_ns,
                                    "firm-wide loss limit")
        self.fills_since_sweep = 0
        for change_id, (approval, before) in list(self.temporary.items()):
            if approval.expires_ns is not None and approval.expires_ns <= now_ns:
                events.append(self._revert(change_id, approval, before, now_ns))
        for locate in list(self.locates.values()):
            if locate.status == "granted" and locate.expires_ns <= now_ns:
                event = LocateExpired(locate.locate_id, self._next(locate.locate_id), now_ns,
                                      SYSTEM, Source.SYSTEM, locate.account_id, locate.symbol,
                                      locate.remaining)
                self.apply(event)
                events.append(event)
        return events

    # -------------------------------------------------------------- governed limits

    def request_limit_change(self, change_id: UUID, scope: str, field: str, value: str,
                             actor: str, source: str, now_ns: int, reason: str,
                             expires_ns: int | None) -> LimitChangeRequested:
        role = self._require(actor, Role.TRADER, Role.RISK_OFFICER, Role.ADMIN)
        if change_id in self.versions:
            raise Refused(f"change id {change_id} is already used")
        kind, key = split_scope(scope)
        if role == Role.TRADER and not (kind == "account" and key is not None
                                        and self.entitled(actor, key)):
            raise Refused(f"a trader may request changes of their own accounts only, "
                          f"not {scope}", denied=True)
        limits = self.limits_of(scope)
        if field not in GOVERNED.get(kind, ()):
            raise Refused(f"{field!r} is not a governed limit of a {kind} scope; one of "
                          f"{', '.join(GOVERNED.get(kind, ()))}")
        try:
            with_value(limits, field, parse_value(limits, field, value))
        except (ValueError, TypeError) as exc:
            raise Refused(str(exc)) from None
        if expires_ns is not None and expires_ns <= now_ns:
            raise Refused("expiry must be in the future")
        event = LimitChangeRequested(change_id, 1, now_ns, actor, source, scope, field,
                                     str(getattr(limits, field)), value, reason, expires_ns)
        self.apply(event)
        return event

    def approve_limit_change(self, change_id: UUID, actor: str, source: str, now_ns: int,
                             reason: str) -> LimitChangeApproved:
        request = self.pending.get(change_id)
        if request is None:
            raise Refused(f"no pending limit change {change_id}")
        self._require(actor, Role.RISK_OFFICER)
        if actor == request.actor:
            # Maker-checker: the approver is a different person from the requester.
            raise Refused("a change may not be approved by the user who requested it",
                          denied=True)
        limits = self.limits_of(request.scope)
        current = str(getattr(limits, request.field))
        if current != request.old_value:
            raise Refused(f"{request.field} changed to {current} since the request "
                          f"(was {request.old_value}); request again")
        if request.expires_ns is not None and request.expires_ns <= now_ns:
            raise Refused("the requested change expired before its approval")
        event = LimitChangeApproved(change_id, self._next(change_id), now_ns, actor, source,
                                    request.scope, request.field, request.old_value,
                                    request.new_value, limits.version + 1, reason,
                                    request.expires_ns)
        self.apply(event)
        return event

    def reject_limit_change(self, change_id: UUID, actor: str, source: str, now_ns: int,
                            reason: str) -> LimitChangeRejected:
        request = self.pending.get(change_id)
        if request is None:
            raise Refused(f"no pending limit change {change_id}")
        if actor != request.actor:  # the requester may withdraw their own request
            self._require(actor, Role.RISK_OFFICER)
        event = LimitChangeRejected(change_id, self._next(change_id), now_ns, actor, source,
                                    request.scope, request.field, reason)
        self.apply(event)
        return event

    def _revert(self, change_id: UUID, approval: LimitChangeApproved, before: str,
                now_ns: int) -> LimitChangeReverted:
        limits = self.limits_of(approval.scope)
        event = LimitChangeReverted(change_id, self._next(change_id), now_ns, SYSTEM,
                                    Source.SYSTEM, approval.scope, approval.field, before,
                                    limits.version + 1, "temporary change expired")
        self.apply(event)
        return event

    def _set_limit(self, scope: str, field: str, text: str, version: int) -> None:
        limits = self.limits_of(scope)
        # The log is the authority on versions: the recorded one, not a recount.
        self._put_limits(scope, with_value(limits, field, parse_value(limits, field, text),
                                           version))

    def _put_limits(self, scope: str, limits: Any) -> None:
        kind, key = split_scope(scope)
        book = self.book
        if kind == "firm":
            book.firm = limits
        elif kind == "account":
            assert key is not None
            book.accounts[key].limits = limits
            book.widen_duplicate_window(limits.duplicate_window_ns)
        else:
            assert key is not None
            self.symbol_limits[key] = limits

    # -------------------------------------------------------------- users and access

    def create_user(self, username: str, role: str, actor: str, source: str, now_ns: int,
                    reason: str) -> UserCreated:
        self._require(actor, Role.ADMIN)
        if username in self.users or username == SYSTEM:
            raise Refused(f"user {username} exists")
        if role not in Role.__members__.values():
            raise Refused(f"unknown role {role!r}")
        uid = user_id(username)
        event = UserCreated(uid, self._next(uid), now_ns, actor, source, username, role, reason)
        self.apply(event)
        return event

    def disable_user(self, username: str, actor: str, source: str, now_ns: int, reason: str
                     ) -> UserDisabled:
        self._require(actor, Role.ADMIN)
        user = self._user(username)
        if not user.active:
            raise Refused(f"user {username} is already disabled")
        uid = user_id(username)
        event = UserDisabled(uid, self._next(uid), now_ns, actor, source, username, reason)
        self.apply(event)
        return event

    def entitle(self, username: str, account_id: str, granted: bool, actor: str, source: str,
                now_ns: int, reason: str) -> EntitlementGranted | EntitlementRevoked:
        self._require(actor, Role.ADMIN)
        user = self._user(username)
        if account_id not in self.book.accounts:
            raise Refused(f"unknown account {account_id}")
        if granted == (account_id in user.accounts):
            raise Refused(f"{username} is {'already' if granted else 'not'} entitled to "
                          f"{account_id}")
        uid = user_id(username)
        cls = EntitlementGranted if granted else EntitlementRevoked
        event = cls(uid, self._next(uid), now_ns, actor, source, username, account_id, reason)
        self.apply(event)
        return event

    def issue_key(self, key_uuid: UUID, username: str, key_id: str, key_sha256: str,
                  actor: str, source: str, now_ns: int, reason: str) -> ApiKeyIssued:
        if actor != username:  # anyone may replace their own key; others' keys: admins
            self._require(actor, Role.ADMIN)
        user = self._user(username)
        if not user.active:
            raise Refused(f"user {username} is disabled")
        if key_id in self.key_ids or key_sha256 in self.keys:
            raise Refused("key id already in use")
        event = ApiKeyIssued(key_uuid, 1, now_ns, actor, source, username, key_id, key_sha256,
                             reason)
        self.apply(event)
        return event

    def revoke_key(self, key_id: str, actor: str, source: str, now_ns: int, reason: str
                   ) -> ApiKeyRevoked:
        known = self.key_ids.get(key_id)
        if known is None:
            raise Refused(f"no active key {key_id}")
        key_uuid, username, _ = known
        if actor != username:
            self._require(actor, Role.ADMIN)
        event = ApiKeyRevoked(key_uuid, self._next(key_uuid), now_ns, actor, source, username,
                              key_id, reason)
        self.apply(event)
        return event

    def suspend(self, account_id: str, suspended: bool, actor: str, source: str, now_ns: int,
                reason: str) -> AccountSuspended | AccountReinstated:
        self._require(actor, Role.RISK_OFFICER, Role.ADMIN)
        if account_id not in self.book.accounts:
            raise Refused(f"unknown account {account_id}")
        if suspended == (account_id in self.suspended):
            raise Refused(f"{account_id} is {'already' if suspended else 'not'} suspended")
        aid = account_uuid(account_id)
        cls = AccountSuspended if suspended else AccountReinstated
        event = cls(aid, self._next(aid), now_ns, actor, source, account_id, reason)
        self.apply(event)
        return event

    def certify(self, certification_id: UUID, actor: str, source: str, now_ns: int,
                report: str, trading_date: str, report_sha256: str, reason: str
                ) -> ReportCertified:
        # 15c3-5(e) review: compliance certifies; whether the hash is the report's current
        # one is checked where the report is read (the API), the domain keeps who may.
        self._require(actor, Role.COMPLIANCE)
        event = ReportCertified(certification_id, 1, now_ns, actor, source, report,
                                trading_date, report_sha256, reason)
        self.apply(event)
        return event

    def start_strategy(self, strategy_id: str, run: int, kind: str, account_id: str,
                       params: Mapping[str, str], actor: str, source: str, now_ns: int,
                       reason: str) -> StrategyStarted:
        self._require(actor, Role.RISK_OFFICER, Role.ADMIN)
        last, running, _ = self.strategies.get(strategy_id, (0, False, account_id))
        if running:
            raise Refused(f"strategy {strategy_id} run {last} is still running; stop it first")
        if run != last + 1:
            # The caller names the run it starts: a resend, or a start racing another,
            # is refused rather than opening a run twice.
            raise Refused(f"strategy {strategy_id}: the next run is {last + 1}, not {run}")
        if account_id not in self.book.accounts:
            raise Refused(f"unknown account {account_id}")
        sid = strategy_uuid(strategy_id)
        event = StrategyStarted(sid, self._next(sid), now_ns, actor, source, strategy_id, run,
                                kind, account_id, FrozenRecord(sorted(params.items())), reason)
        self.apply(event)
        return event

    def stop_strategy(self, strategy_id: str, run: int, actor: str, source: str, now_ns: int,
                      reason: str, orders_sent: int | None, fills: int | None
                      ) -> list[Any]:
        """The end of a run, then a cancel request for each live order it leaves."""
        self._require(actor, Role.RISK_OFFICER, Role.ADMIN)
        last, running, account_id = self.strategies.get(strategy_id, (0, False, ""))
        if not running or run != last:
            raise Refused(f"strategy {strategy_id} run {run} is not running")
        # Quotes nobody manages any more are picked off as the market moves: the stop
        # cancels every live order of the strategy's tag on the run's account (an earlier
        # run's too, re-released by a restart), the kill switch's way.
        book = self.book
        live = [o for o in book.live_orders() if o.strategy == strategy_id
                and o.account_id == account_id and o.pending_cancel is None]
        sid = strategy_uuid(strategy_id)
        event = StrategyStopped(sid, self._next(sid), now_ns, actor, source, strategy_id, run,
                                account_id, reason, orders_sent, fills,
                                tuple(str(o.order_id) for o in live))
        self.apply(event)
        cancels = [book.request_cancel(o, SYSTEM, Source.SYSTEM, now_ns,
                                       CancelReason.STRATEGY_STOPPED) for o in live]
        return [event, *cancels]

    def deny(self, denial_id: UUID, actor: str, source: str, now_ns: int, action: str,
             account_id: str | None, reason: str) -> AccessDenied:
        event = AccessDenied(denial_id, 1, now_ns, actor, source, action, account_id, reason)
        self.apply(event)
        return event

    def _user(self, username: str) -> User:
        user = self.users.get(username)
        if user is None:
            raise Refused(f"unknown user {username}")
        return user

    # ------------------------------------------------------------------ applying

    def apply(self, event: Any) -> None:
        self._handlers[type(event)](self, event)
        self.versions[event[0]] = event[1]
        self.book.events_applied += 1

    def _on_halted(self, e: TradingHalted) -> None:
        self.halted[e.symbol] = e.reason

    def _on_resumed(self, e: TradingResumed) -> None:
        self.halted.pop(e.symbol, None)

    def _on_ssr(self, e: ShortSaleRestrictionTriggered) -> None:
        self.ssr[e.symbol] = e.trading_date

    def _on_locate_requested(self, e: LocateRequested) -> None:
        self.locates[e.locate_id] = Locate(e.locate_id, e.account_id, e.symbol, e.quantity)

    def _on_locate_granted(self, e: LocateGranted) -> None:
        locate = self.locates[e.locate_id]
        locate.granted = locate.remaining = e.quantity
        locate.expires_ns, locate.status = e.expires_ns, "granted"

    def _on_locate_consumed(self, e: LocateConsumed) -> None:
        locate = self.locates[e.locate_id]
        locate.remaining = e.remaining
        if not locate.remaining:
            del self.locates[e.locate_id]  # used up: nothing left to decide on

    def _on_locate_expired(self, e: LocateExpired) -> None:
        self.locates.pop(e.locate_id, None)

    def _on_tripped(self, e: KillSwitchTripped) -> None:
        self.tripped[e.scope] = e

    def _on_reset(self, e: KillSwitchReset) -> None:
        self.tripped.pop(e.scope, None)

    def _on_limit_requested(self, e: LimitChangeRequested) -> None:
        self.pending[e.change_id] = e

    def _on_limit_approved(self, e: LimitChangeApproved) -> None:
        self.pending.pop(e.change_id, None)
        # A later change of the same limit supersedes a temporary one: it no longer reverts.
        for change_id, (approval, _) in list(self.temporary.items()):
            if (approval.scope, approval.field) == (e.scope, e.field):
                del self.temporary[change_id]
        self._set_limit(e.scope, e.field, e.new_value, e.limits_version)
        if e.expires_ns is not None:
            self.temporary[e.change_id] = (e, e.old_value)

    def _on_limit_rejected(self, e: LimitChangeRejected) -> None:
        self.pending.pop(e.change_id, None)

    def _on_limit_reverted(self, e: LimitChangeReverted) -> None:
        self.temporary.pop(e.change_id, None)
        self._set_limit(e.scope, e.field, e.value, e.limits_version)

    def _on_user_created(self, e: UserCreated) -> None:
        self.users[e.username] = User(e.username, e.role)

    def _on_user_disabled(self, e: UserDisabled) -> None:
        user = self.users[e.username]
        user.active = False
        for sha, (key_id, username) in list(self.keys.items()):
            if username == e.username:
                del self.keys[sha]
                del self.key_ids[key_id]

    def _on_entitled(self, e: EntitlementGranted) -> None:
        user = self.users[e.username]
        user.accounts = user.accounts | {e.account_id}

    def _on_unentitled(self, e: EntitlementRevoked) -> None:
        user = self.users[e.username]
        user.accounts = user.accounts - {e.account_id}

    def _on_key_issued(self, e: ApiKeyIssued) -> None:
        # Written whole, one dict entry at a time: API threads read these without a lock.
        self.key_ids[e.key_id] = (e.key_uuid, e.username, e.key_sha256)
        self.keys[e.key_sha256] = (e.key_id, e.username)

    def _on_key_revoked(self, e: ApiKeyRevoked) -> None:
        known = self.key_ids.pop(e.key_id, None)
        if known is not None:
            self.keys.pop(known[2], None)

    def _on_suspended(self, e: AccountSuspended) -> None:
        self.suspended.add(e.account_id)

    def _on_reinstated(self, e: AccountReinstated) -> None:
        self.suspended.discard(e.account_id)

    def _on_denied(self, _e: AccessDenied) -> None:
        self.denials += 1

    def _on_strategy_started(self, e: StrategyStarted) -> None:
        self.strategies[e.strategy_id] = (e.run, True, e.account_id)

    def _on_strategy_stopped(self, e: StrategyStopped) -> None:
        self.strategies[e.strategy_id] = (e.run, False, e.account_id)

    _handlers: dict[type, Callable[[Governance, Any], None]] = {
        TradingHalted: _on_halted,
        TradingResumed: _on_resumed,
        ShortSaleRestrictionTriggered: _on_ssr,
        LocateRequested: _on_locate_requested,
        LocateGranted: _on_locate_granted,
        LocateConsumed: _on_locate_consumed,
        LocateExpired: _on_locate_expired,
        KillSwitchTripped: _on_tripped,
        KillSwitchReset: _on_reset,
        LimitChangeRequested: _on_limit_requested,
        LimitChangeApproved: _on_limit_approved,
        LimitChangeRejected: _on_limit_rejected,
        LimitChangeReverted: _on_limit_reverted,
        UserCreated: _on_user_created,
        UserDisabled: _on_user_disabled,
        EntitlementGranted: _on_entitled,
        EntitlementRevoked: _on_unentitled,
        ApiKeyIssued: _on_key_issued,
        ApiKeyRevoked: _on_key_revoked,
        AccountSuspended: _on_suspended,
        AccountReinstated: _on_reinstated,
        AccessDenied: _on_denied,
        ReportCertified: lambda _self, _e: None,  # a record only: no state changes
        StrategyStarted: _on_strategy_started,
        StrategyStopped: _on_strategy_stopped,
    }


def in_scope(scope: str, account_id: str, strategy: str | None) -> bool:
    if scope == FIRM:
        return True
    kind, _, key = scope.partition(":")
    return (kind == "account" and key == account_id) or (kind == "strategy" and key == strategy)
