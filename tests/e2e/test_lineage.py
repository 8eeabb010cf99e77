"""An order's lineage (issue 8, item 2) through the real app over HTTP and through the CLI, on
SQLite and PostgreSQL: every event of the order in log order, the controls and the inputs
each used, who approved each limit version in force, fills with trade id and counterparty,
rejections, replaces and cancels, and each record's chain links checked against the store.

The venue has no liquidity provider: a resting sell of another account makes the fill.
"""

from __future__ import annotations

import itertools
import re
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app as cli_app
from infrastructure.settings import Settings
from tests.auth import login, user_headers

pytestmark = pytest.mark.timeout(300)

_ids = itertools.count(1)
HEX64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture
def client(backend: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(backend)) as c:
        login(c, "tester")  # a trader of every account (tests/config/test.toml)
        yield c


def place(client: TestClient, **fields: Any) -> dict[str, Any]:
    body = {"client_order_id": f"lin-{next(_ids)}-{uuid.uuid4().hex[:6]}",
            "account_id": "ACC-ALPHA", "symbol": "AAPL", "side": "buy", "quantity": 100,
            "order_type": "limit", "limit_price": "190.00", "time_in_force": "gtc", **fields}
    r = client.post("/orders", json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def act(client: TestClient, user: str, path: str, expected: int = 200,
        **body: Any) -> dict[str, Any]:
    r = client.post(path, json=body, headers=user_headers(client, user))
    assert r.status_code == expected, r.text
    return r.json()  # type: ignore[no-any-return]


def lineage_of(client: TestClient, order_id: str, user: str = "abe") -> dict[str, Any]:
    r = client.get(f"/orders/{order_id}/lineage", headers=user_headers(client, user))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def approve(client: TestClient, scope: str, field: str, value: str) -> str:
    """A maker-checker change: rose requests, raj approves; the change id."""
    change = act(client, "rose", f"/limits/{scope}/requests", 201, field=field, value=value,
                 reason=f"desk asks {value}")
    act(client, "raj", f"/limits/requests/{change['change_id']}/approve",
        reason=f"reviewed {value}")
    return change["change_id"]  # type: ignore[no-any-return]


def wait_for_status(client: TestClient, order_id: str, status: str) -> None:
    import time
    deadline = time.monotonic() + 10
    while client.get(f"/orders/{order_id}").json()["status"] != status:
        assert time.monotonic() < deadline, f"order never reached {status}"
        time.sleep(0.05)


def test_lineage_of_an_order_accepted_partially_filled_replaced_and_canceled(
        client: TestClient, backend: Settings) -> None:
    account_change = approve(client, "account:ACC-ALPHA", "max_order_quantity", "20000")
    symbol_change = approve(client, "symbol:AAPL", "max_order_quantity", "5000")
    # A sell of another account rests first: the buy below takes 30 of it (a partial fill).
    resting = place(client, account_id="ACC-BETA", side="sell", quantity=30)
    order = place(client, quantity=100)
    assert (order["status"], order["filled_quantity"]) == ("partially_filled", 30)
    oid = order["order_id"]
    r = client.post(f"/orders/{oid}/replace", json={"quantity": 80, "limit_price": "189.50"})
    assert r.status_code == 200, r.text
    r = client.post(f"/orders/{oid}/cancel")
    assert r.status_code == 200, r.text
    wait_for_status(client, oid, "canceled")

    found = lineage_of(client, oid)
    assert (found["order_id"], found["account_id"], found["symbol"], found["status"]) == (
        oid, "ACC-ALPHA", "AAPL", "canceled")
    records = found["records"]
    assert [r["event_type"] for r in records] == [
        "OrderAccepted", "OrderFilled", "ReplaceRequested", "OrderReplaced",
        "CancelRequested", "OrderCanceled"]
    positions = [r["position"] for r in records]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert [r["aggregate_version"] for r in records] == list(range(1, 7))
    # The same events, in the same order, as the audit trail holds them.
    trail = client.get("/audit", params={"order_id": oid, "limit": 100},
                       headers=user_headers(client, "abe")).json()
    assert [(e["position"], e["event_type"]) for e in trail] == [
        (r["position"], r["event_type"]) for r in records]

    accepted, fill, replace, replaced, cancel, canceled = records
    d = accepted["details"]
    assert d["controls"][0] == "session" and "credit" in d["controls"]
    assert "firm_credit" in d["controls"] and "price_collar" in d["controls"]
    assert d["reference_price"] and d["reference_source"] and d["reference_as_of"].endswith("Z")
    assert d["exposure_before"] is not None and d["firm_exposure_before"] is not None
    assert d["limits"]["max_order_quantity"] == "20000"
    assert "rate" in d["inputs"] and d["inputs"]["firm_limits"].startswith("v")
    # Who made each limit version the decision used.
    by_scope = {lim["scope"]: lim for lim in accepted["limits_in_force"]}
    acc = by_scope["account:ACC-ALPHA"]
    assert (acc["origin"], acc["change_id"], acc["approver"], acc["new_value"]) == (
        "approved", account_change, "raj", "20000")
    assert acc["version"] == d["limits_version"] and acc["reason"] == "reviewed 20000"
    assert (acc["request"]["requester"], acc["request"]["reason"]) == ("rose", "desk asks 20000")
    assert acc["request"]["position"] < acc["position"] < accepted["position"]
    assert by_scope["firm"]["origin"] == "configuration seed"
    aapl = by_scope["symbol:AAPL"]  # inputs.max_qty: "AAPL limits v<N>"
    assert (aapl["origin"], aapl["change_id"], aapl["approver"], aapl["new_value"]) == (
        "approved", symbol_change, "raj", "5000")
    assert d["inputs"]["max_qty"] == f"AAPL limits v{aapl['version']}"

    assert (fill["details"]["fill_quantity"], fill["details"]["fill_price"]) == (30, "190.00")
    assert fill["details"]["counterparty"] == resting["order_id"]
    assert fill["details"]["trade_id"] and fill["details"]["liquidity"] == "taker"
    assert (replace["details"]["quantity"], replace["details"]["limit_price"]) == (80, "189.50")
    assert replace["details"]["controls"] and replace["limits_in_force"]
    assert (replaced["details"]["old_quantity"], replaced["details"]["quantity"]) == (100, 80)
    assert cancel["details"]["reason"] == "requested" and cancel["actor"] == "tester"
    assert canceled["details"]["canceled_quantity"] == 50

    # Chain links: each record's own hash recomputed, the store's record the same, and its
    # prev_hash is the hash of the store's record just before it.
    assert found["chain_ok"] and found["checked_against_store"]
    for r in records:
        chain = r["chain"]
        assert chain["position"] == r["position"]
        assert HEX64.match(chain["hash"]) and HEX64.match(chain["prev_hash"])
        assert (chain["recomputed"], chain["store"], chain["linked"], chain["ok"]) == (
            True, "same", True, True)
    whole = {e["position"]: e["payload"]["hash"] for e in client.get(
        "/audit", params={"limit": 10_000}, headers=user_headers(client, "abe")).json()}
    for r in records:
        assert r["chain"]["prev_hash"] == whole[r["position"] - 1]


def test_lineage_of_a_rejected_order_names_control_threshold_and_observed(
        client: TestClient) -> None:
    order = place(client, quantity=10_001)  # max_order_quantity 10000 (configuration)
    assert order["status"] == "rejected"
    found = lineage_of(client, order["order_id"], "cleo")
    [rejected] = found["records"]
    assert rejected["event_type"] == "OrderRejected"
    d = rejected["details"]
    assert (d["control"], d["threshold"], d["observed"]) == ("max_qty", "10000", "10001")
    assert "max_qty" not in d["controls"] and d["controls"][0] == "session"
    [limits] = rejected["limits_in_force"]
    assert (limits["scope"], limits["origin"]) == ("account:ACC-ALPHA", "configuration seed")
    assert "max_qty" in rejected["summary"] and found["chain_ok"]
    assert found["status"] == "rejected"


def test_a_trader_reads_only_the_lineage_of_their_accounts(client: TestClient) -> None:
    order = place(client, account_id="ACC-DELTA", quantity=7)
    oid = order["order_id"]
    assert lineage_of(client, oid, "bob")["account_id"] == "ACC-DELTA"  # bob trades DELTA
    r = client.get(f"/orders/{oid}/lineage", headers=user_headers(client, "maria"))
    assert r.status_code == 403, r.text
    assert "maria is not entitled to ACC-DELTA" in r.json()["detail"]
    # The refusal is a record (AccessDenied), as every denial is.
    import time
    deadline = time.monotonic() + 10
    while True:
        denials = client.get("/access/denials", headers=user_headers(client, "abe")).json()
        hits = [e for e in denials["recorded"] if e["actor"] == "maria"
                and e["payload"]["action"] == f"GET /orders/{oid}/lineage"]
        if hits or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert hits, denials


def test_unknown_order_is_404_and_a_malformed_id_is_422(client: TestClient) -> None:
    r = client.get(f"/orders/{uuid.uuid4()}/lineage")
    assert r.status_code == 404, r.text
    r = client.get("/orders/not-a-uuid/lineage")
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["path", "order_id"]
    r = client.get(f"/orders/{uuid.uuid4()}/lineage", headers={"Authorization": "Bearer x"})
    assert r.status_code == 401


def test_a_read_model_row_edited_after_projection_fails_its_chain_check(
        client: TestClient, backend: Settings) -> None:
    order = place(client, quantity=12)
    oid = order["order_id"]
    assert lineage_of(client, oid)["chain_ok"]
    # An insider edits the audit trail (a read model: no trigger protects it) to say the
    # order was for 13: the row's hash no longer matches, and the store disagrees.
    engine: sa.Engine = client.app.state.system.read_models  # type: ignore[attr-defined]
    with engine.begin() as conn:
        payload = conn.execute(sa.text(
            "SELECT payload FROM audit_trail WHERE order_id = :o AND event_type = "
            "'OrderAccepted'"), {"o": oid}).scalar_one()
        conn.execute(sa.text("UPDATE audit_trail SET payload = :p WHERE order_id = :o AND "
                             "event_type = 'OrderAccepted'"),
                     {"p": payload.replace('"quantity":12', '"quantity":13'), "o": oid})
    found = lineage_of(client, oid)
    [accepted] = found["records"]
    assert accepted["details"]["quantity"] == 13
    assert accepted["chain"]["recomputed"] is False and accepted["chain"]["store"] == "same"
    assert not accepted["chain"]["ok"] and not found["chain_ok"]


# ------------------------------------------------------------------------------- the CLI


def _cli_env(settings: Settings) -> dict[str, str | None]:
    return {"MARKETLOG_DATA_DIR": str(settings.data_dir),
            "MARKETLOG_DATABASE_URL": settings.database_url,
            "MARKETLOG_READER_DATABASE_URL": settings.reader_database_url,
            "MARKETLOG_READ_DATABASE_URL": None, "MARKETLOG_KAFKA_BOOTSTRAP": None,
            "COLUMNS": "220", "NO_COLOR": "1"}


def test_cli_prints_the_timeline_with_inputs_approvals_and_chain_checks(
        client: TestClient, backend: Settings) -> None:
    approve(client, "account:ACC-ALPHA", "max_order_quantity", "15000")
    place(client, account_id="ACC-BETA", side="sell", quantity=5, limit_price="190.00")
    order = place(client, quantity=20)
    oid = order["order_id"]
    runner = CliRunner()
    result = runner.invoke(cli_app, ["lineage", oid], env=_cli_env(backend))
    assert result.exit_code == 0, result.output
    out = result.output
    assert oid in out and "OrderAccepted" in out and "OrderFilled" in out
    assert "controls session" in out and "reference price" in out
    assert "approved by raj" in out and "requested by rose" in out
    assert "firm v1: configuration seed" in out
    assert out.count("\nok") + out.count(" ok") >= 2

    as_json = runner.invoke(cli_app, ["lineage", oid, "--json"], env=_cli_env(backend))
    assert as_json.exit_code == 0, as_json.output
    assert '"chain_ok": true' in as_json.output

    missing = runner.invoke(cli_app, ["lineage", str(uuid.uuid4())], env=_cli_env(backend))
    assert missing.exit_code == 2 and "no order" in missing.output
    malformed = runner.invoke(cli_app, ["lineage", "nope"], env=_cli_env(backend))
    assert malformed.exit_code == 2 and "not an order id" in malformed.output


def test_sqlite_store_row_tampered_is_named_by_the_lineage(tmp_path: Any) -> None:
    """A store record changed behind the engine's back (triggers dropped, as an insider
    would): the lineage reports that the store's record no longer holds its hash."""
    settings = Settings(data_dir=tmp_path / "data", database_url=None, read_database_url=None,
                        database_owner_url=None, reader_database_url=None,
                        chain_anchor_file=None)
    with TestClient(create_app(settings)) as c:
        login(c, "tester")
        order = place(c, quantity=11)
        oid = order["order_id"]
        position = lineage_of(c, oid)["records"][0]["position"]
        db = sqlite3.connect(settings.sqlite_store_path, isolation_level=None)
        try:
            for name in ("no_update", "no_delete", "append_only"):
                db.execute(f"DROP TRIGGER IF EXISTS stored_events_{name}")
            state = db.execute("SELECT state FROM stored_events WHERE rowid = ?",
                               (position,)).fetchone()[0]
            db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?",
                       (bytes(state).replace(b'"quantity":11', b'"quantity":99'), position))
        finally:
            db.close()
        found = lineage_of(c, oid)
        chain = found["records"][0]["chain"]
        assert (chain["recomputed"], chain["store"], chain["ok"]) == (True, "changed", False)
        assert not found["chain_ok"]
