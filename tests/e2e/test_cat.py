"""FINRA CAT order event files end to end (issue 8, item 5), on SQLite and PostgreSQL: a
scripted trading day through the real app (orders accepted, partially filled, replaced,
canceled, expired at the close, one from another CAT Reporter, one rejected; a GTC order
carried into the next day), then the files through ``GET /cat/{date}/...`` and the
``marketlog cat`` command: counts and key fields per type, every line valid against its
JSON Schema, the metadata's count and SHA-256, byte-identical generations, API = CLI, an
empty day, invalid dates, and traders refused (recorded).

The liquidity provider is off (as in tests/e2e/test_api.py): only the test's orders trade.
The trader "tester" is entitled to every account; ACC-DELTA is another CAT Reporter
(``[cat] senders`` of tests/config/test.toml), ACC-GAMMA proprietary (P).
"""

from __future__ import annotations

import bz2
import hashlib
import itertools
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app as cli_app
from infrastructure.settings import Settings
from projections.cat import cat_timestamp
from tests.auth import login, user_headers

pytestmark = pytest.mark.timeout(300)

_ids = itertools.count(1)
NEXT_DAY = "2099-01-02"  # a later date an operator may open after today's close
SCHEMAS = {
    name: jsonschema_rs.Draft202012Validator(json.loads(
        resources.files("projections").joinpath(f"cat_schemas/{name}.json").read_text()))
    for name in ("MENO", "MEOA", "MEOM", "MEOC", "MEOT", "metadata")
}


@pytest.fixture
def client(backend: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(backend)) as c:
        login(c, "tester")
        yield c


