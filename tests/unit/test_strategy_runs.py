"""Strategy runs in the book of record: starts and stops are governed records (who, which
run, why), the run number keeps counting through replay and snapshots, and a start or stop
that does not fit the recorded state is refused with nothing recorded."""

from __future__ import annotations

import pytest

from domain.book_snapshot import FORMAT, restore, state_of
from domain.events import CancelRequested, OrderCanceled
from domain.governance import Refused, strategy_uuid
from domain.governance_events import StrategyStarted, StrategyStopped
from domain.values import CancelReason, FrozenRecord, OrderStatus
from tests import builders as b
from tests.unit.test_governance import Rec, assert_replays, assert_restores

RISK, ADMIN = b.RISK_OFFICER, b.ADMIN
PARAMS = {"symbol": "AAPL", "size": "10", "max_inventory": "50"}


@pytest.fixture(autouse=True)
def _fresh_counters() -> None:
    b.reset()


def start(rec: Rec, run: int, actor: str = RISK, strategy_id: str = "mm-1") -> StrategyStarted:
    event = rec.gov.start_strategy(strategy_id, run, "market_maker", b.ACCOUNT, PARAMS, actor,
                                   "api", b.ts(), f"started by {actor}")
    rec.keep(event)
    return event


def stop(rec: Rec, run: int, reason: str = "stopped by risk-1", actor: str = RISK,
         strategy_id: str = "mm-1") -> StrategyStopped:
    """The stop event (its cancels are kept in ``rec.events`` after it)."""
    produced = rec.gov.stop_strategy(strategy_id, run, actor, "api", b.ts(), reason, 7, 2)
    rec.keep(produced)
    event = produced[0]
    assert isinstance(event, StrategyStopped)
    return event


def test_runs_count_per_strategy_one_stream_gapless_versions() -> None:
    rec = Rec()
    first = start(rec, 1)
    assert first.strategy_uuid == strategy_uuid("mm-1") != strategy_uuid("mm-2")
    assert (first.version, first.run, first.actor, first.account_id) == (1, 1, RISK, b.ACCOUNT)
    assert isinstance(first.params, FrozenRecord)
    assert list(first.params) == sorted(PARAMS)  # sorted: the same parameters, the same body
    with pytest.raises(TypeError):
        first.params["size"] = "11"  # type: ignore[index]
    assert rec.gov.strategies["mm-1"] == (1, True, b.ACCOUNT)
    stopped = stop(rec, 1, "kill switch tripped on strategy:mm-1", actor="system")
    assert (stopped.version, stopped.run, stopped.orders_sent, stopped.fills) == (2, 1, 7, 2)
    assert stopped.account_id == b.ACCOUNT  # the run's, from its start
    assert stopped.canceled_orders == ()  # it left nothing live
    assert rec.gov.strategies["mm-1"] == (1, False, b.ACCOUNT)
    other = start(rec, 1, strategy_id="mm-2")  # another strategy: a stream of its own
    assert (other.version, other.run) == (1, 1)
    second = start(rec, 2, actor=ADMIN)
    assert (second.version, second.run) == (3, 2)
    assert rec.gov.strategies == {"mm-1": (2, True, b.ACCOUNT), "mm-2": (1, True, b.ACCOUNT)}
    assert_replays(rec)
    assert_restores(rec)


def test_a_start_or_stop_that_does_not_fit_is_refused_and_records_nothing() -> None:
    rec = Rec()
    with pytest.raises(Refused) as denied:
        start(rec, 1, actor=b.ACTOR)  # a trader does not start strategies
    assert denied.value.denied
    with pytest.raises(Refused, match="next run is 1, not 2"):
        start(rec, 2)
    with pytest.raises(Refused, match="not running"):
        stop(rec, 1)
    start(rec, 1)
    with pytest.raises(Refused, match="still running"):
        start(rec, 2)  # the open run must end first (a resend of a start is refused)
    with pytest.raises(Refused, match="not running"):
        stop(rec, 2)
    with pytest.raises(Refused) as trader_stop:
        stop(rec, 1, actor=b.ACTOR)
    assert trader_stop.value.denied
    with pytest.raises(Refused, match="unknown account"):
        rec.gov.start_strategy("mm-9", 1, "market_maker", "ACC-NONE", {}, RISK, "api",
                               b.ts(), "x")
    stop(rec, 1)
    with pytest.raises(Refused, match="not running"):
        stop(rec, 1)  # stopped once
    assert [type(e).__name__ for e in rec.events] == ["StrategyStarted", "StrategyStopped"]
    assert rec.gov.strategies == {"mm-1": (1, False, b.ACCOUNT)}


