"""The API with the read models fed from Kafka (ARCHITECTURE rule 7: same code, other footprint).

The app is configured with MARKETLOG_KAFKA_BOOTSTRAP's equivalent: the relay runs in the
server, the projector consumes the real broker, and every query still reads its own writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition

from api.app import create_app
from infrastructure.kafka_log import Topics
from infrastructure.settings import Settings
from tests.auth import login
from tests.e2e.test_api import new_order


@pytest.fixture(params=["kafka-python", "confluent"])
def kafka_settings(request: pytest.FixtureRequest, backend: Settings,
                   kafka_bootstrap: str) -> Settings:
    return backend.model_copy(update={
        "kafka_bootstrap": kafka_bootstrap,
        "kafka_topic_prefix": f"t-api-{uuid.uuid4().hex[:10]}",
        "kafka_partitions": 3,
        "kafka_client": request.param,
    })


@pytest.fixture
def client(kafka_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(kafka_settings)) as c:
        login(c, "tester")
        yield c


def test_orders_are_read_back_through_kafka(client: TestClient, kafka_settings: Settings,
                                            kafka_bootstrap: str) -> None:
    placed: list[dict[str, Any]] = []
    for i in range(12):
        account = ("ACC-ALPHA", "ACC-BETA")[i % 2]
        r = client.post("/orders", json=new_order(account_id=account, quantity=10 + i))
        assert r.status_code == 201, r.text
        placed.append(r.json())
        # Read-your-writes through relay -> broker -> projector, at once.
        got = client.get(f"/orders/{placed[-1]['order_id']}")
        assert got.status_code == 200 and got.json() == placed[-1]
    listed = client.get("/projections").json()
    assert listed["feed"] == "kafka"
    status = listed["status"]
    assert status["relay"]["ok"] and status["relay"]["position"] >= 13  # day + 12 orders
    assert status["ok"] and status["halted"] is None
    assert sum(p["next_offset"] for p in status["partitions"]) >= 13
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["projections"]["feed"] == "kafka"

    # The records are really on the broker: one per event, keyed by account.
    topics = Topics.with_prefix(kafka_settings.kafka_topic_prefix)
    consumer = KafkaConsumer(bootstrap_servers=[kafka_bootstrap], enable_auto_commit=False)
    try:
        parts = [TopicPartition(topics.events, p)
                 for p in consumer.partitions_for_topic(topics.events)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        keys: dict[int, bytes] = {}
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    keys[int(dict(r.headers)["position"])] = r.key
    finally:
        consumer.close()
    head = client.get("/health").json()["store"]["head_position"]
    assert sorted(keys) == list(range(1, head + 1))
    assert {keys[p] for p in keys} >= {b"ACC-ALPHA", b"ACC-BETA", b"_firm"}
