"""One entry of the store's notification log, decoded once for every view."""

from __future__ import annotations

from typing import Any, NamedTuple

from domain.events import OrderEvent
from infrastructure.codec import decode_body, event_from_body


class Recorded(NamedTuple):
    position: int  # notification id: the event's place in the log's total order
    event: OrderEvent
    body: dict[str, Any]  # the stored JSON body (upcast), kept verbatim for the audit trail


def decode_notification(position: int, topic: str, state: bytes) -> Recorded:
    # The position goes along so an undecodable record (a changed topic, a missing upcaster)
    # fails with an error naming it, never a bare KeyError (issue 5, item 6).
    name, body = decode_body(topic, state, position)
    return Recorded(position, event_from_body(name, body, position), body)
