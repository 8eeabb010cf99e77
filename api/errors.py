"""Every error the API answers, mapped in one place: a 4xx with the reason, a 503 with
Retry-After while a database is away, and never a stack trace.

Handlers, not try/except in each route: a route that forgets a case still answers right,
and the OpenAPI document (``responses``) lists the same statuses the handlers produce.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import uuid
from typing import Any

import eventsourcing.persistence as es
import sqlalchemy as sa
from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.schemas import ErrorOut, ValidationErrorOut
from commands.engine import NotRecorded
from commands.ports import StoreHalted

log = logging.getLogger(__name__)

RETRY_AFTER_S = 2  # a short outage (failover, restart) is over in seconds; clients back off
MAX_ERRORS = 50  # a 422 lists at most this many problems (each one small, see _issue)
MAX_TEXT = 100  # longest echoed input, loc part or context text, in characters


class Unavailable(Exception):
    """A dependency (the event store, the read models) did not answer in time: 503."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what} is unavailable: {reason}")
        self.what, self.reason = what, reason


def _unavailable(detail: str, retry: bool = True) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if retry else None
    return JSONResponse({"detail": detail}, status.HTTP_503_SERVICE_UNAVAILABLE, headers=headers)


async def on_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Unavailable)
    return _unavailable(f"{exc}; nothing was changed, retry after {RETRY_AFTER_S} s")


# SQLite reports both passing trouble and broken schemas as OperationalError; only these
# are worth a retry. (PostgreSQL's OperationalError is the connection or a cancelled
# statement: always passing.)
_SQLITE_TRANSIENT = ("database is locked", "database table is locked", "disk i/o error",
                     "unable to open database file", "interrupted")


def transient(exc: BaseException) -> bool:
    cause = getattr(exc, "orig", None) or exc.__cause__ or exc
    if isinstance(cause, sqlite3.Error):
        return any(text in str(cause).lower() for text in _SQLITE_TRANSIENT)
    return True


async def on_database_down(request: Request, exc: Exception) -> JSONResponse:
    if not transient(exc):
        return await on_unexpected(request, exc)
    # The driver's text names hosts and ports: it goes to the log, not to the client.
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return _unavailable(f"a database the API reads is unavailable ({type(exc).__name__}); "
                        f"nothing was changed, retry after {RETRY_AFTER_S} s")


async def on_sqlalchemy_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return await on_database_down(request, exc)
    return await on_unexpected(request, exc)


async def on_data_error(request: Request, exc: Exception) -> JSONResponse:
    # Validation lets through only what the databases can store; if one still refuses a
    # value, the request is at fault, but so is our validation: log it to tighten it.
    log.error("database refused a value on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": "a value in the request is outside what the database can "
                                   "store; nothing was changed"},
                        status.HTTP_400_BAD_REQUEST)


async def on_not_recorded(_request: Request, exc: Exception) -> JSONResponse:
    # Nothing of the command is durable; resending it is safe (idempotent by client id).
    return _unavailable(f"not recorded: {exc}; resend the same request")


async def on_store_halted(_request: Request, exc: Exception) -> JSONResponse:
    # Terminal for this engine (fenced by another writer, or a broken chain): retrying here
    # does not help, an operator must look, so no Retry-After.
    return _unavailable(f"the event store refuses this engine's writes: {exc}", retry=False)


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    incident = uuid.uuid4().hex[:12]
    log.error("unhandled error (incident %s) on %s %s", incident, request.method,
              request.url.path, exc_info=exc)
    return JSONResponse({"detail": f"internal error, incident {incident}: it is logged "
                                   "with its details on the server"},
                        status.HTTP_500_INTERNAL_SERVER_ERROR)


async def on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    content: dict[str, Any] = {"detail": [_issue(e) for e in errors[:MAX_ERRORS]]}
    if len(errors) > MAX_ERRORS:
        content["errors_omitted"] = len(errors) - MAX_ERRORS
    return JSONResponse(content, 422)  # a literal: Starlette renamed the 422 constant


def _issue(error: Any) -> dict[str, Any]:
    """One validation problem, small and JSON-safe whatever the client sent.

    The default handler echoed each problem's whole input: for a missing field that is
    the entire body, once per error (20 MB in, 140 MB out), and a NaN in it crashed the
    answer. Here ``input`` is echoed only when it is a short scalar.
    """
    issue: dict[str, Any] = {
        "type": str(error.get("type", "invalid")),
        "loc": [_part(p) for p in error.get("loc", ())],
        "msg": _text(str(error.get("msg", "")), 300),
    }
    value = error.get("input")
    if _small(value):
        issue["input"] = value
    ctx = error.get("ctx")
    if isinstance(ctx, dict) and ctx:
        issue["ctx"] = {_text(str(k)): _scalar(v) for k, v in list(ctx.items())[:10]}
    return issue


def _text(value: str, limit: int = MAX_TEXT) -> str:
    return value if len(value) <= limit else value[:limit] + f"... ({len(value)} characters)"


def _part(part: Any) -> str | int:
    return part if isinstance(part, int) and not isinstance(part, bool) else _text(str(part))


def _small(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) < 10**30
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str) and len(value) <= MAX_TEXT


def _scalar(value: Any) -> Any:
    return value if _small(value) else _text(str(value))


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Unavailable, on_unavailable)
    for down in (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError,
                 es.OperationalError, es.InterfaceError):
        app.add_exception_handler(down, on_database_down)
    for refused in (sa.exc.DataError, es.DataError):
        app.add_exception_handler(refused, on_data_error)
    app.add_exception_handler(sa.exc.SQLAlchemyError, on_sqlalchemy_error)
    app.add_exception_handler(NotRecorded, on_not_recorded)
    app.add_exception_handler(StoreHalted, on_store_halted)
    app.add_exception_handler(Exception, on_unexpected)


# ------------------------------------------------------------------- OpenAPI responses

_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.",
                                "schema": {"type": "integer"}}}

RESPONSES: dict[int, dict[str, Any]] = {
    401: {"model": ErrorOut, "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
          "description": "No valid `Authorization: Bearer <token>` (missing, unknown or "
                         "revoked key). Recorded as an AccessDenied event."},
    403: {"model": ErrorOut,
          "description": "The caller's role or entitlements do not allow this. Recorded as an "
                         "AccessDenied event; nothing else is."},
    400: {"model": ErrorOut,
          "description": "The body is not readable (not UTF-8 JSON), or a value is outside what "
                         "the database can store. Nothing is recorded."},
    413: {"model": ErrorOut,
          "description": "The body is larger than the server's limit (MARKETLOG_MAX_BODY_BYTES, "
                         "64 KiB by default). Nothing is read or recorded."},
    422: {"model": ValidationErrorOut,
          "description": "Invalid input: each bad field or parameter is named (`loc`) with the "
                         "reason (`msg`). Short inputs are echoed, long ones never. Nothing is "
                         "recorded."},
    503: {"model": ErrorOut, "headers": _RETRY_AFTER,
          "description": "A database is unavailable or the engine cannot take the command now; "
                         "nothing was changed. Retry after `Retry-After` seconds."},
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented shared error responses of a route, by status code (every route that
    uses this needs a token: 401 and 403 are always among them)."""
    return {code: RESPONSES[code] for code in sorted({401, 403, *codes})}
