"""The engine's resilience through the real app (FastAPI TestClient over the real bootstrap):
a client that times out, a full engine, trading days for operators. Orders are sent by
the trader "tester", trading days are opened and closed by the risk officer "rose"."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api import orders as api_orders
from api.app import create_app
from infrastructure.bootstrap import System, bootstrap
from infrastructure.settings import Settings
from tests.auth import login, user_headers

pytestmark = pytest.mark.timeout(120)


class SlowJournal:
    """The real store behind the engine's port, slower than the API's answer timeout while
    ``slow`` is set."""

    def __init__(self, inner: Any, delay: float) -> None:
        self.inner = inner
        self.delay = delay
        self.slow = threading.Event()

    def append(self, events: Sequence[Any]) -> int:
        if self.slow.is_set():
            time.sleep(self.delay)
        return int(self.inner.append(events))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def body(cid: str, quantity: int = 10) -> dict[str, Any]:
    return {"client_order_id": cid, "account_id": "ACC-ALPHA", "symbol": "AAPL",
            "side": "buy", "quantity": quantity, "order_type": "limit", "limit_price": "185.00"}


@pytest.fixture
def slow_system(backend: Settings) -> Iterator[tuple[System, SlowJournal]]:
    system = bootstrap(backend, start=False)
    journal = SlowJournal(system.store, 1.0)
    system.engine.journal = journal
    system.start()
    yield system, journal
    system.close()


def test_a_client_that_times_out_does_not_stop_the_engine(
        slow_system: tuple[System, SlowJournal], monkeypatch: pytest.MonkeyPatch) -> None:
    system, journal = slow_system
    monkeypatch.setattr(api_orders, "ANSWER_TIMEOUT_S", 0.3)
    with TestClient(create_app(system=system)) as client:
        login(client, "tester")
        journal.slow.set()
        r = client.post("/orders", json=body("timed-out"))
        assert r.status_code == 503, r.text
        assert "resend the same client_order_id" in r.json()["detail"]
        journal.slow.clear()
        time.sleep(1.5)  # the engine answers the abandoned future: it must survive that
        health = client.get("/health").json()
        assert health["engine"]["running"] is True, health
        assert health["engine"]["failures"] == 0
        # The order is durable: the resend learns its outcome, and orders flow again.
        again = client.post("/orders", json=body("timed-out"))
        assert again.status_code == 200, again.text
        assert client.post("/orders", json=body("next", 11)).status_code == 201


def test_a_full_engine_answers_503_with_retry_after_at_once(backend: Settings) -> None:
    system = bootstrap(backend.model_copy(update={"engine_queue_max": 2, "batch_max": 1}),
                       start=False)
    journal = SlowJournal(system.store, 0.3)
    system.engine.journal = journal
    system.start()
    try:
        with TestClient(create_app(system=system)) as client:
            login(client, "tester")
            journal.slow.set()
            statuses: list[tuple[int, str | None]] = []

            def send(n: int) -> None:
                r = client.post("/orders", json=body(f"bp-{n}", 1 + n))
                statuses.append((r.status_code, r.headers.get("retry-after")))

            threads = [threading.Thread(target=send, args=(n,)) for n in range(12)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            journal.slow.clear()
            busy = [s for s in statuses if s[0] == 503]
            assert busy, statuses
            assert all(retry == "1" for _, retry in busy)
            assert {s for s, _ in statuses} <= {201, 503}
            created = sum(1 for s, _ in statuses if s == 201)
            client.get("/orders")  # read-your-writes
            listed = client.get("/orders", params={"limit": 100}).json()
            assert len(listed) == created
    finally:
        system.close()


def test_operators_close_and_open_trading_days(backend: Settings) -> None:
    with TestClient(create_app(backend)) as client:
        login(client, "tester")
        operator = user_headers(client, "rose")
        day = client.get("/trading-day").json()
        assert day["open"] is True and day["exposure_mode"] == "gross"
        resting = client.post("/orders", json=body("rests"))
        assert resting.json()["status"] == "accepted"
        # Traders do not open or close days (refused, recorded); a risk officer does.
        r = client.post("/trading-day/close", json={"reason": "a trader's early close"})
        assert r.status_code == 403, r.text
        assert client.get("/trading-day").json()["open"] is True
        r = client.post("/trading-day/close", json={"reason": "early close: exchange halt"},
                        headers=operator)
        assert r.status_code == 200, r.text
        assert r.json()["open"] is False
        # The DAY order expired; new orders are refused by the session control, recorded.
        assert client.get(f"/orders/{resting.json()['order_id']}").json()["status"] == \
            "canceled"
        late = client.post("/orders", json=body("late", 12)).json()
        assert late["reject"]["control"] == "session"
        assert client.post("/trading-day/close", json={"reason": "twice"},
                           headers=operator).status_code == 409
        # Today's date is closed; a later one may open.
        assert client.post("/trading-day/open", json={"reason": "again"},
                           headers=operator).status_code == 409
        assert client.post("/trading-day/open", json={"reason": "a trader's session",
                                                      "trading_date": "2099-01-02"}
                           ).status_code == 403
        r = client.post("/trading-day/open", json={"reason": "special session",
                                                   "trading_date": "2099-01-02"},
                        headers=operator)
        assert r.status_code == 200, r.text
        assert r.json()["date"] == "2099-01-02" and r.json()["open"] is True
        assert client.post("/orders", json=body("after", 13)).json()["status"] == "accepted"
        events = client.get("/audit", params={"limit": 1000}, headers=operator).json()
        closed = [e for e in events if e["event_type"] == "TradingDayClosed"]
        assert closed[0]["actor"] == "rose"
        assert closed[0]["payload"]["reason"] == "early close: exchange halt"
        denied = [e for e in events if e["event_type"] == "AccessDenied"]
        assert [(e["actor"], e["payload"]["action"]) for e in denied] == [
            ("tester", "POST /trading-day/close"), ("tester", "POST /trading-day/open")]
        assert client.post("/trading-day/open", json={"reason": ""},
                           headers=operator).status_code == 422
        assert client.post("/trading-day/open", json={
            "reason": "x", "trading_date": "26-11-2026"}, headers=operator).status_code == 422
