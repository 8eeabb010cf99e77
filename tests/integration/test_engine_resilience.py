"""Nothing a client does can stop the engine (ARCHITECTURE rule 9), and one writer per store
(rule 3) holds even when the side channel fails: real engine threads over the real store.

* a caller that gives up (a cancelled future) before or after the engine takes its command;
* a full queue answers at once (backpressure) instead of growing;
* a failure of the engine loop itself is recovered, answered, counted and recorded;
* an engine fenced by a newer writer halts: every caller learns it, nothing more is written.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import CancelledError
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from commands.engine import EngineBusy, EngineHalted, NotRecorded
from commands.models import SubmitOrder
from commands.outcomes import Outcome
from domain.book_snapshot import state_of
from infrastructure.bootstrap import System, bootstrap, build_engine
from infrastructure.settings import Settings
from tests.invariants import check_log

pytestmark = pytest.mark.timeout(180)


def order(cid: str, quantity: int = 10, account: str = "ACC-ALPHA") -> SubmitOrder:
    return SubmitOrder(client_order_id=cid, account_id=account, symbol="AAPL", side="buy",
                       quantity=quantity, order_type="limit", limit_price=Decimal("185.00"),
                       actor="tester")


class SlowJournal:
    """The real store behind the port; every append takes ``delay`` seconds longer."""

    def __init__(self, inner: Any, delay: float) -> None:
        self.inner = inner
        self.delay = delay

    def append(self, events: Sequence[Any]) -> int:
        time.sleep(self.delay)
        return int(self.inner.append(events))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def system(backend: Settings) -> Iterator[System]:
    s = bootstrap(backend, start=False)
    yield s
    s.close()


def stored_client_ids(system: System) -> list[str]:
    return [e.client_order_id for _, e in system.store.read()
            if type(e).__name__ in ("OrderAccepted", "OrderRejected")]


def test_a_caller_that_gives_up_never_stops_the_engine(system: System) -> None:
    """Issue 5 item 1: asyncio cancelled the engine's future on a client timeout; the
    engine's later set_result raised InvalidStateError and ended its thread for good."""
    engine = system.engine
    engine.journal = SlowJournal(system.store, 0.3)
    engine.start()
    try:
        running = engine.submit(order("slow-1"))
        time.sleep(0.1)  # the engine has taken it: it is being committed
        # The caller gives up (asyncio cancels the future on a timeout): only its wait ends;
        # the engine answers it later into the void, which must not hurt.
        running.cancel()
        waiting = [engine.submit(order(f"gave-up-{n}", 20 + n)) for n in range(3)]
        for f in waiting:
            f.cancel()  # clients that timed out while their commands were still queued
        time.sleep(0.8)  # the slow commit ends; the engine answers the cancelled future
        later = engine.submit(order("later", 30))
        assert later.result(timeout=10).kind == "created"
        assert engine.running and engine.failures == 0
        assert all(f.cancelled() for f in waiting)
        with pytest.raises(CancelledError):
            waiting[0].result()
    finally:
        engine.stop()
    ids = stored_client_ids(system)
    assert "slow-1" in ids and "later" in ids  # taken by the engine: durable all the same
    # A command whose caller gave up before the engine looked at it was never decided.
    assert not [i for i in ids if i.startswith("gave-up")]


def test_a_full_queue_answers_busy_at_once_and_loses_nothing(backend: Settings) -> None:
    system = bootstrap(backend.model_copy(update={"engine_queue_max": 5, "batch_max": 2}),
                       start=False)
    try:
        engine = system.engine
        engine.journal = SlowJournal(system.store, 0.05)
        engine.start()
        accepted, busy = [], 0
        started = time.monotonic()
        for n in range(60):
            try:
                accepted.append((n, engine.submit(order(f"bp-{n}", 1 + n))))
            except EngineBusy as exc:
                busy += 1
                assert "retry" in str(exc)
        assert time.monotonic() - started < 1.0, "a full engine must refuse at once"
        assert busy > 0 and accepted
        assert engine.health()["queue_depth"] <= 5
        outcomes = [f.result(timeout=30) for _, f in accepted]
        assert {o.kind for o in outcomes} == {"created"}
        engine.stop()
        stored = set(stored_client_ids(system))
        assert {f"bp-{n}" for n, _ in accepted} == stored  # every accepted one, nothing else
    finally:
        system.close()


def test_a_failure_of_the_engine_loop_is_recovered_answered_and_recorded(
        system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = system.engine
    done = [o for o in engine.execute([order("before")]) if isinstance(o, Outcome)]
    assert done
    real = engine.decide_batch
    calls = {"n": 0}

    def failing_once(items: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug in the engine loop")
        return real(items)

    monkeypatch.setattr(engine, "decide_batch", failing_once)
    engine.start()
    try:
        lost = engine.submit(order("lost", 11))
        with pytest.raises(NotRecorded, match="safe to resend"):
            lost.result(timeout=30)
        again = engine.submit(order("lost", 11))
        assert again.result(timeout=30).kind == "created"
        assert engine.running and engine.failures == 1
        assert "a bug in the engine loop" in (engine.last_failure or "")
    finally:
        engine.stop()
    recovered = [e for _, e in system.store.read() if type(e).__name__ == "EngineRecovered"]
    assert len(recovered) == 1 and "a bug in the engine loop" in recovered[0].cause
    assert state_of(build_engine(system.settings, system.config, system.store).book) == \
        state_of(engine.book)
    check_log(system.store.read())


def test_an_engine_fenced_by_a_newer_writer_halts_and_tells_every_caller(
        backend: Settings, tmp_path: Path) -> None:
    """Issue 5 item 7: the lock is a side channel; the store fences. After the first
    engine's lock is gone (file deleted / session killed), a second engine starts; the first
    must stop writing, and say so, rather than interleave the chain."""
    first = bootstrap(backend, start=True)
    second: System | None = None
    try:
        assert first.engine.submit(order("one")).result(timeout=10).kind == "created"
        if backend.uses_postgres:
            first.writer_lock.release()  # as if the server restart had dropped its session
        else:
            (backend.data_dir / "engine.lock").unlink()
        second = bootstrap(backend, start=True)
        assert second.engine.submit(order("two", 12)).result(timeout=10).kind == "created"
        late = first.engine.submit(order("three", 13))
        with pytest.raises(EngineHalted, match="WriterFenced"):
            late.result(timeout=10)
        with pytest.raises(EngineHalted):
            first.engine.submit(order("four", 14))
        health = first.engine.health()
        assert health["running"] is False and "WriterFenced" in health["halted"]
        assert second.engine.submit(order("five", 15)).result(timeout=10).kind == "created"
        ids = stored_client_ids(second)
        assert ids == ["one", "two", "five"]
        assert second.store.verify().ok
    finally:
        if second is not None:
            second.close()
        first.close()
