"""The OpenAPI document is a contract the server keeps, checked by schemathesis.

For every operation schemathesis sends requests derived from the document (its examples,
the boundary values of every parameter, and random valid and invalid inputs) to the real
app on each backend, and checks each answer: never a 5xx, and the status code, content
type, headers and body are ones the document gives for that operation.

Deterministic and bounded (a fixed derandomized run of EXAMPLES fuzzed cases per operation
plus the boundary cases), so it finds the same things every run and keeps the suite fast.
Requests the document calls valid must also be accepted: the schema states the body rules
the validators enforce (a limit order needs a price, a replace changes something, prices
are positive with at most 8 places), so generated valid orders reach the engine.

Every call but ``/health``'s carries a bearer token of a user whose role may make it
(``ACTING``): reads as the auditor, trades as a trader, risk actions as risk officers,
user administration as the admin. A call refused for its role would stop at the door and
exercise nothing; those refusals are tests/e2e/test_access.py's subject.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis.checks import not_a_server_error
from schemathesis.config import PositiveDataAcceptanceConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from infrastructure.bootstrap import bootstrap
from infrastructure.postgres_admin import throwaway_store
from infrastructure.settings import Settings
from projections.exports import BadBound, selection
from tests.auth import bearer, issue_token

EXAMPLES = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance,
          positive_data_acceptance]

# The document does not depend on the store: build it without starting anything.
DOCUMENT = create_app(Settings(data_dir=Path("unused"), database_url=None,
                               read_database_url=None)).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.config.generation.update(max_examples=EXAMPLES, deterministic=True)
# Whatever the document calls valid is accepted: answered, or refused for a reason the body
# cannot show (an unknown order id: 404; a client_order_id used for another order: 409).
schema.config.checks.positive_data_acceptance = PositiveDataAcceptanceConfig(
    expected_statuses=["2xx", "404", "409"])


# Who makes each call that changes something: a user whose role may (tests/config/test.toml),
# so valid requests reach the engine. Every read is made by the auditor (reads everything).
ACTING: dict[tuple[str, str], str] = {
    ("POST", "/orders"): "tester",
    ("POST", "/orders/{order_id}/cancel"): "tester",
    ("POST", "/orders/{order_id}/replace"): "tester",
    ("POST", "/trading-day/open"): "rose",
    ("POST", "/trading-day/close"): "rose",
    ("POST", "/symbols/{symbol}/halt"): "rose",
    ("POST", "/symbols/{symbol}/resume"): "rose",
    ("POST", "/symbols/{symbol}/short-sale-restriction"): "rose",
    ("POST", "/locates"): "rose",  # any account (a trader: 403 for an account not theirs)
    ("POST", "/locates/{locate_id}/grant"): "rose",
    ("POST", "/kill-switches/trip"): "rose",
    ("POST", "/kill-switches/reset"): "rose",
    ("POST", "/limits/{scope}/requests"): "rose",
    ("POST", "/limits/requests/{change_id}/approve"): "raj",  # not the requester
    ("POST", "/limits/requests/{change_id}/reject"): "rose",
    ("POST", "/users"): "admin",
    ("POST", "/strategies/{strategy_id}/start"): "rose",
    ("POST", "/strategies/{strategy_id}/stop"): "rose",
    ("POST", "/users/{username}/disable"): "admin",
    ("POST", "/users/{username}/entitlements"): "admin",
    ("POST", "/users/{username}/entitlements/revoke"): "admin",
    ("POST", "/users/{username}/keys"): "admin",
    ("POST", "/keys/{key_id}/revoke"): "admin",
    ("POST", "/accounts/{account_id}/suspend"): "rose",
    ("POST", "/accounts/{account_id}/reinstate"): "rose",
    ("POST", "/reports/15c3-5/certifications"): "cleo",  # compliance certifies
}
READER = "abe"
PUBLIC = {("GET", "/health")}


def acting_user(method: str, path: str) -> str | None:
    if (method.upper(), path) in PUBLIC:
        return None
    if method.upper() == "GET":
        return READER
    return ACTING[(method.upper(), path)]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres",
                                                                marks=pytest.mark.postgres)])
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        ) -> Iterator[FastAPI]:
    """One running system per backend for all operations (state carries over, as in use)."""
    data_dir = tmp_path_factory.mktemp("schemathesis") / "data"
    if request.param == "sqlite":
        yield from _serving(Settings(data_dir=data_dir, database_url=None,
                                     read_database_url=None))
        return
    with throwaway_store(request.getfixturevalue("pg_admin_url")) as urls:
        yield from _serving(Settings(data_dir=data_dir, database_url=urls.engine,
                                     read_database_url=None))


def _serving(settings: Settings) -> Iterator[FastAPI]:
    system = bootstrap(settings)
    try:
        yield create_app(system=system)
    finally:
        system.close()


@pytest.fixture(scope="module")
def tokens(app: FastAPI) -> dict[str, str]:
    """A key per acting user, issued once per running system."""
    system = app.state.system
    return {user: issue_token(system, user) for user in {READER, *ACTING.values()}}


# Rules between query parameters that a schema cannot state (each route's description says
# them): a request breaking one is refused with a 422 naming the parameter, so it is not the
# "positive data" schemathesis takes it for.
REPORT_ROUTES = {"/reports/15c3-5", "/reports/15c3-5.html", "/reports/calibration"}


def breaks_a_rule_between_parameters(case: Any) -> bool:
    query = case.query or {}
    if case.operation.path not in REPORT_ROUTES:
        return False
    ranged = "from" in query or "to" in query
    return (("date" in query and ranged) or ("days" in query and ranged)
            or ("from" in query and "to" in query and str(query["from"]) > str(query["to"])))


@schema.parametrize()
def test_the_server_keeps_its_openapi_contract(case: Any, app: FastAPI,
                                               tokens: dict[str, str]) -> None:
    user = acting_user(case.operation.method, case.operation.path)  # not the sent method:
    # schemathesis also sends methods the path does not have (TRACE, ...), expecting 405
    headers = {} if user is None else bearer(tokens[user])
    checks = CHECKS
    if _from_after_to(case) or breaks_a_rule_between_parameters(case):
        # a rule across two parameters, which no schema can state: a 422 for valid values
        checks = [c for c in CHECKS if c is not positive_data_acceptance]
    case.call_and_validate(app=app, checks=checks, headers=headers)


def _from_after_to(case: Any) -> bool:
    """An export whose ``from`` is after its ``to``: a 422 (issue 8), valid for the schema."""
    query = case.query or {}
    if not case.operation.path.startswith("/exports/") or not {"from", "to"} <= set(query):
        return False
    try:
        selection(0, str(query["from"]), str(query["to"]))
    except BadBound:
        return False
    except ValueError:
        return True
    return False


def test_every_operation_has_an_acting_user() -> None:
    """A new endpoint that changes something needs its caller here, or it goes untested."""
    for path, methods in DOCUMENT["paths"].items():
        for method in methods:
            if method.upper() != "GET":
                assert (method.upper(), path) in ACTING, (method, path)
    documented = {(m.upper(), p) for p, ms in DOCUMENT["paths"].items() for m in ms}
    assert set(ACTING) <= documented  # and no stale entry


# --------------------------------------------------------- what the document must say

ENGINE_STATE_READS = {("get", p) for p in ("/instruments", "/accounts", "/trading-day",
                                           "/symbols", "/locates", "/limits", "/users",
                                           "/strategies")}
# The paper-trading desk's own state: stopping a strategy needs neither a database nor
# the engine (starting one does: its 503).
ENGINE_STATE_READS.add(("post", "/strategies/{strategy_id}/stop"))


# Answers that are files, not JSON: documented with their own media type.
FILE_DOWNLOADS = {("get", "/cat/{date}/order-events", "200"): "application/x-bzip2",
                  ("get", "/exports/audit.jsonl", "200"): "application/x-ndjson",
                  ("get", "/exports/audit.csv", "200"): "text/csv"}


def test_every_route_documents_the_errors_it_can_answer() -> None:
    missing: list[tuple[str, str, str]] = []  # every omission at once, not the first

    def needs(method: str, path: str, documented: set[str], *statuses: str) -> None:
        missing.extend((method.upper(), path, s) for s in statuses if s not in documented)

    for path, methods in DOCUMENT["paths"].items():
        for method, operation in methods.items():
            documented = set(operation["responses"])
            if operation.get("parameters") or "requestBody" in operation:
                needs(method, path, documented, "422")
            if "requestBody" in operation:
                needs(method, path, documented, "400", "413")
            # Configuration and the engine's own state: no database to be down (changes
            # go through the engine, which may be busy or halted: 503 again).
            if (method, path) not in ENGINE_STATE_READS:
                needs(method, path, documented, "503")
            # Every route but /health needs a token: 401 without a valid one.
            if (method, path) != ("get", "/health"):
                needs(method, path, documented, "401")
            for status, response in operation["responses"].items():
                if (method, path, status) in FILE_DOWNLOADS:
                    needs(method, path, set(response.get("content", {})),
                          FILE_DOWNLOADS[(method, path, status)])
                elif "application/json" not in response.get("content", {}):
                    missing.append((method.upper(), path, f"{status}: no JSON body"))
    assert missing == []


def test_parameter_ranges_are_documented() -> None:
    def parameter(path: str, name: str) -> dict[str, Any]:
        [found] = [p for p in DOCUMENT["paths"][path]["get"]["parameters"] if p["name"] == name]
        schema = found["schema"]
        return schema["anyOf"][0] if "anyOf" in schema else schema  # type: ignore[no-any-return]

    assert parameter("/audit", "after") == {"type": "integer", "minimum": 0,
                                            "maximum": 2**63 - 1}
    assert (parameter("/audit", "limit")["exclusiveMinimum"],
            parameter("/audit", "limit")["maximum"]) == (0, 10_000)
    assert parameter("/orders", "limit")["maximum"] == 5000
    assert parameter("/orders", "account_id")["pattern"] == "^[\\x21-\\x7e]+$"
    assert parameter("/orders", "after")["format"] == "uuid"
    assert parameter("/audit", "order_id")["format"] == "uuid"


ORDER = {"client_order_id": "c-1", "account_id": "ACC-ALPHA", "symbol": "AAPL", "side": "buy",
         "quantity": 10, "order_type": "limit", "limit_price": "190.00"}


@pytest.mark.parametrize(("changes", "valid"), [
    ({}, True),
    ({"limit_price": None}, False),
    ({"limit_price": "absent"}, False),
    ({"order_type": "market", "limit_price": None}, True),
    ({"order_type": "market", "limit_price": "absent"}, True),
    ({"order_type": "market"}, False),
    ({"limit_price": 190.25}, True),
    ({"limit_price": 6.103515625e-05}, False),  # a number with 11 places: multipleOf 1e-8
    ({"limit_price": "190.123456789"}, False),
    ({"limit_price": "abc"}, False),
])  # fmt: skip
def test_the_body_schema_says_limit_orders_need_a_price(changes: dict[str, Any],
                                                         valid: bool) -> None:
    """The rule is in the schema itself (if/then/else), not only in the validator."""
    validator = jsonschema_rs.validator_for({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": "#/components/schemas/OrderFields", "components": DOCUMENT["components"],
    })
    body = {**ORDER, **changes}
    body = {k: v for k, v in body.items() if v != "absent"}
    assert validator.is_valid(body) is valid
