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


@schema.parametrize()
def test_the_server_keeps_its_openapi_contract(case: Any, app: FastAPI) -> None:
    case.call_and_validate(app=app, checks=CHECKS)


# --------------------------------------------------------- what the document must say


def test_every_route_documents_the_errors_it_can_answer() -> None:
    for path, methods in DOCUMENT["paths"].items():
        for method, operation in methods.items():
            documented = set(operation["responses"])
            if operation.get("parameters") or "requestBody" in operation:
                assert "422" in documented, (method, path)
            if "requestBody" in operation:
                assert {"400", "413"} <= documented, (method, path)
            # Configuration and the engine's own state: no database to be down.
            if path not in ("/instruments", "/accounts", "/trading-day"):
                assert "503" in documented, (method, path)
            for status, response in operation["responses"].items():
                assert "application/json" in response.get("content", {}), (method, path, status)


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