def place(client: TestClient, **fields: Any) -> dict[str, Any]:
    body = {"client_order_id": f"cat-{next(_ids)}-{uuid.uuid4().hex[:6]}",
            "account_id": "ACC-ALPHA", "symbol": "AAPL", "side": "buy", "quantity": 10,
            "order_type": "limit", "limit_price": "190.00", "time_in_force": "day", **fields}
    r = client.post("/orders", json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def ok(response: Any) -> Any:
    assert response.status_code == 200, response.text
    return response


def cat_files(client: TestClient, day: str, user: str = "cleo") -> tuple[bytes, bytes]:
    headers = user_headers(client, user)
    data = ok(client.get(f"/cat/{day}/order-events", headers=headers))
    assert data.headers["content-type"] == "application/x-bzip2"
    meta = ok(client.get(f"/cat/{day}/metadata", headers=headers))
    return data.content, meta.content


def lines_of(data: bytes) -> list[dict[str, Any]]:
    records = [orjson.loads(line) for line in bz2.decompress(data).splitlines()]
    for record in records:  # every line against the schema the project keeps for its type
        errors = [e.message for e in SCHEMAS[record["type"]].iter_errors(record)]
        assert errors == [], (record, errors)
    return records


def audit_ts(client: TestClient, order_id: str, event_type: str) -> list[int]:
    r = ok(client.get("/audit", params={"order_id": order_id, "limit": 1000},
                      headers=user_headers(client, "abe")))
    return [e["ts_ns"] for e in r.json() if e["event_type"] == event_type]


def cli_env(settings: Settings) -> dict[str, str | None]:
    return {"MARKETLOG_DATA_DIR": str(settings.data_dir),
            "MARKETLOG_DATABASE_URL": settings.database_url,
            "MARKETLOG_READER_DATABASE_URL": settings.reader_database_url,
            "MARKETLOG_READ_DATABASE_URL": None, "MARKETLOG_DATABASE_OWNER_URL": None,
            "MARKETLOG_KAFKA_BOOTSTRAP": None, "COLUMNS": "200", "NO_COLOR": "1"}


def run_cli(settings: Settings, *args: str) -> Any:
    return CliRunner().invoke(cli_app, ["cat", *args], env=cli_env(settings))


def test_a_scripted_day_gives_the_expected_cat_events(client: TestClient, backend: Settings,
                                                       tmp_path: Path) -> None:
    today = ok(client.get("/trading-day")).json()["date"]
    # A customer's sell rests; a proprietary buy takes 40 of it: a partial fill.
    sell = place(client, side="sell", quantity=100, limit_price="190.00")
    buy = place(client, account_id="ACC-GAMMA", quantity=40, limit_price="190.00")
    assert buy["status"] == "filled"
    # The rest of the sell is replaced (80 at 190.50: 40 left), then canceled.
    ok(client.post(f"/orders/{sell['order_id']}/replace",
                   json={"quantity": 80, "limit_price": "190.50"}))
    ok(client.post(f"/orders/{sell['order_id']}/cancel"))
    # An order received from another broker-dealer, which expires at the close.
    member = place(client, account_id="ACC-DELTA", quantity=12, limit_price="189.00")
    # A GTC order that carries over into the next day, where it is canceled.
    gtc = place(client, quantity=5, limit_price="188.00", time_in_force="gtc")
    # Refused on receipt by a pre-trade control: never reaches CAT.
    rejected = place(client, symbol="ZZZZ")
    assert rejected["status"] == "rejected"
    rose = user_headers(client, "rose")
    ok(client.post("/trading-day/close", json={"reason": "end of the CAT day"}, headers=rose))
    ok(client.post("/trading-day/open", json={"reason": "next day",
                                               "trading_date": NEXT_DAY}, headers=rose))
    ok(client.post(f"/orders/{gtc['order_id']}/cancel"))

    data, meta_bytes = cat_files(client, today)
    records = lines_of(data)
    assert Counter(r["type"] for r in records) == {
        "MENO": 3, "MEOA": 1, "MEOM": 1, "MEOC": 2, "MEOT": 2}
    assert rejected["order_id"] not in {r["orderID"] for r in records}
    by_order: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_order.setdefault(r["orderID"], []).append(r)
    assert [r["type"] for r in by_order[sell["order_id"]]] == ["MENO", "MEOT", "MEOM", "MEOC"]
    meno, meot, meom, meoc = by_order[sell["order_id"]]
    assert (meno["side"], meno["quantity"], meno["price"], meno["firmDesignatedID"],
            meno["accountHolderType"], meno["timeInForce"]) == (
        "SL", 100, 190, "ACC-ALPHA", "A", {"DAY": int(today.replace("-", ""))})
    assert (meot["quantity"], meot["price"], meot["side"], meot["leavesQty"]) == (40, 190, "SL", 60)
    assert (meom["quantity"], meom["price"], meom["leavesQty"]) == (80, 190.5, 40)
    assert (meoc["cancelQty"], meoc["leavesQty"], meoc["initiator"]) == (40, 0, "C")
    # The order key is the acceptance, the event time the event's own, to the nanosecond.
    [accepted_ns] = audit_ts(client, sell["order_id"], "OrderAccepted")
    [canceled_ns] = audit_ts(client, sell["order_id"], "OrderCanceled")
    assert {r["orderKeyDate"] for r in by_order[sell["order_id"]]} == {cat_timestamp(accepted_ns)}
    assert meoc["eventTimestamp"] == cat_timestamp(canceled_ns)
    [buy_meno, buy_meot] = by_order[buy["order_id"]]
    assert (buy_meno["accountHolderType"], buy_meot["side"], buy_meot["tradeID"]) == (
        "P", "B", meot["tradeID"])  # both sides of one trade
    meoa, expired = by_order[member["order_id"]]
    assert (meoa["type"], meoa["senderIMID"], meoa["routedOrderID"]) == (
        "MEOA", "BRKD", member["client_order_id"])
    assert (expired["type"], expired["cancelQty"], expired["initiator"]) == ("MEOC", 12, "F")
    assert [r["type"] for r in by_order[gtc["order_id"]]] == ["MENO"]
    assert len({r["firmROEID"] for r in records}) == len(records)
    assert {r["CATReporterIMID"] for r in records} == {"MKTL"}

    meta = orjson.loads(meta_bytes)
    assert [e.message for e in SCHEMAS["metadata"].iter_errors(meta)] == []
    assert meta["recordCount"] == len(records) == 9
    assert meta["compressedHash"] == hashlib.sha256(data).hexdigest()
    assert meta["fileName"] == f"MKTL_{today.replace('-', '')}_OrderEvents_000001.json.bz2"

    # The next day: the carried GTC order's cancel, under its original key.
    [next_cancel] = lines_of(cat_files(client, NEXT_DAY, "abe")[0])
    assert (next_cancel["type"], next_cancel["orderID"], next_cancel["cancelQty"],
            next_cancel["orderKeyDate"]) == (
        "MEOC", gtc["order_id"], 5, by_order[gtc["order_id"]][0]["orderKeyDate"])

    # Deterministic: again through the API (other roles), then the CLI: the same bytes.
    assert cat_files(client, today, "rose") == (data, meta_bytes)
    assert cat_files(client, today, "admin") == (data, meta_bytes)
    result = run_cli(backend, "--date", today, "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    written = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert written == {meta["fileName"]: data,
                       meta["fileName"].replace(".json.bz2", ".meta.json"): meta_bytes}
    assert "MEOT" in result.output and meta["compressedHash"] in result.output
    assert " 9" in result.output


def test_an_empty_day_is_a_valid_empty_file(client: TestClient, backend: Settings,
                                            tmp_path: Path) -> None:
    place(client)  # today has an order; 2001-01-02 never opened
    data, meta_bytes = cat_files(client, "2001-01-02")
    assert bz2.decompress(data) == b""
    meta = orjson.loads(meta_bytes)
    assert [e.message for e in SCHEMAS["metadata"].iter_errors(meta)] == []
    assert (meta["recordCount"], meta["compressedHash"], meta["tradingDate"]) == (
        0, hashlib.sha256(data).hexdigest(), "20010102")
    result = run_cli(backend, "--date", "2001-01-02", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert (tmp_path / meta["fileName"]).read_bytes() == data


@pytest.mark.parametrize("day", ["2026-13-01", "yesterday", "2026-02-30", "20260102"])
def test_an_invalid_date_is_422_naming_it(client: TestClient, backend: Settings,
                                          tmp_path: Path, day: str) -> None:
    for path in (f"/cat/{day}/order-events", f"/cat/{day}/metadata"):
        r = client.get(path, headers=user_headers(client, "cleo"))
        assert r.status_code == 422, r.text
        assert [d["loc"] for d in r.json()["detail"]] == [["path", "date"]]
    result = run_cli(backend, "--date", day, "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "--date" in result.output
    assert not (tmp_path / "out").exists()


def test_a_trader_is_refused_and_the_refusal_recorded(client: TestClient) -> None:
    today = ok(client.get("/trading-day")).json()["date"]
    for path in (f"/cat/{today}/order-events", f"/cat/{today}/metadata"):
        r = client.get(path)  # the trader "tester"
        assert r.status_code == 403, r.text
        assert "trader" in r.json()["detail"]
    abe = user_headers(client, "abe")
    recorded: list[Any] = []
    for _ in range(100):  # a denial is recorded through the engine, not awaited
        recorded = ok(client.get("/access/denials", headers=abe)).json()["recorded"]
        if len(recorded) >= 2:
            break
        time.sleep(0.05)
    assert [(e["actor"], e["payload"]["action"]) for e in recorded] == [
        ("tester", f"GET /cat/{today}/order-events"), ("tester", f"GET /cat/{today}/metadata")]
