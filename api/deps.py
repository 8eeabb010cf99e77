"""FastAPI dependencies and shared parameter types as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from api.probes import Probes
from commands.models import Identifier, Symbol
from infrastructure.bootstrap import System


# Dependencies are ``async def`` although they never await: FastAPI would otherwise run each
# in its thread pool, two thread hops per request for a dictionary lookup.
async def get_system(request: Request) -> System:
    system: System = request.app.state.system
    return system


async def get_probes(request: Request) -> Probes:
    probes: Probes = request.app.state.probes
    return probes


SystemDep = Annotated[System, Depends(get_system)]
ProbesDep = Annotated[Probes, Depends(get_probes)]

# Query filters take the same shapes as the fields they filter: a value no order could have
# (a NUL byte, which PostgreSQL refuses in text, 10 kB of text) is a 422, not a query.
AccountQuery = Annotated[Identifier | None, Query(description="Only this account.")]
SymbolQuery = Annotated[Symbol | None, Query(description="Only this symbol.")]
