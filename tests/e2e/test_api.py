"""The REST contract end to end: FastAPI's TestClient over the real bootstrap (engine, event
store, projections), on SQLite and on PostgreSQL (the ``backend`` fixture yields Settings).

The synthetic liquidity provider is off, so only the orders a test sends can trade. The
duplicate control rejects the same (account, symbol, side, quantity, price) within 1 s, so
every test varies one of those between its own orders unless it means to hit that control.

Every request carries a bearer token: the client acts as the trader "tester" (entitled to
every account); other users act through ``user_headers``. Keys are events too, so tests
that count the log count from a baseline taken after their keys were issued; a trader
reads only the events of their accounts, so tests that read the whole trail read it as the
auditor "abe". Short sales need locates (``grant_locates``).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api import orders as api_orders
from api.app import create_app
from infrastructure.settings import Settings
from tests.auth import grant_locates, login, user_headers

ORDER_KEYS = {
    "order_id", "client_order_id", "account_id", "symbol", "side", "quantity", "order_type",
    "limit_price", "time_in_force", "status", "filled_quantity", "average_fill_price", "reject",
}  # fmt: skip
POSITION_KEYS = {"account_id", "symbol", "quantity", "average_price", "realized_pnl"}
AUDIT_KEYS = {
    "position", "event_type", "aggregate_id", "aggregate_version", "timestamp", "ts_ns",
    "actor", "source", "account_id", "order_id", "payload",
}  # fmt: skip
REQUIRED_FIELDS = ["client_order_id", "account_id", "symbol", "side", "quantity", "order_type"]
TEST_TOML = Path(__file__).resolve().parents[1] / "config" / "test.toml"

ACCOUNTS = ("ACC-ALPHA", "ACC-BETA", "ACC-GAMMA", "ACC-DELTA")  # all the tester's

_ids = itertools.count(1)


# ---------------------------------------------------------------------------- fixtures

@pytest.fixture
def client(backend: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(backend)) as c:
        login(c, "tester")  # a trader entitled to every account (tests/config/test.toml)
        yield c


def new_order(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "client_order_id": f"cl-{next(_ids)}-{uuid.uuid4().hex[:8]}",
        "account_id": "ACC-ALPHA",
        "symbol": "AAPL",
        "side": "buy",
        "quantity": 10,
        "order_type": "limit",
        "limit_price": "190.00",
        "time_in_force": "day",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not _ABSENT}


_ABSENT = object()


def post(client: TestClient, expected: int = 201, user: str | None = None,
         **overrides: Any) -> dict[str, Any]:
    headers = user_headers(client, user) if user else {}
    r = client.post("/orders", json=new_order(**overrides), headers=headers)
    assert r.status_code == expected, r.text
    body: dict[str, Any] = r.json()
    if expected in (200, 201):
        assert set(body) == ORDER_KEYS
        # The POST body is the order as it stands: a GET right after says the same (read by
        # the auditor when no trader may read it: an account that does not exist).
        reader = {} if body["account_id"] in ACCOUNTS else user_headers(client, "abe")
        assert get_order(client, body["order_id"], reader) == body
    return body


def get_order(client: TestClient, order_id: str,
              headers: dict[str, str] | None = None) -> dict[str, Any]:
    r = client.get(f"/orders/{order_id}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def audit(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    """The audit trail as the client's trader sees it (the events of their accounts)."""
    params.setdefault("limit", 10_000)
    r = client.get("/audit", params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def full_audit(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    """The whole audit trail (read by the auditor "abe"): trading days and keys too."""
    params.setdefault("limit", 10_000)
    r = client.get("/audit", params=params, headers=user_headers(client, "abe"))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def head_position(client: TestClient) -> int:
    r = client.get("/health")
    assert r.status_code == 200, r.text
    return r.json()["store"]["head_position"]  # type: ignore[no-any-return]


def journal_state(client: TestClient) -> tuple[int, int]:
    return len(full_audit(client)), head_position(client)


def positions(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/positions", params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def locs(response: Any) -> list[tuple[Any, ...]]:
    return [tuple(d["loc"]) for d in response.json()["detail"]]


def events_of(client: TestClient, order_id: str) -> list[dict[str, Any]]:
    return full_audit(client, order_id=order_id)


def iso(ts_ns: int) -> str:
    """An ISO-8601 UTC instant with microseconds (what the API parses), truncated."""
    moment = datetime.fromtimestamp(ts_ns // 1_000_000_000, UTC) + timedelta(
        microseconds=(ts_ns % 1_000_000_000) // 1_000)
    return moment.isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------- order entry


def test_accepted_order_is_201_with_the_contract_shape(client: TestClient) -> None:
    body = post(client, client_order_id="first-1", quantity=25, limit_price="189.50")
    uuid.UUID(body["order_id"])
    assert {k: v for k, v in body.items() if k != "order_id"} == {
        "client_order_id": "first-1", "account_id": "ACC-ALPHA", "symbol": "AAPL",
        "side": "buy", "quantity": 25, "order_type": "limit", "limit_price": "189.5",
        "time_in_force": "day", "status": "accepted", "filled_quantity": 0,
        "average_fill_price": None, "reject": None,
    }  # fmt: skip
    listed = client.get("/orders").json()
    assert listed == [body]


@pytest.mark.parametrize("price", ["190.25", 190.25, "190.2500", 190.25000])
def test_limit_price_as_string_or_number(client: TestClient, price: Any) -> None:
    body = post(client, limit_price=price)
    assert body["limit_price"] == "190.25"
    assert body["status"] == "accepted"


@pytest.mark.parametrize("side", ["buy", "sell", "sell_short"])
@pytest.mark.parametrize("tif", ["day", "gtc"])
def test_every_side_and_resting_time_in_force(client: TestClient, side: str, tif: str) -> None:
    grant_locates(client, "ACC-ALPHA", "AAPL", 10)  # a short sale needs a locate
    body = post(client, side=side, time_in_force=tif)
    assert (body["side"], body["time_in_force"], body["status"]) == (side, tif, "accepted")


def test_order_is_durable_when_acknowledged(client: TestClient) -> None:
    user_headers(client, "alice")  # her key is an event of its own: issued before counting
    before = head_position(client)
    body = post(client, user="alice")
    assert head_position(client) == before + 1
    [event] = events_of(client, body["order_id"])
    assert set(event) == AUDIT_KEYS
    assert event["event_type"] == "OrderAccepted"
    assert (event["actor"], event["source"]) == ("alice", "api")
    assert event["account_id"] == "ACC-ALPHA"
    assert event["aggregate_id"] == event["order_id"] == body["order_id"]
    assert event["aggregate_version"] == 1
    assert event["payload"]["client_order_id"] == body["client_order_id"]
    assert event["timestamp"].endswith("Z") and len(event["timestamp"].split(".")[1]) == 10


def test_the_actor_is_the_tokens_user_whatever_the_headers_say(client: TestClient) -> None:
    body = post(client)
    [event] = events_of(client, body["order_id"])
    assert event["actor"] == "tester"
    # The header that once named the actor names nobody now: no one can act as another.
    r = client.post("/orders", json=new_order(quantity=11),
                    headers={"X-Marketlog-User": "alice"})
    assert r.status_code == 201, r.text
    [event] = events_of(client, r.json()["order_id"])
    assert event["actor"] == "tester"


def test_invalid_credentials_are_401_and_no_order_is_journaled(client: TestClient) -> None:
    orders_before = client.get("/orders").json()
    for header in ("Bearer has space", "Basic dGVzdGVyOnRlc3Rlcg==", "Bearer mlk_nope_x"):
        r = client.post("/orders", json=new_order(), headers={"Authorization": header})
        assert r.status_code == 401, r.text
        assert r.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/orders").json() == orders_before
    # Only the refusals are recorded (AccessDenied), none of them an order event.
    trail = full_audit(client)
    assert {e["event_type"] for e in trail} <= {"TradingDayOpened", "ApiKeyIssued",
                                                "AccessDenied"}


# -------------------------------------------------------------- pre-trade controls

REJECTIONS = [
    pytest.param({"account_id": "ACC-NOPE"}, "unknown_account", "configured account",
                 "ACC-NOPE", id="unknown_account"),
    pytest.param({"symbol": "ZZZZ"}, "unknown_symbol", "listed instrument", "ZZZZ",
                 id="unknown_symbol"),
    pytest.param({"symbol": "RSTR", "limit_price": "42.00"}, "restricted",
                 "firm restricted list", "RSTR", id="restricted_firm"),
    pytest.param({"account_id": "ACC-GAMMA", "symbol": "TSLA", "limit_price": "250.00"},
                 "restricted", "account restricted list", "TSLA", id="restricted_account"),
    pytest.param({"symbol": "PENNY", "quantity": 150, "limit_price": "0.95"}, "lot_size",
                 "multiple of 100", "150", id="lot_size"),
    pytest.param({"limit_price": "190.005"}, "tick_size", "multiple of 0.01", "190.005",
                 id="tick_size"),
    pytest.param({"symbol": "PENNY", "quantity": 100, "limit_price": "0.95005"}, "tick_size",
                 "multiple of 0.0001", "0.95005", id="tick_size_penny"),
    pytest.param({"quantity": 10_001, "limit_price": "1.00"}, "max_qty", "10000", "10001",
                 id="max_qty_default"),
    pytest.param({"account_id": "ACC-GAMMA", "quantity": 5001}, "max_qty", "5000", "5001",
                 id="max_qty_gamma"),
    pytest.param({"limit_price": "209.01"}, "price_collar", "0.10", "0.100053",
                 id="price_collar_above"),
    pytest.param({"side": "sell", "limit_price": "170.99"}, "price_collar", "0.10", "0.100053",
                 id="price_collar_below"),
    pytest.param({"symbol": "NEWCO"}, "price_collar", "reference price required", "none",
                 id="no_reference_price"),
    pytest.param({"symbol": "NEWCO", "order_type": "market", "limit_price": None},
                 "price_collar", "reference price required", "none",
                 id="no_reference_price_market"),
    pytest.param({"quantity": 5264}, "max_notional", "1000000", "1000160.00",
                 id="max_notional"),
    # A market buy is valued at its protection price: reference 190 + 10% collar = 209.00.
    pytest.param({"quantity": 4785, "order_type": "market", "limit_price": None},
                 "max_notional", "1000000", "1000065.00", id="max_notional_market"),
    pytest.param({"symbol": "BRKA", "quantity": 2, "limit_price": "620000"},
                 "max_notional", "1000000", "1240000", id="max_notional_brka"),
    pytest.param({"account_id": "ACC-DELTA", "symbol": "BRKA", "quantity": 4,
                  "limit_price": "620000"}, "max_notional", "2000000", "2480000",
                 id="max_notional_delta"),
]


@pytest.mark.parametrize(("fields", "control", "threshold", "observed"), REJECTIONS)
def test_control_rejects_through_http(client: TestClient, fields: dict[str, Any], control: str,
                                      threshold: str, observed: str) -> None:
    body = post(client, user="alice", **fields)
    assert body["status"] == "rejected"
    assert body["reject"] == {"control": control, "threshold": threshold, "observed": observed}
    assert (body["filled_quantity"], body["average_fill_price"]) == (0, None)
    [event] = events_of(client, body["order_id"])
    assert event["event_type"] == "OrderRejected"
    assert event["actor"] == "alice"
    assert {k: event["payload"][k] for k in ("control", "threshold", "observed")} == body["reject"]
    assert client.get("/orders", params={"status": "rejected"},
                      headers=user_headers(client, "abe")).json() == [body]
    assert positions(client) == []


AT_LIMIT = [
    pytest.param({"limit_price": "209.00", "quantity": 1}, id="collar_exactly_10pct_above"),
    pytest.param({"limit_price": "171.00", "quantity": 1, "side": "sell"},
                 id="collar_exactly_10pct_below"),
    pytest.param({"symbol": "PENNY", "quantity": 10_000, "limit_price": "0.95"},
                 id="max_qty_default"),
    pytest.param({"account_id": "ACC-GAMMA", "quantity": 5000}, id="max_qty_gamma"),
    pytest.param({"quantity": 5000, "limit_price": "200.00"}, id="max_notional_exact"),
    pytest.param({"account_id": "ACC-DELTA", "quantity": 10_000, "limit_price": "200.00"},
                 id="max_notional_delta_exact"),
    pytest.param({"symbol": "PENNY", "quantity": 200, "limit_price": "0.9501"}, id="penny_lot"),
    pytest.param({"symbol": "BRKA", "quantity": 1, "limit_price": "620001"}, id="brka_tick_1"),
]


@pytest.mark.parametrize("fields", AT_LIMIT)
def test_order_at_the_limit_is_accepted(client: TestClient, fields: dict[str, Any]) -> None:
    body = post(client, **fields)
    assert body["status"] == "accepted", body["reject"]
    assert body["reject"] is None


def test_market_order_at_its_notional_limit_passes_and_is_protected(client: TestClient) -> None:
    body = post(client, quantity=4784, order_type="market", limit_price=None)  # 999,856
    assert body["reject"] is None
    # Nothing rests within its protection price (no liquidity here): the remainder is cancelled.
    assert body["status"] == "canceled"
    accepted, canceled = events_of(client, body["order_id"])
    assert accepted["payload"]["protection_price"] == "209.00"
    assert accepted["payload"]["exposure_price"] == "209.00"
    assert canceled["payload"]["reason"] == "market_no_liquidity"


def test_a_market_order_never_fills_beyond_its_protection_price(client: TestClient) -> None:
    post(client, account_id="ACC-BETA", side="sell", quantity=5, limit_price="200.00")
    post(client, account_id="ACC-BETA", side="sell", quantity=5, limit_price="209.00")
    post(client, account_id="ACC-BETA", side="sell", quantity=6, limit_price="209.00",
         time_in_force="gtc")
    post(client, account_id="ACC-GAMMA", side="sell", quantity=5, limit_price="208.99")
    body = post(client, quantity=30, order_type="market", limit_price=None)
    fills = [e["payload"] for e in events_of(client, body["order_id"])
             if e["event_type"] == "OrderFilled"]
    # Every ask within the protection price (200, 208.99, 209, 209) trades; the rest of the
    # market order is cancelled rather than sweeping on (none rests beyond: see the engine
    # test with a moving market for that).
    assert sum(f["fill_quantity"] for f in fills) == 21
    assert max(Decimal(f["fill_price"]) for f in fills) <= Decimal("209.00")
    assert body["status"] == "canceled" and body["filled_quantity"] == 21


def test_duplicate_within_the_window_is_rejected(client: TestClient) -> None:
    first = post(client, quantity=33, limit_price="190.10")
    second = post(client, quantity=33, limit_price="190.10")  # another client id, same order
    assert first["status"] == "accepted"
    assert second["status"] == "rejected"
    reject = second["reject"]
    assert reject["control"] == "duplicate"
    assert reject["threshold"] == "1000000000ns"
    assert reject["observed"].endswith("ns")
    assert 0 <= int(reject["observed"][:-2]) < 1_000_000_000
    # Any difference in the key is a different order.
    assert post(client, quantity=34, limit_price="190.10")["status"] == "accepted"
    assert post(client, quantity=33, limit_price="190.11")["status"] == "accepted"
    assert post(client, quantity=33, limit_price="190.10", side="sell")["reject"] is None
    assert post(client, quantity=33, limit_price="190.10",
                account_id="ACC-BETA")["status"] == "accepted"


def test_credit_limit_counts_open_orders_and_accepts_at_the_limit(client: TestClient) -> None:
    # ACC-BETA: credit 2,000,000; each order stays within max notional 1,000,000.
    assert post(client, account_id="ACC-BETA", quantity=5000,
                limit_price="200.00")["status"] == "accepted"  # 1,000,000
    assert post(client, account_id="ACC-BETA", quantity=5000,
                limit_price="199.00")["status"] == "accepted"  # 1,995,000
    over = post(client, account_id="ACC-BETA", quantity=100, limit_price="190.00")
    assert over["reject"] == {"control": "credit", "threshold": "2000000",
                              "observed": "2014000.00"}
    at_limit = post(client, account_id="ACC-BETA", quantity=25, limit_price="200.00")
    assert at_limit["status"] == "accepted"  # exactly 2,000,000
    one_more = post(client, account_id="ACC-BETA", quantity=1, limit_price="190.00")
    assert one_more["reject"] is not None
    assert one_more["reject"]["control"] == "credit"
    assert Decimal(one_more["reject"]["observed"]) == Decimal("2000190")
    # A cancel releases exposure: the same order then fits.
    r = client.post(f"/orders/{at_limit['order_id']}/cancel")
    assert r.status_code == 200, r.text
    assert post(client, account_id="ACC-BETA", quantity=1,
                limit_price="190.01")["status"] == "accepted"


def test_market_order_counts_at_its_protection_price_for_credit(client: TestClient) -> None:
    # ACC-GAMMA: credit 1,000,000. 5000 @ 190 = 950,000 open; a market buy of 240 is valued
    # at its protection price 209.00 (reference 190 + 10%) -> 1,000,160.
    assert post(client, account_id="ACC-GAMMA", quantity=5000)["status"] == "accepted"
    body = post(client, account_id="ACC-GAMMA", quantity=240, order_type="market",
                limit_price=None)
    assert body["reject"] == {"control": "credit", "threshold": "1000000",
                              "observed": "1000160.00"}


def test_firm_credit_limit(backend: Settings, tmp_path: Path) -> None:
    toml = TEST_TOML.read_text().replace('credit_limit = "40000000"',
                                            'credit_limit = "1500000"', 1)
    assert '"1500000"' in toml
    config = tmp_path / "firm.toml"
    config.write_text(toml)
    settings = backend.model_copy(update={"config_file": config})
    with TestClient(create_app(settings)) as client:
        login(client, "tester")
        assert post(client, quantity=5000, limit_price="200.00")["status"] == "accepted"
        body = post(client, account_id="ACC-DELTA", quantity=3000, limit_price="200.00")
        assert body["reject"] == {"control": "firm_credit", "threshold": "1500000",
                                  "observed": "1600000.00"}
        at_limit = post(client, account_id="ACC-DELTA", quantity=2500, limit_price="200.00")
        assert at_limit["status"] == "accepted"


# ------------------------------------------------------------------- idempotency


def test_resend_returns_200_with_the_original_and_journals_nothing(client: TestClient) -> None:
    fields = new_order(client_order_id="resend-1", quantity=12)
    r = client.post("/orders", json=fields)
    assert r.status_code == 201, r.text
    original = r.json()
    before = journal_state(client)
    again = client.post("/orders", json=fields)
    assert again.status_code == 200, again.text
    assert again.json() == original
    # The same price written differently is the same order.
    again = client.post("/orders", json={**fields, "limit_price": 190})
    assert again.status_code == 200, again.text
    assert again.json() == original
    assert journal_state(client) == before
    assert client.get("/orders").json() == [original]


def test_resend_of_a_rejected_order_returns_the_rejection(client: TestClient) -> None:
    fields = new_order(client_order_id="resend-rej", symbol="RSTR", limit_price="42.00")
    first = client.post("/orders", json=fields)
    assert first.status_code == 201
    before = journal_state(client)
    again = client.post("/orders", json=fields)
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.json()["status"] == "rejected"
    assert journal_state(client) == before


@pytest.mark.parametrize(("change", "field"), [
    ({"quantity": 13}, "quantity"),
    ({"limit_price": "190.01"}, "limit_price"),
    ({"side": "sell"}, "side"),
    ({"symbol": "MSFT", "limit_price": "410.00"}, "symbol"),
    ({"time_in_force": "gtc"}, "time_in_force"),
    ({"order_type": "market", "limit_price": None}, "order_type"),
])  # fmt: skip
def test_resend_with_different_fields_is_409(client: TestClient, change: dict[str, Any],
                                            field: str) -> None:
    fields = new_order(client_order_id="resend-2", quantity=12)
    assert client.post("/orders", json=fields).status_code == 201
    before = journal_state(client)
    r = client.post("/orders", json={**fields, **change})
    assert r.status_code == 409, r.text
    assert field in r.json()["detail"]["fields"]
    assert journal_state(client) == before
    assert len(client.get("/orders").json()) == 1


def test_client_order_id_is_scoped_to_the_account(client: TestClient) -> None:
    a = post(client, client_order_id="shared", quantity=5)
    b = post(client, client_order_id="shared", quantity=5, account_id="ACC-BETA")
    assert a["order_id"] != b["order_id"]
    assert (a["status"], b["status"]) == ("accepted", "accepted")


# -------------------------------------------------------------------- validation


def _missing(field: str) -> dict[str, Any]:
    return new_order(**{field: _ABSENT})


INVALID = [
    *[pytest.param(_missing(f), [f], id=f"missing_{f}") for f in REQUIRED_FIELDS],
    pytest.param(new_order(side="hold"), ["side"], id="side_enum"),
    pytest.param(new_order(side="BUY"), ["side"], id="side_case"),
    pytest.param(new_order(order_type="stop"), ["order_type"], id="order_type_enum"),
    pytest.param(new_order(time_in_force="gtd"), ["time_in_force"], id="tif_enum"),
    pytest.param(new_order(quantity=0), ["quantity"], id="quantity_0"),
    pytest.param(new_order(quantity=-1), ["quantity"], id="quantity_-1"),
    pytest.param(new_order(quantity=1.5), ["quantity"], id="quantity_1.5"),
    pytest.param(new_order(quantity="10"), ["quantity"], id="quantity_string"),
    pytest.param(new_order(quantity=None), ["quantity"], id="quantity_null"),
    pytest.param(new_order(quantity=True), ["quantity"], id="quantity_bool"),
    pytest.param(new_order(order_type="market"), ["limit_price"], id="limit_price_on_market"),
    pytest.param(new_order(limit_price=_ABSENT), ["limit_price"], id="limit_without_price"),
    pytest.param(new_order(limit_price=None), ["limit_price"], id="limit_price_null"),
    pytest.param(new_order(limit_price="0"), ["limit_price"], id="limit_price_0"),
    pytest.param(new_order(limit_price="-190"), ["limit_price"], id="limit_price_negative"),
    pytest.param(new_order(limit_price="abc"), ["limit_price"], id="limit_price_text"),
    pytest.param(new_order(limit_price="NaN"), ["limit_price"], id="limit_price_nan"),
    pytest.param(new_order(limit_price="Infinity"), ["limit_price"], id="limit_price_inf"),
    pytest.param(new_order(limit_price="1.000000001"), ["limit_price"],
                 id="limit_price_too_precise"),
    pytest.param(new_order(client_order_id=""), ["client_order_id"], id="client_id_empty"),
    pytest.param(new_order(client_order_id="x" * 65), ["client_order_id"], id="client_id_long"),
    pytest.param(new_order(client_order_id="a b"), ["client_order_id"], id="client_id_space"),
    pytest.param(new_order(account_id=""), ["account_id"], id="account_empty"),
    pytest.param(new_order(symbol="aapl"), ["symbol"], id="symbol_lowercase"),
    pytest.param(new_order(symbol=""), ["symbol"], id="symbol_empty"),
    pytest.param(new_order(unknown="x"), ["unknown"], id="extra_field"),
    pytest.param(new_order(side="hold", quantity=0, time_in_force="x"),
                 ["side", "quantity", "time_in_force"], id="several_bad_fields"),
]


@pytest.mark.parametrize(("body", "fields"), INVALID)
def test_invalid_order_is_422_naming_each_field_and_journals_nothing(
        client: TestClient, body: dict[str, Any], fields: list[str]) -> None:
    before = journal_state(client)
    r = client.post("/orders", json=body)
    assert r.status_code == 422, r.text
    named = {loc[1] for loc in locs(r) if loc[0] == "body" and len(loc) > 1}
    assert set(fields) <= named, r.json()
    assert journal_state(client) == before
    assert client.get("/orders").json() == []


@pytest.mark.parametrize("raw", [b'{"client_order_id": "x",', b"not json", b"",
                                 b"[]", b'"order"'])
def test_malformed_json_is_422_and_journals_nothing(client: TestClient, raw: bytes) -> None:
    before = journal_state(client)
    r = client.post("/orders", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert all(d["loc"][0] == "body" for d in r.json()["detail"])
    assert journal_state(client) == before


# ------------------------------------------------------------------ cancel, replace


def test_cancel_live_order(client: TestClient) -> None:
    body = post(client, time_in_force="gtc")
    # bob trades ACC-DELTA only: his cancel of an ACC-ALPHA order is refused (and recorded).
    r = client.post(f"/orders/{body['order_id']}/cancel", headers=user_headers(client, "bob"))
    assert r.status_code == 403, r.text
    assert get_order(client, body["order_id"]) == body
    # maria trades ACC-ALPHA: another user's order of her account is hers to cancel.
    r = client.post(f"/orders/{body['order_id']}/cancel", headers=user_headers(client, "maria"))
    assert r.status_code == 200, r.text
    canceled = r.json()
    assert canceled == {**body, "status": "canceled"}
    assert get_order(client, body["order_id"]) == canceled
    events = events_of(client, body["order_id"])
    # A request by maria, confirmed by the venue (ARCHITECTURE rule 10).
    assert [e["event_type"] for e in events] == ["OrderAccepted", "CancelRequested",
                                                 "OrderCanceled"]
    assert events[1]["actor"] == "maria"
    assert events[2]["actor"] == "venue"
    assert events[2]["payload"]["reason"] == "requested"
    assert events[2]["payload"]["canceled_quantity"] == 10


def test_cancel_of_an_order_no_longer_live_is_409_and_recorded(client: TestClient) -> None:
    body = post(client)
    assert client.post(f"/orders/{body['order_id']}/cancel").status_code == 200
    r = client.post(f"/orders/{body['order_id']}/cancel")
    assert r.status_code == 409, r.text
    assert r.json()["detail"]["reason"] == "order is canceled"
    events = events_of(client, body["order_id"])
    assert events[-1]["event_type"] == "CancelRejected"
    assert get_order(client, body["order_id"])["status"] == "canceled"


def test_cancel_of_a_rejected_order_is_409(client: TestClient) -> None:
    body = post(client, symbol="RSTR", limit_price="42.00")
    r = client.post(f"/orders/{body['order_id']}/cancel")
    assert r.status_code == 409, r.text
    assert r.json()["detail"]["reason"] == "order is rejected"


def test_cancel_and_replace_of_unknown_order_are_404(client: TestClient) -> None:
    unknown = uuid.uuid4()
    before = journal_state(client)
    assert client.post(f"/orders/{unknown}/cancel").status_code == 404
    assert client.post(f"/orders/{unknown}/replace", json={"quantity": 5}).status_code == 404
    assert client.get(f"/orders/{unknown}").status_code == 404
    assert journal_state(client) == before


@pytest.mark.parametrize("path", ["/orders/not-a-uuid/cancel", "/orders/123/replace"])
def test_cancel_and_replace_with_malformed_id_are_422(client: TestClient, path: str) -> None:
    r = client.post(path, json={"quantity": 5})
    assert r.status_code == 422, r.text
    assert ("path", "order_id") in locs(r)


def test_replace_quantity_and_price(client: TestClient) -> None:
    body = post(client, quantity=100, limit_price="189.00")
    r = client.post(f"/orders/{body['order_id']}/replace", json={"quantity": 150},
                    headers=user_headers(client, "dave"))  # an ACC-ALPHA trader
    assert r.status_code == 200, r.text
    assert r.json() == {**body, "quantity": 150}
    r = client.post(f"/orders/{body['order_id']}/replace", json={"limit_price": "188.5"})
    assert r.status_code == 200, r.text
    assert r.json() == {**body, "quantity": 150, "limit_price": "188.5"}
    r = client.post(f"/orders/{body['order_id']}/replace",
                    json={"quantity": 90, "limit_price": 189.25})
    assert r.status_code == 200, r.text
    replaced = r.json()
    assert replaced == {**body, "quantity": 90, "limit_price": "189.25"}
    assert get_order(client, body["order_id"]) == replaced
    events = events_of(client, body["order_id"])
    assert [e["event_type"] for e in events] == (
        ["OrderAccepted"] + ["ReplaceRequested", "OrderReplaced"] * 3)
    assert events[1]["actor"] == "dave"
    assert events[2]["actor"] == "venue"


@pytest.mark.parametrize(("change", "control", "threshold", "observed"), [
    ({"limit_price": "209.01"}, "price_collar", "0.10", "0.100053"),
    ({"limit_price": "190.001"}, "tick_size", "multiple of 0.01", "190.001"),
    ({"quantity": 10_001}, "max_qty", "10000", "10001"),
    ({"quantity": 5264}, "max_notional", "1000000", "1000160.00"),
])  # fmt: skip
def test_replace_refused_by_a_control_is_409(client: TestClient, change: dict[str, Any],
                                             control: str, threshold: str,
                                             observed: str) -> None:
    body = post(client, quantity=100)
    r = client.post(f"/orders/{body['order_id']}/replace", json=change)
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert {k: detail[k] for k in ("control", "threshold", "observed")} == {
        "control": control, "threshold": threshold, "observed": observed}
    assert get_order(client, body["order_id"]) == body  # unchanged
    last = events_of(client, body["order_id"])[-1]
    assert last["event_type"] == "ReplaceRejected"
    assert last["payload"]["control"] == control


def test_replace_refused_by_credit_is_409(client: TestClient) -> None:
    # ACC-BETA, credit 2,000,000: 800,000 + 1,000,000 + 190,000 open.
    body = post(client, account_id="ACC-BETA", quantity=4000, limit_price="200.00")
    post(client, account_id="ACC-BETA", quantity=5000, limit_price="200.00")
    post(client, account_id="ACC-BETA", quantity=1000, limit_price="190.00")
    r = client.post(f"/orders/{body['order_id']}/replace", json={"quantity": 4100})
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert (detail["control"], detail["threshold"]) == ("credit", "2000000")
    assert Decimal(detail["observed"]) == Decimal("2010000")
    assert get_order(client, body["order_id"]) == body
    # Exactly at the limit passes; reducing exposure is always allowed.
    r = client.post(f"/orders/{body['order_id']}/replace", json={"quantity": 4050})
    assert r.status_code == 200, r.text
    r = client.post(f"/orders/{body['order_id']}/replace", json={"quantity": 3000})
    assert r.status_code == 200, r.text
    assert r.json()["quantity"] == 3000


def test_replace_of_penny_lot(client: TestClient) -> None:
    body = post(client, symbol="PENNY", quantity=1000, limit_price="0.9500")
    r = client.post(f"/orders/{body['order_id']}/replace", json={"quantity": 1050})
    assert r.status_code == 409, r.text
    assert r.json()["detail"]["control"] == "lot_size"
    r = client.post(f"/orders/{body['order_id']}/replace", json={"quantity": 1100})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("payload", [{}, {"quantity": None}, {"quantity": None,
                                                               "limit_price": None}])
def test_replace_with_nothing_to_change_is_422(client: TestClient,
                                               payload: dict[str, Any]) -> None:
    body = post(client)
    before = journal_state(client)
    r = client.post(f"/orders/{body['order_id']}/replace", json=payload)
    assert r.status_code == 422, r.text
    assert journal_state(client) == before


@pytest.mark.parametrize(("payload", "field"), [
    ({"quantity": 0}, "quantity"),
    ({"quantity": "10"}, "quantity"),
    ({"quantity": 1.5}, "quantity"),
    ({"limit_price": "-1"}, "limit_price"),
    ({"limit_price": "abc"}, "limit_price"),
    ({"quantity": 5, "side": "sell"}, "side"),
])  # fmt: skip
def test_replace_with_invalid_field_is_422(client: TestClient, payload: dict[str, Any],
                                           field: str) -> None:
    body = post(client)
    before = journal_state(client)
    r = client.post(f"/orders/{body['order_id']}/replace", json=payload)
    assert r.status_code == 422, r.text
    assert ("body", field) in [loc[:2] for loc in locs(r)]
    assert journal_state(client) == before


def test_replace_of_a_canceled_order_is_409(client: TestClient) -> None:
    body = post(client)
    client.post(f"/orders/{body['order_id']}/cancel")
    r = client.post(f"/orders/{body['order_id']}/replace", json={"quantity": 5})
    assert r.status_code == 409, r.text
    assert r.json()["detail"]["control"] == "order_status"
    assert r.json()["detail"]["observed"] == "canceled"


# --------------------------------------------------------------------- execution


def test_cross_between_accounts_fills_positions_and_audit(client: TestClient) -> None:
    # ACC-BETA offers 100 @ 190.00 and 200 @ 191.50; ACC-ALPHA lifts both.
    maker1 = post(client, account_id="ACC-BETA", side="sell", quantity=100,
                  limit_price="190.00", user="lara")
    maker2 = post(client, account_id="ACC-BETA", side="sell", quantity=200,
                  limit_price="191.50", time_in_force="gtc", user="lara")
    taker = post(client, side="buy", quantity=300, limit_price="192.00", user="maria")
    # Fills are in the taker's POST response (executions at the makers' prices).
    assert (taker["status"], taker["filled_quantity"]) == ("filled", 300)
    assert taker["average_fill_price"] == "191"  # (100*190 + 200*191.5) / 300
    m1, m2 = get_order(client, maker1["order_id"]), get_order(client, maker2["order_id"])
    assert (m1["status"], m1["filled_quantity"], m1["average_fill_price"]) == (
        "filled", 100, "190")
    assert (m2["status"], m2["filled_quantity"], m2["average_fill_price"]) == (
        "filled", 200, "191.5")

    # Partial close: ALPHA offers 150 @ 193.00, ACC-DELTA takes 120 of it.
    close = post(client, side="sell", quantity=150, limit_price="193.00")
    buyer = post(client, account_id="ACC-DELTA", side="buy", quantity=120,
                 limit_price="194.00")
    assert (buyer["status"], buyer["filled_quantity"], buyer["average_fill_price"]) == (
        "filled", 120, "193")
    close_now = get_order(client, close["order_id"])
    assert (close_now["status"], close_now["filled_quantity"],
            close_now["average_fill_price"]) == ("partially_filled", 120, "193")

    assert positions(client) == [
        # 300 @ 191 bought, 120 sold @ 193: realized (193 - 191) * 120 = 240.
        {"account_id": "ACC-ALPHA", "symbol": "AAPL", "quantity": 180,
         "average_price": "191", "realized_pnl": "240"},
        {"account_id": "ACC-BETA", "symbol": "AAPL", "quantity": -300,
         "average_price": "191", "realized_pnl": "0"},
        {"account_id": "ACC-DELTA", "symbol": "AAPL", "quantity": 120,
         "average_price": "193", "realized_pnl": "0"},
    ]  # fmt: skip
    assert positions(client, account_id="ACC-DELTA") == [positions(client)[2]]
    # No account of the trader's: refused (403); the auditor reads an empty list.
    assert client.get("/positions", params={"account_id": "ACC-NOPE"}).status_code == 403
    assert client.get("/positions", params={"account_id": "ACC-NOPE"},
                      headers=user_headers(client, "abe")).json() == []

    # The audit trail: the taker's acceptance by its user, then two fills by the venue.
    events = events_of(client, taker["order_id"])
    assert [e["event_type"] for e in events] == ["OrderAccepted", "OrderFilled", "OrderFilled"]
    assert events[0]["actor"] == "maria"
    fills = events[1:]
    assert {(e["actor"], e["source"]) for e in fills} == {("venue", "venue")}
    assert [(e["payload"]["fill_quantity"], Decimal(e["payload"]["fill_price"]),
             e["payload"]["liquidity"], e["payload"]["counterparty"]) for e in fills] == [
        (100, Decimal("190.00"), "taker", maker1["order_id"]),
        (200, Decimal("191.50"), "taker", maker2["order_id"]),
    ]  # fmt: skip
    assert [e["payload"]["leaves_quantity"] for e in fills] == [200, 0]
    maker_fill = events_of(client, maker1["order_id"])[-1]
    assert maker_fill["event_type"] == "OrderFilled"
    assert (maker_fill["actor"], maker_fill["account_id"]) == ("venue", "ACC-BETA")
    assert maker_fill["payload"]["liquidity"] == "maker"
    assert maker_fill["payload"]["counterparty"] == taker["order_id"]
    assert maker_fill["payload"]["trade_id"] == fills[0]["payload"]["trade_id"]
    all_fills = [e for e in audit(client) if e["event_type"] == "OrderFilled"]
    assert len(all_fills) == 6  # two sides per execution, three executions

    # Cancel the rest of the partially filled order; what filled stays filled.
    r = client.post(f"/orders/{close['order_id']}/cancel")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["filled_quantity"]) == ("canceled", 120)
    assert events_of(client, close["order_id"])[-1]["payload"]["canceled_quantity"] == 30
    assert client.get("/audit/verify").json()["ok"] is True


def test_replace_of_partially_filled_order(client: TestClient) -> None:
    maker = post(client, account_id="ACC-BETA", side="sell", quantity=100)
    post(client, quantity=40, limit_price="190.00")
    r = client.post(f"/orders/{maker['order_id']}/replace", json={"quantity": 40})
    assert r.status_code == 409, r.text
    assert r.json()["detail"]["control"] == "min_quantity"
    r = client.post(f"/orders/{maker['order_id']}/replace", json={"quantity": 50})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["filled_quantity"], r.json()["quantity"]) == (
        "partially_filled", 40, 50)
    # The 10 left still trade.
    taker = post(client, quantity=25, limit_price="190.00")
    assert (taker["status"], taker["filled_quantity"]) == ("partially_filled", 10)
    assert get_order(client, maker["order_id"])["status"] == "filled"


def test_replace_to_a_crossing_price_trades(client: TestClient) -> None:
    bid = post(client, quantity=50, limit_price="189.00")
    ask = post(client, account_id="ACC-BETA", side="sell", quantity=50, limit_price="190.00")
    r = client.post(f"/orders/{bid['order_id']}/replace", json={"limit_price": "190.00"})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["filled_quantity"]) == ("filled", 50)
    assert get_order(client, ask["order_id"])["status"] == "filled"


def test_taker_trades_at_the_resting_price(client: TestClient) -> None:
    # Better-priced taker: executes at the resting price, not its own limit.
    post(client, account_id="ACC-BETA", side="sell", quantity=10, limit_price="189.00")
    taker = post(client, quantity=10, limit_price="195.00")
    assert (taker["status"], taker["average_fill_price"]) == ("filled", "189")


def test_price_time_priority(client: TestClient) -> None:
    first = post(client, account_id="ACC-BETA", side="sell", quantity=10, limit_price="190.00")
    second = post(client, account_id="ACC-DELTA", side="sell", quantity=10,
                  limit_price="190.00")
    better = post(client, account_id="ACC-GAMMA", side="sell", quantity=10,
                  limit_price="189.99")
    taker = post(client, quantity=15, limit_price="190.00")
    assert taker["filled_quantity"] == 15
    assert get_order(client, better["order_id"])["filled_quantity"] == 10
    assert get_order(client, first["order_id"])["filled_quantity"] == 5
    assert get_order(client, second["order_id"])["filled_quantity"] == 0


def test_ioc_remainder_is_canceled(client: TestClient) -> None:
    maker = post(client, account_id="ACC-BETA", side="sell", quantity=50)
    taker = post(client, quantity=80, time_in_force="ioc")
    assert (taker["status"], taker["filled_quantity"], taker["average_fill_price"]) == (
        "canceled", 50, "190")
    assert get_order(client, maker["order_id"])["status"] == "filled"
    events = events_of(client, taker["order_id"])
    assert [e["event_type"] for e in events] == ["OrderAccepted", "OrderFilled", "OrderCanceled"]
    canceled = events[-1]
    assert (canceled["actor"], canceled["source"]) == ("venue", "venue")
    assert canceled["payload"]["reason"] == "ioc_remainder"
    assert canceled["payload"]["canceled_quantity"] == 30
    # Nothing of the IOC rests: a later sell finds no bid.
    seller = post(client, account_id="ACC-DELTA", side="sell", quantity=5, limit_price="190.00",
                  time_in_force="ioc")
    assert (seller["status"], seller["filled_quantity"]) == ("canceled", 0)


def test_ioc_without_liquidity_is_canceled(client: TestClient) -> None:
    taker = post(client, quantity=80, time_in_force="ioc")
    assert (taker["status"], taker["filled_quantity"], taker["average_fill_price"]) == (
        "canceled", 0, None)


def test_fok_that_cannot_fill_is_canceled_with_nothing_filled(client: TestClient) -> None:
    maker = post(client, account_id="ACC-BETA", side="sell", quantity=50)
    taker = post(client, quantity=80, time_in_force="fok")
    assert (taker["status"], taker["filled_quantity"], taker["average_fill_price"]) == (
        "canceled", 0, None)
    events = events_of(client, taker["order_id"])
    assert [e["event_type"] for e in events] == ["OrderAccepted", "OrderCanceled"]
    assert events[-1]["payload"]["reason"] == "fok_unfilled"
    assert events[-1]["payload"]["canceled_quantity"] == 80
    assert events[-1]["actor"] == "venue"
    assert get_order(client, maker["order_id"]) == maker  # untouched
    assert positions(client) == []
    # A FOK that can fill, fills completely.
    full = post(client, quantity=50, time_in_force="fok", limit_price="190.01")
    assert (full["status"], full["filled_quantity"]) == ("filled", 50)


def test_market_order_without_liquidity_is_canceled(client: TestClient) -> None:
    body = post(client, order_type="market", limit_price=None, quantity=7)
    assert body["limit_price"] is None
    assert body["order_type"] == "market"
    assert (body["status"], body["filled_quantity"], body["average_fill_price"]) == (
        "canceled", 0, None)
    last = events_of(client, body["order_id"])[-1]
    assert last["event_type"] == "OrderCanceled"
    assert last["payload"]["reason"] == "market_no_liquidity"
    assert last["actor"] == "venue"


def test_market_order_with_partial_liquidity(client: TestClient) -> None:
    post(client, account_id="ACC-BETA", side="sell", quantity=4, limit_price="190.50")
    post(client, account_id="ACC-BETA", side="sell", quantity=4, limit_price="191.00")
    body = post(client, order_type="market", limit_price=None, quantity=10)
    assert (body["status"], body["filled_quantity"], body["average_fill_price"]) == (
        "canceled", 8, "190.75")
    assert events_of(client, body["order_id"])[-1]["payload"]["canceled_quantity"] == 2


def test_gtc_and_day_orders_rest(client: TestClient) -> None:
    gtc = post(client, quantity=10, limit_price="189.00", time_in_force="gtc")
    day = post(client, quantity=11, limit_price="189.00", time_in_force="day")
    assert gtc["status"] == day["status"] == "accepted"
    assert client.get("/orders", params={"status": "accepted"}).json() == [gtc, day]
    seller = post(client, account_id="ACC-BETA", side="sell", quantity=15,
                  limit_price="189.00")
    assert (seller["status"], seller["filled_quantity"]) == ("filled", 15)
    assert get_order(client, gtc["order_id"])["status"] == "filled"  # first in time
    assert get_order(client, day["order_id"])["filled_quantity"] == 5


def test_sell_short_reduces_the_position(client: TestClient) -> None:
    grant_locates(client, "ACC-ALPHA", "AAPL", 20)
    post(client, side="sell_short", quantity=20, limit_price="190.00")
    post(client, account_id="ACC-BETA", side="buy", quantity=20, limit_price="190.00")
    assert positions(client, account_id="ACC-ALPHA") == [
        {"account_id": "ACC-ALPHA", "symbol": "AAPL", "quantity": -20,
         "average_price": "190", "realized_pnl": "0"}]


def test_the_firms_own_crosses_do_not_walk_the_collar_reference(client: TestClient) -> None:
    """Two accounts trading with each other at the collar's edge, again and again, must not
    carry the reference with them (it was walked from 190 to 334.77 in six trades)."""
    price = Decimal("209.00")
    for n in range(3):
        post(client, account_id="ACC-BETA", side="sell", quantity=1 + n, limit_price=str(price))
        bought = post(client, quantity=1 + n, limit_price=str(price))
        if n == 0:
            assert bought["status"] == "filled"
        else:  # the next step up is outside the collar of the unchanged reference
            assert bought["reject"]["control"] == "price_collar"
        price = (price * Decimal("1.09")).quantize(Decimal("0.01"))
    r = post(client, quantity=1, limit_price="209.01")
    assert r["reject"] is not None and r["reject"]["control"] == "price_collar"
    [accepted] = [e for e in audit(client) if e["event_type"] == "OrderAccepted"][-1:]
    assert accepted["payload"]["reference_price"] == "190.00"
    assert accepted["payload"]["reference_source"] == "previous_close"


# ------------------------------------------------------------------------ queries


def test_get_order_unknown_is_404_and_malformed_is_422(client: TestClient) -> None:
    assert client.get(f"/orders/{uuid.uuid4()}").status_code == 404
    r = client.get("/orders/not-a-uuid")
    assert r.status_code == 422
    assert ("path", "order_id") in locs(r)


def test_list_orders_filters(client: TestClient) -> None:
    a = post(client, quantity=1)
    b = post(client, account_id="ACC-BETA", quantity=2)
    c = post(client, symbol="MSFT", limit_price="410.00", quantity=3)
    d = post(client, symbol="RSTR", limit_price="42.00")
    listed = client.get("/orders").json()
    assert listed == [a, b, c, d]
    assert client.get("/orders", params={"account_id": "ACC-BETA"}).json() == [b]
    assert client.get("/orders", params={"symbol": "MSFT"}).json() == [c]
    assert client.get("/orders", params={"status": "rejected"}).json() == [d]
    assert client.get("/orders", params={"account_id": "ACC-ALPHA", "symbol": "AAPL",
                                         "status": "accepted"}).json() == [a]
    assert client.get("/orders", params={"account_id": "ACC-NOPE"}).status_code == 403
    assert client.get("/orders", params={"account_id": "ACC-NOPE"},
                      headers=user_headers(client, "abe")).json() == []
    assert client.get("/orders", params={"status": "bogus"}).status_code == 422
    for bad in (0, -1, 5001, "x"):
        assert client.get("/orders", params={"limit": bad}).status_code == 422


def test_list_orders_pagination(client: TestClient) -> None:
    made = [post(client, quantity=q) for q in range(1, 8)]
    pages: list[list[dict[str, Any]]] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if after is not None:
            params["after"] = after
        page = client.get("/orders", params=params).json()
        if not page:
            break
        pages.append(page)
        after = page[-1]["order_id"]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [o for p in pages for o in p] == made
    # Filters and paging combine.
    page = client.get("/orders", params={"limit": 2, "after": made[1]["order_id"],
                                         "account_id": "ACC-ALPHA"}).json()
    assert page == made[2:4]


def test_audit_pagination_by_position(client: TestClient) -> None:
    user_headers(client, "abe")
    start = head_position(client)  # the trading day's opening and the keys issued so far
    for q in range(1, 6):
        post(client, quantity=q)
    post(client, account_id="ACC-BETA", side="sell", quantity=1)  # fills the first bid
    everything = audit(client)  # the trader's: every event of their accounts
    positions_seen = [e["position"] for e in everything]
    assert positions_seen == sorted(positions_seen)
    # Five bids, the sell and its two fills: all that was written since the start.
    assert len(set(positions_seen)) == len(everything) == head_position(client) - start == 8
    assert everything == full_audit(client, after=start)
    assert full_audit(client)[0]["event_type"] == "TradingDayOpened"
    collected: list[dict[str, Any]] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if after is not None:
            params["after"] = after
        page = audit(client, **params)
        if not page:
            break
        assert len(page) <= 3
        collected.extend(page)
        after = page[-1]["position"]
    assert collected == everything
    assert audit(client, after=everything[-1]["position"]) == []
    assert audit(client, after=0) == everything
    beta = audit(client, account_id="ACC-BETA")
    assert beta and all(e["account_id"] == "ACC-BETA" for e in beta)
    assert beta == [e for e in everything if e["account_id"] == "ACC-BETA"]
    assert audit(client, account_id="ACC-BETA", limit=1, after=beta[0]["position"]) == beta[1:2]
    for params in ({"limit": 0}, {"limit": 10_001}, {"after": -1}, {"since": "yesterday"}):
        assert client.get("/audit", params=params).status_code == 422


def test_audit_since_and_until(client: TestClient) -> None:
    first = post(client, quantity=1)
    second = post(client, quantity=2)
    third = post(client, quantity=3)
    t1, t2, t3 = (events_of(client, o["order_id"])[0]["ts_ns"] for o in (first, second, third))
    assert t1 < t2 < t3
    ids = [first["order_id"], second["order_id"], third["order_id"]]

    def order_ids(**params: Any) -> list[str]:
        return [e["order_id"] for e in audit(client, **params) if e["order_id"] is not None]

    # since is inclusive (microsecond floor of the event's own time), until exclusive.
    assert order_ids(since=iso(t2)) == ids[1:]
    assert order_ids(until=iso(t2)) == ids[:1]
    assert order_ids(since=iso(t2), until=iso(t3)) == ids[1:2]
    assert order_ids(since=iso(t3 + 1_000)) == []
    assert order_ids(until=iso(t1)) == []
    # The same instant in another zone, and a bare time read as UTC.
    moment = datetime.fromisoformat(iso(t2).replace("Z", "+00:00"))
    assert order_ids(since=moment.astimezone(timezone(timedelta(hours=5))).isoformat()) == ids[1:]
    assert order_ids(since=moment.replace(tzinfo=None).isoformat()) == ids[1:]
    # Filters combine with paging.
    first_order = audit(client)[0]  # the trader's trail: their accounts' events only
    assert order_ids(since=iso(t1), limit=1, after=first_order["position"]) == ids[1:2]


def test_audit_timestamp_matches_ts_ns(client: TestClient) -> None:
    post(client)
    trail = full_audit(client)
    opened, event = trail[0], next(e for e in trail if e["event_type"] == "OrderAccepted")
    assert opened["event_type"] == "TradingDayOpened" and opened["ts_ns"] <= event["ts_ns"]
    ts = event["ts_ns"]
    seconds, nanos = divmod(ts, 1_000_000_000)
    assert event["timestamp"] == (
        f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z")


def test_audit_verify(client: TestClient) -> None:
    start = head_position(client)  # the day's opening and the API keys
    post(client, quantity=1)
    post(client, account_id="ACC-BETA", side="sell", quantity=1)
    r = client.get("/audit/verify")
    assert r.status_code == 200, r.text
    check = r.json()
    assert check["ok"] is True
    assert check["events"] == check["head_position"] == head_position(client) == start + 4
    assert check["first_broken_position"] is None and check["problem"] is None
    assert len(check["head_hash"]) == 64


def test_verify_on_a_fresh_store(client: TestClient) -> None:
    check = client.get("/audit/verify").json()
    assert (check["ok"], check["events"]) == (True, check["head_position"])
    assert len(check["head_hash"]) == 64 and check["head_hash"] != "0" * 64
    # The engine opened the calendar's trading day as it started; the rest are API keys:
    # one per configured user (the first run's), then the test's own.
    trail = full_audit(client)[:check["events"]]
    assert trail[0]["event_type"] == "TradingDayOpened"
    assert {e["event_type"] for e in trail[1:]} == {"ApiKeyIssued"}
    users = client.get("/users", headers=user_headers(client, "abe")).json()
    assert [e["payload"]["username"] for e in trail[1:-1]] == sorted(u["username"]
                                                                     for u in users)
    assert trail[-1]["payload"]["username"] == "tester"


def test_instruments(client: TestClient) -> None:
    r = client.get("/instruments")
    assert r.status_code == 200
    by_symbol = {i["symbol"]: i for i in r.json()}
    assert set(by_symbol) == {"AAPL", "MSFT", "SPY", "TSLA", "BRKA", "PENNY", "RSTR", "NEWCO"}
    assert by_symbol["PENNY"] == {"symbol": "PENNY", "tick_size": "0.0001", "lot_size": 100,
                                  "reference_price": "0.95"}
    assert by_symbol["NEWCO"]["reference_price"] is None
    assert by_symbol["AAPL"]["reference_price"] == "190"


def test_accounts(client: TestClient) -> None:
    r = client.get("/accounts")
    assert r.status_code == 200
    by_id = {a["account_id"]: a for a in r.json()}
    assert list(by_id) == ["ACC-ALPHA", "ACC-BETA", "ACC-GAMMA", "ACC-DELTA"]
    assert by_id["ACC-BETA"]["credit_limit"] == "2000000"
    assert by_id["ACC-GAMMA"]["max_order_quantity"] == 5000
    assert by_id["ACC-GAMMA"]["restricted_symbols"] == ["TSLA"]
    assert by_id["ACC-DELTA"]["max_order_notional"] == "2000000"
    assert by_id["ACC-ALPHA"]["max_order_notional"] == "1000000"
    assert {a["price_collar_pct"] for a in by_id.values()} == {"0.1"}
    assert {a["duplicate_window_ms"] for a in by_id.values()} == {1000}


def test_health(client: TestClient, backend: Settings) -> None:
    start = head_position(client)  # the day's opening and the API keys
    post(client)
    n = start + 1  # and the order
    r = client.get("/health")
    assert r.status_code == 200
    health = r.json()
    assert health["status"] == "ok"
    assert health["store"]["ok"] is True
    assert health["store"]["dialect"] == ("postgresql" if backend.uses_postgres else "sqlite")
    assert health["store"]["head_position"] == n
    assert health["engine"]["committed_position"] == n
    assert health["engine"]["access_denied"] == 0
    client.get("/orders")  # read-your-writes: projections have caught up after a query
    health = client.get("/health").json()
    assert health["projections"] == {"position": n, "lag": 0, "ok": True, "last_error": None,
                                     "feed": "store", "halted": None, "relay": None,
                                     "partitions": None}
    listed = client.get("/projections").json()
    assert listed["feed"] == "store" and listed["committed_position"] == n
    assert [(p["name"], p["position"], p["lag"]) for p in listed["projections"]] == [
        ("orders", n, 0), ("positions", n, 0), ("audit", n, 0), ("control_stats", n, 0)]


def test_a_stopped_engine_is_reported_and_orders_get_503_not_a_hang(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    system = client.app.state.system  # type: ignore[attr-defined]
    system.engine.stop()
    r = client.get("/health")
    assert r.status_code == 503
    assert r.json()["status"] == "degraded"
    assert r.json()["engine"]["running"] is False
    monkeypatch.setattr(api_orders, "ANSWER_TIMEOUT_S", 0.2)
    r = client.post("/orders", json=new_order(client_order_id="no-engine"))
    assert r.status_code == 503
    assert "not taking orders" in r.json()["detail"]


def test_docs_and_openapi(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    r = client.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for path in ("/orders", "/orders/{order_id}", "/orders/{order_id}/cancel",
                 "/orders/{order_id}/replace", "/positions", "/audit", "/audit/verify",
                 "/instruments", "/accounts", "/health"):
        assert path in paths


# ------------------------------------------------------------------------ restart


def test_restart_keeps_orders_positions_audit_and_idempotency(backend: Settings) -> None:
    resend = new_order(client_order_id="survivor", quantity=100, limit_price="190.00",
                       time_in_force="gtc")
    with TestClient(create_app(backend)) as client:
        token = login(client, "tester")
        maker = post(client, account_id="ACC-BETA", side="sell", quantity=60)
        r = client.post("/orders", json=resend)
        assert r.status_code == 201, r.text
        survivor = r.json()
        assert (survivor["status"], survivor["filled_quantity"]) == ("partially_filled", 60)
        rejected = post(client, symbol="RSTR", limit_price="42.00")
        before = {
            "orders": client.get("/orders").json(),
            "positions": positions(client),
            "audit": audit(client),
            "verify": client.get("/audit/verify").json(),
        }
    with TestClient(create_app(backend)) as client:
        client.headers["Authorization"] = f"Bearer {token}"  # keys survive a restart
        assert client.get("/orders").json() == before["orders"]
        assert get_order(client, survivor["order_id"]) == survivor
        assert get_order(client, rejected["order_id"]) == rejected
        assert positions(client) == before["positions"]
        assert audit(client) == before["audit"]
        assert client.get("/audit/verify").json() == before["verify"]
        again = client.post("/orders", json=resend)
        assert again.status_code == 200, again.text
        assert again.json() == survivor
        conflict = client.post("/orders", json={**resend, "quantity": 101})
        assert conflict.status_code == 409
        assert client.get("/audit/verify").json() == before["verify"]  # nothing journaled
        # The engine rebuilt its state: the resting remainder still trades...
        seller = post(client, account_id="ACC-DELTA", side="sell", quantity=40,
                      limit_price="190.00")
        assert (seller["status"], seller["filled_quantity"]) == ("filled", 40)
        assert get_order(client, survivor["order_id"])["status"] == "filled"
        assert get_order(client, maker["order_id"])["status"] == "filled"
        # ...and the last trade and open exposure still count.
        assert positions(client, account_id="ACC-ALPHA")[0]["quantity"] == 100
        assert client.get("/audit/verify").json()["ok"] is True
    with TestClient(create_app(backend)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        assert positions(client, account_id="ACC-ALPHA") == [
            {"account_id": "ACC-ALPHA", "symbol": "AAPL", "quantity": 100,
             "average_price": "190", "realized_pnl": "0"}]
        assert client.get("/health").json()["status"] == "ok"


def test_restart_keeps_credit_exposure(backend: Settings) -> None:
    with TestClient(create_app(backend)) as client:
        login(client, "tester")
        post(client, account_id="ACC-BETA", quantity=5000, limit_price="200.00")
        post(client, account_id="ACC-BETA", quantity=5000, limit_price="199.00")
    with TestClient(create_app(backend)) as client:
        login(client, "tester")
        over = post(client, account_id="ACC-BETA", quantity=100, limit_price="190.00")
        assert over["reject"] == {"control": "credit", "threshold": "2000000",
                                  "observed": "2014000.00"}


# ------------------------------------------------- arithmetic, priority, odd inputs


def test_repeating_averages_round_the_same_in_post_get_and_positions(
        client: TestClient) -> None:
    post(client, account_id="ACC-BETA", side="sell", quantity=1, limit_price="190.00")
    post(client, account_id="ACC-BETA", side="sell", quantity=2, limit_price="190.01")
    taker = post(client, quantity=3, limit_price="190.01")  # POST == GET checked in post()
    assert taker["average_fill_price"] == "190.00666667"  # 570.02 / 3
    # Close 2 of the 3 at 191: realized (191 - 570.02/3) * 2 = 1.98666666..., exactly.
    post(client, side="sell", quantity=2, limit_price="191.00")
    post(client, account_id="ACC-DELTA", quantity=2, limit_price="191.00")
    assert positions(client, account_id="ACC-ALPHA") == [
        {"account_id": "ACC-ALPHA", "symbol": "AAPL", "quantity": 1,
         "average_price": "190.00666667", "realized_pnl": "1.98666667"}]
    # Close the last one at 192: total realized 382 + 192 - 570.02 = 3.98.
    post(client, side="sell", quantity=1, limit_price="192.00")
    post(client, account_id="ACC-DELTA", quantity=1, limit_price="192.00")
    assert positions(client, account_id="ACC-ALPHA") == [
        {"account_id": "ACC-ALPHA", "symbol": "AAPL", "quantity": 0,
         "average_price": "0", "realized_pnl": "3.98"}]


def test_position_crossing_through_zero(client: TestClient) -> None:
    post(client, account_id="ACC-BETA", side="sell", quantity=10, limit_price="190.00")
    post(client, quantity=10, limit_price="190.00")
    post(client, side="sell", quantity=15, limit_price="191.00")
    post(client, account_id="ACC-DELTA", quantity=15, limit_price="191.00")
    assert positions(client, account_id="ACC-ALPHA") == [
        {"account_id": "ACC-ALPHA", "symbol": "AAPL", "quantity": -5,
         "average_price": "191", "realized_pnl": "10"}]


def test_status_filter_partially_filled(client: TestClient) -> None:
    maker = post(client, account_id="ACC-BETA", side="sell", quantity=10)
    post(client, quantity=4)
    listed = client.get("/orders", params={"status": "partially_filled"}).json()
    assert listed == [get_order(client, maker["order_id"])]
    assert listed[0]["filled_quantity"] == 4


@pytest.mark.parametrize(("price", "text"), [("1.9E+2", "190"), ("190.000000", "190"),
                                             (" 190.5 ", "190.5")])
def test_unusual_but_valid_price_text(client: TestClient, price: str, text: str) -> None:
    body = client.post("/orders", json=new_order(limit_price=price))
    if body.status_code == 422:  # refusing odd text is acceptable; accepting it wrongly isn't
        assert ("body", "limit_price") in locs(body)
        return
    assert body.status_code == 201, body.text
    assert body.json()["limit_price"] == text
    assert get_order(client, body.json()["order_id"]) == body.json()


def _priority_book(client: TestClient) -> tuple[dict[str, Any], dict[str, Any]]:
    """A (ACC-BETA) then B (ACC-DELTA) offer 10 @ 190; A then grows to 20, losing priority."""
    a = post(client, account_id="ACC-BETA", side="sell", quantity=10, time_in_force="gtc")
    b = post(client, account_id="ACC-DELTA", side="sell", quantity=10, time_in_force="gtc")
    r = client.post(f"/orders/{a['order_id']}/replace", json={"quantity": 20})
    assert r.status_code == 200, r.text
    return a, b


def test_replace_up_loses_time_priority_and_down_keeps_it(client: TestClient) -> None:
    a, b = _priority_book(client)
    taker = post(client, quantity=10)
    assert taker["status"] == "filled"
    assert get_order(client, b["order_id"])["status"] == "filled"
    assert get_order(client, a["order_id"])["filled_quantity"] == 0
    # Shrinking keeps the place in the queue.
    c = post(client, account_id="ACC-GAMMA", side="sell", quantity=10, time_in_force="gtc")
    assert client.post(f"/orders/{a['order_id']}/replace", json={"quantity": 15}).status_code == 200
    post(client, quantity=11)
    assert get_order(client, a["order_id"])["filled_quantity"] == 11
    assert get_order(client, c["order_id"])["filled_quantity"] == 0


def test_restart_keeps_time_priority_of_replaced_orders(backend: Settings) -> None:
    with TestClient(create_app(backend)) as client:
        login(client, "tester")
        a, b = _priority_book(client)
    with TestClient(create_app(backend)) as client:
        login(client, "tester")
        taker = post(client, quantity=10)
        assert taker["status"] == "filled"
        # B was ahead of A before the restart; a restart must not reorder the queue.
        assert get_order(client, b["order_id"])["filled_quantity"] == 10
        assert get_order(client, a["order_id"])["filled_quantity"] == 0


def test_audit_since_and_until_accept_the_trails_own_timestamps(client: TestClient) -> None:
    first = post(client, quantity=1)
    second = post(client, quantity=2)
    stamp = events_of(client, second["order_id"])[0]["timestamp"]  # nine fractional digits
    r = client.get("/audit", params={"since": stamp})
    assert r.status_code == 200, r.text
    assert [e["order_id"] for e in r.json()] == [second["order_id"]]
    r = client.get("/audit", params={"until": stamp})
    assert r.status_code == 200, r.text
    assert [e["order_id"] for e in r.json() if e["order_id"]] == [first["order_id"]]
