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

LIVE = ("accepted", "partially_filled", "pending_cancel", "pending_replace")

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


def run_records(client: TestClient, event_type: str) -> list[dict[str, Any]]:
    response = client.get("/audit", params={"account_id": "ACC-ALPHA", "limit": 10_000})
    assert response.status_code == 200, response.text
    return [e for e in response.json() if e["event_type"] == event_type]


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
    # The stop canceled its quotes (none rests unmanaged), each cancel naming the stop.
    [stop] = wait_for(lambda: run_records(client, "StrategyStopped"))
    assert stop["payload"]["canceled_orders"], stop
    wait_for(lambda: not [o for o in my_orders(client) if o["status"] in LIVE])
    for order_id in stop["payload"]["canceled_orders"]:
        trail = client.get("/audit", params={"order_id": order_id}).json()
        [request] = [e for e in trail if e["event_type"] == "CancelRequested"]
        assert request["payload"]["reason"] == "strategy_stopped"
        assert trail.index(request) == len(trail) - 2  # the venue's answer follows


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
    # The end of the run is recorded once, by the desk, with the switch as its reason; a
    # later stop by a user records nothing more.
    assert client.post("/strategies/mm-paper/stop").status_code == 200
    stops = wait_for(lambda: run_records(client, "StrategyStopped"))
    time.sleep(0.3)
    assert run_records(client, "StrategyStopped") == stops
    [stop] = stops
    assert (stop["actor"], stop["source"]) == ("system", "system")
    assert stop["payload"]["reason"] == "kill switch tripped on strategy:mm-paper"
    assert stop["payload"]["run"] == 1 and stop["payload"]["orders_sent"] >= 2
    [start] = run_records(client, "StrategyStarted")
    assert (start["actor"], start["payload"]["reason"]) == ("rose", "started by rose")


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


