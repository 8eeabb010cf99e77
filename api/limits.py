"""The request size cap: a body larger than ``Settings.max_body_bytes`` is refused with 413.

Without it one client can make the server buffer, parse and (in a 422) echo any amount of
data: a 20 MB body once produced a 140 MB response. The cap holds for a declared
Content-Length (refused before a byte of the body is read) and for chunked or streamed
bodies (refused as soon as the running total passes it), so nothing above the cap is ever
buffered.
"""

from __future__ import annotations

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """Raised while the body is read, so FastAPI's own handlers answer it.

    An HTTPException on purpose: FastAPI re-raises HTTPExceptions from body parsing (anything
    else becomes a generic 400), and the app's handler turns it into the 413.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large(limit),
                         headers={"Connection": "close"})


def too_large(limit: int) -> str:
    return (f"request body larger than {limit} bytes; nothing was read or recorded "
            "(the limit is the server's MARKETLOG_MAX_BODY_BYTES)")


class BodyLimit:
    """Pure ASGI middleware (no per-request task or buffering, unlike BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope["headers"]:
            # The server (h11/httptools) has already refused a malformed Content-Length.
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _refuse(limit, scope, receive, send)
                return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            # Routes answer it themselves; this is for a body read outside a route.
            if started:
                raise
            await _refuse(limit, scope, receive, send)


async def _refuse(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
    # Connection: close because the rest of the body is never read: the server must not
    # try to parse it as the next request on a keep-alive connection.
    response = JSONResponse({"detail": too_large(limit)},
                            status_code=413,
                            headers={"Connection": "close"})
    await response(scope, receive, send)
