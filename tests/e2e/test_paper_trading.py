"""Paper trading through the API: a configured market maker started and stopped by a risk
officer against the serving engine and its simulated venue, listed with its status, its
orders in the blotter like any other, and stopped by a kill switch on its tag."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from infrastructure.settings import Settings, StrategySpec
from tests.auth import headers_for, login

pytestmark = pytest.mark.timeout(120)

MM = StrategySpec(id="mm-paper", kind="market_maker", user="strategy", account="ACC-ALPHA",
                  params={"symbol": "AAPL", "spread_ticks": 3, "size": 10,
                          "max_inventory": 50})


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=None, read_database_url=None,
                    database_owner_url=None, reader_database_url=None, chain_anchor_file=None,
                    liquidity_provider=True, strategies=[MM], strategy_poll_seconds=0.02)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        login(c, "rose")  # a risk officer
        yield c


def wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def strategy(client: TestClient, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = client.get("/strategies", headers=headers)
    assert response.status_code == 200, response.text
    [found] = [s for s in response.json() if s["id"] == "mm-paper"]
    return found


def my_orders(client: TestClient, status: str | None = None) -> list[dict[str, Any]]:
    params = {"account_id": "ACC-ALPHA", **({"status": status} if status else {})}
    response = client.get("/orders", params=params)
    assert response.status_code == 200, response.text
    return [o for o in response.json() if o["client_order_id"].startswith("mm-paper.r")]


def test_start_list_stop_and_who_may(client: TestClient) -> None:
    assert strategy(client)["status"] == "created"  # configured, off by default
    trader = headers_for(client, "tester")  # entitled to ACC-ALPHA: reads it
    assert strategy(client, trader)["status"] == "created"
    assert client.post("/strategies/mm-paper/start", headers=trader).status_code == 403
    assert client.post("/strategies/nope/start").status_code == 404

    started = client.post("/strategies/mm-paper/start")
    assert started.status_code == 200, started.text
    running = wait_for(lambda: (s := strategy(client))["orders_sent"] >= 2 and s)
    assert running["status"] == "running" and running["errors"] == []
    # Its quotes are orders like any other: in the blotter once projected.
    quotes = wait_for(lambda: my_orders(client, "accepted"))
    assert {o["side"] for o in quotes} <= {"buy", "sell"}
    assert all(o["quantity"] == 10 for o in quotes)
    audit = client.get("/audit", params={"order_id": quotes[0]["order_id"]})
    assert audit.status_code == 200, audit.text
    accepted = audit.json()[0]  # the order's audit trail names the strategy, user and source
    assert accepted["event_type"] == "OrderAccepted", accepted
    assert accepted["source"] == "strategy" and accepted["actor"] == "strategy"
    assert accepted["payload"]["strategy"] == "mm-paper"

    stopped = client.post("/strategies/mm-paper/stop")
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    sent = stopped.json()["orders_sent"]
    time.sleep(0.2)
    assert strategy(client)["orders_sent"] == sent  # nothing more after the stop


def test_a_kill_switch_on_the_strategy_stops_it_and_cancels_its_quotes(
        client: TestClient) -> None:
    assert client.post("/strategies/mm-paper/start").status_code == 200
    wait_for(lambda: my_orders(client, "accepted"))
    tripped = client.post("/kill-switches/trip",
                          json={"scope": "strategy:mm-paper", "reason": "test"})
    assert tripped.status_code == 200, tripped.text
    killed = wait_for(lambda: (s := strategy(client))["status"] != "running" and s)
    assert killed["status"] == "stopped by kill switch", killed
    assert "kill switch tripped on strategy:mm-paper" in killed["errors"]
    # The engine canceled its resting quotes ...
    wait_for(lambda: not my_orders(client, "accepted"))
    assert my_orders(client, "canceled")
    # ... and refuses new orders under its tag, from anyone.
    trader = headers_for(client, "tester")
    refused = client.post("/orders", headers=trader, json={
        "client_order_id": "after-kill-1", "account_id": "ACC-ALPHA", "symbol": "AAPL",
        "side": "buy", "quantity": 10, "order_type": "limit", "limit_price": "150.00",
        "strategy": "mm-paper"})
    assert refused.status_code == 201 and refused.json()["reject"]["control"] == "kill_switch"


def test_cli_lists_the_configured_strategies_without_a_server(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from api.cli import app

    monkeypatch.setenv("MARKETLOG_STRATEGIES", settings.model_dump_json(include={"strategies"})
                       .removeprefix('{"strategies":').removesuffix("}"))
    monkeypatch.setenv("MARKETLOG_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["strategies", "list", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 0, result.output
    assert "mm-paper" in result.output and "market_maker" in result.output
    assert "no server" in result.output
