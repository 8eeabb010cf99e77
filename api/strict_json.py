"""JSON request bodies as JSON defines them: no NaN, no Infinity, no number beyond a double.

Python's ``json`` accepts ``NaN``, ``Infinity`` and ``-Infinity`` and turns ``1e400`` into
``inf``; the values then reach validation, and echoing them back in a 422 crashed the
handler (JSON cannot represent them: a 500). Here the body is parsed once, with each such
number marked where it stands, and a request that has any is refused with a 422 naming
every place (``["body", "limit_price"]``, ``["body", "legs", 0, "x"]``) and the reason,
before validation ever sees it. The parsed body is handed on, so FastAPI does not parse it
a second time.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

MAX_REPORTED = 20  # a body of a thousand NaNs does not need a thousand-entry answer


class _NotFinite:
    __slots__ = ("text", "why")

    def __init__(self, text: str, why: str) -> None:
        self.text, self.why = text, why


class _Found(Exception):
    pass


_DIGITS_CAP = sys.get_int_max_str_digits() or sys.maxsize


def _constant(name: str) -> _NotFinite:  # NaN, Infinity, -Infinity
    return _NotFinite(name, f"{name} is not a JSON number")


def _floating(text: str) -> Any:
    value = float(text)
    if math.isinf(value):
        return _NotFinite(_short(text), "out of range (beyond ±1.8e308)")
    return value


def _integer(text: str) -> Any:
    # int() refuses more digits than this with a ValueError, which would surface as a
    # generic 400 "error parsing the body" instead of naming the field.
    if len(text) - text.startswith("-") > _DIGITS_CAP:
        return _NotFinite(_short(text), f"more than {_DIGITS_CAP} digits")
    return int(text)


def _raising(hook: Any) -> Any:
    def check(text: str) -> Any:
        value = hook(text)
        if isinstance(value, _NotFinite):
            raise _Found
        return value

    return check


# Built once: json.loads with hooks would build a decoder (and its scanner) on every call.
# The first stops at the first non-finite number (the common case has none); only then
# does the second parse again to name every place.
_FAST = json.JSONDecoder(parse_constant=_raising(_constant), parse_float=_raising(_floating),
                         parse_int=_raising(_integer))
_MARKING = json.JSONDecoder(parse_constant=_constant, parse_float=_floating,
                            parse_int=_integer)


def loads(body: bytes | str) -> Any:
    """``json.loads`` that refuses non-finite numbers with a RequestValidationError."""
    # As json.loads reads bytes (UTF-8, -16 or -32, told apart by the first bytes).
    text = (body.decode(json.detect_encoding(body), "surrogatepass")
            if isinstance(body, bytes) else body)
    try:
        return _FAST.decode(text)
    except _Found:
        pass
    errors = []
    for error in _not_finite(_MARKING.decode(text), ("body",)):
        errors.append(error)
        if len(errors) == MAX_REPORTED:
            break
    raise RequestValidationError(errors)


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _not_finite(value: Any, loc: tuple[str | int, ...]) -> Iterator[dict[str, Any]]:
    if isinstance(value, _NotFinite):
        yield {"type": "finite_number", "loc": loc,
               "msg": f"Input should be a finite number: {value.why}", "input": value.text}
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _not_finite(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _not_finite(item, (*loc, index))


def is_json(content_type: str | None) -> bool:
    """The content types FastAPI parses as JSON (``application/json``, ``application/*+json``)."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json"))


class StrictJSONRoute(APIRoute):
    """An APIRoute whose JSON body goes through ``loads`` before FastAPI validates it."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def strict(request: Request) -> Response:
            if is_json(request.headers.get("content-type")):
                body = await request.body()
                if body:
                    try:
                        parsed = loads(body)
                    except (ValueError, RecursionError):
                        pass  # malformed JSON: FastAPI reports it in its own words (422/400)
                    else:
                        # Starlette's cache of the parsed body (Request.json): FastAPI reads
                        # it from there instead of parsing the bytes again.
                        request._json = parsed
            return await handler(request)

        return strict
