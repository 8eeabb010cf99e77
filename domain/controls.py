"""SEC Rule 15c3-5 pre-trade controls as one table: name, rule, inputs, check.

The table is the single source of the decision order, of the ``checks`` an acceptance
records (coverage reporting: every order passes every applicable control) and of the
documentation (``markdown_table``, quoted in the README and checked against it by a test).

Each check reads the ``Candidate`` (the order under decision and the inputs gathered so far)
and returns ``None`` when the order passes, ``SKIPPED`` when the control does not apply to it
(e.g. tick size of a market order), or ``(threshold, observed)`` as strings when it fails.
A check may derive an input for the controls after it (the account, the reference price, the
notional): the table's order is the order inputs become known. Thresholds are the firm's own
calibration (``RiskLimits``), recorded with their version.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from domain.lifecycle import LIVE_STATUSES, WORKING_STATUSES
from domain.values import ZERO, OrderType, ReferenceSource, Side

if TYPE_CHECKING:
    from domain.book_of_record import BookOfRecord
    from domain.orders import Order
    from domain.reference_prices import ReferencePrice

Failure = tuple[str, str] | None

# Enum members as plain module names: on CPython 3.11 a member lookup (Side.BUY) costs
# ~0.1 us, and these run several times per order.
BUY = Side.BUY
SELL = Side.SELL
SELL_SHORT = Side.SELL_SHORT
LIMIT = OrderType.LIMIT
PREVIOUS_CLOSE = ReferenceSource.PREVIOUS_CLOSE



class _Skipped(tuple[str, str]):
    """The control does not apply to this order (it did not run)."""


SKIPPED: Final = _Skipped(("", ""))

MAX_PRICE_EXPONENT = 12  # prices are below 10^13: beyond, decimal arithmetic loses exactness
_PCT = Decimal("0.000001")


class Candidate:
    """The order under decision and the inputs the controls gather for each other."""

    __slots__ = ("account", "account_id", "actor", "added", "book", "exposure_after",
                 "exposure_before", "firm_after", "firm_before", "inputs", "instrument",
                 "limit_price", "limits", "locate", "notional", "now_ns", "order", "order_type",
                 "price", "protection_price", "quantity", "reference", "side", "strategy",
                 "symbol")
    account: Any
    instrument: Any
    notional: Decimal
    exposure_after: Decimal
    firm_after: Decimal

    def __init__(self, book: BookOfRecord, account_id: str, symbol: str, side: str,
                 quantity: int, order_type: str, limit_price: Decimal | None, now_ns: int,
                 order: Order | None = None, actor: str = "", strategy: str | None = None
                 ) -> None:
        self.prepare(book, account_id, symbol, side, quantity, order_type, limit_price, now_ns,
                     order, actor, strategy)

    def prepare(self, book: BookOfRecord, account_id: str, symbol: str, side: str,
                quantity: int, order_type: str, limit_price: Decimal | None, now_ns: int,
                order: Order | None = None, actor: str = "", strategy: str | None = None
                ) -> Candidate:
        """Set for a new decision (the book reuses one candidate: no allocation per order)."""
        self.book = book
        self.actor = actor
        self.strategy = strategy
        self.inputs: dict[str, str] = {}  # inputs of controls with no event field of their own
        self.locate: Any = None
        self.account_id = account_id
        self.symbol = symbol
        self.side = side
        self.quantity = quantity
        self.order_type = order_type
        self.limit_price = limit_price
        self.now_ns = now_ns
        self.order = order  # the order being replaced; None for a new order
        # Read by the decision whatever control stopped it; the other inputs (account,
        # instrument, notional, added, exposure_after, firm_after) are always set by an
        # earlier control before a later one reads them (the table's order).
        self.limits: Any = None
        self.reference: ReferencePrice | None = None
        self.protection_price: Decimal | None = None
        self.price: Decimal | None = None  # the price the order is valued at
        self.exposure_before: Decimal | None = None
        self.firm_before: Decimal | None = None
        self.added: Decimal | None = None  # exposure the order adds (a replace: the increase)
        return self


class Control(NamedTuple):
    name: str
    rule: str  # the regulation (or practice) it answers
    inputs: str  # what it reads, as recorded in the decision event
    check: Callable[[Candidate], Failure]
    on_new: bool  # runs on new orders
    on_replace: bool  # runs on replaces (every control a replace's change can affect)


# ------------------------------------------------------------------------------ checks


def session(c: Candidate) -> Failure:
    # Orders belong to a trading day: exposure, DAY expiry and reports are per day.
    day = c.book.day
    if day.is_open:
        return None
    return ("open trading day", day.status_text())


def unknown_account(c: Candidate) -> Failure:
    account = c.book.accounts.get(c.account_id)
    if account is None:
        return ("configured account", c.account_id)
    c.account = account
    c.limits = account.limits
    return None


def unknown_symbol(c: Candidate) -> Failure:
    instrument = c.book.instruments.get(c.symbol)
    if instrument is None:
        return ("listed instrument", c.symbol)
    c.instrument = instrument
    return None


def order_status(c: Candidate) -> Failure:
    # FIX CxlRejReason 0/1: too late to change an order that is finished.
    assert c.order is not None
    status = c.order.status
    if status not in LIVE_STATUSES:
        return ("live order", str(status))
    return None


def pending_request(c: Candidate) -> Failure:
    # FIX CxlRejReason 3: a cancel or replace is already on its way to the venue.
    assert c.order is not None
    status = c.order.status
    if status not in WORKING_STATUSES:
        return ("no cancel or replace pending", str(status))
    return None


def order_type(c: Candidate) -> Failure:
    if c.order_type != LIMIT:
        return ("limit order", str(c.order_type))
    return None


def min_quantity(c: Candidate) -> Failure:
    assert c.order is not None
    filled = c.order.filled_quantity
    if c.quantity <= filled:
        return (f"> {filled} filled", str(c.quantity))
    return None


def account_suspended(c: Candidate) -> Failure:
    if c.account_id in c.book.gov.suspended:
        return ("active account", "suspended")
    return None


def entitlement(c: Candidate) -> Failure:
    # 15c3-5(c)(2)(iii): only pre-approved users may trade the account.
    user = c.book.gov.users.get(c.actor)
    if user is None or not user.active or c.account_id not in user.accounts:
        return (f"user entitled to {c.account_id}", c.actor)
    return None


def kill_switch(c: Candidate) -> Failure:
    tripped = c.book.gov.tripped
    if not tripped:  # the usual case: one truth test
        return None
    scopes = ["firm", "account:" + c.account_id]
    if c.strategy is not None:
        scopes.append("strategy:" + c.strategy)
    for scope in scopes:
        trip = tripped.get(scope)
        if trip is not None:
            return ("no kill switch tripped", f"{scope} tripped ({trip.trigger})")
    return None


def halt(c: Candidate) -> Failure:
    # 15c3-5(c)(2)(i): a halted symbol takes no orders (TradingHalted until TradingResumed).
    if c.symbol in c.book.gov.halted:
        return ("symbol trading", "halted")
    return None


def rate(c: Candidate) -> Failure:
    # 15c3-5(c)(1)(ii) throttle: messages and new orders per sliding second, per account,
    # firm-wide and per strategy tag. Messages count whether accepted or not, so a client
    # that keeps flooding stays throttled.
    gov = c.book.gov
    now, limits, firm = c.now_ns, c.limits, c.book.firm
    new = c.order is None
    account = gov.windows.rates.get(c.account_id)
    ao, am = (0, 0) if account is None else account.counts(now)
    if am >= limits.max_messages_per_second:
        return (f"{limits.max_messages_per_second} messages/s", f"{am + 1} messages/s")
    if new and ao >= limits.max_orders_per_second:
        return (f"{limits.max_orders_per_second} orders/s", f"{ao + 1} orders/s")
    fo, fm = gov.firm_rate.counts(now)
    if fm >= firm.max_messages_per_second:
        return (f"{firm.max_messages_per_second} messages/s firm-wide", f"{fm + 1} messages/s")
    if new and fo >= firm.max_orders_per_second:
        return (f"{firm.max_orders_per_second} orders/s firm-wide", f"{fo + 1} orders/s")
    if c.strategy is None:
        # Messages/orders in the second before this one: the account's, the firm's.
        c.inputs["rate"] = f"{am}/{ao} {fm}/{fo}"
        return None
    key = "strategy:" + c.strategy
    tagged = gov.windows.rates.get(key)
    so, sm = (0, 0) if tagged is None else tagged.counts(now)
    if sm >= firm.strategy_max_messages_per_second:
        return (f"{firm.strategy_max_messages_per_second} messages/s ({key})",
                f"{sm + 1} messages/s")
    if new and so >= firm.strategy_max_orders_per_second:
        return (f"{firm.strategy_max_orders_per_second} orders/s ({key})", f"{so + 1} orders/s")
    c.inputs["rate"] = f"{am}/{ao} {fm}/{fo} {sm}/{so}"
    return None


def marking(c: Candidate) -> Failure:
    # Reg SHO Rule 200(g): a sell is long only within the position, net of the account's
    # other open long sells; beyond it the order must be marked sell_short.
    if c.side != SELL:
        return None
    account = c.account
    available = account.long_position(c.symbol) - account.sell_open.get(c.symbol, 0)
    needed = c.quantity
    order = c.order
    if order is not None:  # a replace: its own leaves are already counted as open
        available += order.quantity - order.filled_quantity
        needed -= order.filled_quantity
    if needed > available:
        return (f"{max(available, 0)} long (mark sell_short beyond)", str(needed))
    return None


def restricted(c: Candidate) -> Failure:
    # 15c3-5(c)(2)(ii): restricted list, firm-wide or per account.
    if c.symbol in c.book.firm.restricted_symbols:
        return ("firm restricted list", c.symbol)
    if c.symbol in c.account.restricted_symbols:
        return ("account restricted list", c.symbol)
    return None


def lot_size(c: Candidate) -> Failure:
    # Edges other than the API (FIX, strategies) must not slip a zero or negative size in:
    # a negative quantity would free credit room instead of using it.
    quantity, lot = c.quantity, c.instrument.lot_size
    if quantity <= 0 or quantity % lot:
        return (f"multiple of {lot}", str(quantity))
    return None


def tick_size(c: Candidate) -> Failure:
    price = c.limit_price
    if price is None:
        return SKIPPED  # a market order has no price of its own
    tick = c.instrument.tick_size
    try:
        off_tick = price % tick  # infinite or far too large: InvalidOperation
    except ArithmeticError:
        off_tick = None
    # ZERO, not 0: a Decimal compared with an int converts the int first, on every order.
    if off_tick is None or not price.is_finite() or price <= ZERO \
            or price.adjusted() > MAX_PRICE_EXPONENT:
        return ("finite positive price below 1E+13", str(price))
    if off_tick:
        return (f"multiple of {tick}", str(price))
    return None


def max_qty(c: Candidate) -> Failure:
    # 15c3-5(c)(1)(ii): erroneous-order size limit; at the limit passes.
    maximum = c.limits.max_order_quantity
    if c.quantity > maximum:
        return (str(maximum), str(c.quantity))
    symbol_limits = c.book.gov.symbol_limits.get(c.symbol)
    if symbol_limits is not None:
        if c.quantity > symbol_limits.max_order_quantity:
            return (f"{symbol_limits.max_order_quantity} ({c.symbol})", str(c.quantity))
        c.inputs["max_qty"] = f"{c.symbol} limits v{symbol_limits.version}"
    return None


def stale_reference(c: Candidate) -> Failure:
    # 15c3-5(c)(1)(ii): a reference from a feed that stopped updating is no reference.
    reference = c.book.references.reference(c.symbol)
    c.reference = reference
    if reference is None:
        return SKIPPED  # price_collar rejects: no reference at all
    if reference.source == PREVIOUS_CLOSE:
        return None  # valid for its trading day until the symbol prints
    age = c.now_ns - reference.as_of_ns
    max_age = c.book.firm.reference_max_age_ns
    if age > max_age:
        return (f"{max_age // 1_000_000}ms", f"{age // 1_000_000}ms")
    return None


def price_collar(c: Candidate) -> Failure:
    # 15c3-5(c)(1)(ii): a missing reference rejects; it never defaults to "no check".
    reference = c.reference
    if reference is None:
        return ("reference price required", "none")
    ref, pct = reference.price, c.limits.price_collar_pct
    price = c.limit_price
    if price is None:
        # Market-order protection: the order becomes marketable only up to the collar's
        # edge (rounded inwards to the tick); the venue never fills it beyond, and the
        # controls after this one value it there.
        tick = c.instrument.tick_size
        if c.side == BUY:
            edge = (ref * (1 + pct) / tick).to_integral_value(ROUND_FLOOR) * tick
        else:
            edge = (ref * (1 - pct) / tick).to_integral_value(ROUND_CEILING) * tick
        if edge <= 0:
            return ("protection price above zero", str(edge))
        c.protection_price = c.price = edge
        return None
    distance = abs(price - ref)
    if distance > ref * pct:  # multiply, not divide: this runs on every order
        return (str(pct), str((distance / ref).quantize(_PCT)))
    c.price = price
    return None


def luld_band(reference: Decimal, tier: int) -> tuple[Decimal, Decimal]:
    """The Limit Up-Limit Down plan's band around a reference price (Appendix A): 5% (tier 1)
    or 10% (tier 2) above $3.00, 20% from $0.75 to $3.00, below that the lesser of $0.15 and
    75%."""
    if reference > 3:
        width = reference * (_LULD_TIER1 if tier == 1 else _LULD_TIER2)
    elif reference >= _LULD_PENNY:
        width = reference * _LULD_MID
    else:
        width = min(_LULD_CAP, reference * _LULD_LOW)
    return reference - width, reference + width


_LULD_TIER1, _LULD_TIER2, _LULD_MID, _LULD_LOW = (Decimal("0.05"), Decimal("0.10"),
                                                   Decimal("0.20"), Decimal("0.75"))
_LULD_PENNY, _LULD_CAP = Decimal("0.75"), Decimal("0.15")


def luld(c: Candidate) -> Failure:
    # 15c3-5(c)(2)(i) and Reg NMS LULD plan: no order priced outside the band.
    reference = c.reference
    assert reference is not None  # price_collar ran before and rejects without one
    cache = c.book.gov.bands
    band = cache.get(c.symbol)
    if band is None or band[0] is not reference:  # the band changes with the reference
        low, high = luld_band(reference.price, c.instrument.luld_tier)
        band = cache[c.symbol] = (reference, low, high, f"{low}-{high}")
    price = c.price
    assert price is not None
    if price < band[1] or price > band[2]:
        if c.protection_price is None:
            return (band[3], str(price))
        # A market order never executes outside the band: its protection price (the
        # collar's edge) moves in to the band's edge, rounded inwards to the tick.
        tick = c.instrument.tick_size
        if c.side == BUY:
            edge = (band[2] / tick).to_integral_value(ROUND_FLOOR) * tick
        else:
            edge = (band[1] / tick).to_integral_value(ROUND_CEILING) * tick
        if edge <= 0:
            return ("protection price above zero", str(edge))
        c.protection_price = c.price = edge
    c.inputs["luld"] = band[3]
    return None


def ssr(c: Candidate) -> Failure:
    # Reg SHO Rule 201: while the restriction is in force, no short sale at or below the
    # national best bid (the venue's best bid until market data feeds the NBBO).
    if c.side != SELL_SHORT or not c.book.gov.ssr or not c.book.gov.ssr_active(c.symbol):
        return None
    bid = c.book.best_bid(c.symbol)
    if bid is None:
        return ("best bid required (Rule 201)", "none")
    price = c.price
    assert price is not None
    if price <= bid:
        return (f"above best bid {bid}", str(price))
    c.inputs["ssr"] = f"best bid {bid}"
    return None


def locate(c: Candidate) -> Failure:
    # Reg SHO Rule 203(b)(1): a short sale needs a granted, unexpired locate covering it;
    # the acceptance consumes it (LocateConsumed). A replace needs one for its increase.
    if c.side != SELL_SHORT:
        return None
    needed = c.quantity if c.order is None else c.quantity - c.order.quantity
    if needed <= 0:
        return None
    gov = c.book.gov
    found = gov.located(c.account_id, c.symbol, needed, c.now_ns)
    if found is None:
        return (f"locate for {needed}",
                f"{gov.available(c.account_id, c.symbol, c.now_ns)} located")
    c.locate = found
    c.inputs["locate"] = f"{found.locate_id} ({found.remaining} left)"
    return None


def max_notional(c: Candidate) -> Failure:
    assert c.price is not None
    notional = c.price * c.quantity
    maximum = c.limits.max_order_notional
    if notional > maximum:
        return (str(maximum), str(notional))
    c.notional = notional
    order = c.order
    if order is None:
        c.added = notional
    else:
        # A replace adds the increase of its open exposure (reserved until the venue
        # confirms); a decrease takes effect at the confirmation, never earlier.
        filled = order.filled_quantity
        delta = (c.price * (c.quantity - filled)
                 - order.exposure_price * (order.quantity - filled))
        c.added = delta if delta > 0 else ZERO
    return None


def duplicate(c: Candidate) -> Failure:
    # 15c3-5(c)(1)(ii): the same order again within the window, whatever its client id.
    key = (c.account_id, c.symbol, c.side, c.quantity, c.limit_price)
    order = c.order
    if order is not None and c.book.recent_owner.get(key) == order.order_id:
        return None  # a replace back to terms this same order had duplicates nothing
    last = c.book.recent_orders.get(key)
    window = c.limits.duplicate_window_ns
    if last is not None and c.now_ns - last < window:
        return (f"{window}ns", f"{c.now_ns - last}ns")
    return None


def credit(c: Candidate) -> Failure:
    # 15c3-5(c)(1)(i): orders entered (open + filled) count against the limit; reducing
    # exposure is always allowed, even above a lowered limit.
    added: Decimal = c.added  # type: ignore[assignment]  # max_notional ran before
    exposure = c.account.exposure
    if c.book.day.gross:  # the usual case, on the hot path: a running total
        before = exposure.gross
        after = before + added
    else:
        mode = c.book.day.exposure_mode
        before = exposure.value(mode)
        after = exposure.value_with(mode, c.side, added)
    c.exposure_before, c.exposure_after = before, after
    limit = c.limits.credit_limit
    if after > limit and after > before:
        return (str(limit), str(after))
    return None


def firm_credit(c: Candidate) -> Failure:
    # 15c3-5(c)(1)(i): the firm-wide aggregate is a control of its own.
    added: Decimal = c.added  # type: ignore[assignment]  # max_notional ran before
    book = c.book
    exposure = book.firm_exposure
    if book.day.gross:
        before = exposure.gross
        after = before + added
    else:
        mode = book.day.exposure_mode
        before = exposure.value(mode)
        after = exposure.value_with(mode, c.side, added)
    c.firm_before, c.firm_after = before, after
    firm = book.firm
    limit = firm.credit_limit
    if after > limit and after > before:
        return (str(limit), str(after))
    c.inputs["firm_limits"] = firm.version_text
    return None


# ------------------------------------------------------------------------------ the table

CONTROLS: tuple[Control, ...] = (
    Control("session", "15c3-5(c)(1); trading-day records", "the trading day's state",
            session, True, True),
    Control("unknown_account", "15c3-5(c)(1)(i)", "account id vs configured accounts",
            unknown_account, True, False),
    Control("unknown_symbol", "15c3-5(c)(1)(ii)", "symbol vs listed instruments",
            unknown_symbol, True, False),
    Control("order_status", "FIX CxlRejReason 0 (too late)", "order status",
            order_status, False, True),
    Control("pending_request", "FIX CxlRejReason 3 (pending)", "order status",
            pending_request, False, True),
    Control("order_type", "replaceable order types", "order type", order_type, False, True),
    Control("min_quantity", "FIX: new size above filled", "new quantity vs filled quantity",
            min_quantity, False, True),
    Control("account_suspended", "15c3-5(c)(2)(iii)", "account suspension state",
            account_suspended, True, True),
    Control("entitlement", "15c3-5(c)(2)(iii)", "acting user, role and accounts",
            entitlement, True, True),
    Control("kill_switch", "FINRA practice; 15c3-5(b)", "kill switches of firm, account, "
            "strategy", kill_switch, True, True),
    Control("halt", "15c3-5(c)(2)(i)", "trading halts (TradingHalted/Resumed)", halt, True, True),
    Control("restricted", "15c3-5(c)(2)(ii)", "firm and account restricted lists",
            restricted, True, True),
    Control("rate", "15c3-5(c)(1)(ii) throttle",
            "messages and orders in the last second: account, firm, strategy", rate,
            True, True),
    Control("lot_size", "15c3-5(c)(1)(ii) erroneous order", "quantity vs lot size",
            lot_size, True, True),
    Control("tick_size", "15c3-5(c)(1)(ii) erroneous order", "limit price vs tick size",
            tick_size, True, True),
    Control("marking", "Reg SHO 200(g)", "sell quantity vs long position net of open sells",
            marking, True, True),
    Control("max_qty", "15c3-5(c)(1)(ii) erroneous order",
            "quantity vs account and symbol limits (versioned)", max_qty, True, True),
    Control("stale_reference", "15c3-5(c)(1)(ii)", "reference price, source, as-of time",
            stale_reference, True, True),
    Control("price_collar", "15c3-5(c)(1)(ii)",
            "limit price vs reference; a market order's protection price",
            price_collar, True, True),
    Control("luld", "15c3-5(c)(2)(i); LULD plan", "price vs the band around the reference",
            luld, True, True),
    Control("ssr", "Reg SHO 201", "short sale price vs best bid while restricted",
            ssr, True, True),
    Control("max_notional", "15c3-5(c)(1)(ii) erroneous order",
            "price (limit or protection) x quantity vs limit", max_notional, True, True),
    Control("duplicate", "15c3-5(c)(1)(ii) erroneous order",
            "same account, symbol, side, quantity, price within the window",
            duplicate, True, True),
    Control("locate", "Reg SHO 203(b)(1)", "granted unexpired locate covering a short sale",
            locate, True, True),
    Control("credit", "15c3-5(c)(1)(i)", "account exposure before, order notional, limit",
            credit, True, True),
    Control("firm_credit", "15c3-5(c)(1)(i)", "firm exposure before, order notional, limit",
            firm_credit, True, True),
)

NEW_ORDER: tuple[Control, ...] = tuple(c for c in CONTROLS if c.on_new)
REPLACE: tuple[Control, ...] = tuple(c for c in CONTROLS if c.on_replace)
NEW_ORDER_CONTROLS: tuple[str, ...] = tuple(c.name for c in NEW_ORDER)
REPLACE_CONTROLS: tuple[str, ...] = tuple(c.name for c in REPLACE)


class Plan(NamedTuple):
    """A control list prepared for the hot path: the checks as a plain tuple of functions."""

    checks: tuple[Callable[[Candidate], Failure], ...]
    names: tuple[str, ...]
    position: dict[Callable[[Candidate], Failure], int]


def plan(controls: tuple[Control, ...]) -> Plan:
    checks = tuple(c.check for c in controls)
    return Plan(checks, tuple(c.name for c in controls), {f: i for i, f in enumerate(checks)})


NEW_ORDER_PLAN = plan(NEW_ORDER)
REPLACE_PLAN = plan(REPLACE)


def run(p: Plan, candidate: Candidate) -> tuple[int, Failure, tuple[str, ...]]:
    """Run the plan's controls in order until one fails.

    Returns (index of the failing control or -1, its failure, the controls that ran and
    passed). The common case (all applied, all passed) returns the shared names tuple.
    """
    for check in p.checks:
        failure = check(candidate)
        if failure is not None:
            return _run_from(p, p.position[check], failure, candidate)
    return -1, None, p.names


def _run_from(p: Plan, i: int, failure: Failure, candidate: Candidate
              ) -> tuple[int, Failure, tuple[str, ...]]:
    """The slow path, from the first control that did not simply pass."""
    names, checks = p.names, p.checks
    skipped: list[int] = []
    while True:
        if failure is not SKIPPED:
            ran = tuple(n for j, n in enumerate(names[:i]) if j not in skipped)
            return i, failure, ran
        skipped.append(i)
        i += 1
        while i < len(checks):
            failure = checks[i](candidate)
            if failure is not None:
                break
            i += 1
        else:
            return -1, None, tuple(n for j, n in enumerate(names) if j not in skipped)


def markdown_table() -> str:
    """The control table as documentation (the README quotes it; a test keeps them equal)."""
    rows = ["| control | rule | inputs recorded | new orders | replaces |",
            "|---|---|---|---|---|"]
    rows += [f"| `{c.name}` | {c.rule} | {c.inputs} | {'yes' if c.on_new else '-'} | "
             f"{'yes' if c.on_replace else '-'} |" for c in CONTROLS]
    return "\n".join(rows)
