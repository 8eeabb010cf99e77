"""The Kafka client port: what the relay and the projector need of a producer and a consumer.

Two implementations, same record format (infrastructure/kafka_log.py), same partitions (the
relay names each record's partition itself, with Kafka's murmur2 of the key):

* ``kafka-python`` — the product's named client, pure Python: simple to install anywhere;
  its producer tops out near 35k records/s on one core, so it is the right choice for the
  embedded footprint, tests and modest flows.
* ``confluent`` — confluent-kafka, librdkafka in C: ten times the producer and consumer
  rate for the same records; the choice for production volumes (the 100k events/s target).

Chosen by ``MARKETLOG_KAFKA_CLIENT``; both are run by the same tests.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

CLIENTS = ("kafka-python", "confluent")


class Received(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class KafkaSendError(RuntimeError):
    """A record was not acknowledged by the brokers (after the client's own retries)."""


class Producer(Protocol):
    def send(self, topic: str, partition: int, key: bytes, value: bytes,
             headers: list[tuple[str, bytes]] | None = None) -> None:
        """Queue a record (asynchronous)."""

    def flush(self, timeout: float) -> dict[tuple[str, int], int]:
        """Wait until every queued record is acknowledged; per (topic, partition) the offset
        after the last one. Raises KafkaSendError if any was not."""

    def close(self) -> None: ...


class Consumer(Protocol):
    # False: the projector assigns itself every partition instead of joining its group.
    joins_groups_reliably: bool

    def subscribe(self, topic: str, on_assign: Callable[[list[int]], dict[int, int]]) -> None:
        """Join the group; ``on_assign(partitions)`` returns the offset to start each at."""

    def assign(self, topic: str, offsets: dict[int, int]) -> None:
        """Read these partitions from these offsets, without a group."""

    def poll(self, timeout_ms: int, max_records: int) -> dict[tuple[str, int], list[Received]]:
        ...

    def partitions_for(self, topic: str, timeout: float = 30.0) -> list[int]: ...

    def end_offset(self, topic: str, partition: int) -> int: ...

    def close(self) -> None: ...


def producer(client: str, bootstrap: str, **options: Any) -> Producer:
    if client == "confluent":
        return ConfluentProducer(bootstrap, **options)
    if client == "kafka-python":
        return KafkaPythonProducer(bootstrap, **options)
    raise ValueError(f"unknown Kafka client {client!r}; one of {CLIENTS}")


def consumer(client: str, bootstrap: str, group: str | None, batch_size: int) -> Consumer:
    if client == "confluent":
        return ConfluentConsumer(bootstrap, group, batch_size)
    if client == "kafka-python":
        return KafkaPythonConsumer(bootstrap, group, batch_size)
    raise ValueError(f"unknown Kafka client {client!r}; one of {CLIENTS}")


SEND_TIMEOUT_S = 60.0
# Every kafka-python client: a broker that is down fails a connect within seconds (its
# default waits 30 s), and one that comes back is found within a second (its default
# backoff grows to 30 s: a relay would sit idle for half a minute after an outage).
KAFKA_PYTHON_COMMON: dict[str, Any] = {"reconnect_backoff_max_ms": 1000,
                                       "bootstrap_timeout_ms": 5000}


# ----------------------------------------------------------------------------- kafka-python


def kafka_python_producer_config(bootstrap: str, client_id: str = "marketlog-relay",
                                 ) -> dict[str, Any]:
    return {
        "bootstrap_servers": bootstrap.split(","),
        "acks": "all",
        "enable_idempotence": True,  # a retried send is written once, in order per partition
        "max_in_flight_requests_per_connection": 5,
        "linger_ms": 5,
        "batch_size": 512 * 1024,
        "delivery_timeout_ms": int(SEND_TIMEOUT_S * 1000),
        "request_timeout_ms": 30_000,
        "retries": 2**31 - 1,
        "client_id": client_id,
        **KAFKA_PYTHON_COMMON,
    }


class KafkaPythonProducer:
    def __init__(self, bootstrap: str, *, client_id: str = "marketlog-relay") -> None:
        from kafka import KafkaProducer

        self._producer = KafkaProducer(**kafka_python_producer_config(bootstrap, client_id))
        self._futures: list[Any] = []

    def send(self, topic: str, partition: int, key: bytes, value: bytes,
             headers: list[tuple[str, bytes]] | None = None) -> None:
        self._futures.append(self._producer.send(topic, value=value, key=key,
                                                 headers=headers or [], partition=partition))

    def flush(self, timeout: float) -> dict[tuple[str, int], int]:
        self._producer.flush(timeout=timeout)
        futures, self._futures = self._futures, []
        ends: dict[tuple[str, int], int] = {}
        for future in futures:
            try:
                metadata = future.get(timeout=0)
            except Exception as exc:
                raise KafkaSendError(str(exc)) from exc
            where = (metadata.topic, metadata.partition)
            if metadata.offset + 1 > ends.get(where, 0):
                ends[where] = metadata.offset + 1
        return ends

    def close(self) -> None:
        self._producer.close(timeout=1)


class KafkaPythonConsumer:
    # kafka-python 3.0.12's group membership proved unreliable on a topic created moments
    # before: the leader assigned nothing ("No partition metadata"), and the rebalance that
    # should follow sometimes never completed (partitions unread until the consumer was
    # replaced). With kafka-python the projector therefore assigns itself every partition:
    # one projector per read-model database, exactly once all the same (the offsets are in
    # the database). Scaling out by partitions is the confluent client's job.
    joins_groups_reliably = False

    def __init__(self, bootstrap: str, group: str | None, batch_size: int) -> None:
        from kafka import KafkaConsumer

        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap.split(","),
            group_id=group,
            enable_auto_commit=False,  # offsets live in the read-model database
            auto_offset_reset="earliest",
            max_poll_records=batch_size,
            fetch_max_wait_ms=20,  # latency of the read models behind the log
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            client_id="marketlog-projector",
            # The session stays at its 45 s default: kafka-python heartbeats from a Python
            # thread, which a busy process can starve for seconds (10 s got members evicted
            # under load). A killed projector's partitions wait that long for a successor.
            **KAFKA_PYTHON_COMMON,
        )

    def subscribe(self, topic: str, on_assign: Callable[[list[int]], dict[int, int]]) -> None:
        from kafka import TopicPartition
        from kafka.consumer.subscription_state import ConsumerRebalanceListener

        consumer = self._consumer

        class SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                pass  # nothing to commit: every applied batch stored its offsets

            def on_partitions_assigned(self, assigned: Any) -> None:
                starts = on_assign(sorted(tp.partition for tp in assigned))
                for partition, offset in starts.items():
                    consumer.seek(TopicPartition(topic, partition), offset)

        consumer.subscribe([topic], listener=SeekToStored())

    def assign(self, topic: str, offsets: dict[int, int]) -> None:
        from kafka import TopicPartition

        tps = {p: TopicPartition(topic, p) for p in offsets}
        self._consumer.assign(list(tps.values()))
        for p, offset in offsets.items():
            self._consumer.seek(tps[p], offset)

    def poll(self, timeout_ms: int, max_records: int) -> dict[tuple[str, int], list[Received]]:
        polled = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        return {(tp.topic, tp.partition): [
            Received(tp.topic, tp.partition, r.offset, r.key, r.value, list(r.headers or ()))
            for r in records] for tp, records in polled.items()}

    def partitions_for(self, topic: str, timeout: float = 30.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while not (found := self._consumer.partitions_for_topic(topic)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {topic} has no partitions (does it exist?)")
            time.sleep(0.1)
        return sorted(found)

    def end_offset(self, topic: str, partition: int) -> int:
        from kafka import TopicPartition

        tp = TopicPartition(topic, partition)
        return int(self._consumer.end_offsets([tp])[tp])

    def close(self) -> None:
        self._consumer.close(autocommit=False)


# ----------------------------------------------------------------------------- confluent


class ConfluentProducer:
    def __init__(self, bootstrap: str, *, client_id: str = "marketlog-relay") -> None:
        from confluent_kafka import Producer as CKProducer

        self._producer = CKProducer({
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "max.in.flight.requests.per.connection": 5,
            "linger.ms": 5,
            "batch.size": 1024 * 1024,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1024 * 1024,
            "delivery.timeout.ms": int(SEND_TIMEOUT_S * 1000),
            "client.id": client_id,
            "reconnect.backoff.max.ms": 1000,
        })
        self._lock = threading.Lock()
        self._ends: dict[tuple[str, int], int] = {}
        self._errors: list[str] = []

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}[{msg.partition()}]: {err}")
            return
        where = (msg.topic(), msg.partition())
        if msg.offset() + 1 > self._ends.get(where, 0):
            self._ends[where] = msg.offset() + 1

    def send(self, topic: str, partition: int, key: bytes, value: bytes,
             headers: list[tuple[str, bytes]] | None = None) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, partition=partition,
                                       headers=headers, on_delivery=self._delivered)
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self._producer.poll(0.05)

    def flush(self, timeout: float) -> dict[tuple[str, int], int]:
        left = self._producer.flush(timeout)
        ends, self._ends = self._ends, {}
        errors, self._errors = self._errors, []
        if left:
            raise KafkaSendError(f"{left} records not acknowledged within {timeout} s")
        if errors:
            raise KafkaSendError("; ".join(errors[:5]))
        return ends

    def close(self) -> None:
        self._producer.flush(1)


