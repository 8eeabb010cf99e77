"""The FastAPI application: order entry, blotter, positions, audit trail, health."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from api import orders, trading_day, views
from infrastructure.bootstrap import System, bootstrap
from infrastructure.settings import Settings

DESCRIPTION = """
Every order, fill and risk decision is an immutable event. Orders pass the SEC Rule 15c3-5
pre-trade controls in a single-writer in-memory engine; a response means its events are
durable in the event store. Queries read projections that follow the store's log.
"""


def create_app(settings: Settings | None = None, system: System | None = None) -> FastAPI:
    """Build the app. With ``system`` given, the caller owns its lifecycle (tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = system is None
        app.state.system = system or await run_in_threadpool(bootstrap, settings or Settings())
        try:
            yield
        finally:
            if owned:
                await run_in_threadpool(app.state.system.close)

    app = FastAPI(title="marketlog", version="0.1.0", description=DESCRIPTION,
                  lifespan=lifespan)
    app.include_router(orders.router)
    app.include_router(views.router)
    app.include_router(trading_day.router)
    return app
