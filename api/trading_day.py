"""Trading days for operators: the day's state, and opening or closing it by hand.

The engine opens and closes days on its own from the configured calendar; these endpoints
are for the exceptions (an early close, a special session). Each is an event with the actor
and the reason (ARCHITECTURE rule 12), decided by the engine like any other command.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict

from api.access import Caller, RiskOrAdminCaller
from api.deps import SystemDep
from api.errors import responses
from api.orders import run_command
from api.schemas import ErrorOut, TradingDayOut
from api.strict_json import StrictJSONRoute
from commands.models import CloseTradingDay, OpenTradingDay, Reason, TradingDate
from domain.values import Source

router = APIRouter(prefix="/trading-day", tags=["trading day"], route_class=StrictJSONRoute)


class OpenDay(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trading_date: TradingDate | None = None
    reason: Reason


class CloseDay(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason


@router.get("", response_model=TradingDayOut, responses=responses())
async def trading_day(system: SystemDep, caller: Caller) -> Any:
    """The engine's trading day: date, open or closed, exposure mode, scheduled close."""
    return system.engine.health()["trading_day"]


@router.post("/open", response_model=TradingDayOut,
             responses={409: {"model": ErrorOut,
                              "description": "A day is open, or the date is not after the "
                                             "last closed day (nothing recorded)."},
                        **responses(400, 413, 422, 503)})
async def open_day(body: OpenDay, system: SystemDep, caller: RiskOrAdminCaller) -> Any:
    """Open a trading day (default: the calendar's date now); exposure restarts from the
    orders carried over."""
    outcome = await run_command(system, OpenTradingDay(
        trading_date=body.trading_date, reason=body.reason, actor=caller.username,
        source=Source.API))
    if outcome.kind != "done":
        raise HTTPException(status.HTTP_409_CONFLICT, (outcome.detail or {}).get("reason"))
    return system.engine.health()["trading_day"]


@router.post("/close", response_model=TradingDayOut,
             responses={409: {"model": ErrorOut,
                              "description": "No trading day is open (nothing recorded)."},
                        **responses(400, 413, 422, 503)})
async def close_day(body: CloseDay, system: SystemDep, caller: RiskOrAdminCaller) -> Any:
    """Close the trading day now: DAY orders expire; later orders are refused (session)."""
    outcome = await run_command(system, CloseTradingDay(
        reason=body.reason, actor=caller.username, source=Source.API))
    if outcome.kind != "done":
        raise HTTPException(status.HTTP_409_CONFLICT, (outcome.detail or {}).get("reason"))
    return system.engine.health()["trading_day"]
