"""The event log on Kafka: topic names, the record format, topic creation, the checkpoints.

Two topics (README, "The event log on Kafka"):

* ``<prefix>.events``: one record per journaled event. Key = the event's account (one
  account's events stay in order within a partition; events of no account, such as trading
  days, use the key ``_firm``). Value = the event exactly as the store holds it: JSON with
  its ``schema`` version, ``prev_hash`` and ``hash``, so a consumer can verify a record
  against the chain and decode it with the store's own decoder and upcasters. Headers:
  ``type`` (event name), ``position`` (its place in the store's total order), ``prev`` (the
  position of the previous event the relay published to the same partition, 0 for none) and
  ``hash``. Infinite retention, no compaction: the topic is a record (SEC 17a-4), not a cache.
* ``<prefix>.checkpoints``: one partition; after each published batch the relay records
  the store's chain head (position, hash, time) and, per partition of the events topic, the
  next offset and the last position published there. It is both the relay's durable
  progress (a restarted relay resumes after the last checkpoint) and the outside anchor
  ``marketlog verify`` checks the store against (a cut tail or a rewritten record).

Partitions are chosen by the relay with Kafka's own murmur2 hash of the key (what the Java
client and kafka-python do by default), so standard tools and other clients agree and the
relay knows each record's partition before sending it (the ``prev`` header needs that).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2

from domain.events import EVENT_TYPES
from infrastructure import codec
from infrastructure.anchors import AnchorEntry
from infrastructure.kafka_clients import KAFKA_PYTHON_COMMON

FIRM_KEY = "_firm"
RECORD_FORMAT = 1  # of the checkpoint records


@functools.lru_cache(maxsize=65_536)  # accounts are few; kafka-python's murmur2 is Python
def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default for keyed records (the Java client's): positive murmur2 modulo the
    partition count."""
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class Topics:
    events: str
    checkpoints: str

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        return cls(f"{prefix}.events", f"{prefix}.checkpoints")


# Topic configuration the relay creates the topics with (and checks on existing ones).
EVENTS_TOPIC_CONFIG = {
    "cleanup.policy": "delete",
    "retention.ms": "-1",  # records outlive the six years of 17a-4: never deleted by age
    "retention.bytes": "-1",
    "message.timestamp.type": "CreateTime",
}
CHECKPOINTS_TOPIC_CONFIG = dict(EVENTS_TOPIC_CONFIG)


# Event types with an account, and whose fields before it are all scalars (ids, numbers,
# strings), so the first `"account_id":"` in the stored JSON is that field: inside a JSON
# string every quote is escaped, so the sequence cannot occur there.
_SCALARS = ("UUID", "int", "str")
_ACCOUNT_FIRST = frozenset(
    name for name, cls in EVENT_TYPES.items()
    if "account_id" in cls._fields and all(
        getattr(t, "__forward_arg__", str(t)) in _SCALARS
        for f, t in list(cls.__annotations__.items())[:cls._fields.index("account_id")]))
_NO_ACCOUNT = frozenset(n for n, cls in EVENT_TYPES.items() if "account_id" not in cls._fields)
_ACCOUNT_MARK = b'"account_id":"'


def key_of(state: bytes, name: str | None = None) -> bytes:
    """The record key: the event's account (``FIRM_KEY`` for events of none). Found in the
    stored bytes without parsing them for the usual event types (the relay's hot path)."""
    if name in _NO_ACCOUNT:
        return FIRM_KEY.encode()
    if name in _ACCOUNT_FIRST:
        start = state.find(_ACCOUNT_MARK)
        if start >= 0:
            start += len(_ACCOUNT_MARK)
            end = state.find(b'"', start)
            if end > start and b"\\" not in state[start:end]:
                return state[start:end]
    account = orjson.loads(state).get("account_id")
    return (account if isinstance(account, str) and account else FIRM_KEY).encode()


def event_headers(name: str, position: int, prev: int, record_hash: str
                  ) -> list[tuple[str, bytes]]:
    return [("type", name.encode()), ("position", b"%d" % position), ("prev", b"%d" % prev),
            ("hash", record_hash.encode())]


class MalformedRecord(ValueError):
    """A record of the events topic that cannot be applied: names where it is and why."""

    def __init__(self, topic: str, partition: int, offset: int, reason: str) -> None:
        super().__init__(f"{topic}[{partition}]@{offset}: {reason}")
        self.topic, self.partition, self.offset = topic, partition, offset


@dataclass(frozen=True)
class EventRecord:
    """What a consumer reads from one events-topic record, before decoding the event."""

    topic: str
    partition: int
    offset: int
    name: str
    position: int
    prev: int
    state: bytes


def read_event_record(topic: str, partition: int, offset: int,
                      headers: list[tuple[str, bytes]] | None, value: bytes | None,
                      ) -> EventRecord:
    """Parse the headers of one record; a missing or malformed header raises MalformedRecord
    naming the record (never a silent skip: the projection stops at that offset)."""
    found = dict(headers or ())
    try:
        name = found["type"].decode()
        position = int(found["position"])
        prev = int(found["prev"])
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise MalformedRecord(topic, partition, offset,
                              f"missing or malformed header ({exc!r})") from exc
    if value is None or position < 1 or not 0 <= prev < position:
        raise MalformedRecord(topic, partition, offset,
                              f"no value or impossible positions {prev} -> {position}")
    return EventRecord(topic, partition, offset, name, position, prev, value)


