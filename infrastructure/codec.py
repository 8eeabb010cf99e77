"""Event <-> stored bytes, with the whole-record hash chain and upcasting of old schema versions.

Stored state is JSON (orjson): human-readable for auditors (SEC 17a-4 asks for records in
human-readable and machine-usable form), decimals kept as strings so no binary float ever
touches money.

The record hash (ARCHITECTURE rule 5, tamper evidence) covers the WHOLE stored record: its
log position, topic, originator id and version, and the JSON body, which ends with the hash
of the record before it (``prev_hash``). A changed topic, version or position therefore
breaks the record's own hash, not only the next record's link, so ``verify`` can name the
record that was changed. The record's own hash is stored in the record as a fixed-shape
trailing member::

    {...event fields..., "schema": 1, "prev_hash": "<64 hex>", "hash": "<64 hex>"}

so verification slices a fixed-length suffix off instead of re-serialising the event. The
hashed bytes are ``position (8 bytes) version (8 bytes) topic NUL originator-id (16 bytes)
body`` (fixed widths, so no two records share an encoding), where ``body`` is the stored
state without its ``"hash"`` member.

No compatibility with the earlier chain format (hash of the body's bytes only) is kept: no
production store was ever written in it.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson

from domain.events import DECIMAL_FIELDS, EVENT_TYPES, SCHEMA_VERSION
from domain.values import FrozenRecord
from infrastructure.ids import uuid_from_text

TOPIC_PREFIX = "domain.events:"
GENESIS_HASH = "0" * 64

# The fixed-shape tail of every stored record: ,"prev_hash":"<64>","hash":"<64>"}
_HASH_KEY = b',"hash":"'
_PREV_KEY = b',"prev_hash":"'
HASH_SUFFIX_LEN = len(_HASH_KEY) + 64 + 2  # ,"hash":"<64 hex>"}
_PREV_SUFFIX_LEN = len(_PREV_KEY) + 64 + 1  # ,"prev_hash":"<64 hex>"

# (event name, stored schema version) -> function upgrading the dict one version.
# Add an entry when an event's shape changes; stored events are never rewritten.
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


def _with(**defaults: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def upcast(body: dict[str, Any]) -> dict[str, Any]:
        return {**body, **defaults}
    return upcast


# Schema 2 (issue 7): orders carry a strategy tag; decisions record the inputs of the
# throttle, LULD, Rule 201 and locate controls. Version 1 records had neither.
UPCASTERS[("OrderAccepted", 1)] = _with(strategy=None, inputs={})
UPCASTERS[("OrderRejected", 1)] = _with(strategy=None)
UPCASTERS[("ReplaceRequested", 1)] = _with(inputs={})
# Schema 2 of StrategyStopped: the stop cancels the strategy's live orders and names them.
# A version-1 stop canceled nothing.
UPCASTERS[("StrategyStopped", 1)] = _with(canceled_orders=[])
# Schema 2 of ClockExceptionRecorded: the time reference it was measured against. A
# version-1 exception was the engine's own (a backward step), against no reference.
UPCASTERS[("ClockExceptionRecorded", 1)] = _with(reference="")


class UndecodableEvent(ValueError):
    """A stored record that cannot be turned back into an event: names where and why.

    Raised instead of a bare KeyError/TypeError so that a changed topic or body (tampering,
    or a missing upcaster) tells the operator which log position to look at.
    """

    def __init__(self, position: int | None, topic: str, reason: str) -> None:
        where = f"stored event at position {position}" if position is not None \
            else "stored event"
        super().__init__(f"{where} (topic {topic!r}) cannot be decoded: {reason}")
        self.position = position
        self.topic = topic


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

# name -> (topic, topic bytes + NUL, field names, decimal field positions)
_LAYOUT: dict[str, tuple[str, bytes, tuple[str, ...], tuple[int, ...]]] = {
    name: (TOPIC_PREFIX + name, (TOPIC_PREFIX + name).encode() + b"\0", cls._fields,
           tuple(i for i, f in enumerate(cls._fields) if f in DECIMAL_FIELDS[name]))
    for name, cls in EVENT_TYPES.items()
}

_sha256 = hashlib.sha256
_NUMBERS = struct.Struct(">qq")
_WITH_HASH = b'%b,"hash":"%b"}'


def record_digest(position: int, topic_z: bytes, originator_id: UUID, version: int,
                  body: bytes) -> str:
    """SHA-256 (hex) of a whole record. ``topic_z``: the topic's bytes and a NUL; ``body``:
    the stored state minus its "hash" member."""
    return _sha256(_NUMBERS.pack(position, version) + topic_z + originator_id.bytes
                   + body).hexdigest()


def encode_record(event: Any, position: int, prev_hash: str) -> tuple[str, bytes, str]:
    """(topic, stored bytes, record hash) of an event stored at ``position`` after a record
    whose hash is ``prev_hash``. The hot path of every append: one dumps, one SHA-256."""
    name = type(event).__name__
    topic, topic_bytes, fields, decimal_positions = _LAYOUT[name]
    values = list(event)
    for i in decimal_positions:
        if values[i] is not None:
            values[i] = str(values[i])
    body = dict(zip(fields, values, strict=True))
    body["schema"] = SCHEMA_VERSION[name]
    body["prev_hash"] = prev_hash
    content = orjson.dumps(body)
    digest = _sha256(_NUMBERS.pack(position, values[1]) + topic_bytes + values[0].bytes
                     + content).hexdigest()
    return topic, _WITH_HASH % (content[:-1], digest.encode()), digest


def encode(event: Any, position: int, prev_hash: str) -> bytes:
    """The stored bytes of an event at ``position``, chained to its predecessor."""
    return encode_record(event, position, prev_hash)[1]


def stored_hash(state: bytes) -> str:
    """The record hash stored in the record itself (its fixed-shape trailing member)."""
    return state[-66:-2].decode("ascii", "replace")


def state_hash(state: bytes) -> str:
    """SHA-256 (hex) of arbitrary bytes (snapshots; not the record hash, see stored_hash)."""
    return _sha256(state).hexdigest()


class RecordCheck:
    """What one stored record says about itself: its stored hash, the hash recomputed over
    the whole record, and the link (``prev_hash``) it carries. ``shape_ok`` is False when the
    fixed-shape tail is missing (the bytes were edited without care for the format)."""

    __slots__ = ("computed", "prev_hash", "shape_ok", "stored")

    def __init__(self, stored: str, computed: str, prev_hash: str | None,
                 shape_ok: bool) -> None:
        self.stored, self.computed, self.prev_hash, self.shape_ok = (
            stored, computed, prev_hash, shape_ok)

    @property
    def intact(self) -> bool:
        return self.shape_ok and self.stored == self.computed


def check_record(position: int, topic: str, originator_id: UUID, version: int,
                 state: bytes) -> RecordCheck:
    tail = state[-HASH_SUFFIX_LEN:]
    if not (tail.startswith(_HASH_KEY) and tail.endswith(b'"}')):
        return RecordCheck("", "", _prev_hash_of(state), False)
    # The hash of ``position version topic NUL id body`` where body is the state without its
    # "hash" member (state[:-HASH_SUFFIX_LEN] + "}"), fed in pieces: no copy of the body.
    hasher = _sha256(_NUMBERS.pack(position, version) + topic.encode() + b"\0"
                     + originator_id.bytes)
    hasher.update(memoryview(state)[:-HASH_SUFFIX_LEN])
    hasher.update(b"}")
    computed = hasher.hexdigest()
    # (body)[-_PREV_SUFFIX_LEN - 1:], sliced from the state (slicing clamps alike).
    prev_tail = state[-HASH_SUFFIX_LEN - _PREV_SUFFIX_LEN:-HASH_SUFFIX_LEN] + b"}"
    if prev_tail.startswith(_PREV_KEY):
        prev: str | None = prev_tail[len(_PREV_KEY):len(_PREV_KEY) + 64].decode(
            "ascii", "replace")
    else:
        prev = _prev_hash_of(state)
    return RecordCheck(tail[len(_HASH_KEY):-2].decode("ascii", "replace"), computed, prev,
                       True)


def _prev_hash_of(state: bytes) -> str | None:
    try:
        value = orjson.loads(state).get("prev_hash")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def diagnose(topic: str, originator_id: UUID, version: int, state: bytes) -> str:
    """Why a record's own hash no longer matches, as far as the record itself shows it: the
    columns outside the JSON body (topic, originator id and version) are compared with what
    the body says; otherwise the body itself (or the position) was changed."""
    try:
        body = orjson.loads(state)
    except orjson.JSONDecodeError:
        return "its stored bytes are no longer valid JSON"
    if not isinstance(body, dict):
        return "its stored bytes are no longer an event record"
    name = name_of_topic(topic)
    cls = EVENT_TYPES.get(name)
    if cls is None:
        return f"its topic was changed to {topic!r}, which names no event type"
    fields = cls._fields
    expected = set(fields) | {"schema", "prev_hash", "hash"}
    schema = body.get("schema", 1)
    # Fields other than the type's at its current version, or a version it never had.
    if set(body) != expected and (not isinstance(schema, int)
                                  or schema >= SCHEMA_VERSION[name]):
        return (f"its topic {topic!r} does not match the stored body (a {name} has other "
                "fields): the topic was changed")
    if len(fields) >= 2:
        if str(body.get(fields[0])) != str(originator_id):
            return (f"its originator id column {originator_id} differs from the body's "
                    f"{fields[0]} {body.get(fields[0])}")
        if body.get(fields[1]) != version:
            return (f"its originator version column {version} differs from the body's "
                    f"{fields[1]} {body.get(fields[1])}")
    return "its content (body or position) was changed after it was written"


def decode_body(topic: str, state: bytes, position: int | None = None
                ) -> tuple[str, dict[str, Any]]:
    """The raw JSON body of a stored event, upcast to the current schema."""
    name = name_of_topic(topic)
    current = SCHEMA_VERSION.get(name)
    if current is None:
        raise UndecodableEvent(position, topic, "no event type has this topic")
    try:
        body = orjson.loads(state)
    except orjson.JSONDecodeError as exc:
        raise UndecodableEvent(position, topic, f"not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise UndecodableEvent(position, topic, "not a JSON object")
    version = body.get("schema", 1)
    if not isinstance(version, int) or version > current:
        # Written by newer code: reading it as the current version would drop or misread
        # fields, so it stops the reader (a projection halts at it) until this code is new.
        raise UndecodableEvent(position, topic, f"schema version {version!r} of {name} is "
                                                f"unknown here (this code knows {current})")
    while version < current:
        upcast = UPCASTERS.get((name, version))
        if upcast is None:
            raise UndecodableEvent(position, topic,
                                   f"no upcaster from schema version {version} of {name}")
        body = upcast(body)
        version += 1
        body["schema"] = version
    return name, body


def decode(topic: str, state: bytes, position: int | None = None) -> Any:
    return event_from_body(*decode_body(topic, state, position), position=position)


_BOOKKEEPING = ("schema", "prev_hash", "hash")


def _frozen(value: Any) -> Any:
    """JSON arrays back to (nested) tuples: events are deeply immutable."""
    if not isinstance(value, list):
        return value
    if value and isinstance(value[0], list):
        return tuple(_frozen(v) for v in value)
    return tuple(value)  # a flat list (``checks``): replay decodes one per decision


def _converters(name: str) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
    """(field position, conversion) for every field stored as JSON text or arrays."""
    fields = EVENT_TYPES[name]._fields
    out: list[tuple[int, Callable[[Any], Any]]] = []
    for i, field in enumerate(fields):
        if field in UUID_FIELDS[name]:
            out.append((i, uuid_from_text))
        elif field in DECIMAL_FIELDS[name]:
            out.append((i, Decimal))
        elif field in TUPLE_FIELDS[name]:
            out.append((i, _frozen))
        elif field in RECORD_FIELDS[name]:
            out.append((i, FrozenRecord))
    return tuple(out)


# Per event type: (class, field names, conversions). Replay decodes every event of the log
# through this, so the tuple is built positionally (keyword construction costs ~3 us).
_DECODING = {name: (cls, cls._fields, _converters(name)) for name, cls in EVENT_TYPES.items()}


def event_from_body(name: str, body: dict[str, Any], position: int | None = None) -> Any:
    """The typed event of an (upcast) JSON body; ``body`` itself is left untouched."""
    cls, fields, conversions = _DECODING[name]
    try:
        extra = len(body) - len(fields) - (
            ("schema" in body) + ("prev_hash" in body) + ("hash" in body))  # _BOOKKEEPING
        if extra:
            unknown = sorted(set(body) - set(fields) - set(_BOOKKEEPING))
            raise TypeError(f"unexpected fields {unknown}")
        values = [body[f] for f in fields]
        for i, convert in conversions:
            value = values[i]
            if value is not None:
                values[i] = convert(value)
        return tuple.__new__(cls, values)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise UndecodableEvent(position, TOPIC_PREFIX + name,
                               f"body does not fit {name}: {exc!r}") from None