def test_a_restart_starts_a_new_recorded_run_whose_orders_are_new(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Run 1, a server restart on the same data, run 2: the second run's orders are new
    orders (the engine's idempotency never takes them for resends of the first run's), and
    the log records who started each run, with what, and why each ended."""
    import infrastructure.strategy_desk as desk
    from api.cli import app
    from commands.outcomes import OutcomeKind
    from commands.strategy_runner import engine_sender
    from domain.events import OrderAccepted, OrderRejected
    from domain.governance_events import StrategyStarted, StrategyStopped
    from infrastructure.event_store import EventStore

    kinds: list[tuple[str, str]] = []  # (client order id, outcome kind) of every new order

    def recording_sender(engine: Any) -> Any:
        send = engine_sender(engine)

        def sent(commands: list[Any]) -> list[Any]:
            outcomes = send(commands)
            for command, outcome in zip(commands, outcomes, strict=True):
                if hasattr(command, "client_order_id"):
                    kinds.append((command.client_order_id,
                                  getattr(outcome, "kind", type(outcome).__name__)))
            return outcomes
        return sent

    monkeypatch.setattr(desk, "engine_sender", recording_sender)
    for run in (1, 2):
        with TestClient(create_app(settings)) as client:
            login(client, "rose")
            assert strategy(client)["run"] == run - 1  # the last recorded run, from the log
            started = client.post("/strategies/mm-paper/start")
            assert started.status_code == 200, started.text
            assert started.json()["run"] == run
            wait_for(lambda: (s := strategy(client))["orders_sent"] >= 2 and s)
            wait_for(lambda run=run: [o for o in my_orders(client, "accepted")
                                      if o["client_order_id"].startswith(f"mm-paper.r{run}-")])
        # Leaving the client shuts the server down: the run is recorded as ended then, and
        # its quotes are canceled. Run 2 starts at once: its first quotes, at run 1's
        # prices within the duplicate window, may be refused (``duplicate``); the maker
        # sends them again once the window has passed, without waiting for the mid to move.

    store = EventStore.open(settings)
    try:
        log = [e for _, e in store.read()]
    finally:
        store.close()
    runs = [e for e in log if isinstance(e, StrategyStarted | StrategyStopped)]
    assert [(type(e).__name__, e.run, e.actor, e.reason) for e in runs] == [
        ("StrategyStarted", 1, "rose", "started by rose"),
        ("StrategyStopped", 1, "system", "server shutdown"),
        ("StrategyStarted", 2, "rose", "started by rose"),
        ("StrategyStopped", 2, "system", "server shutdown"),
    ]
    assert [e.version for e in runs] == [1, 2, 3, 4]  # one stream, gapless
    assert len({e.strategy_uuid for e in runs}) == 1
    assert dict(runs[0].params) == {"max_inventory": "50", "size": "10", "spread_ticks": "3",
                                    "symbol": "AAPL", "tick_size": "0.01"}
    assert (runs[0].kind, runs[0].account_id, runs[0].source) == ("market_maker", "ACC-ALPHA",
                                                                   "api")
    decisions = {run: [e for e in log if isinstance(e, OrderAccepted | OrderRejected)
                       and e.client_order_id.startswith(f"mm-paper.r{run}-")] for run in (1, 2)}
    for stopped in (runs[1], runs[3]):
        # Every order the run sent was decided and recorded: none answered from the
        # idempotency records (EXISTING or CONFLICT journal nothing).
        assert stopped.orders_sent is not None and stopped.orders_sent >= 2
        assert len(decisions[stopped.run]) == stopped.orders_sent
        assert sorted(int(e.client_order_id.rsplit("-", 1)[1])
                      for e in decisions[stopped.run]) == list(range(1, stopped.orders_sent + 1))
    assert not ({e.order_id for e in decisions[1]} & {e.order_id for e in decisions[2]})
    assert any(isinstance(e, OrderAccepted) for e in decisions[2])
    assert kinds and all(kind == OutcomeKind.CREATED for _, kind in kinds), kinds
    assert {c.split("-", 2)[1] for c, _ in kinds} == {"paper.r1", "paper.r2"}

    # Replay: the views rebuilt from the log are the live ones.
    monkeypatch.setenv("MARKETLOG_DATA_DIR", str(settings.data_dir))
    rebuilt = CliRunner().invoke(app, ["rebuild", "--into",
                                       f"sqlite:///{tmp_path / 'rebuilt.sqlite'}",
                                       "--compare-live"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "digests match" in rebuilt.output


def test_a_run_its_process_never_recorded_as_ended_is_closed_by_the_next_start(
        settings: Settings) -> None:
    """A process that dies (or whose engine can no longer write at shutdown) leaves its run
    open in the log: the next start records that run's end, without counts, and opens the
    next run."""
    from domain.events import OrderAccepted
    from domain.governance_events import StrategyStarted, StrategyStopped
    from domain.values import Source
    from infrastructure.bootstrap import bootstrap
    from infrastructure.strategy_desk import UNRECORDED

    system = bootstrap(settings)
    try:
        assert system.strategies.start("mm-paper", "rose", Source.API)["run"] == 1
        wait_for(lambda: system.strategies.describe("mm-paper")["orders_sent"] >= 2)
        # The process "dies": its strategy thread ends with it, nothing is recorded.
        system.strategies.threads.pop("mm-paper").stop()
    finally:
        system.close()
    system = bootstrap(settings)
    try:
        assert system.engine.book.gov.strategies["mm-paper"][:2] == (1, True)
        assert system.strategies.describe("mm-paper")["run"] == 1
        assert system.strategies.start("mm-paper", "rose", Source.API)["run"] == 2
        wait_for(lambda: system.strategies.describe("mm-paper")["orders_sent"] >= 1)
        system.strategies.stop("mm-paper", "rose", Source.API, "end of test")
        log = [e for _, e in system.store.read()]
        left = [o for o in system.engine.book.live_orders() if o.strategy == "mm-paper"]
    finally:
        system.close()
    # Run 1's quotes, re-released to the venue at the recovery, were canceled by the stop
    # recorded for it at the next start; nothing of either run is left live.
    assert left == []
    [first_stop] = [e for e in log if isinstance(e, StrategyStopped) and e.run == 1]
    run_1 = {str(e.order_id) for e in log if isinstance(e, OrderAccepted)
             and e.client_order_id.startswith("mm-paper.r1-")}
    assert first_stop.canceled_orders and set(first_stop.canceled_orders) <= run_1
    runs = [(type(e).__name__, e.run, e.actor, e.reason, getattr(e, "orders_sent", "-"))
            for e in log if isinstance(e, StrategyStarted | StrategyStopped)]
    assert runs[:3] == [("StrategyStarted", 1, "rose", "started by rose", "-"),
                        ("StrategyStopped", 1, "system", UNRECORDED, None),
                        ("StrategyStarted", 2, "rose", "started by rose", "-")]
    assert runs[3][:4] == ("StrategyStopped", 2, "rose", "end of test")
    assert isinstance(runs[3][4], int) and runs[3][4] >= 1