def decode_event(record: EventRecord) -> tuple[Any, dict[str, Any]]:
    """(event, stored body) of a record, checked against its own hash: a record changed on
    its way (or written by something other than the relay) stops the projection."""
    topic = codec.TOPIC_PREFIX + record.name
    try:
        name, body = codec.decode_body(topic, record.state, record.position)
        event = codec.event_from_body(name, body, record.position)
        check = codec.check_record(record.position, topic, event[0], event[1], record.state)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise MalformedRecord(record.topic, record.partition, record.offset, str(exc)) from exc
    if not check.intact:
        raise MalformedRecord(record.topic, record.partition, record.offset,
                              f"record hash does not match its content (position "
                              f"{record.position})")
    return event, body


# ------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """The relay's progress after a batch: everything up to ``position`` is on the topic."""

    store_id: str
    position: int
    hash: str
    at_ns: int
    partitions: int
    next_offsets: dict[int, int]  # partition -> next offset after this batch
    last_positions: dict[int, int]  # partition -> last position published to it

    def encode(self) -> bytes:
        return orjson.dumps({
            "format": RECORD_FORMAT, "store": self.store_id, "position": self.position,
            "hash": self.hash, "at_ns": self.at_ns, "partitions": self.partitions,
            "next_offsets": {str(p): o for p, o in sorted(self.next_offsets.items())},
            "last_positions": {str(p): o for p, o in sorted(self.last_positions.items())},
        })

    @classmethod
    def decode(cls, value: bytes) -> Checkpoint:
        raw = orjson.loads(value)
        return cls(str(raw["store"]), int(raw["position"]), str(raw["hash"]),
                   int(raw["at_ns"]), int(raw["partitions"]),
                   {int(p): int(o) for p, o in raw["next_offsets"].items()},
                   {int(p): int(o) for p, o in raw["last_positions"].items()})

    def anchor(self) -> AnchorEntry:
        return AnchorEntry(self.store_id, self.position, self.hash, self.at_ns)


def read_checkpoints(consumer: Any, topic: str, *, last_only: bool = False,
                     timeout_s: float = 10.0) -> Iterator[Checkpoint]:
    """The checkpoints topic's records, oldest first, up to its end at the time of the call
    (``last_only``: only the newest). ``consumer`` is a group-less kafka-python consumer."""
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    end = consumer.end_offsets([tp])[tp]
    if end == 0:
        return
    if last_only:
        consumer.seek(tp, end - 1)
    else:
        consumer.seek_to_beginning(tp)
    deadline = time.monotonic() + timeout_s
    while consumer.position(tp) < end:
        if time.monotonic() > deadline:
            raise TimeoutError(f"reading {topic} stopped at offset {consumer.position(tp)} "
                               f"of {end}")
        for record in consumer.poll(timeout_ms=200).get(tp, []):
            if record.offset < end:
                yield Checkpoint.decode(record.value)


class CheckpointsAnchor:
    """The checkpoints topic as a chain anchor (infrastructure/anchors.py) for ``verify``:
    the relay records every published head there, outside the database, so a store whose
    tail was cut off, or whose records were rewritten and re-chained, fails verification.
    Read-only here (the relay writes); ``cursor`` is a topic offset."""

    def __init__(self, bootstrap: str, topics: Topics, store_id: str) -> None:
        self.name = f"Kafka topic {topics.checkpoints}"
        self.topic = topics.checkpoints
        self.store_id = store_id
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","),
                                       enable_auto_commit=False, **KAFKA_PYTHON_COMMON)
        self._tp = TopicPartition(self.topic, 0)

    def record(self, position: int, head_hash: str, at_ns: int) -> None:
        """The relay records heads as it publishes them; nothing to do at commit."""

    def read(self, cursor: int = 0) -> tuple[list[AnchorEntry], int]:
        consumer, tp = self._consumer, self._tp
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        if end <= cursor:
            return [], cursor
        consumer.seek(tp, cursor)
        out: list[AnchorEntry] = []
        deadline = time.monotonic() + 30
        while consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {self.topic} stopped at {consumer.position(tp)}")
            for record in consumer.poll(timeout_ms=200).get(tp, []):
                if record.offset >= end:
                    continue
                try:
                    cp = Checkpoint.decode(record.value)
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    # A damaged checkpoint is evidence too: an impossible anchor.
                    out.append(AnchorEntry(self.store_id, -1, f"offset {record.offset}", 0))
                    continue
                if cp.store_id == self.store_id:
                    out.append(cp.anchor())
        return out, end

    def last(self) -> AnchorEntry | None:
        found = list(read_checkpoints(self._consumer, self.topic, last_only=True))
        return found[-1].anchor() if found and found[-1].store_id == self.store_id else None

    def close(self) -> None:
        self._consumer.close(autocommit=False)
