"""The API with authentication replaced by a fixed caller: for the benchmark only (row 5,
"what does authentication cost"). Never served by marketlog itself."""

from __future__ import annotations

from fastapi import FastAPI

from api.access import Principal, authenticate
from api.app import create_app
from bench.workload import ACCOUNTS


def create_app_without_auth() -> FastAPI:
    app = create_app()
    caller = Principal("bench", "trader", frozenset(ACCOUNTS))

    async def fixed() -> Principal:
        return caller

    app.dependency_overrides[authenticate] = fixed
    return app
