"""Paper trading (issue 9): the strategies of the desk, their status, start and stop.

Reading is open to every role (a trader sees the strategies trading their accounts);
starting and stopping is for a risk officer or an admin. A strategy's orders are orders
like any other: ``GET /orders`` shows them, with their ``strategy`` tag in the audit trail,
and a kill switch on ``strategy:<id>`` stops the strategy and cancels its resting orders.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from fastapi.concurrency import run_in_threadpool

from api.access import Caller, RiskOrAdminCaller
from api.deps import SystemDep
from infrastructure.strategy_desk import UnknownStrategy

router = APIRouter(tags=["strategies"])


@router.get("/strategies")
def list_strategies(system: SystemDep, caller: Caller) -> list[dict[str, Any]]:
    """Each strategy: id, kind, status, orders sent, fills, positions, rejections, errors."""
    return [s for s in system.strategies.list() if caller.may_see(s["account_id"])]


@router.post("/strategies/{strategy_id}/start")
async def start_strategy(strategy_id: str, system: SystemDep,
                         caller: RiskOrAdminCaller) -> dict[str, Any]:
    """Start a configured strategy (risk officers, admins)."""
    if not system.engine.running:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the engine is not running")
    try:
        return await run_in_threadpool(system.strategies.start, strategy_id)
    except UnknownStrategy:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown strategy") from None


@router.post("/strategies/{strategy_id}/stop")
async def stop_strategy(strategy_id: str, system: SystemDep,
                        caller: RiskOrAdminCaller) -> dict[str, Any]:
    """Stop a strategy (its resting orders stay; trip its kill switch to cancel them)."""
    try:
        return await run_in_threadpool(system.strategies.stop, strategy_id)
    except UnknownStrategy:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown strategy") from None
