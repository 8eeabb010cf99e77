"""The relay: follows the event store's notification log and publishes every event to Kafka.

One record per event (infrastructure/kafka_log.py gives the format), idempotent producer with
``acks=all``. Progress is durable on Kafka itself: after each batch is acknowledged, a
checkpoint (the chain head and, per partition, the next offset and last position) goes to the
checkpoints topic; a restarted relay resumes after the last checkpoint. What was published
after it (a crash between a batch and its checkpoint) is published again, at most one batch:
consumers recognise the copies by log position and skip them, so nothing is lost and nothing
counts twice (ARCHITECTURE rules 1 and 6).

Why the ``prev`` header: if a send fails part-way, later records of the same partition may
already be on the topic, out of sequence with the missing one. The relay then starts again
from its last checkpoint, so every record after it arrives again in order; a consumer
applies a record only when its ``prev`` is the last position it applied from that partition
(the next one in sequence), which skips both the stray first copies and the duplicates.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from infrastructure import codec, kafka_clients
from infrastructure.kafka_clients import KAFKA_PYTHON_COMMON, SEND_TIMEOUT_S, Producer
from infrastructure.kafka_clients import kafka_python_producer_config as producer_config
from infrastructure.kafka_log import (
    CHECKPOINTS_TOPIC_CONFIG,
    EVENTS_TOPIC_CONFIG,
    Checkpoint,
    Topics,
    event_headers,
    key_of,
    partition_for,
    read_checkpoints,
)

log = logging.getLogger(__name__)

IDLE_WAIT_S = 0.2
MAX_BACKOFF_S = 5.0
__all__ = ["Relay", "RelayError", "ensure_topics", "last_checkpoint", "producer_config"]


class NotificationLog(Protocol):
    store_id: str

    def select(self, after: int, limit: int) -> list[tuple[int, str, bytes]]: ...


class RelayError(RuntimeError):
    """The topics cannot take this store's events (another store's, or re-partitioned)."""


def ensure_topics(bootstrap: str, topics: Topics, partitions: int, replication: int) -> int:
    """Create the events and checkpoints topics if missing; the events topic's partition
    count (an existing topic keeps its own: re-partitioning would move accounts)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","),
                             client_id="marketlog-admin", **KAFKA_PYTHON_COMMON)
    try:
        wanted = [
            NewTopic(topics.events, partitions, replication, topic_configs=EVENTS_TOPIC_CONFIG),
            NewTopic(topics.checkpoints, 1, replication, topic_configs=CHECKPOINTS_TOPIC_CONFIG),
        ]
        existing = set(admin.list_topics())
        for topic in wanted:
            if topic.name not in existing:
                with contextlib.suppress(TopicAlreadyExistsError):  # a peer was first
                    admin.create_topics([topic])
        described = admin.describe_topics([topics.events])
        return len(described[0]["partitions"])
    finally:
        admin.close()


def last_checkpoint(bootstrap: str, topics: Topics) -> Checkpoint | None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False,
                             **KAFKA_PYTHON_COMMON)
    try:
        found = list(read_checkpoints(consumer, topics.checkpoints, last_only=True))
        return found[-1] if found else None
    finally:
        consumer.close()


