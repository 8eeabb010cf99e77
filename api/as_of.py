"""The ``as_of`` query parameter of the read endpoints (issue 8, item 3).

``GET /positions``, ``/orders``, ``/accounts`` and ``/limits`` with ``?as_of=`` answer as of
that moment, from a read-only replay of the event store (``infrastructure.as_of``), and say
which log position the answer reflects in the ``X-As-Of-Position`` header (with
``X-As-Of-Event-Time``, the time of that position's event, when there is one). Without it
they answer from the live engine and read models, as before.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import Query, Response
from pydantic import BeforeValidator, Field, TypeAdapter, WithJsonSchema

from api.schemas import AccountOut
from infrastructure.as_of import AsOf, as_of, ns_of
from infrastructure.bootstrap import System

_DATETIME: TypeAdapter[datetime] = TypeAdapter(datetime)
_DIGITS = re.compile(r"[0-9]{1,25}")
_DATE_FIRST = re.compile(r"[0-9]{4}-")


def _as_of_ns(value: Any) -> int:
    """The parameter's text -> epoch nanoseconds; ValueError (a 422 naming ``as_of``)."""
    text = str(value).strip()
    if _DIGITS.fullmatch(text):
        return int(text)
    if not _DATE_FIRST.match(text):
        # pydantic alone would read "1.5" or "-3" as a Unix time in seconds: not ours.
        raise ValueError("an ISO 8601 time (e.g. 2026-11-26T15:30:00Z; UTC without an "
                         "offset) or epoch nanoseconds (digits only)")
    # pydantic's parser, as /audit's since and until use: RFC 3339 and its common variants.
    try:
        moment = _DATETIME.validate_python(text)
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not an ISO 8601 time") from None
    return ns_of(moment)


AsOfQuery = Annotated[
    int | None,
    BeforeValidator(lambda v: None if v is None else _as_of_ns(v)),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"},
                              {"type": "string", "pattern": "^[0-9]{1,25}$"}]}),
    Query(description="Answer as of this moment: ISO 8601 (UTC without an offset) or epoch "
                      "nanoseconds. Replays the event log up to the last event stamped at or "
                      "before it (header X-As-Of-Position); before the first event the answer "
                      "is empty, after the last it is now."),
]


class AccountAsOfOut(AccountOut):
    """An account; with ``as_of`` also its credit exposure then (absent otherwise)."""

    exposure: str | None = Field(None, description="as_of only: the exposure the credit "
                                 "control counted then (15c3-5(c)(1)(i): orders entered)")
    exposure_mode: str | None = Field(None, description="as_of only: gross or net, as the "
                                      "trading day in force then recorded it")


def at_moment(system: System, as_of_ns: int, response: Response) -> AsOf:
    """The state at ``as_of_ns`` (cached per position), the answer's headers set."""
    state = as_of(system.store, system.config, as_of_ns)
    response.headers.update(state.headers(as_of_ns))
    return state