def test_snapshot_keeps_the_runs_and_reads_the_previous_format() -> None:
    rec = Rec()
    start(rec, 1)
    stop(rec, 1)
    start(rec, 2)
    state = state_of(rec.book)
    assert state["format"] == FORMAT == 4
    assert state["governance"]["strategies"] == {"mm-1": [2, True, b.ACCOUNT]}
    restored = rec.factory()
    restore(restored, state)
    assert restored.gov.strategies == {"mm-1": (2, True, b.ACCOUNT)}
    with pytest.raises(Refused, match="still running"):  # the restored book decides the same
        restored.gov.start_strategy("mm-1", 3, "market_maker", b.ACCOUNT, {}, RISK, "api",
                                    b.ts(), "x")
    # A format-3 snapshot predates strategy events: it is read, with no runs.
    old = state_of(rec.factory())
    old["format"] = 3
    del old["governance"]["strategies"]
    older = rec.factory()
    restore(older, old)
    assert older.gov.strategies == {}
    unknown = state_of(rec.factory())
    unknown["format"] = 2
    with pytest.raises(ValueError, match="unknown book snapshot format"):
        restore(rec.factory(), unknown)


def test_a_stop_cancels_every_live_order_of_the_strategy_on_the_runs_account() -> None:
    """Quotes left on the venue with nobody managing them are picked off as the market
    moves: the stop cancels the strategy's live orders (resting or partly filled, an earlier
    run's too) the kill switch's way, and only those."""
    rec = Rec()
    start(rec, 1)
    older = rec.accepted(strategy="mm-1", client_order_id="mm-1.r1-1", quantity=10)
    stop_first = stop(rec, 1)
    assert stop_first.canceled_orders == (str(older.order_id),)
    assert older.pending_cancel == CancelReason.STRATEGY_STOPPED
    rec.keep(rec.book.confirm_cancel(older, b.ts()))
    start(rec, 2)
    # An order left live by run 1 (say its cancel was lost with the process) is run 2's to
    # close as well; a partly filled quote counts; another strategy, another account, an
    # untagged order and one already being canceled are not its.
    leftover = rec.accepted(strategy="mm-1", client_order_id="mm-1.r1-9", quantity=20)
    resting = rec.accepted(strategy="mm-1", client_order_id="mm-1.r2-1", quantity=30)
    partly = rec.accepted(strategy="mm-1", client_order_id="mm-1.r2-2", quantity=40)
    rec.keep(b.fill(rec.book, partly, 15))
    assert partly.status == OrderStatus.PARTIALLY_FILLED
    pulled = rec.accepted(strategy="mm-1", client_order_id="mm-1.r2-3", quantity=50)
    rec.keep(rec.book.request_cancel(pulled, RISK, "api", b.ts()))
    other_strategy = rec.accepted(strategy="mm-2", quantity=60)
    untagged = rec.accepted(quantity=70)
    other_account = rec.accepted(strategy="mm-1", account_id=b.OTHER_ACCOUNT, quantity=80)
    before = len(rec.events)
    stopped = stop(rec, 2, "server shutdown", actor="system")
    mine = [leftover, resting, partly]
    assert stopped.canceled_orders == tuple(str(o.order_id) for o in mine)
    cancels = rec.events[before + 1:]
    assert [type(c) for c in cancels] == [CancelRequested] * 3
    assert [c.order_id for c in cancels] == [o.order_id for o in mine]
    assert {c.reason for c in cancels} == {CancelReason.STRATEGY_STOPPED}
    assert {(c.actor, c.source) for c in cancels} == {("system", "system")}
    assert all(o.status == OrderStatus.PENDING_CANCEL for o in mine)
    for order in (other_strategy, untagged, other_account):
        assert order.status == OrderStatus.ACCEPTED and order.pending_cancel is None
    # The venue confirms: canceled with the stop as the reason; a fill racing it first
    # takes only what is left, then the cancel pulls the rest.
    rec.keep(b.fill(rec.book, resting))
    confirms = [rec.book.confirm_cancel(o, b.ts()) for o in mine]
    rec.keep(confirms)
    assert [type(c).__name__ for c in confirms] == ["OrderCanceled", "CancelRejected",
                                                    "OrderCanceled"]
    assert {c.reason for c in confirms if isinstance(c, OrderCanceled)} == {
        CancelReason.STRATEGY_STOPPED}
    assert not [o for o in rec.book.live_orders() if o.strategy == "mm-1"
                and o.account_id == b.ACCOUNT and o is not pulled]
    assert_replays(rec)
    assert_restores(rec)
