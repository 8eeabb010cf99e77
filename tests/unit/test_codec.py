"""Event <-> stored bytes: exact round trip, the hash chain and upcasting."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson
import pytest

from domain import events as ev
from domain.values import CancelReason
from infrastructure import codec
from tests import builders as b

SAMPLES = b.sample_events()


def sample(name: str) -> Any:
    return next(e for e in SAMPLES if type(e).__name__ == name)


def test_every_event_type_has_a_sample() -> None:
    assert {type(e).__name__ for e in SAMPLES} == set(ev.EVENT_TYPES)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_round_trip_is_exact(event: Any) -> None:
    topic = codec.topic_of(event)
    assert topic == "domain.events:" + type(event).__name__
    decoded = codec.decode(topic, codec.encode(event, codec.GENESIS_HASH))
    assert type(decoded) is type(event)
    assert decoded == event
    for name, value in event._asdict().items():
        got = getattr(decoded, name)
        assert type(got) is type(value) or isinstance(value, str), name  # StrEnum -> str
        if isinstance(value, Decimal):
            # exactly the same digits and exponent, not only numerically equal
            assert got.as_tuple() == value.as_tuple(), name
    assert codec.encode(decoded, codec.GENESIS_HASH) == codec.encode(event, codec.GENESIS_HASH)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_stored_form_is_plain_json_with_decimals_as_strings(event: Any) -> None:
    body = json.loads(codec.encode(event, "ab" * 32))
    assert body["schema"] == ev.SCHEMA_VERSION[type(event).__name__]
    assert body["prev_hash"] == "ab" * 32
    assert body[event._fields[0]] == str(event[0])
    for name in ev.DECIMAL_FIELDS[type(event).__name__]:
        value = getattr(event, name)
        assert body[name] == (None if value is None else str(value))
        assert not isinstance(body[name], float)


def test_decimal_fields_cover_every_money_field() -> None:
    assert ev.DECIMAL_FIELDS["OrderAccepted"] == {
        "limit_price", "reference_price", "protection_price", "exposure_price",
        "exposure_before", "firm_exposure_before"}
    assert ev.DECIMAL_FIELDS["OrderFilled"] == {"fill_price"}
    assert ev.DECIMAL_FIELDS["CancelRejected"] == frozenset()


def test_round_trip_of_events_from_a_real_book() -> None:
    book = b.book()
    accepted = b.submit(book)
    order = book.orders[accepted.order_id]
    events = [
        accepted,
        b.submit(book, quantity=5_000),
        b.fill(book, order, 10, "189.99"),
        book.request_replace(order, 50, Decimal("190.50"), b.ACTOR, "api", b.ts()),
        book.confirm_replace(order, b.ts()),
        book.request_replace(order, None, Decimal("500.00"), b.ACTOR, "api", b.ts()),
        book.request_cancel(order, b.ACTOR, "api", b.ts()),
        book.confirm_cancel(order, b.ts()),
        book.request_cancel(order, b.ACTOR, "api", b.ts()),
        *book.close_day("system", "system", b.ts(), "test")[:1],
    ]
    for e in events:
        assert codec.decode(codec.topic_of(e), codec.encode(e, codec.GENESIS_HASH)) == e


def test_hash_chain_links_each_event_to_its_predecessor() -> None:
    prev = codec.GENESIS_HASH
    stored: list[bytes] = []
    for e in SAMPLES:
        state = codec.encode(e, prev)
        stored.append(state)
        prev = codec.state_hash(state)
    assert len(codec.GENESIS_HASH) == 64
    # verification: every stored prev_hash is the sha256 of the previous stored bytes
    expected = codec.GENESIS_HASH
    for state in stored:
        assert orjson.loads(state)["prev_hash"] == expected
        expected = codec.state_hash(state)
    assert expected == prev


def test_tampering_breaks_the_chain() -> None:
    first = codec.encode(sample("OrderFilled"), codec.GENESIS_HASH)
    second = codec.encode(sample("OrderCanceled"), codec.state_hash(first))
    tampered = first.replace(b'"189.9999"', b'"1.9999"')
    assert tampered != first
    assert orjson.loads(second)["prev_hash"] != codec.state_hash(tampered)


def test_state_hash_is_sha256_hex() -> None:
    assert codec.state_hash(b"") == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


def test_encoding_is_deterministic() -> None:
    e = sample("OrderAccepted")
    assert codec.encode(e, "x") == codec.encode(e, "x")
    assert codec.state_hash(codec.encode(e, "x")) != codec.state_hash(codec.encode(e, "y"))


def test_unencodable_value_raises() -> None:
    bad = sample("OrderCanceled")._replace(canceled_quantity=object())
    with pytest.raises(TypeError):
        codec.encode(bad, codec.GENESIS_HASH)


def test_registered_upcaster_applied_to_old_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend OrderCanceled v1 lacked ``reason`` and v2 is the current shape."""
    event = sample("OrderCanceled")
    old = event._asdict()
    del old["reason"]
    old["schema"] = 1
    old["prev_hash"] = codec.GENESIS_HASH
    stored = orjson.dumps(old)

    calls: list[int] = []

    def v1_to_v2(body: dict[str, Any]) -> dict[str, Any]:
        calls.append(body["schema"])
        return {**body, "reason": CancelReason.REQUESTED.value}

    monkeypatch.setitem(codec.SCHEMA_VERSION, "OrderCanceled", 2)
    monkeypatch.setitem(codec.UPCASTERS, ("OrderCanceled", 1), v1_to_v2)

    name, body = codec.decode_body(codec.topic_of(event), stored)
    assert name == "OrderCanceled"
    assert body["schema"] == 2
    assert body["reason"] == "requested"
    decoded = codec.decode(codec.topic_of(event), stored)
    assert decoded == event._replace(reason="requested")
    assert calls == [1, 1]
    # the current shape is not upcast
    assert codec.decode(codec.topic_of(event), codec.encode(event, codec.GENESIS_HASH)) == event
    assert calls == [1, 1]


def test_upcasters_chain_over_several_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    event = sample("CancelRejected")
    body = event._asdict() | {"schema": 1, "why": "order is filled"}
    del body["reason"]
    monkeypatch.setitem(codec.SCHEMA_VERSION, "CancelRejected", 3)
    monkeypatch.setitem(codec.UPCASTERS, ("CancelRejected", 1),
                        lambda d: {k if k != "why" else "reason": v for k, v in d.items()})
    monkeypatch.setitem(codec.UPCASTERS, ("CancelRejected", 2), lambda d: d)
    assert codec.decode(codec.topic_of(event), orjson.dumps(body, default=str)) == event


def test_missing_schema_field_is_treated_as_version_one(monkeypatch: pytest.MonkeyPatch) -> None:
    event = sample("ReplaceRejected")
    body = orjson.loads(codec.encode(event, codec.GENESIS_HASH))
    del body["schema"]
    monkeypatch.setitem(codec.SCHEMA_VERSION, "ReplaceRejected", 2)
    monkeypatch.setitem(codec.UPCASTERS, ("ReplaceRejected", 1), lambda d: d)
    assert codec.decode(codec.topic_of(event), orjson.dumps(body)) == event


def test_missing_upcaster_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    event = sample("OrderCanceled")
    stored = codec.encode(event, codec.GENESIS_HASH)
    monkeypatch.setitem(codec.SCHEMA_VERSION, "OrderCanceled", 2)
    with pytest.raises(KeyError):
        codec.decode(codec.topic_of(event), stored)
