"""The daily 15c3-5 report (issue 8, item 1) through the real app and CLI, on SQLite and
PostgreSQL: a scripted day with every figure computed by hand below, the report's JSON,
HTML and PDF, its certification, and a replay into a fresh database giving the same bytes.

The scripted day (users of tests/config/test.toml; every order GTC, so the close keeps them):

====  =========================================  ===========================================
 #    order (trader "tester")                    outcome
====  =========================================  ===========================================
 1    ALPHA buy 1000 AAPL @ 190.00               accepted, rests: 190,000 entered
 2    GAMMA buy 10 TSLA @ 250.00                 rejected: restricted (GAMMA's list)
 3    ALPHA buy 20000 AAPL @ 190.00              rejected: max_qty (10,000)
 4    BETA buy 100 AAPL @ 250.00                 rejected: price_collar (31.6% off 190)
 5    BETA sell 400 AAPL @ 190.00                accepted, fills 400 against #1 (taker)
 --   rose requests firm credit_limit 700,000    raj approves (temporary, expires in 1 h)
 6    DELTA buy 1000 MSFT @ 410.00               accepted: firm 266,000 + 410,000 = 676,000
 7    DELTA buy 100 MSFT @ 410.00                rejected: firm_credit (717,000 > 700,000)
 --   rose trips account:ACC-GAMMA
 8    GAMMA buy 10 AAPL @ 190.00                 rejected: kill_switch
 --   raj resets; admin entitles maria to ACC-BETA; the day closes, the next one opens
====  =========================================  ===========================================

Exposure (gross): ALPHA 190,000 (600 open x 190 + 400 filled x 190), BETA 76,000 (filled),
DELTA 410,000; firm 676,000 = 96.57% of 700,000 at its peak (#6).
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app as cli
from infrastructure.settings import Settings
from projections.report_15c3_5 import canonical_bytes
from tests.auth import login, user_headers

pytestmark = pytest.mark.timeout(300)

_ids = itertools.count(1)
runner = CliRunner()


@pytest.fixture
def client(backend: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(backend)) as c:
        login(c, "tester")
        yield c


def place(client: TestClient, account: str, side: str, quantity: int, symbol: str,
          price: str) -> dict[str, Any]:
    r = client.post("/orders", json={
        "client_order_id": f"rep-{next(_ids)}-{uuid.uuid4().hex[:6]}", "account_id": account,
        "symbol": symbol, "side": side, "quantity": quantity, "order_type": "limit",
        "limit_price": price, "time_in_force": "gtc"})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def act(client: TestClient, user: str, path: str, expected: int = 200, **body: Any) -> Any:
    r = client.post(path, json=body, headers=user_headers(client, user))
    assert r.status_code == expected, r.text
    return r.json()


def get(client: TestClient, path: str, user: str = "cleo", expected: int = 200,
        **params: Any) -> Any:
    r = client.get(path, params=params, headers=user_headers(client, user))
    assert r.status_code == expected, r.text
    return r.json() if "json" in r.headers.get("content-type", "") else r.text


def cli_env(settings: Settings) -> dict[str, str | None]:
    return {"MARKETLOG_DATA_DIR": str(settings.data_dir),
            "MARKETLOG_DATABASE_URL": settings.database_url,
            "MARKETLOG_READ_DATABASE_URL": None,
            "MARKETLOG_READER_DATABASE_URL": settings.reader_database_url,
            "MARKETLOG_KAFKA_BOOTSTRAP": None, "COLUMNS": "200", "NO_COLOR": "1"}


def scripted_day(client: TestClient) -> dict[str, Any]:
    day = get(client, "/trading-day")
    assert day["open"], day
    statuses = [
        place(client, "ACC-ALPHA", "buy", 1000, "AAPL", "190.00")["status"],
        place(client, "ACC-GAMMA", "buy", 10, "TSLA", "250.00")["reject"]["control"],
        place(client, "ACC-ALPHA", "buy", 20000, "AAPL", "190.00")["reject"]["control"],
        place(client, "ACC-BETA", "buy", 100, "AAPL", "250.00")["reject"]["control"],
        place(client, "ACC-BETA", "sell", 400, "AAPL", "190.00")["status"],
    ]
    expires = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    change = act(client, "rose", "/limits/firm/requests", 201, field="credit_limit",
                 value="700000", reason="drill: tight firm limit",
                 expires_at=expires.isoformat().replace("+00:00", "Z"))["change_id"]
    act(client, "raj", f"/limits/requests/{change}/approve", reason="approved for the drill")
    statuses += [
        place(client, "ACC-DELTA", "buy", 1000, "MSFT", "410.00")["status"],
        place(client, "ACC-DELTA", "buy", 100, "MSFT", "410.00")["reject"]["control"],
    ]
    act(client, "rose", "/kill-switches/trip", scope="account:ACC-GAMMA", reason="drill")
    statuses.append(place(client, "ACC-GAMMA", "buy", 10, "AAPL", "190.00")["reject"]["control"])
    act(client, "raj", "/kill-switches/reset", scope="account:ACC-GAMMA", reason="drill over")
    act(client, "admin", "/users/maria/entitlements", account_id="ACC-BETA",
        reason="covers the BETA desk")
    assert statuses == ["accepted", "restricted", "max_qty", "price_collar", "filled",
                        "accepted", "firm_credit", "kill_switch"]
    trading_date = day["date"]
    act(client, "admin", "/trading-day/close", reason="end of the scripted day")
    following = (date.fromisoformat(trading_date) + timedelta(days=1)).isoformat()
    act(client, "admin", "/trading-day/open", trading_date=following, reason="next day")
    return {"date": trading_date, "change_id": change, "expires": expires}


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000000000Z")


def check_day(report: dict[str, Any], script: dict[str, Any], client: TestClient) -> None:
    assert report["trading_date"] == script["date"]
    assert report["trading_day"]["status"] == "closed"
    assert report["orders"] == {"accepted": 3, "rejected": 5}

    # 1. Limit use.
    use = report["limit_use"]
    accounts = {a["account_id"]: a for a in use["accounts"]}
    assert set(accounts) == {"ACC-ALPHA", "ACC-BETA", "ACC-DELTA", "ACC-GAMMA"}
    alpha, beta, delta, gamma = (accounts[a] for a in ("ACC-ALPHA", "ACC-BETA", "ACC-DELTA",
                                                       "ACC-GAMMA"))
    assert (alpha["credit_limit"], alpha["peak_exposure"], alpha["peak_use_pct"],
            alpha["end_of_day_exposure"]) == ("20000000", "190000", "0.95", "190000")
    assert (beta["credit_limit"], beta["peak_exposure"], beta["peak_use_pct"],
            beta["end_of_day_exposure"]) == ("2000000", "76000", "3.8", "76000")
    assert (delta["credit_limit"], delta["peak_exposure"], delta["peak_use_pct"],
            delta["end_of_day_exposure"]) == ("50000000", "410000", "0.82", "410000")
    assert (gamma["peak_exposure"], gamma["end_of_day_exposure"], gamma["rejected"]) == (
        None, "0", 2)
    assert [a["breaches"] for a in accounts.values()] == [0, 0, 0, 0]
    firm = use["firm"]
    assert (firm["credit_limit"], firm["peak_exposure"], firm["peak_use_pct"],
            firm["end_of_day_exposure"], firm["end_of_day_use_pct"], firm["breaches"]) == (
        "700000", "676000", "96.57", "676000", "96.57", 0)
    assert firm["credit_limit_source"].startswith("LimitChangeApproved at position ")
    assert firm["peak_at"] == delta["peak_at"]
    scopes = [s["scope"] for s in use["intraday"]]
    assert scopes[0] == "firm" and set(scopes[1:]) == {
        "account:ACC-ALPHA", "account:ACC-BETA", "account:ACC-DELTA"}

    # 2. Rejections by control and account.
    assert report["rejections"] == {"total": 5, "by_control": [
        {"control": "kill_switch", "total": 1, "by_account": {"ACC-GAMMA": 1}},
        {"control": "restricted", "total": 1, "by_account": {"ACC-GAMMA": 1}},
        {"control": "max_qty", "total": 1, "by_account": {"ACC-ALPHA": 1}},
        {"control": "price_collar", "total": 1, "by_account": {"ACC-BETA": 1}},
        {"control": "firm_credit", "total": 1, "by_account": {"ACC-DELTA": 1}}]}

    # 3: no such event exists, and the report says so rather than "0".
    assert report["overrides"]["recorded"] is False
    assert "no such event type exists" in report["overrides"]["statement"]
    # 8: the system clock never stepped back here; what is and is not measured is stated.
    assert report["clock_exceptions"] == {
        "recorded": True, "tolerance_ms": 50, "exceptions": [],
        "statement": report["clock_exceptions"]["statement"]}
    assert "drift against NIST time is not measured" in report["clock_exceptions"]["statement"]

    # 4. Limit changes.
    [change] = report["limit_changes"]["changes"]
    assert {k: change[k] for k in ("change_id", "scope", "field", "old_value", "new_value",
                                   "requested_by", "reason", "approved_by", "approval_reason",
                                   "expires_at", "reverted", "status")} == {
        "change_id": script["change_id"], "scope": "firm", "field": "credit_limit",
        "old_value": "40000000", "new_value": "700000", "requested_by": "rose",
        "reason": "drill: tight firm limit", "approved_by": "raj",
        "approval_reason": "approved for the drill", "expires_at": iso(script["expires"]),
        "reverted": False, "status": "approved"}
    assert report["limit_changes"]["temporary_still_open"] == [script["change_id"]]

    # 5. Kill switch and throttle.
    kill = report["kill_switches_and_throttles"]
    assert [(k["event"], k["scope"], k["by"], k["reason"], k["trigger"])
            for k in kill["kill_switch_events"]] == [
        ("tripped", "account:ACC-GAMMA", "rose", "drill", "manual"),
        ("reset", "account:ACC-GAMMA", "raj", "drill over", None)]
    assert kill["kill_switch_rejections"] == {"ACC-GAMMA": 1}
    assert kill["throttle_rejections"] == {}

    # 6. Entitlement changes (the seeded users' first-run set-up is the system's, not here).
    assert [(e["event"], e["username"], e["account_id"], e["by"], e["reason"])
            for e in report["entitlement_changes"] if e["by"] != "system"] == [
        ("EntitlementGranted", "maria", "ACC-BETA", "admin", "covers the BETA desk")]

    # 7. Post-trade: two fills of 400 (BETA's taker fill, ALPHA's maker fill), no gap.
    post = report["post_trade"]
    assert (post["fills_delivered"], post["fill_quantity"], post["sequence_gaps"],
            post["complete"], post["taker_fills"]) == (2, 800, 0, True, 1)
    assert isinstance(post["max_delay_ns"], int) and post["max_delay_ns"] >= 0

    # 9. Coverage: 8 orders; controls after a rejecting one did not apply to it.
    coverage = report["coverage"]
    assert coverage["complete"] is True and coverage["gaps"] == []
    assert coverage["statement"] == "every order passed through every applicable control (100%)"
    rows = {c["control"]: c for c in coverage["controls"]}
    assert (rows["session"]["applicable"], rows["session"]["checked"]) == (8, 8)
    assert (rows["kill_switch"]["applicable"], rows["kill_switch"]["rejected"]) == (8, 1)
    assert rows["restricted"]["applicable"] == 7  # not the kill-switch rejection
    assert rows["max_qty"]["applicable"] == 6  # nor the restricted one
    assert (rows["firm_credit"]["applicable"], rows["firm_credit"]["checked"],
            rows["firm_credit"]["rejected"]) == (4, 4, 1)
    assert all(c["share_pct"] == "100" for c in coverage["controls"])

    # The chain head: the day's last event, just before the next day's open.
    head = report["chain_head"]
    [opened] = [e for e in get(client, "/audit", "abe", limit=10_000)
                if e["event_type"] == "TradingDayOpened"][-1:]
    assert head["position"] == opened["position"] - 1
    [at_head] = get(client, "/audit", "abe", after=head["position"] - 1, limit=1)
    assert head["hash"] == at_head["payload"]["hash"]


def test_the_daily_report_of_a_scripted_day(client: TestClient, backend: Settings,
                                            tmp_path: Path) -> None:
    script = scripted_day(client)
    report = get(client, "/reports/15c3-5", date=script["date"])
    check_day(report, script, client)
    assert report["sha256"] == __import__("hashlib").sha256(canonical_bytes(report)).hexdigest()
    # Every reading role gets the same bytes; a trader is refused, and that is recorded.
    for user in ("abe", "rose", "admin"):
        assert get(client, "/reports/15c3-5", user, date=script["date"]) == report
    get(client, "/reports/15c3-5", "tester", 403, date=script["date"])
    deadline = time.monotonic() + 15  # a denial is recorded without holding the answer up
    while ("tester", "GET /reports/15c3-5") not in [
            (d["actor"], d["payload"]["action"])
            for d in get(client, "/access/denials", "abe")["recorded"]]:
        assert time.monotonic() < deadline, "the trader's denial was not recorded"
        time.sleep(0.05)
    # The day's report does not move with later events (the denial above is the next day's).
    assert get(client, "/reports/15c3-5", date=script["date"]) == report

    html = get(client, "/reports/15c3-5.html", date=script["date"])
    assert html.count("<svg") >= 2 and "rejections by control" in html
    assert "exposure vs limit, firm" in html and report["sha256"] in html
    assert report["chain_head"]["hash"] in html

    # Certification: a wrong hash is refused, the right one recorded and listed.
    wrong = "0" * 64
    act(client, "cleo", "/reports/15c3-5/certifications", 409, report_sha256=wrong,
        date=script["date"], reason="reviewed")
    act(client, "rose", "/reports/15c3-5/certifications", 403,
        report_sha256=report["sha256"], date=script["date"], reason="not mine to certify")
    done = act(client, "cleo", "/reports/15c3-5/certifications", 201,
               report_sha256=report["sha256"], date=script["date"], reason="reviewed, no issues")
    [listed] = get(client, "/reports/15c3-5/certifications", "abe", date=script["date"])
    assert (listed["certification_id"], listed["report_sha256"], listed["certified_by"],
            listed["reason"]) == (done["certification_id"], report["sha256"], "cleo",
                                  "reviewed, no issues")
    # Certifying is not a change of the day it certifies.
    assert get(client, "/reports/15c3-5", date=script["date"])["sha256"] == report["sha256"]

    ranged = get(client, "/reports/15c3-5", **{"from": script["date"], "to": script["date"]})
    assert [d["sha256"] for d in ranged["days"]] == [report["sha256"]]
    calibration = get(client, "/reports/calibration", days=5)
    alpha = next(s for s in calibration["scopes"] if s["scope"] == "ACC-ALPHA")
    assert (alpha["max_peak_exposure"], alpha["max_peak_use_pct"], alpha["credit_limit"]) == (
        "190000", "0.95", "20000000")
    assert alpha["assessment"].startswith("limit at least 10x peak use")

    client.__exit__(None, None, None)  # the engine stops; the CLI reads what it left
    env = cli_env(backend)
    replayed = f"sqlite:///{tmp_path / 'replayed.sqlite'}"
    result = runner.invoke(cli, ["replay", "--into", replayed], env=env)
    assert result.exit_code == 0, result.output
    assert "control_stats" in result.output
    out = tmp_path / "out"
    out.mkdir()
    result = runner.invoke(cli, ["report", "15c3-5", "--date", script["date"], "--url", replayed,
                                 "--json", str(out / "r.json"), "--html", str(out / "r.html"),
                                 "--pdf", str(out / "r.pdf")], env=env)
    assert result.exit_code == 0, result.output
    from_replay = orjson.loads((out / "r.json").read_bytes())
    assert canonical_bytes(from_replay) == canonical_bytes(report)
    assert from_replay["sha256"] == report["sha256"]
    # The live read models through the CLI: the same document.
    live = runner.invoke(cli, ["report", "15c3-5", "--date", script["date"]], env=env)
    assert live.exit_code == 0, live.output
    assert orjson.loads(live.output)["sha256"] == report["sha256"]

    assert (out / "r.pdf").read_bytes().startswith(b"%PDF-")
    if shutil.which("pdftotext"):  # infrastructure/tools.sh installs it (make services)
        text = subprocess.run(["pdftotext", "-layout", str(out / "r.pdf"), "-"],
                              capture_output=True, text=True, check=True).stdout
        for section in ("1. Limit use per account and firm-wide", "2. Rejections by control",
                        "3. Overrides of soft blocks", "4. Limit changes",
                        "5. Kill switch and throttle", "6. Entitlement changes",
                        "7. Post-trade surveillance", "8. Clock exceptions",
                        "9. Control coverage", "no such event type exists"):
            assert section in text, section
        assert report["sha256"] in text and report["chain_head"]["hash"] in text
        assert text.count("\f") >= 2  # more than one page


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_hostile_requests_are_refused_with_their_reason(client: TestClient) -> None:
    today = get(client, "/trading-day")["date"]
    r = client.get("/reports/15c3-5", params={"date": "2026-02-30"},
                   headers=user_headers(client, "cleo"))
    assert r.status_code == 422 and "date" in r.text
    r = client.get("/reports/15c3-5", params={"date": today, "to": today},
                   headers=user_headers(client, "cleo"))
    assert r.status_code == 422 and "either date or from/to" in r.text
    # Without a date: the latest trading day.
    assert get(client, "/reports/15c3-5")["trading_date"] == today
    r = client.get("/reports/15c3-5", params={"from": "2026-03-02", "to": "2026-03-01"},
                   headers=user_headers(client, "cleo"))
    assert r.status_code == 422 and "after" in r.text
    r = client.get("/reports/15c3-5", params={"date": "1999-01-04"},
                   headers=user_headers(client, "cleo"))
    assert r.status_code == 404 and "no trading day 1999-01-04" in r.text
    r = client.get("/reports/calibration", params={"days": 0},
                   headers=user_headers(client, "cleo"))
    assert r.status_code == 422 and "days" in r.text
    r = client.get("/reports/calibration", params={"from": "2026-03-02", "to": "2026-03-01"},
                   headers=user_headers(client, "cleo"))
    assert r.status_code == 422 and '"from"' in r.text
    # A trading day with no orders: zeros where there is nothing, and it says so.
    quiet = get(client, "/reports/15c3-5", date=today)
    assert quiet["orders"] == {"accepted": 0, "rejected": 0}
    assert quiet["coverage"]["statement"] == "no orders on this day: nothing to cover"
    assert quiet["limit_use"]["accounts"] == [] and quiet["post_trade"]["fills_delivered"] == 0
    # A range with no trading day in it is an empty range, not an error.
    empty = get(client, "/reports/15c3-5", **{"from": "1999-01-01", "to": "1999-01-31"})
    assert empty["days"] == [] and empty["totals"]["trading_days"] == 0
    act(client, "cleo", "/reports/15c3-5/certifications", 404, report_sha256="a" * 64,
        date="1999-01-04", reason="no such day")
    act(client, "tester", "/reports/15c3-5/certifications", 403, report_sha256="a" * 64,
        date=today, reason="traders do not certify")


class _Log:
    """A notification log of hand-built records (the store's select, nothing else)."""

    def __init__(self, events: list[Any]) -> None:
        from infrastructure.codec import encode_record

        self.rows = []
        prev = "0" * 64
        for position, event in enumerate(events, start=1):
            topic, state, prev = encode_record(event, position, prev)
            self.rows.append((position, topic, state))

    def select(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        return [r for r in self.rows if r[0] > after][:limit]


def test_a_control_missing_from_a_decision_is_named_as_a_gap(tmp_path: Path) -> None:
    """An acceptance that does not record ``luld`` (forged: the engine always records every
    control) makes coverage incomplete, and the report names the control and the count."""
    import sqlalchemy as sa

    from domain.events import OrderAccepted
    from projections.runner import ProjectionRunner
    from projections.schema import migrate
    from tests import builders as b

    book = b.book(opened=False, locates=False)
    events: list[Any] = [b.open_day(book)]
    events += [b.submit(book, quantity=100 + n) for n in range(3)]
    forged = events[2]
    assert isinstance(forged, OrderAccepted)
    events[2] = forged._replace(checks=tuple(c for c in forged.checks if c != "luld"))
    url = f"sqlite:///{tmp_path / 'forged.sqlite'}"
    migrate(url)
    engine = sa.create_engine(url)
    ProjectionRunner(engine, _Log(events)).catch_up()
    engine.dispose()

    result = runner.invoke(cli, ["report", "15c3-5", "--date", b.TRADING_DATE, "--url", url],
                           env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    coverage = orjson.loads(result.output)["coverage"]
    assert coverage["complete"] is False
    assert coverage["gaps"] == [{"control": "luld", "orders_missed": 1}]
    assert coverage["statement"] == "coverage is NOT complete: luld missed by 1 order(s)"
    luld = next(c for c in coverage["controls"] if c["control"] == "luld")
    assert (luld["applicable"], luld["checked"], luld["share_pct"]) == (3, 2, "66.67")
