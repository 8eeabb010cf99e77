"""Order entry and the blotter: HTTP in, commands to the engine, views out."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from api.access import TRADE, Caller, Principal, TraderCaller, allow, check_account, deny
from api.as_of import AsOfQuery, at_moment
from api.deps import AccountQuery, ProbesDep, SymbolQuery, SystemDep
from api.errors import responses
from api.probes import read_models
from api.schemas import ConflictOut, ErrorOut, OrderOut
from api.strict_json import StrictJSONRoute
from commands.engine import EngineBusy, EngineHalted, NotRecorded
from commands.models import (
    CancelOrder,
    Command,
    OrderFields,
    ReplaceFields,
    ReplaceOrder,
    SubmitOrder,
)
from commands.outcomes import Outcome
from domain.values import OrderStatus, Source
from infrastructure.as_of import open_order_bodies
from infrastructure.bootstrap import System
from projections import queries

router = APIRouter(tags=["orders"], route_class=StrictJSONRoute)


ANSWER_TIMEOUT_S = 30.0
CANCELERS = TRADE | {"risk_officer", "admin"}


async def run_command(system: System, command: Command) -> Outcome:
    """Hand a command to the engine and wait (bounded) for its durable outcome."""
    try:
        future = system.engine.submit(command)
    except EngineBusy as exc:
        # ARCHITECTURE rule 9: a full engine pushes back at once instead of queueing more.
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc),
                            headers={"Retry-After": "1"}) from exc
    except EngineHalted as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"the engine is not taking orders: {exc}") from exc
    try:
        # A caller that times out cancels only its wait: the engine answers best-effort and
        # the outcome stays durable (learn it by resending the same client_order_id).
        return await asyncio.wait_for(asyncio.wrap_future(future), ANSWER_TIMEOUT_S)
    except EngineHalted as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"the engine stopped writing; not recorded: {exc}") from exc
    except NotRecorded as exc:
        # Nothing of the command is durable; resending it is safe (idempotent by client id).
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    except TimeoutError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the engine did not answer within {ANSWER_TIMEOUT_S:.0f} s; the outcome is unknown: "
            "resend the same client_order_id to learn it (a resend never orders twice)",
        ) from exc


@router.post(
    "/orders",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderOut,
    responses={
        200: {"model": OrderOut, "description": "Re-sent client_order_id: the original order."},
        409: {"model": ConflictOut,
              "description": "client_order_id already used for a different order."},
        **responses(400, 413, 422, 503),
    },
)
async def submit_order(body: OrderFields, system: SystemDep, caller: TraderCaller,
                       response: Response) -> Any:
    """Submit an order (traders). 201 once its events are durable, rejected or not: a
    rejection is a record naming the control, its threshold and the observed value — an
    account the trader is not entitled to included (``entitlement``)."""
    command = SubmitOrder(**dict(body), actor=caller.username, source=Source.API)
    outcome = await run_command(system, command)
    if outcome.kind == "conflict":
        raise HTTPException(status.HTTP_409_CONFLICT, {
            "message": "client_order_id already used for a different order",
            "fields": outcome.detail["fields"] if outcome.detail else [],
            "order": outcome.order,
        })
    if outcome.kind == "existing":
        response.status_code = status.HTTP_200_OK
    return outcome.order


@router.post("/orders/{order_id}/cancel", response_model=OrderOut,
             responses={404: {"model": ErrorOut, "description": "Unknown order"},
                        409: {"model": ConflictOut,
                              "description": "The order is no longer live (recorded)."},
                        **responses(422, 503)})
async def cancel_order(order_id: UUID, request: Request, system: SystemDep,
                       caller: Annotated[Principal, allow(CANCELERS)]) -> Any:
    """Cancel an order: a trader entitled to its account, or a risk officer or admin."""
    outcome = await run_command(system, CancelOrder(order_id=order_id, actor=caller.username,
                                                    source=Source.API))
    if outcome.kind == "refused" and (outcome.detail or {}).get("denied"):
        raise deny(request, caller, outcome.detail["reason"],  # type: ignore[index]
                   None if outcome.order is None else outcome.order["account_id"])
    return _changed(outcome)


@router.post("/orders/{order_id}/replace", response_model=OrderOut,
             responses={404: {"model": ErrorOut, "description": "Unknown order"},
                        409: {"model": ConflictOut,
                              "description": "A control refused the replace (recorded)."},
                        **responses(400, 413, 422, 503)})
async def replace_order(order_id: UUID, body: ReplaceFields, system: SystemDep,
                        caller: TraderCaller) -> Any:
    """Replace price and/or quantity (traders; a replace of an account not theirs is refused
    by the ``entitlement`` control, recorded)."""
    command = ReplaceOrder(order_id=order_id, quantity=body.quantity,
                           limit_price=body.limit_price, actor=caller.username,
                           source=Source.API)
    return _changed(await run_command(system, command))


def _changed(outcome: Outcome) -> Any:
    if outcome.kind == "not_found":
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown order_id")
    if outcome.kind == "refused":
        raise HTTPException(status.HTTP_409_CONFLICT, {**(outcome.detail or {}),
                                                       "order": outcome.order})
    return outcome.order


@router.get("/orders/{order_id}", response_model=OrderOut,
            responses={404: {"model": ErrorOut, "description": "Unknown order"},
                       **responses(422, 503)})
def get_order(order_id: UUID, request: Request, system: SystemDep, probes: ProbesDep,
              response: Response, caller: Caller) -> Any:
    with read_models(system, probes, response) as conn:
        body = queries.get_order(conn, str(order_id))
    if body is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown order_id")
    check_account(request, caller, body["account_id"])
    return body


@router.get("/orders", response_model=list[OrderOut], responses=responses(422, 503))
def list_orders(
    request: Request,
    system: SystemDep,
    probes: ProbesDep,
    response: Response,
    caller: Caller,
    account_id: AccountQuery = None,
    symbol: SymbolQuery = None,
    status_: Annotated[OrderStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(gt=0, le=5000)] = 500,
    after: Annotated[UUID | None, Query(description="order_id to continue after")] = None,
    as_of: AsOfQuery = None,
) -> Any:
    """Orders oldest first (a trader: of their accounts only). With ``as_of``: the orders
    open then (accepted, partially filled, pending cancel or replace), as they stood."""
    check_account(request, caller, account_id)
    if as_of is not None:
        return open_order_bodies(
            at_moment(system, as_of, response).book().book, account_id=account_id,
            accounts=None if caller.sees_everything else caller.accounts, symbol=symbol,
            status=status_, limit=limit, after=None if after is None else str(after))
    with read_models(system, probes, response) as conn:
        return queries.list_orders(conn, account_id=account_id, symbol=symbol,
                                   accounts=None if caller.sees_everything else caller.accounts,
                                   status=status_, limit=limit,
                                   after=None if after is None else str(after))


