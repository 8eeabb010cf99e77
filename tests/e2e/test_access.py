"""Who may call what (issue 7, item 4), end to end through the real app on both backends.

Every route of the app is enumerated from ``app.routes`` and must appear in ``ACCESS``, the
table of the roles that may call it: a new endpoint cannot be added without saying who may
call it. Each role then calls each route; a role not in the table is refused with 403, and
each refusal is recorded (an ``AccessDenied`` event at ``GET /access/denials`` naming the
actor, the action and the reason) and counted (``/health``'s ``engine.access_denied``).
Without a token every route but ``/health`` (and the API's own documentation) answers 401
with ``WWW-Authenticate: Bearer``.

A trader reads only the accounts they are entitled to; an order for any other account is a
rejection by the ``entitlement`` control (recorded like every rejection), and a cancel of
another account's order is a 403, recorded.

The acting users come from tests/config/test.toml: the trader "tester" (entitled to every
account) or "maria" (ACC-ALPHA only), the risk officers "rose" and "raj", "cleo"
(compliance), "abe" (auditor) and "admin".
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Route

from api.app import create_app
from infrastructure.settings import Settings
from tests.auth import bearer, grant_locates, headers_for, issue_token, user_headers

pytestmark = pytest.mark.timeout(300)

ROLES = {"trader": "tester", "risk_officer": "rose", "compliance": "cleo",
         "auditor": "abe", "admin": "admin"}
EVERYONE = frozenset(ROLES)
PUBLIC = "public"  # no token needed
# The compliance page's HTML (api/compliance_page.py): it signs in through a form into a
# read-only cookie and answers with pages, not JSON; tests/e2e/test_compliance_page.py
# holds its access tests (a trader's lineage of another account: 403, recorded).
PAGE = "page"
TRADER = frozenset({"trader"})
RISK = frozenset({"risk_officer"})
RISK_OR_ADMIN = frozenset({"risk_officer", "admin"})
ADMIN = frozenset({"admin"})
NOT_TRADER = EVERYONE - TRADER

# (method, route path) -> the roles that may call it. The table is the policy under test:
# compare it with api/access.py's role table and the routes' own checks.
ACCESS: dict[tuple[str, str], frozenset[str] | str] = {
    ("GET", "/health"): PUBLIC,  # load balancers and monitoring
    # The API's own documentation: the contract is public, the data behind it is not.
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    # paper trading (issue 9): every role reads (a trader: strategies of their accounts)
    ("GET", "/strategies"): EVERYONE,
    ("POST", "/strategies/{strategy_id}/start"): RISK_OR_ADMIN,
    ("POST", "/strategies/{strategy_id}/stop"): RISK_OR_ADMIN,
    ("GET", "/compliance"): PAGE,
    ("GET", "/compliance/lineage"): PAGE,
    ("POST", "/compliance/session"): PAGE,
    ("POST", "/compliance/sign-out"): PAGE,
    # orders
    ("POST", "/orders"): TRADER,
    ("GET", "/orders"): EVERYONE,
    ("POST", "/orders/{order_id}/cancel"): TRADER | RISK_OR_ADMIN,
    ("POST", "/orders/{order_id}/replace"): TRADER,
    ("GET", "/orders/{order_id}"): EVERYONE,
    # reads
    ("GET", "/positions"): EVERYONE,
    ("GET", "/audit"): EVERYONE,
    ("GET", "/audit/verify"): EVERYONE,
    ("GET", "/instruments"): EVERYONE,
    ("GET", "/accounts"): EVERYONE,
    ("GET", "/projections"): EVERYONE,
    # FINRA CAT order event files: every account's orders (issue 8)
    ("GET", "/cat/{date}/order-events"): NOT_TRADER,
    ("GET", "/cat/{date}/metadata"): NOT_TRADER,
    # trading days
    ("GET", "/trading-day"): EVERYONE,
    ("POST", "/trading-day/open"): RISK_OR_ADMIN,
    ("POST", "/trading-day/close"): RISK_OR_ADMIN,
    # symbols
    ("GET", "/symbols"): EVERYONE,
    ("POST", "/symbols/{symbol}/halt"): RISK_OR_ADMIN,
    ("POST", "/symbols/{symbol}/resume"): RISK_OR_ADMIN,
    ("POST", "/symbols/{symbol}/short-sale-restriction"): RISK,
    # locates
    ("GET", "/locates"): EVERYONE,
    ("POST", "/locates"): TRADER | RISK,
    ("POST", "/locates/{locate_id}/grant"): RISK,
    # kill switches
    ("GET", "/kill-switches"): EVERYONE,
    ("POST", "/kill-switches/trip"): RISK,
    ("POST", "/kill-switches/reset"): RISK,
    # governed limits
    ("GET", "/limits"): EVERYONE,
    ("GET", "/limits/{scope}/history"): NOT_TRADER,  # of the firm scope (traders: theirs)
    ("POST", "/limits/{scope}/requests"): TRADER | RISK_OR_ADMIN,  # a trader: their account
    ("POST", "/limits/requests/{change_id}/approve"): RISK,
    ("POST", "/limits/requests/{change_id}/reject"): TRADER | RISK_OR_ADMIN,
    # users, keys, accounts
    ("GET", "/users"): EVERYONE,
    ("POST", "/users"): ADMIN,
    ("POST", "/users/{username}/disable"): ADMIN,
    ("POST", "/users/{username}/entitlements"): ADMIN,
    ("POST", "/users/{username}/entitlements/revoke"): ADMIN,
    ("POST", "/users/{username}/keys"): ADMIN,  # of another user (their own: anyone)
    ("POST", "/keys/{key_id}/revoke"): ADMIN,  # another user's key (their own: anyone)
    ("POST", "/accounts/{account_id}/suspend"): RISK_OR_ADMIN,
    ("POST", "/accounts/{account_id}/reinstate"): RISK_OR_ADMIN,
    ("GET", "/access/denials"): NOT_TRADER,
    # records (issue 8): a trader's lineage of their accounts, a trader's export only with
    # one of their accounts named (the matrix exports the whole trail)
    ("GET", "/orders/{order_id}/lineage"): EVERYONE,
    ("GET", "/exports/audit.jsonl"): NOT_TRADER,
    ("GET", "/exports/audit.csv"): NOT_TRADER,
    ("GET", "/exports/manifest"): NOT_TRADER,
    # the daily 15c3-5 report (issue 8): read by all but traders, certified by compliance
    ("GET", "/reports/15c3-5"): NOT_TRADER,
    ("GET", "/reports/15c3-5.html"): NOT_TRADER,
    ("GET", "/reports/calibration"): NOT_TRADER,
    ("GET", "/reports/15c3-5/certifications"): NOT_TRADER,
    ("POST", "/reports/15c3-5/certifications"): frozenset({"compliance"}),
}


def app_routes(app: Any) -> set[tuple[str, str]]:
    """Every (method, path) the app answers (HEAD aside: Starlette adds it to GETs), from
    ``app.routes``. FastAPI (0.16x) keeps an included router as one entry holding the
    router; its routes are walked with the prefix it was included under."""
    found: set[tuple[str, str]] = set()

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            included = getattr(route, "original_router", None)
            if included is not None:
                walk(included.routes, prefix + route.include_context.prefix)
            elif isinstance(route, Route):
                found.update((method, prefix + route.path) for method in route.methods or ()
                             if method != "HEAD")
            else:
                raise AssertionError(f"a route of an unknown kind: {route!r}")

    walk(list(app.routes), "")
    return found


def future_iso(seconds: float = 3600) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


_ids = itertools.count(1)


def order(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "client_order_id": f"acc-{next(_ids)}-{uuid.uuid4().hex[:6]}",
        "account_id": "ACC-ALPHA", "symbol": "AAPL", "side": "buy", "quantity": 10,
        "order_type": "limit", "limit_price": "190.00", "time_in_force": "gtc",
    }  # fmt: skip
    body.update(overrides)
    return body


def request_for(client: TestClient, method: str, route: str) -> tuple[str, Any]:
    """A concrete request of the route (path, JSON body) that does no harm if allowed: an
    unknown id, symbol, user or account where the route names one, so an allowed call is
    answered by the rules (404, 409) or done, a refused one is a 403 before anything."""
    values = {
        "order_id": str(uuid.uuid4()), "symbol": "ZZZZ", "locate_id": str(uuid.uuid4()),
        "change_id": str(uuid.uuid4()), "username": "nobody", "account_id": "ACC-NOPE",
        "scope": "firm", "key_id": "nokey", "date": "2001-01-02", "strategy_id": "nostrategy",
    }
    bodies: dict[tuple[str, str], Any] = {
        ("POST", "/orders"): order(),
        ("POST", "/orders/{order_id}/replace"): {"quantity": 5},
        ("POST", "/trading-day/open"): {"reason": "access matrix"},
        ("POST", "/trading-day/close"): {"reason": "access matrix"},
        ("POST", "/locates"): {"account_id": "ACC-ALPHA", "symbol": "AAPL", "quantity": 10,
                               "reason": "access matrix"},
        ("POST", "/locates/{locate_id}/grant"): {"quantity": 1, "expires_at": future_iso(),
                                                 "reason": "access matrix"},
        ("POST", "/kill-switches/trip"): {"scope": "account:ACC-NOPE", "reason": "matrix"},
        ("POST", "/kill-switches/reset"): {"scope": "firm", "reason": "access matrix"},
        ("POST", "/limits/{scope}/requests"): {"field": "max_order_quantity", "value": "9000",
                                               "reason": "access matrix"},
        ("POST", "/users"): {"username": f"matrix-{next(_ids)}", "role": "auditor",
                             "reason": "access matrix"},
        ("POST", "/users/{username}/entitlements"): {"account_id": "ACC-ALPHA",
                                                     "reason": "access matrix"},
        ("POST", "/users/{username}/entitlements/revoke"): {"account_id": "ACC-ALPHA",
                                                            "reason": "access matrix"},
        ("POST", "/reports/15c3-5/certifications"): {"report_sha256": "0" * 64,
                                                    "date": "1999-01-04",
                                                    "reason": "access matrix"},
    }
    if route == "/limits/{scope}/requests":
        values["scope"] = "account:ACC-ALPHA"  # the trader's own account: theirs to ask
    if route == "/users/{username}/keys":
        values["username"] = "maria"  # another user's key
    if route == "/keys/{key_id}/revoke":
        # A live key of another user (maria's): only an admin may revoke it.
        response = client.post("/users/maria/keys", json={"reason": "to be revoked"},
                               headers=user_headers(client, "admin"))
        assert response.status_code == 201, response.text
        values["key_id"] = response.json()["key_id"]
    body = bodies.get((method, route), {"reason": "access matrix"} if method == "POST" else None)
    return route.format(**values), body


def send(client: TestClient, method: str, path: str, body: Any,
         headers: dict[str, str] | None = None) -> Any:
    if method == "GET":
        return client.get(path, headers=headers)
    return client.post(path, json=body, headers=headers)


def denials(client: TestClient) -> dict[str, Any]:
    r = client.get("/access/denials", params={"limit": 10_000},
                   headers=user_headers(client, "abe"))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def recorded_denials(client: TestClient, expected: int) -> list[dict[str, Any]]:
    """The AccessDenied events, once all ``expected`` of them are in the audit trail (a
    denial is recorded through the engine without holding its answer up)."""
    deadline = time.monotonic() + 15
    while True:
        recorded = denials(client)["recorded"]
        if len(recorded) >= expected or time.monotonic() > deadline:
            assert len(recorded) == expected, recorded[expected:] or recorded
            return recorded  # type: ignore[no-any-return]
        time.sleep(0.05)


def access_denied_count(client: TestClient) -> int:
    return client.get("/health").json()["engine"]["access_denied"]  # type: ignore[no-any-return]


@pytest.fixture
def client(backend: Settings) -> Iterator[TestClient]:
    """A client with no token of its own: each request says who makes it."""
    with TestClient(create_app(backend)) as c:
        yield c


# ------------------------------------------------------------------ the role table


def test_the_table_names_every_route_of_the_app(client: TestClient) -> None:
    routes = app_routes(client.app)
    assert routes - set(ACCESS) == set(), "a route nobody said who may call"
    assert set(ACCESS) - routes == set(), "the table names a route the app does not have"
    for roles in ACCESS.values():
        assert roles in (PUBLIC, PAGE) or (roles and roles <= EVERYONE)


def test_every_role_against_every_route(client: TestClient) -> None:
    refused: list[tuple[str, str, str]] = []  # (user, action, route) of each 403
    wrong: list[tuple[str, str, str, int, str]] = []
    for (method, route), allowed in sorted(ACCESS.items()):
        if allowed == PAGE:
            continue
        for role, username in ROLES.items():
            path, body = request_for(client, method, route)
            r = send(client, method, path, body, user_headers(client, username))
            may = allowed == PUBLIC or role in allowed
            if may and (r.status_code in (401, 403) or r.status_code >= 500):
                wrong.append((role, method, path, r.status_code, r.text[:200]))
            elif not may:
                if r.status_code != 403:
                    wrong.append((role, method, path, r.status_code, r.text[:200]))
                else:
                    refused.append((username, f"{method} {path.split('?')[0]}", route))
    assert wrong == []
    assert refused  # the table refuses something to every role but the admin
    assert {user for user, _, _ in refused} == {"tester", "rose", "cleo", "abe", "admin"}

    # Every refusal is recorded: who, what, why; and counted once.
    recorded = recorded_denials(client, len(refused))
    assert Counter((e["actor"], e["payload"]["action"]) for e in recorded) == Counter(
        (user, action) for user, action, _ in refused)
    for event in recorded:
        assert event["event_type"] == "AccessDenied"
        assert event["source"] == "api"
        assert event["payload"]["reason"]
    assert access_denied_count(client) == len(refused)
    assert denials(client)["counted"] == {"forbidden": len(refused)}


def test_a_role_refusal_names_the_role_and_what_it_needs(client: TestClient) -> None:
    r = client.post("/symbols/AAPL/halt", json={"reason": "not mine to do"},
                    headers=user_headers(client, "cleo"))
    assert r.status_code == 403, r.text
    assert "compliance" in r.json()["detail"] and "risk_officer" in r.json()["detail"]
    [event] = recorded_denials(client, 1)
    assert (event["actor"], event["payload"]["action"]) == ("cleo", "POST /symbols/AAPL/halt")
    assert event["payload"]["reason"] == r.json()["detail"]
    # Nothing else happened: AAPL trades.
    symbols = client.get("/symbols", headers=user_headers(client, "cleo")).json()
    assert {s["symbol"]: s["halted"] for s in symbols}["AAPL"] is False


# ------------------------------------------------------------------ authentication


def test_without_a_token_every_route_but_health_is_401(client: TestClient) -> None:
    refused: list[str] = []
    for (method, route), allowed in sorted(ACCESS.items()):
        if allowed == PAGE:
            continue
        path, body = request_for(client, method, route)
        r = send(client, method, path, body)
        if allowed == PUBLIC:
            assert r.status_code == 200, (method, path, r.text[:200])
            continue
        assert r.status_code == 401, (method, path, r.status_code, r.text[:200])
        assert r.headers["WWW-Authenticate"] == "Bearer", (method, path)
        assert "Bearer" in r.json()["detail"]
        refused.append(f"{method} {path}")
    assert len(refused) == sum(1 for a in ACCESS.values() if a not in (PUBLIC, PAGE))
    recorded = recorded_denials(client, len(refused))
    assert sorted(e["payload"]["action"] for e in recorded) == sorted(refused)
    assert {e["actor"] for e in recorded} == {"unauthenticated"}
    assert all(e["payload"]["reason"] for e in recorded)
    assert access_denied_count(client) == len(refused)
    assert denials(client)["counted"] == {"unauthenticated": len(refused)}


def test_health_needs_no_token_and_reports_the_denials(client: TestClient) -> None:
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json()["engine"]["access_denied"] == 0
    assert client.get("/orders").status_code == 401
    assert client.get("/health").json()["engine"]["access_denied"] == 1


MALFORMED = [
    pytest.param("Bearer", id="no_token"),
    pytest.param("Bearer ", id="empty_token"),
    pytest.param("Bearer    ", id="blank_token"),
    pytest.param("Basic dGVzdGVyOnRlc3Rlcg==", id="basic"),
    pytest.param("Token {token}", id="other_scheme"),
    pytest.param("{token}", id="no_scheme"),
    pytest.param("Bearer {token}x", id="token_altered"),
    pytest.param("Bearer mlk_000000000000_" + "A" * 43, id="unknown_key"),
    pytest.param("Bearer " + "x" * 201, id="token_too_long"),
]


@pytest.mark.parametrize("header", MALFORMED)
def test_a_malformed_or_unknown_authorization_header_is_401(client: TestClient,
                                                             header: str) -> None:
    token = issue_token(client.app.state.system, "tester")  # type: ignore[attr-defined]
    r = client.get("/orders", headers={"Authorization": header.format(token=token)})
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert token not in r.text
    [event] = recorded_denials(client, 1)
    assert (event["actor"], event["payload"]["action"]) == ("unauthenticated", "GET /orders")
    assert event["payload"]["reason"] == r.json()["detail"]
    assert access_denied_count(client) == 1
    # The same token, well formed, works (the scheme's case does not matter).
    assert client.get("/orders", headers=bearer(token)).status_code == 200
    assert client.get("/orders", headers={"Authorization": f"bearer {token}"}).status_code == 200


def test_a_revoked_key_is_refused_at_once(client: TestClient) -> None:
    issued = client.post("/users/tester/keys", json={"reason": "a second key"},
                         headers=user_headers(client, "admin"))
    assert issued.status_code == 201, issued.text
    key = issued.json()
    assert key["token"].startswith("mlk_") and key["key_id"] in key["token"]
    mine = bearer(key["token"])
    assert client.get("/orders", headers=mine).status_code == 200
    # The admin sees the key id, never the key.
    listed = client.get("/users", headers=user_headers(client, "admin")).json()
    [tester] = [u for u in listed if u["username"] == "tester"]
    assert key["key_id"] in tester["key_ids"]
    assert key["token"] not in str(listed)

    r = client.post(f"/keys/{key['key_id']}/revoke", json={"reason": "laptop lost"},
                    headers=user_headers(client, "admin"))
    assert r.status_code == 200, r.text
    r = client.get("/orders", headers=mine)
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert "revoked" in r.json()["detail"]
    # Other keys of the user still work; revoking twice is refused by the rules.
    assert client.get("/orders", headers=user_headers(client, "tester")).status_code == 200
    again = client.post(f"/keys/{key['key_id']}/revoke", json={"reason": "twice"},
                        headers=user_headers(client, "admin"))
    assert again.status_code == 409, again.text
    revoked = [e for e in client.get("/audit", params={"limit": 10_000},
                                     headers=user_headers(client, "abe")).json()
               if e["event_type"] == "ApiKeyRevoked"]
    assert [(e["actor"], e["payload"]["key_id"], e["payload"]["reason"]) for e in revoked] == [
        ("admin", key["key_id"], "laptop lost")]


def test_users_issue_and_revoke_their_own_keys_only(client: TestClient) -> None:
    maria = user_headers(client, "maria")
    own = client.post("/users/maria/keys", json={"reason": "rotation"}, headers=maria)
    assert own.status_code == 201, own.text
    fresh = bearer(own.json()["token"])
    assert client.get("/accounts", headers=fresh).status_code == 200
    # Not someone else's key, and not someone else's revocation.
    assert client.post("/users/fred/keys", json={"reason": "x"}, headers=maria
                       ).status_code == 403
    freds = client.post("/users/fred/keys", json={"reason": "for fred"},
                        headers=user_headers(client, "admin")).json()
    r = client.post(f"/keys/{freds['key_id']}/revoke", json={"reason": "not mine"},
                    headers=maria)
    assert r.status_code == 403, r.text
    assert client.get("/accounts", headers=bearer(freds["token"])).status_code == 200
    # Her own: revoked, refused from then on.
    r = client.post(f"/keys/{own.json()['key_id']}/revoke", json={"reason": "rotated"},
                    headers=fresh)
    assert r.status_code == 200, r.text
    assert client.get("/accounts", headers=fresh).status_code == 401
    recorded = recorded_denials(client, 3)
    assert [(e["actor"], e["payload"]["action"]) for e in recorded] == [
        ("maria", "POST /users/fred/keys"),
        ("maria", f"POST /keys/{freds['key_id']}/revoke"),
        ("unauthenticated", "GET /accounts")]


def test_a_disabled_users_keys_are_refused(client: TestClient) -> None:
    admin = user_headers(client, "admin")
    created = client.post("/users", json={"username": "temp.trader", "role": "trader",
                                          "reason": "summer intern"}, headers=admin)
    assert created.status_code == 201, created.text
    r = client.post("/users/temp.trader/entitlements",
                    json={"account_id": "ACC-GAMMA", "reason": "desk"}, headers=admin)
    assert r.status_code == 200, r.text
    key = client.post("/users/temp.trader/keys", json={"reason": "first key"}, headers=admin)
    assert key.status_code == 201, key.text
    temp = bearer(key.json()["token"])
    assert [a["account_id"] for a in client.get("/accounts", headers=temp).json()] == [
        "ACC-GAMMA"]

    r = client.post("/users/temp.trader/disable", json={"reason": "internship over"},
                    headers=admin)
    assert r.status_code == 200, r.text
    for path in ("/accounts", "/orders"):
        r = client.get(path, headers=temp)
        assert r.status_code == 401, (path, r.text)
        assert r.headers["WWW-Authenticate"] == "Bearer"
    r = client.post("/orders", json=order(account_id="ACC-GAMMA"), headers=temp)
    assert r.status_code == 401, r.text
    # A disabled user gets no new key either.
    r = client.post("/users/temp.trader/keys", json={"reason": "again"}, headers=admin)
    assert r.status_code == 409, r.text
    [user] = [u for u in client.get("/users", headers=admin).json()
              if u["username"] == "temp.trader"]
    assert (user["active"], user["key_ids"]) == (False, [])


# ------------------------------------------------------------------ a trader's accounts


@pytest.fixture
def two_accounts(client: TestClient) -> dict[str, Any]:
    """Orders, fills, positions and locates on ACC-ALPHA and ACC-BETA (placed by "tester",
    entitled to both); "maria" trades ACC-ALPHA only."""
    tester = user_headers(client, "tester")

    def place(**fields: Any) -> dict[str, Any]:
        r = client.post("/orders", json=order(**fields), headers=tester)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    alpha_bid = place(quantity=30, limit_price="189.00")
    beta_offer = place(account_id="ACC-BETA", side="sell", quantity=20, limit_price="191.00")
    place(account_id="ACC-BETA", side="sell", quantity=7, limit_price="190.00")
    taker = place(quantity=7, limit_price="190.00")  # ALPHA buys 7 from BETA
    assert taker["status"] == "filled"
    grant_locates(client, ["ACC-ALPHA", "ACC-BETA"], "MSFT", 100)
    return {"alpha_bid": alpha_bid, "beta_offer": beta_offer}


def test_a_trader_reads_only_their_accounts(client: TestClient,
                                            two_accounts: dict[str, Any]) -> None:
    maria = user_headers(client, "maria")
    everyone = user_headers(client, "abe")

    def get(path: str, headers: dict[str, str], **params: Any) -> Any:
        r = client.get(path, params=params, headers=headers)
        assert r.status_code == 200, (path, r.text)
        return r.json()

    orders = get("/orders", maria)
    assert orders and {o["account_id"] for o in orders} == {"ACC-ALPHA"}
    assert orders == [o for o in get("/orders", everyone) if o["account_id"] == "ACC-ALPHA"]
    assert get("/orders", maria, account_id="ACC-ALPHA") == orders
    positions = get("/positions", maria)
    assert [p["account_id"] for p in positions] == ["ACC-ALPHA"]
    assert {p["account_id"] for p in get("/positions", everyone)} == {"ACC-ALPHA", "ACC-BETA"}
    trail = get("/audit", maria, limit=10_000)
    assert trail and {e["account_id"] for e in trail} == {"ACC-ALPHA"}
    assert [a["account_id"] for a in get("/accounts", maria)] == ["ACC-ALPHA"]
    assert len(get("/accounts", everyone)) == 4
    assert [loc["account_id"] for loc in get("/locates", maria)] == ["ACC-ALPHA"]
    assert {loc["account_id"] for loc in get("/locates", everyone)} == {"ACC-ALPHA",
                                                                        "ACC-BETA"}
    assert [u["username"] for u in get("/users", maria)] == ["maria"]
    scopes = [s["scope"] for s in get("/limits", maria)["scopes"]]
    assert "firm" not in scopes and "account:ACC-BETA" not in scopes
    assert "account:ACC-ALPHA" in scopes
    assert get("/limits/account:ACC-ALPHA/history", maria) == []

    # Asking for another account by name is refused, and recorded with that account.
    asked = [("/orders", {"account_id": "ACC-BETA"}), ("/positions", {"account_id": "ACC-BETA"}),
             ("/audit", {"account_id": "ACC-BETA"}),
             (f"/orders/{two_accounts['beta_offer']['order_id']}", {}),
             ("/limits/account:ACC-BETA/history", {}), ("/limits/firm/history", {}),
             ("/access/denials", {})]
    for path, params in asked:
        r = client.get(path, params=params, headers=maria)
        assert r.status_code == 403, (path, r.text)
    recorded = recorded_denials(client, len(asked))
    assert [(e["actor"], e["payload"]["action"]) for e in recorded] == [
        ("maria", f"GET {path}") for path, _ in asked]
    assert [e["account_id"] for e in recorded][:4] == ["ACC-BETA"] * 4
    assert access_denied_count(client) == len(asked)


def test_an_order_for_an_account_not_the_traders_is_rejected_by_entitlement(
        client: TestClient) -> None:
    maria = user_headers(client, "maria")
    r = client.post("/orders", json=order(account_id="ACC-BETA", client_order_id="not-hers"),
                    headers=maria)
    assert r.status_code == 201, r.text  # a decision, recorded like every rejection
    body = r.json()
    assert body["status"] == "rejected"
    assert body["reject"] == {"control": "entitlement",
                              "threshold": "user entitled to ACC-BETA", "observed": "maria"}
    events = client.get("/audit", params={"order_id": body["order_id"]},
                        headers=user_headers(client, "abe")).json()
    assert [(e["event_type"], e["actor"], e["account_id"]) for e in events] == [
        ("OrderRejected", "maria", "ACC-BETA")]
    assert events[0]["payload"]["control"] == "entitlement"
    # Her own account trades; a short sale there still needs its locate.
    mine = client.post("/orders", json=order(), headers=maria)
    assert (mine.status_code, mine.json()["status"]) == (201, "accepted")
    short = client.post("/orders", json=order(side="sell_short", limit_price="191.00"),
                        headers=maria).json()
    assert short["reject"]["control"] == "locate"
    # A trader entitled to both accounts trades either.
    both = client.post("/orders", json=order(account_id="ACC-BETA"),
                       headers=user_headers(client, "tester"))
    assert both.json()["status"] == "accepted"


def test_cancel_of_another_accounts_order_is_403_and_recorded(
        client: TestClient, two_accounts: dict[str, Any]) -> None:
    maria = user_headers(client, "maria")
    beta = two_accounts["beta_offer"]
    r = client.post(f"/orders/{beta['order_id']}/cancel", headers=maria)
    assert r.status_code == 403, r.text
    assert "ACC-BETA" in r.json()["detail"]
    abe = user_headers(client, "abe")
    assert client.get(f"/orders/{beta['order_id']}", headers=abe).json()["status"] == "accepted"
    [denial] = recorded_denials(client, 1)
    assert (denial["actor"], denial["account_id"], denial["payload"]["action"]) == (
        "maria", "ACC-BETA", f"POST /orders/{beta['order_id']}/cancel")
    assert access_denied_count(client) == 1
    # A replace of it is refused by the entitlement control (a recorded ReplaceRejected).
    r = client.post(f"/orders/{beta['order_id']}/replace", json={"quantity": 5},
                    headers=maria)
    assert r.status_code == 409, r.text
    assert r.json()["detail"]["control"] == "entitlement"
    events = client.get("/audit", params={"order_id": beta["order_id"]}, headers=abe).json()
    assert events[-1]["event_type"] == "ReplaceRejected"
    # Her own account's order she cancels, whoever placed it; a risk officer cancels any.
    alpha = two_accounts["alpha_bid"]
    r = client.post(f"/orders/{alpha['order_id']}/cancel", headers=maria)
    assert (r.status_code, r.json()["status"]) == (200, "canceled")
    r = client.post(f"/orders/{beta['order_id']}/cancel", headers=user_headers(client, "rose"))
    assert (r.status_code, r.json()["status"]) == (200, "canceled")
    # Compliance and auditors read; they do not cancel.
    for reader in ("cleo", "abe"):
        r = client.post(f"/orders/{alpha['order_id']}/cancel", headers=headers_for(client,
                                                                                   reader))
        assert r.status_code == 403, r.text
