"""Positions, audit trail, reference data and health: what compliance and engineers query."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from api.deps import SystemDep
from api.read_your_writes import caught_up
from api.schemas import AccountOut, AuditEventOut, ChainOut, InstrumentOut, PositionOut
from domain.values import price_text
from projections import queries

router = APIRouter()


def _ns(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # the audit trail is in UTC; a bare time is read as UTC
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1_000


@router.get("/positions", response_model=list[PositionOut], tags=["positions"])
def positions(system: SystemDep, response: Response, account_id: str | None = None) -> Any:
    caught_up(system, response)
    with system.read_models.connect() as conn:
        return queries.list_positions(conn, account_id=account_id)


@router.get("/audit", response_model=list[AuditEventOut], tags=["audit"])
def audit(
    system: SystemDep,
    response: Response,
    account_id: str | None = None,
    order_id: str | None = None,
    since: Annotated[datetime | None, Query(description="ISO-8601, inclusive")] = None,
    until: Annotated[datetime | None, Query(description="ISO-8601, exclusive")] = None,
    limit: Annotated[int, Query(gt=0, le=10_000)] = 100,
    after: Annotated[int | None, Query(ge=0, description="log position to continue after")] = None,
) -> Any:
    """Every event in log order with its position; page with ``after`` = last position seen."""
    caught_up(system, response)
    with system.read_models.connect() as conn:
        return queries.audit_events(conn, account_id=account_id, order_id=order_id,
                                    since_ns=_ns(since), until_ns=_ns(until),
                                    limit=limit, after=after)


@router.get("/audit/verify", response_model=ChainOut, tags=["audit"])
async def verify_chain(system: SystemDep) -> Any:
    """Recompute the event store's hash chain (SEC 17a-4: verify completeness and accuracy)."""
    check = await run_in_threadpool(system.store.verify)
    return check.__dict__


@router.get("/instruments", response_model=list[InstrumentOut], tags=["reference data"])
def instruments(system: SystemDep) -> Any:
    return [
        {"symbol": i.symbol, "tick_size": price_text(i.tick_size), "lot_size": i.lot_size,
         "reference_price": price_text(i.reference_price)}
        for i in system.config.instruments
    ]


@router.get("/accounts", response_model=list[AccountOut], tags=["reference data"])
def accounts(system: SystemDep) -> Any:
    """The configured accounts and their limits (orders for any other account are rejected)."""
    return [
        {"account_id": a.account_id, "credit_limit": price_text(a.limits.credit_limit),
         "cash": price_text(a.cash), "max_order_quantity": a.limits.max_order_quantity,
         "max_order_notional": price_text(a.limits.max_order_notional),
         "price_collar_pct": price_text(a.limits.price_collar_pct),
         "duplicate_window_ms": a.limits.duplicate_window_ns // 1_000_000,
         "restricted_symbols": sorted(a.restricted_symbols),
         "limits_version": a.limits.version}
        for a in system.config.new_accounts()
    ]


@router.get("/health", tags=["operations"])
def health(system: SystemDep, response: Response) -> dict[str, Any]:
    store: dict[str, Any] = {"dialect": system.store.dialect}
    try:
        store["head_position"] = system.store.recorder.max_notification_id() or 0
        store["ok"] = True
    except Exception as exc:  # report, don't raise: health must answer when the store can't
        store.update(ok=False, error=str(exc))
    chain = system.store.chain_status
    store["chain"] = {"ok": chain.ok, "verified_position": chain.verified_position,
                      "problem": chain.problem}
    runner = system.projections
    engine = system.engine.health()
    committed = engine["committed_position"]
    projections = {
        "position": runner.position,
        "lag": max(0, committed - runner.position),
        "ok": runner.last_error is None,
        "last_error": None if runner.last_error is None else str(runner.last_error),
    }
    lock = system.writer_lock
    engine["writer_lock"] = lock.state
    healthy = (store["ok"] and chain.ok and projections["ok"] and engine["running"]
               and not lock.lost)
    if not healthy:
        response.status_code = 503
    return {"status": "ok" if healthy else "degraded", "store": store, "engine": engine,
            "projections": projections}
