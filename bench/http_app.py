"""The API with authentication replaced by a fixed caller: for the benchmark only (row 5,
"what does authentication cost"). Never served by marketlog itself."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

from api.access import Principal, authenticate
from api.app import create_app
from bench.workload import ACCOUNTS


def create_app_without_auth() -> FastAPI:
    app = create_app()
    caller = Principal("bench", "trader", frozenset(ACCOUNTS))

    async def fixed(request: Request) -> Principal:  # authenticate's signature
        return caller

    # Swapped in the routes' dependency trees, not through ``app.dependency_overrides``:
    # FastAPI analyses an override's signature again on every request (measured: it made
    # the unauthenticated app slower than the authenticated one).
    def swap(dependant: Any) -> None:
        for sub in dependant.dependencies:
            if sub.call is authenticate:
                sub.call = fixed
            swap(sub)

    for route in app.routes:
        if hasattr(route, "dependant"):
            swap(route.dependant)
    return app