class ConfluentConsumer:
    joins_groups_reliably = True

    def __init__(self, bootstrap: str, group: str | None, batch_size: int) -> None:
        from confluent_kafka import Consumer as CKConsumer

        self._consumer = CKConsumer({
            "bootstrap.servers": bootstrap,
            # librdkafka wants a group id even for assign(); a throwaway one joins nothing.
            "group.id": group or f"marketlog-unused-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 20,
            "fetch.queue.backoff.ms": 1,  # the default caps draining near 170k records/s
            "queued.max.messages.kbytes": 256 * 1024,
            "client.id": "marketlog-projector",
            "reconnect.backoff.max.ms": 1000,
            # A killed projector holds its partitions until its session expires (45 s by
            # default). librdkafka heartbeats from its own C thread, so a short one is safe.
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 3_000,
        })
        self._batch = batch_size

    def subscribe(self, topic: str, on_assign: Callable[[list[int]], dict[int, int]]) -> None:
        from confluent_kafka import TopicPartition

        def assigned(consumer: Any, partitions: list[Any]) -> None:
            starts = on_assign(sorted(tp.partition for tp in partitions))
            consumer.assign([TopicPartition(topic, tp.partition, starts[tp.partition])
                             for tp in partitions])

        self._consumer.subscribe([topic], on_assign=assigned)

    def assign(self, topic: str, offsets: dict[int, int]) -> None:
        from confluent_kafka import TopicPartition

        self._consumer.assign([TopicPartition(topic, p, o) for p, o in offsets.items()])

    def poll(self, timeout_ms: int, max_records: int) -> dict[tuple[str, int], list[Received]]:
        out: dict[tuple[str, int], list[Received]] = {}
        from confluent_kafka import KafkaError

        for msg in self._consumer.consume(num_messages=max_records, timeout=timeout_ms / 1000):
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF or (
                        error.retriable() and not error.fatal()):
                    continue  # transient (a broker restarting): the client retries
                raise RuntimeError(f"Kafka consumer error: {error}")
            where = (msg.topic(), msg.partition())
            out.setdefault(where, []).append(Received(
                msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                list(msg.headers() or ())))
        return out

    def partitions_for(self, topic: str, timeout: float = 30.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while True:
            found = self._consumer.list_topics(topic, timeout=timeout).topics.get(topic)
            if found is not None and found.error is None and found.partitions:
                return sorted(found.partitions)
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {topic} has no partitions (does it exist?)")
            time.sleep(0.1)

    def end_offset(self, topic: str, partition: int) -> int:
        from confluent_kafka import TopicPartition

        _, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                       timeout=10)
        return int(high)

    def close(self) -> None:
        self._consumer.close()
