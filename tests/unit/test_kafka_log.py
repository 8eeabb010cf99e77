"""The Kafka record format without a broker: keys, partitions, headers, checkpoints."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infrastructure import codec
from infrastructure.kafka_log import (
    FIRM_KEY,
    Checkpoint,
    EventRecord,
    MalformedRecord,
    decode_event,
    event_headers,
    key_of,
    partition_for,
    read_event_record,
)
from tests import builders as b

# Kafka's Java client on these keys (Utils.toPositive(Utils.murmur2(key)) % 8, computed with
# jshell against kafka-clients 4.3.1): what any
# standard tool or other client computes for the same key.
JAVA_PARTITIONS = {(b"a", 8): 4, (b"_firm", 8): 5, (b"ACC-ALPHA", 8): 6}


def test_partitions_are_kafkas_default_for_the_key() -> None:
    for (key, n), expected in JAVA_PARTITIONS.items():
        assert partition_for(key, n) == expected


def test_every_event_type_is_keyed_by_its_account_or_the_firm() -> None:
    for position, event in enumerate(b.sample_events(), 1):
        topic, state, _ = codec.encode_record(event, position, codec.GENESIS_HASH)
        name = codec.name_of_topic(topic)
        expected = getattr(event, "account_id", None) or FIRM_KEY
        assert key_of(state, name) == expected.encode()
        assert key_of(state) == expected.encode()  # the slow path agrees


@given(account=st.text(alphabet=string.printable[:94], min_size=1, max_size=20),
       actor=st.text(min_size=0, max_size=30))
def test_the_fast_key_path_reads_any_account_and_is_not_fooled_by_other_fields(
        account: str, actor: str) -> None:
    event = b.sample_events()[0]._replace(account_id=account, actor=actor)
    _, state, _ = codec.encode_record(event, 1, codec.GENESIS_HASH)
    assert key_of(state, "OrderAccepted") == account.encode()


def test_headers_round_trip_and_bad_ones_name_the_record() -> None:
    headers = event_headers("OrderFilled", 42, 17, "ab" * 32)
    rec = read_event_record("t.events", 3, 99, headers, b"{}")
    assert (rec.name, rec.position, rec.prev) == ("OrderFilled", 42, 17)
    for bad in ([h for h in headers if h[0] != "position"],
                [("type", b"OrderFilled"), ("position", b"x"), ("prev", b"1")],
                [("type", b"OrderFilled"), ("position", b"5"), ("prev", b"5")]):
        with pytest.raises(MalformedRecord, match=r"t\.events\[3\]@99"):
            read_event_record("t.events", 3, 99, bad, b"{}")


def test_a_record_whose_bytes_do_not_match_its_hash_is_refused() -> None:
    event = b.sample_events()[4]
    topic, state, _ = codec.encode_record(event, 7, codec.GENESIS_HASH)
    name = codec.name_of_topic(topic)
    decoded, body = decode_event(EventRecord("t", 0, 5, name, 7, 0, state))
    assert decoded == event and body["schema"] >= 1
    with pytest.raises(MalformedRecord, match=r"t\[0\]@5: record hash"):
        decode_event(EventRecord("t", 0, 5, name, 8, 0, state))  # claims another position
    tampered = state.replace(b'"fill_quantity":40', b'"fill_quantity":41')
    assert tampered != state
    with pytest.raises(MalformedRecord, match=r"t\[0\]@5"):
        decode_event(EventRecord("t", 0, 5, name, 7, 0, tampered))
    with pytest.raises(MalformedRecord, match=r"t\[0\]@5"):
        decode_event(EventRecord("t", 0, 5, "NoSuchEvent", 7, 0, state))


def test_a_record_of_an_unknown_schema_version_stops_the_reader() -> None:
    """A correctly hashed record written by newer code (schema 99) is not read as today's
    version: the projection stops at it, naming where it is."""
    event = b.sample_events()[4]
    topic, state, _ = codec.encode_record(event, 7, codec.GENESIS_HASH)
    body = state[:-codec.HASH_SUFFIX_LEN] + b"}"
    assert b'"schema":1,' in body
    body = body.replace(b'"schema":1,', b'"schema":99,')
    digest = codec.record_digest(7, topic.encode() + b"\0", event[0], event[1], body)
    newer = body[:-1] + b',"hash":"' + digest.encode() + b'"}'
    assert codec.check_record(7, topic, event[0], event[1], newer).intact
    with pytest.raises(MalformedRecord, match=r"t\[2\]@9: .*schema version 99 .*unknown"):
        decode_event(EventRecord("t", 2, 9, codec.name_of_topic(topic), 7, 0, newer))


def test_checkpoints_round_trip() -> None:
    cp = Checkpoint("store-1", 1234, "cd" * 32, 17, 8, {0: 10, 7: 3}, {0: 1200, 7: 1234})
    assert Checkpoint.decode(cp.encode()) == cp
    assert cp.anchor().position == 1234