class Relay:
    """Publishes the store's events in log order; safe to SIGKILL at any point."""

    def __init__(self, source: NotificationLog, bootstrap: str, topics: Topics, *,
                 partitions: int = 8, replication: int = 1, batch_size: int = 5000,
                 clock: Callable[[], int] = time.time_ns, client: str = "kafka-python",
                 connect: bool = True) -> None:
        """``connect``: create the topics and read the last checkpoint now (raising if Kafka
        does not answer); False defers that to the first publish, so an engine starts, and
        keeps trading, while Kafka is down (the store is the truth; the relay catches up)."""
        self.source = source
        self.bootstrap = bootstrap
        self.client = client
        self.topics = topics
        self.batch_size = batch_size
        self.clock = clock
        self.last_error: BaseException | None = None
        self._wanted = (partitions, replication)
        self.partitions = 0  # known once connected
        self.checkpoint = Checkpoint(source.store_id, 0, codec.GENESIS_HASH, 0, 0, {}, {})
        self._connected = False
        self._producer: Producer | None = None
        self._lock = threading.Lock()  # one publisher at a time (thread and callers)
        self._published = threading.Condition()
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        if connect:
            self.connect()

    # ------------------------------------------------------------------ progress

    def connect(self) -> None:
        """Create the topics if missing and resume after the last checkpoint (idempotent)."""
        if self._connected:
            return
        self.partitions = ensure_topics(self.bootstrap, self.topics, *self._wanted)
        checkpoint = self._recover()
        with self._published:
            self.checkpoint = checkpoint
            self._published.notify_all()
        self._connected = True

    def _recover(self) -> Checkpoint:
        found = last_checkpoint(self.bootstrap, self.topics)
        if found is None:
            return Checkpoint(self.source.store_id, 0, codec.GENESIS_HASH, 0, self.partitions,
                              {}, {})
        if found.store_id != self.source.store_id:
            raise RelayError(
                f"{self.topics.checkpoints} holds the events of store {found.store_id}, not of "
                f"this store ({self.source.store_id}): use another MARKETLOG_KAFKA_TOPIC_PREFIX")
        if found.partitions != self.partitions:
            raise RelayError(
                f"{self.topics.events} has {self.partitions} partitions but was published with "
                f"{found.partitions}: accounts would change partition, refusing")
        # The store must still hold what was published: a store cut back (and perhaps grown
        # again) would otherwise be continued on the topic as a fork of another history.
        held = self.source.select(found.position - 1, 1)
        if not held or held[0][0] != found.position:
            raise RelayError(
                f"the store no longer holds log position {found.position}, which "
                f"{self.topics.checkpoints} says was published: the store was truncated; "
                "run `marketlog verify` and investigate before relaying")
        if codec.stored_hash(held[0][2]) != found.hash:
            raise RelayError(
                f"the store's record at log position {found.position} is not the one "
                f"published (hash {codec.stored_hash(held[0][2])[:16]}... vs "
                f"{found.hash[:16]}...): the store was rewritten; run `marketlog verify`")
        return found

    @property
    def position(self) -> int:
        """The last log position on Kafka with its checkpoint."""
        return self.checkpoint.position

    def wait_for(self, position: int, timeout: float) -> bool:
        with self._published:
            return self._published.wait_for(lambda: self.checkpoint.position >= position,
                                            timeout)

    # ------------------------------------------------------------------ publishing

    def publish_available(self) -> int:
        """Publish everything the store holds beyond the last checkpoint; the position
        reached. Raises on a broker failure (after which the next call starts again from
        the last checkpoint)."""
        with self._lock:
            self.connect()
            while True:
                rows = self.source.select(self.checkpoint.position, self.batch_size)
                if not rows:
                    return self.checkpoint.position
                try:
                    self._publish(rows)
                except BaseException:
                    self._reset_producer()
                    raise
                if len(rows) < self.batch_size:
                    return self.checkpoint.position

    def _publish(self, rows: Sequence[tuple[int, str, bytes]]) -> None:
        producer = self._producer or self._new_producer()
        cp = self.checkpoint
        last_positions = dict(cp.last_positions)
        partitions, events_topic = self.partitions, self.topics.events
        send = producer.send
        for position, topic, state in rows:
            name = codec.name_of_topic(topic)
            key = key_of(state, name)
            partition = partition_for(key, partitions)
            send(events_topic, partition, key, state,
                 event_headers(name, position, last_positions.get(partition, 0),
                               codec.stored_hash(state)))
            last_positions[partition] = position
        next_offsets = dict(cp.next_offsets)
        for (_, partition), end in producer.flush(SEND_TIMEOUT_S).items():  # raises on a loss
            next_offsets[partition] = max(end, next_offsets.get(partition, 0))
        position, _, state = rows[-1]
        checkpoint = Checkpoint(self.source.store_id, position, codec.stored_hash(state),
                                self.clock(), partitions, next_offsets, last_positions)
        producer.send(self.topics.checkpoints, 0, self.source.store_id.encode(),
                      checkpoint.encode())
        producer.flush(SEND_TIMEOUT_S)
        with self._published:
            self.checkpoint = checkpoint
            self._published.notify_all()

    def _new_producer(self) -> Producer:
        self._producer = kafka_clients.producer(self.client, self.bootstrap)
        return self._producer

    def _reset_producer(self) -> None:
        """After a failed send: a new producer, from the last checkpoint (see module doc)."""
        if self._producer is not None:
            try:
                self._producer.close()
            except Exception:  # closing a broken producer; nothing to keep
                log.debug("closing the failed producer", exc_info=True)
            self._producer = None

    # ------------------------------------------------------------------ thread

    def notify(self) -> None:
        """New events were committed: publish now rather than at the next tick."""
        self._wakeup.set()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("relay already started")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="relay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._lock:
            self._reset_producer()

    def run_forever(self) -> None:
        """`marketlog relay`: publish until interrupted."""
        self._run()

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            self._wakeup.clear()
            try:
                self.publish_available()
            except Exception as exc:
                # A broker outage: retry from the last checkpoint, backing off; visible on
                # last_error (and /health) meanwhile. The store keeps every event.
                failures += 1
                self.last_error = exc
                log.warning("relay: publishing failed (attempt %d): %s", failures, exc)
                self._stopping.wait(min(IDLE_WAIT_S * 2**failures, MAX_BACKOFF_S))
                continue
            failures = 0
            self.last_error = None
            self._wakeup.wait(IDLE_WAIT_S)

    def close(self) -> None:
        self.stop()
