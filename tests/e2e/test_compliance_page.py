"""The compliance page in a real headless browser (issue 8, item 6): Debian's Chromium driven
by Selenium against the app under a real uvicorn. A compliance officer signs in with her
API key, picks the day, reads the 15c3-5 report with its charts, follows an order's lineage
and opens the day's export manifest; what the page shows must equal what the JSON API
answers. Plus the session's limits without a browser: the cookie reads, it never writes.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.access import SESSION_COOKIE
from api.app import create_app
from infrastructure.bootstrap import System, bootstrap
from infrastructure.settings import Settings
from projections.tables import audit_trail
from tests.auth import bearer, issue_token
from tests.serving import serving

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _order(n: int, **changes: Any) -> dict[str, Any]:
    body = {"client_order_id": f"page-{n}", "account_id": "ACC-ALPHA", "symbol": "AAPL",
            "side": "buy", "quantity": 10, "order_type": "limit", "limit_price": "189.00",
            "time_in_force": "day"}
    body.update(changes)
    return body


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    settings = Settings(data_dir=tmp_path / "data", database_url=None, read_database_url=None,
                        database_owner_url=None, reader_database_url=None,
                        chain_anchor_file=None)
    system = bootstrap(settings)
    try:
        yield system
    finally:
        system.close()


@pytest.fixture
def day(system: System) -> dict[str, Any]:
    """A short day through the API: an order resting, one filled, one rejected."""
    with TestClient(create_app(system=system)) as client:
        trader = bearer(issue_token(system, "tester"))
        resting = client.post("/orders", json=_order(1), headers=trader).json()
        filled = client.post("/orders", json=_order(2, limit_price="191.00",
                                                    time_in_force="ioc"), headers=trader).json()
        rejected = client.post("/orders", json=_order(3, limit_price="1.00"),  # price_collar
                               headers=trader).json()
        assert rejected["status"] == "rejected", rejected
        system.projections.catch_up()
        trading_date = client.get("/trading-day", headers=trader).json()["date"]
    return {"resting": resting, "filled": filled, "rejected": rejected, "date": trading_date}


def test_the_session_cookie_reads_but_never_writes(system: System, day: dict[str, Any]) -> None:
    with TestClient(create_app(system=system)) as client:
        wrong = client.post("/compliance/session", content="token=mlk_nobody_nothing",
                            headers={"Content-Type": "application/x-www-form-urlencoded"},
                            follow_redirects=False)
        assert wrong.status_code == 401 and "Unknown or revoked" in wrong.text
        assert SESSION_COOKIE not in client.cookies
        token = issue_token(system, "tester")
        signed = client.post("/compliance/session", content=f"token={token}",
                             headers={"Content-Type": "application/x-www-form-urlencoded"},
                             follow_redirects=False)
        assert signed.status_code == 303
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        # Reads work with the cookie alone (the page's links) ...
        assert client.get(f"/orders/{day['filled']['order_id']}").status_code == 200
        page = client.get("/compliance")
        assert page.status_code == 200 and day["rejected"]["order_id"] in page.text
        # A date no trading day opened on lists no orders (not the latest of any day).
        other_day = client.get("/compliance", params={"date": "2001-01-02"})
        assert other_day.status_code == 200 and day["rejected"]["order_id"] not in other_day.text
        # ... a write never does: it needs the Authorization header (no CSRF through a page).
        write = client.post("/orders", json=_order(9))
        assert write.status_code == 401
        signed_out = client.post("/compliance/sign-out", follow_redirects=False)
        assert signed_out.status_code == 303
        client.cookies.clear()
        assert client.get("/compliance").status_code == 401  # the sign-in form again
    # Denials are recorded without holding the answer up: wait for both to be journaled.
    deadline = time.monotonic() + 10
    while True:
        system.projections.catch_up()
        with system.read_models.connect() as conn:
            actions = {json.loads(p)["action"] for (p,) in conn.execute(
                sa.select(audit_trail.c.payload).where(
                    audit_trail.c.event_type == "AccessDenied"))}
        if {"POST /compliance/session", "POST /orders"} <= actions:
            break
        assert time.monotonic() < deadline, actions
        time.sleep(0.05)


def test_a_trader_sees_only_the_lineage_of_their_accounts(system: System,
                                                          day: dict[str, Any]) -> None:
    with TestClient(create_app(system=system)) as client:
        other = issue_token(system, "momo")  # ACC-DELTA
        client.cookies.set(SESSION_COOKIE, other)
        page = client.get("/compliance/lineage",
                          params={"order_id": day["filled"]["order_id"]})
        assert page.status_code == 403
        assert client.get("/compliance/lineage", params={"order_id": "nope"}).status_code == 422
        unknown = client.get("/compliance/lineage",
                             params={"order_id": "00000000-0000-4000-8000-000000000000"})
        assert unknown.status_code == 404


@pytest.fixture
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), (
        "Debian's chromium and chromium-driver: infrastructure/tools.sh installs them")
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1400,1800"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_compliance_page_in_a_real_browser(system: System, day: dict[str, Any],
                                               browser: Any) -> None:
    from selenium.webdriver.common.by import By

    cleo = issue_token(system, "cleo")  # compliance
    with serving(create_app(system=system)) as (host, port):
        base = f"http://{host}:{port}"
        api = httpx.Client(base_url=base, headers=bearer(cleo), timeout=30)
        browser.get(base + "/compliance")
        browser.find_element(By.ID, "token").send_keys(cleo)
        browser.find_element(By.ID, "sign-in").click()
        assert browser.find_element(By.ID, "date").get_attribute("value") == day["date"]

        # The day's orders, each linking to its lineage.
        table = browser.find_element(By.ID, "day-orders").text
        for kind in ("resting", "filled", "rejected"):
            assert day[kind]["order_id"] in table

        _check_report(browser, api, day["date"])

        # Lineage: the page's timeline is the JSON's records, in log order.
        order_id = day["filled"]["order_id"]
        browser.find_element(By.ID, "lineage-" + order_id).click()
        rows = browser.find_elements(By.CSS_SELECTOR, "#lineage-records tr")[1:]
        expected = api.get(f"/orders/{order_id}/lineage").json()
        assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows] == [
            str(r["position"]) for r in expected["records"]]
        assert [r.find_elements(By.TAG_NAME, "td")[2].text for r in rows] == [
            r["event_type"] for r in expected["records"]]
        assert browser.find_element(By.ID, "chain-verdict").text == (
            "every record is what the store holds")
        assert browser.find_element(By.ID, "lineage-status").text == expected["status"]

        # Records of the day: the page's download links work with its session alone (the
        # browser saves them as files, so they are fetched here with the browser's cookie).
        browser.find_element(By.ID, "back").click()
        session = {SESSION_COOKIE: browser.get_cookie(SESSION_COOKIE)["value"]}
        for link in ("export-manifest", "export-jsonl", "export-csv", "cat-metadata"):
            href = browser.find_element(By.ID, link).get_attribute("href")
            assert href.startswith(base)
            by_page = httpx.get(href, cookies=session, timeout=30)
            assert by_page.status_code == 200, (link, by_page.text)
            assert by_page.content == api.get(href.removeprefix(base)).content, link
        manifest = httpx.get(browser.find_element(By.ID, "export-manifest").get_attribute(
            "href"), cookies=session, timeout=30).json()
        assert manifest["records"] > 0


def _check_report(browser: Any, api: httpx.Client, date: str) -> None:
    """The report frame: its charts render, its figures are the JSON report's."""
    from selenium.webdriver.common.by import By

    frame = browser.find_element(By.ID, "report-frame")
    browser.switch_to.frame(frame)
    try:
        charts = browser.find_elements(By.CSS_SELECTOR, "svg")
        assert len(charts) >= 2  # limit use over the day, rejections by control
        for chart in charts:
            assert chart.size["width"] > 100 and chart.size["height"] >= 20  # drawn, not empty
            assert chart.find_elements(By.CSS_SELECTOR, "rect, polyline, path, line")
        rows = browser.find_elements(By.CSS_SELECTOR, "section#rejections table tr")[1:]
        shown = {r.find_elements(By.TAG_NAME, "td")[0].text:
                 int(r.find_elements(By.TAG_NAME, "td")[1].text) for r in rows}
        seal = browser.find_element(By.CSS_SELECTOR, "p.seal").text
        text = browser.find_element(By.TAG_NAME, "body").text
    finally:
        browser.switch_to.default_content()
    report = api.get("/reports/15c3-5", params={"date": date})
    assert report.status_code == 200, report.text
    body = report.json()
    assert shown == {r["control"]: r["total"] for r in body["rejections"]["by_control"]}
    assert shown.get("price_collar") == 1
    assert (f"Orders: {body['orders']['accepted']} accepted, "
            f"{body['orders']['rejected']} rejected") in text
    # The same document: its seal quotes the JSON's chain head and SHA-256 (nothing was
    # recorded between the two reads).
    assert f"position {body['chain_head']['position']}" in seal
    assert body["sha256"] in seal
