"""One entry of the store's notification log, decoded once for every view."""

from __future__ import annotations

from typing import Any, NamedTuple

from domain.events import OrderEvent
from infrastructure.codec import decode_body, event_from_body


class Recorded(NamedTuple):
    position: int  # notification id: the event's place in the log's total order
    event: OrderEvent
    body: dict[str, Any]  # the stored JSON body (upcast), kept verbatim for the audit trail
    # str(event[0]), the aggregate id as the views store it: made once per record rather
    # than by every view (``uuid.UUID.__str__`` costs as much as a view's own work). None:
    # not made yet (``key_of`` makes it).
    key: str | None = None


def recorded(position: int, event: Any, body: dict[str, Any]) -> Recorded:
    return Recorded(position, event, body, str(event[0]))


def key_of(r: Recorded) -> str:
    """The aggregate id of a record as text (``str(r.event[0])``)."""
    return r.key if r.key is not None else str(r.event[0])


def decode_notification(position: int, topic: str, state: bytes) -> Recorded:
    # The position goes along so an undecodable record (a changed topic, a missing upcaster)
    # fails with an error naming it, never a bare KeyError (issue 5, item 6).
    name, body = decode_body(topic, state, position)
    event = event_from_body(name, body, position)
    return Recorded(position, event, body, str(event[0]))
