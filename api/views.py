"""Positions, audit trail, reference data and health: what compliance and engineers query."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from api.access import Caller, check_account
from api.as_of import AccountAsOfOut, AsOfQuery, at_moment
from api.deps import AccountQuery, ProbesDep, SystemDep
from api.errors import responses
from api.probes import DEADLINE_S, outcome, read_models, verified
from api.schemas import (
    AuditEventOut,
    ChainOut,
    HealthOut,
    InstrumentOut,
    PositionOut,
    ProjectionsOut,
)
from api.strict_json import StrictJSONRoute
from domain.values import price_text
from infrastructure.as_of import position_bodies
from infrastructure.kafka_projector import KafkaProjectionRunner
from projections import queries

router = APIRouter(route_class=StrictJSONRoute)

INT64_MAX = 2**63 - 1  # log positions and ts_ns are BIGINT: larger values cannot be asked for
INT64_MIN = -(2**63)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS = timedelta(microseconds=1)


def _ns(moment: datetime) -> int:
    """Nanoseconds since the epoch, exactly (float timestamps lose microseconds far out)."""
    if moment.tzinfo is None:  # the audit trail is in UTC; a bare time is read as UTC
        moment = moment.replace(tzinfo=UTC)
    # Aware subtraction never leaves datetime's range, even for 0001-01-01 or 9999-12-31
    # with an offset, where converting to UTC first would overflow.
    return (moment - _EPOCH) // _NS * 1_000


@router.get("/positions", response_model=list[PositionOut], tags=["positions"],
            responses=responses(422, 503))
def positions(request: Request, system: SystemDep, probes: ProbesDep, response: Response,
              caller: Caller, account_id: AccountQuery = None, as_of: AsOfQuery = None) -> Any:
    """Positions and P&L from the log's fills (a trader: of their accounts); with
    ``as_of``, from the fills up to then (header X-As-Of-Position)."""
    check_account(request, caller, account_id)
    if as_of is not None:
        return position_bodies(at_moment(system, as_of, response).positions(),
                               account_id=account_id,
                               accounts=None if caller.sees_everything else caller.accounts)
    with read_models(system, probes, response) as conn:
        return queries.list_positions(
            conn, account_id=account_id,
            accounts=None if caller.sees_everything else caller.accounts)


@router.get("/audit", response_model=list[AuditEventOut], tags=["audit"],
            responses=responses(422, 503))
def audit(
    request: Request,
    system: SystemDep,
    probes: ProbesDep,
    response: Response,
    caller: Caller,
    account_id: AccountQuery = None,
    order_id: Annotated[UUID | None, Query(description="Only this order's events.")] = None,
    since: Annotated[datetime | None, Query(
        description="ISO-8601, inclusive; without an offset, UTC")] = None,
    until: Annotated[datetime | None, Query(
        description="ISO-8601, exclusive; without an offset, UTC")] = None,
    limit: Annotated[int, Query(gt=0, le=10_000)] = 100,
    after: Annotated[int | None, Query(
        ge=0, le=INT64_MAX, description="log position to continue after")] = None,
) -> Any:
    """Every event in log order with its position; page with ``after`` = last position seen.
    A trader reads the events of their accounts only."""
    check_account(request, caller, account_id)
    since_ns = None if since is None else _ns(since)
    until_ns = None if until is None else _ns(until)
    # Event times are int64 nanoseconds (1677 to 2262). A bound beyond that range is still
    # a fair question with a plain answer: it either excludes nothing or excludes everything.
    if (since_ns is not None and since_ns > INT64_MAX) or (
            until_ns is not None and until_ns <= INT64_MIN):
        return []
    if since_ns is not None and since_ns < INT64_MIN:
        since_ns = None
    if until_ns is not None and until_ns > INT64_MAX:
        until_ns = None
    with read_models(system, probes, response) as conn:
        return queries.audit_events(conn, account_id=account_id,
                                    accounts=None if caller.sees_everything
                                    else caller.accounts,
                                    order_id=None if order_id is None else str(order_id),
                                    since_ns=since_ns, until_ns=until_ns,
                                    limit=limit, after=after)


@router.get("/audit/verify", response_model=ChainOut, tags=["audit"],
            responses=responses(503))
async def verify_chain(probes: ProbesDep, caller: Caller) -> Any:
    """Recompute the event store's hash chain (SEC 17a-4: verify completeness and accuracy).

    Answers 503 within a second when the store does not answer; one verification runs at a
    time, and concurrent callers share its result.
    """
    return vars(await verified(probes))


@router.get("/instruments", response_model=list[InstrumentOut], tags=["reference data"],
            responses=responses())
def instruments(system: SystemDep, caller: Caller) -> Any:
    return [
        {"symbol": i.symbol, "tick_size": price_text(i.tick_size), "lot_size": i.lot_size,
         "reference_price": price_text(i.reference_price)}
        for i in system.config.instruments
    ]


@router.get("/accounts", response_model=list[AccountAsOfOut], tags=["reference data"],
            responses=responses(422), response_model_exclude_unset=True)
def accounts(system: SystemDep, caller: Caller, response: Response,
             as_of: AsOfQuery = None) -> Any:
    """The accounts and the limits in force now (governed: see ``/limits``); a trader sees
    the accounts they are entitled to. Orders for any other account are rejected. With
    ``as_of``: the limits in force then, and the credit exposure then."""
    book = (system.engine.book if as_of is None
            else at_moment(system, as_of, response).book().book)
    return [
        {"account_id": a.account_id, "credit_limit": price_text(a.limits.credit_limit),
         "cash": price_text(a.cash), "max_order_quantity": a.limits.max_order_quantity,
         "max_order_notional": price_text(a.limits.max_order_notional),
         "price_collar_pct": price_text(a.limits.price_collar_pct),
         "duplicate_window_ms": a.limits.duplicate_window_ns // 1_000_000,
         "restricted_symbols": sorted(a.restricted_symbols),
         "limits_version": a.limits.version,
         # Only as of a moment (the live answer's shape is unchanged).
         **({} if as_of is None else {"exposure": price_text(book.exposure(a.account_id)),
                                      "exposure_mode": str(book.day.exposure_mode)})}
        for a in list(book.accounts.values()) if caller.may_see(a.account_id)
    ]


def projections_status(system: Any, committed: int) -> dict[str, Any]:
    """Where the read models stand, and with Kafka where the relay and each partition do."""
    runner = system.projections
    halted = getattr(runner, "halted", None)
    status: dict[str, Any] = {
        "position": runner.position,
        "lag": max(0, committed - runner.position),
        "ok": runner.last_error is None and halted is None,
        "last_error": None if runner.last_error is None else str(runner.last_error),
        "feed": "kafka" if isinstance(runner, KafkaProjectionRunner) else "store",
        "halted": None if halted is None else str(halted),
    }
    if isinstance(runner, KafkaProjectionRunner):
        status["partitions"] = runner.lag()["partitions"]
    relay = system.relay
    if relay is not None:
        status["relay"] = {"position": relay.position,
                           "lag": max(0, committed - relay.position),
                           "ok": relay.last_error is None,
                           "last_error": None if relay.last_error is None
                           else str(relay.last_error)}
        status["ok"] = status["ok"] and relay.last_error is None
    return status


@router.get("/projections", response_model=ProjectionsOut, tags=["operations"],
            responses=responses(503))
def projections(system: SystemDep, caller: Caller) -> Any:
    """Each read model's log position and lag behind the engine's committed position (all
    views move together, in one transaction per batch), and with Kafka the relay's and each
    partition's progress."""
    committed = system.engine.health()["committed_position"]
    status = projections_status(system, committed)
    return {"feed": status["feed"], "committed_position": committed,
            "projections": [{"name": v.name, "position": status["position"],
                             "lag": status["lag"]} for v in system.projections.views],
            "status": status}


