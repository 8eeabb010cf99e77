"""The Kafka the suite runs against is a real single-node KRaft broker (infrastructure/kafka.sh):
topics made on purpose round-trip records written with acks=all by an idempotent producer, and
a private broker keeps its records across a clean restart and a crash."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from infrastructure.kafka_service import (
    admin_client,
    temporary_broker,
    wait_until_ready,
)

# ``kafka_bootstrap``: the shared broker, from tests/conftest.py (fails, never skips).


def _topic(prefix: str = "marketlog_t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def _create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = admin_client(bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)], timeout_ms=10_000,
                            wait_for_metadata=True)
    finally:
        admin.close()


def _delete_topic(bootstrap: str, name: str) -> None:
    admin = admin_client(bootstrap)
    try:
        admin.delete_topics([name], timeout_ms=10_000, raise_errors=False)
    finally:
        admin.close()


@pytest.fixture
def shared_topic(kafka_bootstrap: str) -> Iterator[str]:
    """A throwaway topic (one partition) on the shared broker, deleted afterwards."""
    name = _topic()
    _create_topic(kafka_bootstrap, name)
    try:
        yield name
    finally:
        _delete_topic(kafka_bootstrap, name)


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all",
                             enable_idempotence=True, linger_ms=0, request_timeout_ms=10_000)
    try:
        futures = [producer.send(topic, key=b"k%d" % i, value=v) for i, v in enumerate(values)]
        producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=30)  # raises if the broker did not acknowledge it
    finally:
        producer.close(timeout=10)


def _read_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 30) -> list[bytes]:
    """Every record of partition 0 from the start, without a consumer group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=1000)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        values: list[bytes] = []
        batches = consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=expected)
        values.extend(r.value for r in batches.get(tp, []))
        while len(values) < expected:
            more = consumer.poll(timeout_ms=int(timeout_s * 1000))
            if not more:
                break
            values.extend(r.value for r in more.get(tp, []))
        return values
    finally:
        consumer.close()


# ------------------------------------------------------------------------- shared broker


def test_shared_broker_is_a_real_single_node_kraft_broker(kafka_bootstrap: str) -> None:
    host, _, port = kafka_bootstrap.rpartition(":")
    assert host == "127.0.0.1"
    assert port.isdigit()
    admin = admin_client(kafka_bootstrap)
    try:
        cluster = admin.describe_cluster()
        assert [b["broker_id"] for b in cluster["brokers"]] == [1]
        assert cluster["controller_id"] == 1
        topic = _topic("marketlog_t_auto")
        # auto.create.topics.enable=false: a producer cannot conjure a topic by writing to it.
        probe = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_block_ms=1500)
        try:
            with pytest.raises(Exception):  # noqa: B017 - the client's KafkaTimeoutError
                probe.send(topic, b"x").get(timeout=5)
        finally:
            probe.close(timeout=5)
        assert topic not in admin.list_topics()
    finally:
        admin.close()


def test_topic_round_trips_records_from_an_idempotent_producer(kafka_bootstrap: str,
                                                               shared_topic: str) -> None:
    values = [b"event-%03d" % i for i in range(50)]
    _produce(kafka_bootstrap, shared_topic, values)
    assert _read_all(kafka_bootstrap, shared_topic, len(values)) == values


def test_consumer_group_offsets_are_committed(kafka_bootstrap: str, shared_topic: str) -> None:
    """__consumer_offsets works on one node (its replication factor is 1)."""
    _produce(kafka_bootstrap, shared_topic, [b"a", b"b", b"c"])
    group = _topic("marketlog_g")
    tp = TopicPartition(shared_topic, 0)

    def consumer() -> KafkaConsumer:
        c = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group,
                          enable_auto_commit=False, auto_offset_reset="earliest")
        c.assign([tp])
        return c

    first = consumer()
    try:
        got = first.poll(timeout_ms=20_000, max_records=2).get(tp, [])
        assert [r.value for r in got] == [b"a", b"b"]
        first.commit()
    finally:
        first.close()
    second = consumer()
    try:
        assert second.committed(tp) == 2
        rest = second.poll(timeout_ms=20_000).get(tp, [])
        assert [r.value for r in rest] == [b"c"]
    finally:
        second.close()


# ----------------------------------------------------------------------- private brokers


def test_temporary_broker_keeps_records_across_a_clean_restart_and_a_crash() -> None:
    with temporary_broker() as broker:
        topic = _topic()
        _create_topic(broker.bootstrap, topic)
        _produce(broker.bootstrap, topic, [b"before-stop-1", b"before-stop-2"])
        first_pid = broker.pid
        assert first_pid is not None

        broker.stop()
        assert broker.pid is None
        with pytest.raises(TimeoutError):
            wait_until_ready(broker.bootstrap, timeout=1)
        broker.start()  # same ports, same data: no reformat
        assert broker.pid not in (None, first_pid)
        assert _read_all(broker.bootstrap, topic, 2) == [b"before-stop-1", b"before-stop-2"]

        # acks=all on one node means written to the leader's log: a SIGKILL must not lose it.
        _produce(broker.bootstrap, topic, [b"before-kill"])
        broker.kill()
        assert broker.pid is None
        broker.start()
        assert _read_all(broker.bootstrap, topic, 3) == [
            b"before-stop-1", b"before-stop-2", b"before-kill"]
        assert "formatted storage" not in broker.script("start").stdout

        log = broker.log_file.read_text(encoding="utf-8", errors="replace")
        assert log.count("Kafka Server started") == 3
    assert not broker.home.exists()


def test_kafka_sh_start_is_idempotent() -> None:
    with temporary_broker() as broker:
        pid = broker.pid
        assert pid is not None
        again = broker.script("start")
        assert "already running" in again.stdout
        assert f"(pid {pid})" in again.stdout
        assert broker.pid == pid
        status = broker.script("status")
        assert f"running (pid {pid})" in status.stdout
        stopped = broker.script("stop")
        assert "stopped" in stopped.stdout
        assert broker.script("status", check=False).returncode == 3
        assert "not running" in broker.script("stop").stdout  # stop is idempotent too

