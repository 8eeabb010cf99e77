"""Paper trading (issue 9): the strategies of the desk, their status, start and stop.

Reading is open to every role (a trader sees the strategies trading their accounts);
starting and stopping is for a risk officer or an admin. A strategy's orders are orders
like any other: ``GET /orders`` shows them, with their ``strategy`` tag in the audit trail,
and a kill switch on ``strategy:<id>`` stops the strategy and cancels its resting orders.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, status
from fastapi.concurrency import run_in_threadpool

from api.access import Caller, RiskOrAdminCaller
from api.deps import SystemDep
from api.errors import responses
from api.schemas import ErrorOut
from domain.values import Source
from infrastructure.strategy_desk import StrategyRefused, UnknownStrategy

router = APIRouter(tags=["strategies"])

StrategyId = Annotated[str, Path(min_length=1, max_length=64,
                                 pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
UNKNOWN = {404: {"model": ErrorOut, "description": "No configured strategy of that id."}}
REFUSED = {409: {"model": ErrorOut, "description": "The engine refused to record the start "
                                                   "(the reason says why); nothing runs."}}


@router.get("/strategies", responses=responses())
def list_strategies(system: SystemDep, caller: Caller) -> list[dict[str, Any]]:
    """Each strategy: id, kind, status, run (its last recorded run number, 0 if never
    started), orders sent, fills, positions, rejections, errors."""
    return [s for s in system.strategies.list() if caller.may_see(s["account_id"])]


@router.post("/strategies/{strategy_id}/start",
             responses={**UNKNOWN, **REFUSED, **responses(422, 503)})
async def start_strategy(strategy_id: StrategyId, system: SystemDep,
                         caller: RiskOrAdminCaller) -> dict[str, Any]:
    """Start a configured strategy (risk officers, admins): its next run, recorded
    (``StrategyStarted``, naming the caller) before it sends any order."""
    if not system.engine.running:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the engine is not running")
    try:
        return await run_in_threadpool(system.strategies.start, strategy_id, caller.username,
                                       Source.API, f"started by {caller.username}")
    except UnknownStrategy:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown strategy") from None
    except StrategyRefused as exc:
        if exc.unavailable:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc),
                                headers={"Retry-After": "1"}) from None
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


@router.post("/strategies/{strategy_id}/stop", responses={**UNKNOWN, **responses(422)})
async def stop_strategy(strategy_id: StrategyId, system: SystemDep,
                        caller: RiskOrAdminCaller) -> dict[str, Any]:
    """Stop a strategy: the end of its run is recorded (``StrategyStopped``, naming the
    caller), and in the same engine cycle every live order of its tag on its account is
    canceled (each cancel with reason ``strategy_stopped``, pulled from the venue)."""
    try:
        return await run_in_threadpool(system.strategies.stop, strategy_id, caller.username,
                                       Source.API, f"stopped by {caller.username}")
    except UnknownStrategy:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown strategy") from None