@router.get("/health", response_model=HealthOut, tags=["operations"],
            responses={503: {"model": HealthOut,
                             "description": "Something is down; the body says what."}})
async def health(request: Request, system: SystemDep, probes: ProbesDep,
                 response: Response) -> Any:
    """Within a second, always: a database that does not answer by then is reported down.
    The one endpoint that needs no token (load balancers, monitoring).

    ``async`` so that it needs no thread: it answers even when reads fill the thread pool.
    """
    deadline = time.monotonic() + DEADLINE_S
    # Both questions are asked at once, so the slower bounds the answer, not their sum.
    head, ping = probes.store_head.future(), probes.read_models.future()
    ok, head_position, error = await outcome(probes.store_head, head, deadline)
    store = {"dialect": system.store.dialect, "ok": ok, "head_position": head_position,
             "error": error}
    ok, _, error = await outcome(probes.read_models, ping, deadline)
    read_models = {"dialect": system.read_models.dialect.name, "ok": ok, "error": error}
    chain = system.store.chain_status  # kept by the store as it verifies: no I/O here
    store["chain"] = {"ok": chain.ok, "verified_position": chain.verified_position,
                      "problem": chain.problem}
    engine = system.engine.health()
    engine["access_denied"] = request.app.state.denials.total
    projections = projections_status(system, engine["committed_position"])
    lock = system.writer_lock
    engine["writer_lock"] = lock.state
    healthy = (store["ok"] and read_models["ok"] and chain.ok and projections["ok"]
               and engine["running"] and not lock.lost)
    if not healthy:
        response.status_code = 503
    return {"status": "ok" if healthy else "degraded", "store": store,
            "read_models": read_models, "engine": engine, "projections": projections}
