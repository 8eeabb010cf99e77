"""The FastAPI application: order entry, blotter, positions, audit trail, health."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from api import (
    cat,
    compliance_page,
    errors,
    governance,
    orders,
    records,
    reports,
    strategies,
    trading_day,
    views,
)
from api.access import DenialCounter
from api.limits import BodyLimit
from api.probes import Probes
from infrastructure.bootstrap import System, bootstrap
from infrastructure.credentials import issue_missing_keys
from infrastructure.settings import Settings

DESCRIPTION = """
Every order, fill and risk decision is an immutable event. Orders pass the SEC Rule 15c3-5
pre-trade controls in a single-writer in-memory engine; a response means its events are
durable in the event store. Queries read projections that follow the store's log.

Every endpoint but `/health` needs `Authorization: Bearer <token>` (401 without a valid
one; 403 when the caller's role or entitlements do not allow it, recorded as an
`AccessDenied` event). Keys are issued per user (`marketlog users key NAME`, or the files
`serve` and `demo` write into `<data dir>/credentials` on first run).

Errors: 4xx name the reason (422: each bad field, 413: body over the size limit), 503 means
a database or the engine is unavailable right now (retry after `Retry-After` seconds);
nothing is recorded for any of them.
"""


def create_app(settings: Settings | None = None, system: System | None = None) -> FastAPI:
    """Build the app. With ``system`` given, the caller owns its lifecycle (tests)."""
    if settings is None:
        settings = system.settings if system is not None else Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = system is None
        if owned:
            _attach(app, await run_in_threadpool(bootstrap, settings))
            # First run: a key per configured user, into <data dir>/credentials (0600).
            await run_in_threadpool(issue_missing_keys, app.state.system)
        try:
            yield
        finally:
            if owned:
                await run_in_threadpool(app.state.system.close)

    app = FastAPI(title="marketlog", version="0.1.0", description=DESCRIPTION,
                  lifespan=lifespan)
    if system is not None:
        _attach(app, system)  # usable at once, also by clients that skip the lifespan
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.include_router(orders.router)
    app.include_router(views.router)
    app.include_router(trading_day.router)
    app.include_router(governance.router)
    app.include_router(records.router)
    app.include_router(cat.router)
    app.include_router(reports.router)
    app.include_router(compliance_page.router)
    app.include_router(strategies.router)
    app.state.denials = DenialCounter()
    return app


def _attach(app: FastAPI, system: System) -> None:
    app.state.system = system
    app.state.probes = Probes.of(system)
