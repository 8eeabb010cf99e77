"""FastAPI dependencies as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from commands.models import Identifier
from infrastructure.bootstrap import System


# Dependencies are ``async def`` although they never await: FastAPI would otherwise run each
# in its thread pool, two thread hops per request for a dictionary lookup.
async def get_system(request: Request) -> System:
    system: System = request.app.state.system
    return system


async def get_actor(
    x_marketlog_user: Annotated[
        Identifier | None,
        Header(description="Who is acting (recorded on every event). Authentication "
                           "arrives in a later release; until then this header names the user."),
    ] = None,
) -> str:
    return x_marketlog_user or "anonymous"


SystemDep = Annotated[System, Depends(get_system)]
ActorDep = Annotated[str, Depends(get_actor)]
