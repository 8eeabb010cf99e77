"""Event <-> stored bytes: exact round trip, the whole-record hash chain and upcasting."""

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
    decoded = codec.decode(topic, codec.encode(event, 1, codec.GENESIS_HASH))
    assert type(decoded) is type(event)
    assert decoded == event
    for name, value in event._asdict().items():
        got = getattr(decoded, name)
        assert type(got) is type(value) or isinstance(value, str), name  # StrEnum -> str
        if isinstance(value, Decimal):
            # exactly the same digits and exponent, not only numerically equal
            assert got.as_tuple() == value.as_tuple(), name
    assert (codec.encode(decoded, 1, codec.GENESIS_HASH)
            == codec.encode(event, 1, codec.GENESIS_HASH))


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_stored_form_is_plain_json_with_decimals_as_strings(event: Any) -> None:
    stored = codec.encode(event, 7, "ab" * 32)
    body = json.loads(stored)
    assert body["schema"] == ev.SCHEMA_VERSION[type(event).__name__]
    assert body["prev_hash"] == "ab" * 32
    # the record's own hash is the last member, in a fixed-shape tail
    assert list(body)[-2:] == ["prev_hash", "hash"]
    assert stored.endswith(b'","hash":"' + body["hash"].encode() + b'"}')
    assert codec.stored_hash(stored) == body["hash"]
    assert len(body["hash"]) == 64 and int(body["hash"], 16) >= 0
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
        assert codec.decode(codec.topic_of(e), codec.encode(e, 1, codec.GENESIS_HASH)) == e


def test_hash_chain_links_each_event_to_its_predecessor() -> None:
    prev = codec.GENESIS_HASH
    stored: list[bytes] = []
    for position, e in enumerate(SAMPLES, start=1):
        topic, state, digest = codec.encode_record(e, position, prev)
        assert topic == codec.topic_of(e)
        assert codec.stored_hash(state) == digest
        stored.append(state)
        prev = digest
    assert len(codec.GENESIS_HASH) == 64
    # verification: every record hashes to its stored hash and links to its predecessor
    expected = codec.GENESIS_HASH
    for position, (e, state) in enumerate(zip(SAMPLES, stored, strict=True), start=1):
        check = codec.check_record(position, codec.topic_of(e), e[0], e[1], state)
        assert check.intact
        assert check.prev_hash == orjson.loads(state)["prev_hash"] == expected
        expected = check.stored
    assert expected == prev


def test_the_hash_covers_the_whole_record() -> None:
    """Body, position, topic, originator id and version: changing any breaks the record's
    own hash (so verify names the changed record, not only the next one)."""
    e = sample("OrderFilled")
    topic = codec.topic_of(e)
    state = codec.encode(e, 22, codec.GENESIS_HASH)
    assert codec.check_record(22, topic, e[0], e[1], state).intact
    tampered_body = state.replace(b'"189.9999"', b'"1.9999"')
    assert tampered_body != state
    assert not codec.check_record(22, topic, e[0], e[1], tampered_body).intact
    assert not codec.check_record(23, topic, e[0], e[1], state).intact
    assert not codec.check_record(22, codec.TOPIC_PREFIX + "OrderCanceled", e[0], e[1],
                                  state).intact
    assert not codec.check_record(22, topic, b.order_id(1), e[1], state).intact
    assert not codec.check_record(22, topic, e[0], e[1] + 1, state).intact
    # a record without its hash tail is reported, not crashed on
    stripped = orjson.dumps({k: v for k, v in orjson.loads(state).items() if k != "hash"})
    check = codec.check_record(22, topic, e[0], e[1], stripped)
    assert not check.shape_ok and not check.intact
    assert check.prev_hash == codec.GENESIS_HASH


def test_diagnosis_names_the_changed_column() -> None:
    e = sample("OrderFilled")
    state = codec.encode(e, 1, codec.GENESIS_HASH)
    assert "topic" in codec.diagnose("domain.events:Forged", e[0], e[1], state)
    assert "topic" in codec.diagnose(codec.TOPIC_PREFIX + "OrderCanceled", e[0], e[1], state)
    assert "originator version" in codec.diagnose(codec.topic_of(e), e[0], 99, state)
    assert "originator id" in codec.diagnose(codec.topic_of(e), b.order_id(5), e[1], state)
    assert "content" in codec.diagnose(codec.topic_of(e), e[0], e[1], state)


