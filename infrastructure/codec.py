"""Event <-> stored bytes, with the hash chain and upcasting of old schema versions.

Stored state is JSON (orjson): human-readable for auditors (SEC 17a-4 asks for records in
human-readable and machine-usable form), decimals kept as strings so no binary float ever
touches money.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson

from domain.events import DECIMAL_FIELDS, EVENT_TYPES, SCHEMA_VERSION
from domain.values import FrozenRecord

TOPIC_PREFIX = "domain.events:"
GENESIS_HASH = "0" * 64

# (event name, stored schema version) -> function upgrading the dict one version.
# Add an entry when an event's shape changes; stored events are never rewritten.
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


def topic_of(event: Any) -> str:
    return TOPIC_PREFIX + type(event).__name__


def originator_of(event: Any) -> tuple[UUID, int]:
    """(aggregate id, aggregate version): by convention every event's first two fields."""
    return event[0], event[1]


def name_of_topic(topic: str) -> str:
    return topic.removeprefix(TOPIC_PREFIX)


# Per event type: its field names and the positions of its Decimal fields, so encoding
# converts decimals to text directly (an orjson ``default`` callback per decimal costs ~1 us).
def _fields_annotated(cls: type, test: Callable[[str], bool]) -> tuple[str, ...]:
    # Annotations are forward references (``from __future__ import annotations``).
    return tuple(f for f, t in cls.__annotations__.items()
                 if test(getattr(t, "__forward_arg__", str(t))))


UUID_FIELDS = {name: _fields_annotated(cls, lambda t: "UUID" in t)
               for name, cls in EVENT_TYPES.items()}
TUPLE_FIELDS = {name: _fields_annotated(cls, lambda t: t.startswith("tuple"))
                for name, cls in EVENT_TYPES.items()}
RECORD_FIELDS = {name: _fields_annotated(cls, lambda t: t == "FrozenRecord")
                 for name, cls in EVENT_TYPES.items()}

_LAYOUT: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    name: (cls._fields, tuple(i for i, f in enumerate(cls._fields) if f in DECIMAL_FIELDS[name]))
    for name, cls in EVENT_TYPES.items()
}


def encode(event: Any, prev_hash: str) -> bytes:
    """The stored bytes of an event, chained to its predecessor in the global order."""
    name = type(event).__name__
    fields, decimal_positions = _LAYOUT[name]
    values = list(event)
    for i in decimal_positions:
        if values[i] is not None:
            values[i] = str(values[i])
    body = dict(zip(fields, values, strict=True))
    body["schema"] = SCHEMA_VERSION[name]
    body["prev_hash"] = prev_hash
    return orjson.dumps(body)


def state_hash(state: bytes) -> str:
    return hashlib.sha256(state).hexdigest()


def decode_body(topic: str, state: bytes) -> tuple[str, dict[str, Any]]:
    """The raw JSON body of a stored event, upcast to the current schema."""
    name = name_of_topic(topic)
    body = orjson.loads(state)
    version = body.get("schema", 1)
    while version < SCHEMA_VERSION[name]:
        body = UPCASTERS[(name, version)](body)
        version += 1
        body["schema"] = version
    return name, body


def decode(topic: str, state: bytes) -> Any:
    return event_from_body(*decode_body(topic, state))


def event_from_body(name: str, body: dict[str, Any]) -> Any:
    """The typed event of an (upcast) JSON body; ``body`` itself is left untouched."""
    cls = EVENT_TYPES[name]
    body = dict(body)
    body.pop("schema", None)
    body.pop("prev_hash", None)
    for field in UUID_FIELDS[name]:
        value = body[field]
        if value is not None:
            body[field] = UUID(value)
    for field in DECIMAL_FIELDS[name]:
        value = body[field]
        if value is not None:
            body[field] = Decimal(value)
    for field in TUPLE_FIELDS[name]:
        value = body[field]
        if value is not None:
            body[field] = _frozen(value)
    for field in RECORD_FIELDS[name]:
        body[field] = FrozenRecord(body[field])
    return cls(**body)


def _frozen(value: Any) -> Any:
    """JSON arrays back to (nested) tuples: events are deeply immutable."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value
