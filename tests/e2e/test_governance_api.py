"""Risk governance through the API (issue 7, item 5), end to end on SQLite and PostgreSQL:
halts, locates and their expiry, Rule 201, kill switches, maker-checker limits with
temporary changes, account suspensions, and user administration.

Every action is made by the role that may make it (tests/config/test.toml): the trader
"tester" (entitled to every account) trades and asks for locates, the risk officers "rose"
and "raj" govern (one requests a limit change, the other approves it), "admin" manages
users, and the auditor "abe" reads the trail. The venue has no liquidity provider: only the
orders a test sends rest or trade.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from infrastructure.settings import Settings
from tests.auth import bearer, login, user_headers

pytestmark = pytest.mark.timeout(300)

_ids = itertools.count(1)


@pytest.fixture
def client(backend: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(backend)) as c:
        login(c, "tester")
        yield c


def order(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "client_order_id": f"gov-{next(_ids)}-{uuid.uuid4().hex[:6]}",
        "account_id": "ACC-ALPHA", "symbol": "AAPL", "side": "buy",
        "quantity": 10 + next(_ids) % 50,  # varied: the duplicate control stays out of it
        "order_type": "limit", "limit_price": "190.00", "time_in_force": "gtc",
    }  # fmt: skip
    body.update(overrides)
    return body


def place(client: TestClient, headers: dict[str, str] | None = None,
          **fields: Any) -> dict[str, Any]:
    r = client.post("/orders", json=order(**fields), headers=headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def accepted(body: dict[str, Any]) -> dict[str, Any]:
    assert body["status"] in ("accepted", "partially_filled", "filled"), body["reject"]
    return body


def rejected_by(body: dict[str, Any], control: str) -> dict[str, Any]:
    assert body["status"] == "rejected", body
    assert body["reject"]["control"] == control, body["reject"]
    return body["reject"]  # type: ignore[no-any-return]


def as_(client: TestClient, user: str) -> dict[str, str]:
    return user_headers(client, user)


def act(client: TestClient, user: str, path: str, expected: int = 200,
        **body: Any) -> dict[str, Any]:
    r = client.post(path, json=body, headers=as_(client, user))
    assert r.status_code == expected, r.text
    return r.json()  # type: ignore[no-any-return]


def get(client: TestClient, path: str, user: str = "abe", **params: Any) -> Any:
    r = client.get(path, params=params, headers=as_(client, user))
    assert r.status_code == 200, r.text
    return r.json()


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def in_seconds(seconds: float) -> str:
    return iso(datetime.now(UTC) + timedelta(seconds=seconds))


def trail(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    return get(client, "/audit", limit=10_000, **params)  # type: ignore[no-any-return]


def denial_actions(client: TestClient, expected: int) -> list[tuple[str, str]]:
    """(actor, action) of every recorded denial, once ``expected`` of them are in."""
    deadline = time.monotonic() + 15
    while True:
        recorded = get(client, "/access/denials")["recorded"]
        if len(recorded) >= expected or time.monotonic() > deadline:
            return [(e["actor"], e["payload"]["action"]) for e in recorded]
        time.sleep(0.05)


def eventually(check: Callable[[], Any], within_s: float = 10.0) -> Any:
    """Poll until ``check`` returns something truthy (the engine acts on its own time)."""
    deadline = time.monotonic() + within_s
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.1)


def account_limits(client: TestClient, account_id: str, user: str = "abe") -> dict[str, Any]:
    [scope] = [s for s in get(client, "/limits", user)["scopes"]
               if s["scope"] == f"account:{account_id}"]
    return scope  # type: ignore[no-any-return]


# ------------------------------------------------------------------------- halts


def test_a_halted_symbol_takes_no_orders_until_it_resumes(client: TestClient) -> None:
    before = accepted(place(client, symbol="TSLA", limit_price="250.00"))
    act(client, "rose", "/symbols/TSLA/halt", reason="news pending")
    symbols = {s["symbol"]: s for s in get(client, "/symbols", "tester")}
    assert (symbols["TSLA"]["halted"], symbols["TSLA"]["halt_reason"]) == (True, "news pending")
    assert symbols["AAPL"]["halted"] is False

    reject = rejected_by(place(client, symbol="TSLA", limit_price="250.00"), "halt")
    assert reject == {"control": "halt", "threshold": "symbol trading", "observed": "halted"}
    accepted(place(client, symbol="AAPL"))  # other symbols trade
    # Orders resting before the halt stay (a halt refuses new orders; it cancels nothing).
    assert get(client, f"/orders/{before['order_id']}")["status"] == "accepted"
    act(client, "rose", "/symbols/TSLA/halt", 409, reason="twice")
    act(client, "tester", "/symbols/TSLA/resume", 403, reason="a trader may not")

    act(client, "raj", "/symbols/TSLA/resume", reason="news out")
    assert {s["symbol"]: s["halted"] for s in get(client, "/symbols")}["TSLA"] is False
    accepted(place(client, symbol="TSLA", limit_price="250.00"))
    act(client, "raj", "/symbols/TSLA/resume", 409, reason="not halted")

    events = [e for e in trail(client) if e["event_type"] in ("TradingHalted", "TradingResumed")]
    assert [(e["event_type"], e["actor"], e["payload"]["reason"]) for e in events] == [
        ("TradingHalted", "rose", "news pending"), ("TradingResumed", "raj", "news out")]
    assert denial_actions(client, 1) == [("tester", "POST /symbols/TSLA/resume")]


# ----------------------------------------------------------------------- locates


def test_a_short_sale_needs_a_granted_locate_and_uses_it_up(client: TestClient) -> None:
    short = {"symbol": "MSFT", "side": "sell_short", "limit_price": "411.00"}
    reject = rejected_by(place(client, quantity=30, **short), "locate")
    assert reject == {"control": "locate", "threshold": "locate for 30", "observed": "0 located"}

    requested = act(client, "tester", "/locates", 201, account_id="ACC-ALPHA", symbol="MSFT",
                    quantity=100, reason="short MSFT into earnings")
    locate_id = requested["locate_id"]
    [pending] = get(client, "/locates", "tester")
    assert pending == {"locate_id": locate_id, "account_id": "ACC-ALPHA", "symbol": "MSFT",
                       "requested": 100, "granted": 0, "remaining": 0, "status": "requested",
                       "expires_ns": None}
    rejected_by(place(client, quantity=31, **short), "locate")  # requested is not granted

    # Only a risk officer grants (the requester may not grant their own).
    act(client, "tester", f"/locates/{locate_id}/grant", 403, quantity=80,
        expires_at=in_seconds(3600), reason="self-service")
    act(client, "rose", f"/locates/{locate_id}/grant", 409, quantity=101,
        expires_at=in_seconds(3600), reason="more than asked")
    act(client, "rose", f"/locates/{locate_id}/grant", quantity=80,
        expires_at=in_seconds(3600), reason="easy to borrow")
    [granted] = get(client, "/locates", "tester")
    assert (granted["status"], granted["granted"], granted["remaining"]) == ("granted", 80, 80)

    sold = accepted(place(client, quantity=30, **short))
    [left] = get(client, "/locates", "tester")
    assert left["remaining"] == 50
    events = trail(client, order_id=sold["order_id"])
    assert events[0]["payload"]["inputs"]["locate"].startswith(locate_id)
    # One locate covers one order: 60 more is more than is left.
    reject = rejected_by(place(client, quantity=60, **short), "locate")
    assert reject["observed"] == "50 located"
    accepted(place(client, quantity=50, **short))
    assert get(client, "/locates", "tester") == []  # used up
    # Another account's short sale needs its own locate.
    rejected_by(place(client, account_id="ACC-BETA", quantity=10, **short), "locate")

    kinds = [(e["event_type"], e["actor"]) for e in trail(client)
             if e["event_type"].startswith("Locate")]
    assert kinds == [("LocateRequested", "tester"), ("LocateGranted", "rose"),
                     ("LocateConsumed", "tester"), ("LocateConsumed", "tester")]


def test_an_expired_locate_no_longer_covers_a_short_sale(client: TestClient) -> None:
    locate_id = act(client, "tester", "/locates", 201, account_id="ACC-BETA", symbol="AAPL",
                    quantity=50, reason="short AAPL")["locate_id"]
    expires = datetime.now(UTC) + timedelta(seconds=2)
    act(client, "rose", f"/locates/{locate_id}/grant", quantity=50, expires_at=iso(expires),
        reason="for two seconds only")
    short = {"account_id": "ACC-BETA", "side": "sell_short", "limit_price": "191.00"}
    accepted(place(client, quantity=10, **short))
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.3)
    reject = rejected_by(place(client, quantity=11, **short), "locate")
    assert reject["observed"] == "0 located"
    # The engine expires it by itself: gone from the list, a LocateExpired in the trail.
    eventually(lambda: get(client, "/locates") == [])
    expired = eventually(lambda: [e for e in trail(client)
                                  if e["event_type"] == "LocateExpired"])
    assert [(e["actor"], e["payload"]["remaining"]) for e in expired] == [("system", 40)]
    # Granting an expiry in the past is refused by the rules.
    other = act(client, "tester", "/locates", 201, account_id="ACC-BETA", symbol="AAPL",
                quantity=5, reason="again")["locate_id"]
    act(client, "rose", f"/locates/{other}/grant", 409, quantity=5,
        expires_at=in_seconds(-60), reason="already over")


# ------------------------------------------------------------------------ Rule 201


def test_short_sale_restriction_refuses_shorts_at_or_below_the_best_bid(
        client: TestClient) -> None:
    act(client, "tester", "/symbols/AAPL/short-sale-restriction", 403, reason="not mine")
    act(client, "rose", "/symbols/AAPL/short-sale-restriction",
        reason="listing market notice (Rule 201)")
    act(client, "rose", "/symbols/AAPL/short-sale-restriction", 409, reason="twice today")
    symbols = {s["symbol"]: s for s in get(client, "/symbols", "tester")}
    assert symbols["AAPL"]["short_sale_restricted"] is True
    assert symbols["MSFT"]["short_sale_restricted"] is False
    [locate_id] = [act(client, "tester", "/locates", 201, account_id="ACC-ALPHA",
                       symbol="AAPL", quantity=500, reason="short AAPL")["locate_id"]]
    act(client, "rose", f"/locates/{locate_id}/grant", quantity=500,
        expires_at=in_seconds(3600), reason="easy to borrow")
    short = {"side": "sell_short", "time_in_force": "day"}

    # No bid at all: a restricted short sale cannot be priced above it.
    reject = rejected_by(place(client, limit_price="190.00", **short), "ssr")
    assert reject["observed"] == "none"
    # The venue has no liquidity provider here: rest a bid to make one.
    accepted(place(client, account_id="ACC-BETA", side="buy", quantity=100,
                   limit_price="189.50"))
    reject = rejected_by(place(client, limit_price="189.50", quantity=11, **short), "ssr")
    assert reject == {"control": "ssr", "threshold": "above best bid 189.50",
                      "observed": "189.50"}
    rejected_by(place(client, limit_price="189.00", quantity=12, **short), "ssr")
    above = accepted(place(client, limit_price="189.51", quantity=13, **short))
    assert trail(client, order_id=above["order_id"])[0]["payload"]["inputs"]["ssr"] == (
        "best bid 189.50")
    # Long sales are not restricted, at the bid or below.
    filled = accepted(place(client, side="sell", limit_price="189.50", quantity=14))
    assert filled["status"] == "filled"
    events = [e for e in trail(client) if e["event_type"] == "ShortSaleRestrictionTriggered"]
    assert [(e["actor"], e["payload"]["symbol"]) for e in events] == [("rose", "AAPL")]


# -------------------------------------------------------------------- kill switches


def test_a_kill_switch_cancels_resting_orders_until_a_risk_officer_resets_it(
        client: TestClient) -> None:
    resting = [accepted(place(client, quantity=20 + n, limit_price="189.00"))
               for n in range(2)]
    beta = accepted(place(client, account_id="ACC-BETA", limit_price="188.00"))

    tripped = act(client, "rose", "/kill-switches/trip", scope="account:ACC-ALPHA",
                  reason="runaway algo")
    assert tripped["events"][0] == "KillSwitchTripped"
    for body in resting:
        assert get(client, f"/orders/{body['order_id']}", "tester")["status"] == "canceled"
        cancels = [e for e in trail(client, order_id=body["order_id"])
                   if e["event_type"] == "OrderCanceled"]
        assert [e["payload"]["reason"] for e in cancels] == ["kill_switch"]
    assert get(client, f"/orders/{beta['order_id']}", "tester")["status"] == "accepted"
    switches = get(client, "/kill-switches", "tester")
    [trip] = switches["tripped"]
    assert (trip["scope"], trip["trigger"], trip["actor"], trip["reason"]) == (
        "account:ACC-ALPHA", "manual", "rose", "runaway algo")
    assert sorted(trip["canceled_orders"]) == sorted(o["order_id"] for o in resting)
    assert [h["event_type"] for h in switches["history"]] == ["KillSwitchTripped"]

    reject = rejected_by(place(client), "kill_switch")
    assert reject["observed"] == "account:ACC-ALPHA tripped (manual)"
    accepted(place(client, account_id="ACC-BETA", limit_price="188.50"))  # not in scope

    # A trader does not reset it (refused, recorded); a risk officer does, with a reason.
    act(client, "tester", "/kill-switches/reset", 403, scope="account:ACC-ALPHA",
        reason="I fixed it")
    assert denial_actions(client, 1) == [("tester", "POST /kill-switches/reset")]
    rejected_by(place(client), "kill_switch")
    act(client, "raj", "/kill-switches/reset", scope="account:ACC-ALPHA",
        reason="algo patched, drill over")
    act(client, "raj", "/kill-switches/reset", 409, scope="account:ACC-ALPHA", reason="twice")
    accepted(place(client))
    switches = get(client, "/kill-switches")
    assert switches["tripped"] == []
    assert [(h["event_type"], h["actor"], h["payload"]["reason"])
            for h in switches["history"]] == [
        ("KillSwitchTripped", "rose", "runaway algo"),
        ("KillSwitchReset", "raj", "algo patched, drill over")]


def test_a_firm_kill_switch_stops_every_account(client: TestClient) -> None:
    act(client, "rose", "/kill-switches/trip", scope="firm", reason="market-wide drill")
    for account in ("ACC-ALPHA", "ACC-BETA", "ACC-GAMMA", "ACC-DELTA"):
        rejected_by(place(client, account_id=account), "kill_switch")
    act(client, "rose", "/kill-switches/trip", 409, scope="firm", reason="twice")
    act(client, "rose", "/kill-switches/trip", 409, scope="account:ACC-NOPE", reason="who")
    act(client, "rose", "/kill-switches/reset", scope="firm", reason="drill over")
    accepted(place(client, account_id="ACC-DELTA"))


# ------------------------------------------------------------------ governed limits


def test_a_limit_change_takes_effect_only_when_another_risk_officer_approves_it(
        client: TestClient) -> None:
    assert account_limits(client, "ACC-ALPHA")["values"]["max_order_quantity"] == "10000"
    version = account_limits(client, "ACC-ALPHA")["version"]
    change = act(client, "rose", "/limits/account:ACC-ALPHA/requests", 201,
                 field="max_order_quantity", value="500", reason="new algo on probation")
    change_id = change["change_id"]

    # Requested only: the limit in force is unchanged and orders are judged by it.
    limits = get(client, "/limits")
    [pending] = limits["pending"]
    assert (pending["change_id"], pending["scope"], pending["field"], pending["old_value"],
            pending["new_value"], pending["requested_by"]) == (
        change_id, "account:ACC-ALPHA", "max_order_quantity", "10000", "500", "rose")
    unchanged = account_limits(client, "ACC-ALPHA")
    assert (unchanged["values"]["max_order_quantity"], unchanged["version"]) == ("10000",
                                                                                 version)
    accepted(place(client, quantity=600))

    # Maker-checker: not by the requester (refused, recorded), nor by a trader.
    act(client, "rose", f"/limits/requests/{change_id}/approve", 403, reason="looks fine")
    act(client, "tester", f"/limits/requests/{change_id}/approve", 403, reason="me too")
    assert denial_actions(client, 2) == [
        ("rose", f"POST /limits/requests/{change_id}/approve"),
        ("tester", f"POST /limits/requests/{change_id}/approve")]
    assert account_limits(client, "ACC-ALPHA")["values"]["max_order_quantity"] == "10000"

    act(client, "raj", f"/limits/requests/{change_id}/approve", reason="agreed with desk head")
    after = account_limits(client, "ACC-ALPHA")
    assert (after["values"]["max_order_quantity"], after["version"]) == ("500", version + 1)
    assert get(client, "/limits")["pending"] == []
    [alpha] = [a for a in get(client, "/accounts", "tester") if a["account_id"] == "ACC-ALPHA"]
    assert (alpha["max_order_quantity"], alpha["limits_version"]) == (500, version + 1)
    # The next orders are judged by the new value, and say which version judged them.
    reject = rejected_by(place(client, quantity=501), "max_qty")
    assert (reject["threshold"], reject["observed"]) == ("500", "501")
    ok = accepted(place(client, quantity=500))
    [acceptance] = trail(client, order_id=ok["order_id"])
    assert acceptance["payload"]["limits_version"] == version + 1
    act(client, "raj", f"/limits/requests/{change_id}/approve", 409, reason="twice")


def test_a_temporary_limit_change_reverts_by_itself(client: TestClient) -> None:
    scope = "account:ACC-ALPHA"
    version = account_limits(client, "ACC-ALPHA")["version"]
    first = act(client, "raj", f"/limits/{scope}/requests", 201, field="max_order_quantity",
                value="700", reason="tighter for the open")["change_id"]
    act(client, "rose", f"/limits/requests/{first}/approve", reason="ok for the open")
    temporary = act(client, "rose", f"/limits/{scope}/requests", 201,
                    field="max_order_quantity", value="300", reason="index rebalance",
                    expires_at=in_seconds(2.0))["change_id"]
    act(client, "raj", f"/limits/requests/{temporary}/approve", reason="for the auction only")
    now = account_limits(client, "ACC-ALPHA")
    assert (now["values"]["max_order_quantity"], now["version"]) == ("300", version + 2)
    rejected_by(place(client, quantity=301), "max_qty")

    # Nobody acts: the engine restores the value before the temporary change.
    def restored() -> dict[str, Any] | None:
        scope = account_limits(client, "ACC-ALPHA")
        return scope if scope["values"]["max_order_quantity"] == "700" else None

    reverted = eventually(restored)
    assert reverted["version"] == version + 3
    accepted(place(client, quantity=650))

    # A rejected request and a withdrawn one change nothing, and are in the history too.
    refused = act(client, "tester", f"/limits/{scope}/requests", 201,
                  field="max_order_quantity", value="9999", reason="I want more")["change_id"]
    act(client, "raj", f"/limits/requests/{refused}/reject", reason="no")
    withdrawn = act(client, "rose", f"/limits/{scope}/requests", 201,
                    field="credit_limit", value="1", reason="typo")["change_id"]
    act(client, "rose", f"/limits/requests/{withdrawn}/reject", reason="withdrawn: typo")
    assert account_limits(client, "ACC-ALPHA")["values"]["max_order_quantity"] == "700"

    history = get(client, f"/limits/{scope}/history")
    assert [(e["event_type"], e["actor"], e["payload"]["reason"]) for e in history] == [
        ("LimitChangeRequested", "raj", "tighter for the open"),
        ("LimitChangeApproved", "rose", "ok for the open"),
        ("LimitChangeRequested", "rose", "index rebalance"),
        ("LimitChangeApproved", "raj", "for the auction only"),
        ("LimitChangeReverted", "system", "temporary change expired"),
        ("LimitChangeRequested", "tester", "I want more"),
        ("LimitChangeRejected", "raj", "no"),
        ("LimitChangeRequested", "rose", "typo"),
        ("LimitChangeRejected", "rose", "withdrawn: typo"),
    ]
    approved = [e["payload"] for e in history if e["event_type"] == "LimitChangeApproved"]
    assert [(p["old_value"], p["new_value"], p["limits_version"]) for p in approved] == [
        ("10000", "700", version + 1), ("700", "300", version + 2)]
    [revert] = [e["payload"] for e in history if e["event_type"] == "LimitChangeReverted"]
    assert (revert["value"], revert["limits_version"]) == ("700", version + 3)
    # The trader reads the history of their own account, not of the firm.
    assert get(client, f"/limits/{scope}/history", "tester") == history
    assert client.get("/limits/firm/history").status_code == 403


def test_limit_requests_refused_by_the_rules_are_409_and_a_traders_for_others_403(
        client: TestClient) -> None:
    scope = "/limits/account:ACC-ALPHA/requests"
    act(client, "rose", scope, 409, field="no_such_limit", value="1", reason="x")
    act(client, "rose", scope, 409, field="max_order_quantity", value="1.5", reason="x")
    act(client, "rose", scope, 409, field="max_order_quantity", value="10",
        expires_at=in_seconds(-5), reason="already over")
    act(client, "rose", "/limits/account:ACC-NOPE/requests", 409, field="max_order_quantity",
        value="10", reason="x")
    act(client, "maria", "/limits/account:ACC-BETA/requests", 403, field="max_order_quantity",
        value="10", reason="not my account")
    act(client, "raj", f"/limits/requests/{uuid.uuid4()}/approve", 409, reason="unknown")
    assert get(client, "/limits")["pending"] == []


# ------------------------------------------------------------------- suspensions


def test_a_suspended_account_takes_no_orders_until_reinstated(client: TestClient) -> None:
    act(client, "tester", "/accounts/ACC-DELTA/suspend", 403, reason="not mine")
    act(client, "rose", "/accounts/ACC-DELTA/suspend", reason="margin call")
    reject = rejected_by(place(client, account_id="ACC-DELTA"), "account_suspended")
    assert reject == {"control": "account_suspended", "threshold": "active account",
                      "observed": "suspended"}
    accepted(place(client, account_id="ACC-GAMMA"))
    act(client, "admin", "/accounts/ACC-DELTA/suspend", 409, reason="twice")
    act(client, "admin", "/accounts/ACC-DELTA/reinstate", reason="margin met")
    accepted(place(client, account_id="ACC-DELTA"))
    act(client, "rose", "/accounts/ACC-DELTA/reinstate", 409, reason="not suspended")
    events = [e for e in trail(client)
              if e["event_type"] in ("AccountSuspended", "AccountReinstated")]
    assert [(e["event_type"], e["actor"], e["account_id"], e["payload"]["reason"])
            for e in events] == [
        ("AccountSuspended", "rose", "ACC-DELTA", "margin call"),
        ("AccountReinstated", "admin", "ACC-DELTA", "margin met")]


# ------------------------------------------------------------------------ users


def test_an_admin_creates_a_user_who_then_trades_their_account(client: TestClient) -> None:
    act(client, "admin", "/users", 201, username="nina", role="trader", reason="new hire")
    act(client, "admin", "/users", 409, username="nina", role="trader", reason="twice")
    act(client, "rose", "/users", 403, username="nora", role="admin", reason="not mine to do")
    act(client, "admin", "/users/nina/entitlements", account_id="ACC-GAMMA",
        reason="joins the GAMMA desk")
    key = act(client, "admin", "/users/nina/keys", 201, reason="first key")
    assert key["username"] == "nina" and key["token"].startswith("mlk_")
    nina = bearer(key["token"])

    [user] = [u for u in get(client, "/users", "admin") if u["username"] == "nina"]
    assert user == {"username": "nina", "role": "trader", "accounts": ["ACC-GAMMA"],
                    "active": True, "key_ids": [key["key_id"]]}
    assert [u["username"] for u in client.get("/users", headers=nina).json()] == ["nina"]
    mine = accepted(place(client, nina, account_id="ACC-GAMMA"))
    [event] = trail(client, order_id=mine["order_id"])
    assert (event["actor"], event["event_type"]) == ("nina", "OrderAccepted")
    rejected_by(place(client, nina, account_id="ACC-ALPHA"), "entitlement")
    assert [a["account_id"] for a in client.get("/accounts", headers=nina).json()] == [
        "ACC-GAMMA"]

    act(client, "admin", "/users/nina/entitlements/revoke", account_id="ACC-GAMMA",
        reason="moved desks")
    rejected_by(place(client, nina, account_id="ACC-GAMMA"), "entitlement")
    kinds = [(e["event_type"], e["actor"]) for e in trail(client)
             if e["event_type"] in ("UserCreated", "EntitlementGranted",
                                    "EntitlementRevoked")]
    assert kinds == [("UserCreated", "admin"), ("EntitlementGranted", "admin"),
                     ("EntitlementRevoked", "admin")]


# ---------------------------------------------------------------- invalid requests


BAD_BODIES = [
    pytest.param("rose", "/symbols/AAPL/halt", {}, ("body", "reason"), id="halt_no_reason"),
    pytest.param("rose", "/symbols/AAPL/halt", {"reason": ""}, ("body", "reason"),
                 id="halt_empty_reason"),
    pytest.param("rose", "/symbols/AAPL/halt", {"reason": "x" * 201}, ("body", "reason"),
                 id="halt_reason_too_long"),
    pytest.param("rose", "/symbols/AAPL/halt", {"reason": "x", "until": "noon"},
                 ("body", "until"), id="halt_extra_field"),
    pytest.param("rose", "/symbols/aapl/halt", {"reason": "x"}, ("path", "symbol"),
                 id="halt_lowercase_symbol"),
    pytest.param("tester", "/locates", {"account_id": "ACC-ALPHA", "symbol": "aapl",
                                        "quantity": 10, "reason": "x"},
                 ("body", "symbol"), id="locate_symbol"),
    pytest.param("tester", "/locates", {"account_id": "ACC-ALPHA", "symbol": "AAPL",
                                        "quantity": 0, "reason": "x"},
                 ("body", "quantity"), id="locate_quantity_0"),
    pytest.param("tester", "/locates", {"account_id": "ACC-ALPHA", "symbol": "AAPL",
                                        "quantity": "10", "reason": "x"},
                 ("body", "quantity"), id="locate_quantity_text"),
    pytest.param("rose", f"/locates/{uuid.uuid4()}/grant",
                 {"quantity": 1, "expires_at": "tomorrow", "reason": "x"},
                 ("body", "expires_at"), id="grant_expiry_text"),
    pytest.param("rose", f"/locates/{uuid.uuid4()}/grant", {"quantity": 1, "reason": "x"},
                 ("body", "expires_at"), id="grant_no_expiry"),
    pytest.param("rose", "/locates/not-a-uuid/grant",
                 {"quantity": 1, "expires_at": "2099-01-01T00:00:00Z", "reason": "x"},
                 ("path", "locate_id"), id="grant_locate_id"),
    pytest.param("rose", "/kill-switches/trip", {"scope": "everything", "reason": "x"},
                 ("body", "scope"), id="trip_scope"),
    pytest.param("rose", "/kill-switches/reset", {"reason": "x"}, ("body", "scope"),
                 id="reset_no_scope"),
    pytest.param("rose", "/limits/account:ACC-ALPHA/requests",
                 {"field": "Max Qty", "value": "10", "reason": "x"}, ("body", "field"),
                 id="limit_field"),
    pytest.param("rose", "/limits/account:ACC-ALPHA/requests",
                 {"field": "max_order_quantity", "value": "-5", "reason": "x"},
                 ("body", "value"), id="limit_value_negative"),
    pytest.param("rose", "/limits/account:ACC-ALPHA/requests",
                 {"field": "max_order_quantity", "value": 10, "reason": "x"},
                 ("body", "value"), id="limit_value_number"),
    pytest.param("raj", "/limits/requests/42/approve", {"reason": "x"}, ("path", "change_id"),
                 id="approve_change_id"),
    pytest.param("admin", "/users", {"username": "Bad Name", "role": "trader", "reason": "x"},
                 ("body", "username"), id="user_name"),
    pytest.param("admin", "/users", {"username": "ok", "role": "king", "reason": "x"},
                 ("body", "role"), id="user_role"),
    pytest.param("admin", "/users/maria/entitlements", {"reason": "x"},
                 ("body", "account_id"), id="entitle_no_account"),
    pytest.param("admin", "/users/Maria/disable", {"reason": "x"}, ("path", "username"),
                 id="disable_username"),
]


@pytest.mark.parametrize(("user", "path", "body", "loc"), BAD_BODIES)
def test_a_bad_request_is_422_naming_the_field_and_records_nothing(
        client: TestClient, user: str, path: str, body: dict[str, Any],
        loc: tuple[str, str]) -> None:
    headers = as_(client, user)
    head = client.get("/health").json()["store"]["head_position"]
    r = client.post(path, json=body, headers=headers)
    assert r.status_code == 422, r.text
    assert loc in [tuple(d["loc"][:2]) for d in r.json()["detail"]], r.json()
    assert client.get("/health").json()["store"]["head_position"] == head


# Values the body's or path's type admits but the command does not (an instant outside the
# event log's int64 nanoseconds, a scope or account id of the wrong shape) must be named like
# any other bad field, not end in a 500.
OUT_OF_RANGE = [
    pytest.param("rose", f"/locates/{uuid.uuid4()}/grant",
                 {"quantity": 1, "expires_at": "1970-01-01T00:00:00Z", "reason": "x"},
                 ("body", "expires_at"), id="grant_expiry_at_the_epoch"),
    pytest.param("rose", f"/locates/{uuid.uuid4()}/grant",
                 {"quantity": 1, "expires_at": "9999-12-31T23:59:59Z", "reason": "x"},
                 ("body", "expires_at"), id="grant_expiry_beyond_2262"),
    pytest.param("rose", "/limits/account:ACC-ALPHA/requests",
                 {"field": "max_order_quantity", "value": "10", "reason": "x",
                  "expires_at": "1960-01-01T00:00:00Z"},
                 ("body", "expires_at"), id="limit_expiry_before_the_epoch"),
    pytest.param("rose", "/limits/everything/requests",
                 {"field": "max_order_quantity", "value": "10", "reason": "x"},
                 ("path", "scope"), id="limit_scope_shape"),
    pytest.param("rose", "/accounts/%20/suspend", {"reason": "x"}, ("path", "account_id"),
                 id="suspend_account_id_shape"),
    pytest.param("rose", "/accounts/%20/reinstate", {"reason": "x"}, ("path", "account_id"),
                 id="reinstate_account_id_shape"),
]


@pytest.mark.parametrize(("user", "path", "body", "loc"), OUT_OF_RANGE)
def test_a_value_outside_what_the_engine_takes_is_422_not_500(
        backend: Settings, user: str, path: str, body: dict[str, Any],
        loc: tuple[str, str]) -> None:
    with TestClient(create_app(backend), raise_server_exceptions=False) as client:
        r = client.post(path, json=body, headers=as_(client, user))
        assert r.status_code == 422, r.text
        assert loc in [tuple(d["loc"][:2]) for d in r.json()["detail"]], r.json()