def test_tampering_breaks_the_chain() -> None:
    first = codec.encode(sample("OrderFilled"), 1, codec.GENESIS_HASH)
    second = codec.encode(sample("OrderCanceled"), 2, codec.stored_hash(first))
    tampered = first.replace(b'"189.9999"', b'"1.9999"')
    assert tampered != first
    # a forger who recomputes the first record's hash still breaks the second's link
    e = sample("OrderFilled")._replace(fill_price=Decimal("1.9999"))
    forged = codec.encode(e, 1, codec.GENESIS_HASH)
    assert orjson.loads(second)["prev_hash"] != codec.stored_hash(forged)


def test_state_hash_is_sha256_hex() -> None:
    assert codec.state_hash(b"") == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


def test_encoding_is_deterministic() -> None:
    e = sample("OrderAccepted")
    assert codec.encode(e, 1, "x") == codec.encode(e, 1, "x")
    assert codec.stored_hash(codec.encode(e, 1, "x")) != codec.stored_hash(codec.encode(e, 1, "y"))
    assert codec.stored_hash(codec.encode(e, 1, "x")) != codec.stored_hash(codec.encode(e, 2, "x"))


def test_unencodable_value_raises() -> None:
    bad = sample("OrderCanceled")._replace(canceled_quantity=object())
    with pytest.raises(TypeError):
        codec.encode(bad, 1, codec.GENESIS_HASH)


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
    assert codec.decode(codec.topic_of(event), codec.encode(event, 1, codec.GENESIS_HASH)) == event
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
    body = orjson.loads(codec.encode(event, 1, codec.GENESIS_HASH))
    del body["schema"]
    monkeypatch.setitem(codec.SCHEMA_VERSION, "ReplaceRejected", 2)
    monkeypatch.setitem(codec.UPCASTERS, ("ReplaceRejected", 1), lambda d: d)
    assert codec.decode(codec.topic_of(event), orjson.dumps(body)) == event


def test_missing_upcaster_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    event = sample("OrderCanceled")
    stored = codec.encode(event, 1, codec.GENESIS_HASH)
    monkeypatch.setitem(codec.SCHEMA_VERSION, "OrderCanceled", 2)
    with pytest.raises(codec.UndecodableEvent, match=r"position 41.*no upcaster from schema "
                       r"version 1 of OrderCanceled"):
        codec.decode(codec.topic_of(event), stored, 41)


def test_unknown_topic_is_a_clear_error_naming_the_position() -> None:
    """A changed topic used to crash rebuild with a bare KeyError."""
    stored = codec.encode(sample("OrderCanceled"), 1, codec.GENESIS_HASH)
    with pytest.raises(codec.UndecodableEvent,
                       match=r"position 22 \(topic 'domain.events:Forged'\).*no event type"):
        codec.decode("domain.events:Forged", stored, 22)
    # a known topic over another event type's body names the position too
    with pytest.raises(codec.UndecodableEvent, match=r"position 22.*does not fit OrderFilled"):
        codec.decode(codec.TOPIC_PREFIX + "OrderFilled", stored, 22)
    with pytest.raises(codec.UndecodableEvent, match=r"position 3.*not JSON"):
        codec.decode(codec.topic_of(sample("OrderCanceled")), b"{not json", 3)


def test_a_schema_1_strategy_stop_is_read_as_one_that_canceled_nothing() -> None:
    """StrategyStopped v1 (before a stop canceled the strategy's orders) had no
    ``canceled_orders``: it reads as an empty tuple; the stored record is not rewritten."""
    event = next(e for e in SAMPLES if type(e).__name__ == "StrategyStopped")
    old = event._asdict()
    del old["canceled_orders"]
    old["schema"] = 1
    old["prev_hash"] = codec.GENESIS_HASH
    decoded = codec.decode(codec.topic_of(event), orjson.dumps(old, default=str))
    assert decoded == event._replace(canceled_orders=())
    assert type(decoded.canceled_orders) is tuple
    assert ev.SCHEMA_VERSION["StrategyStopped"] == 2
