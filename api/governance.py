"""The operator surface of risk governance (issue 7, item 5): halts and Rule 201, locates,
kill switches, governed limits, users, keys, entitlements and account suspensions.

Each action is a command decided by the engine and recorded as an event naming its actor
and reason, or refused with nothing recorded: 403 when it is the caller who may not (that
denial is recorded), 409 when the request itself does not hold (a switch not tripped, a
limit changed since the request). State is read from the engine's book (the live truth the
controls use); history comes from the audit trail, a projection of the log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from api.access import (
    AdminCaller,
    Caller,
    LimitRequestCaller,
    LocateCaller,
    Principal,
    RiskCaller,
    RiskOrAdminCaller,
    check_account,
    deny,
)
from api.as_of import AsOfQuery, at_moment
from api.deps import ProbesDep, SystemDep
from api.errors import responses
from api.orders import run_command
from api.probes import read_models
from api.schemas import ErrorOut
from api.strict_json import StrictJSONRoute
from commands import models as m
from commands.models import (
    IDENTIFIER_PATTERN,
    SCOPE_PATTERN,
    Identifier,
    Reason,
    Scope,
    Symbol,
    Username,
)
from domain.governance import in_scope
from domain.limits import GOVERNED, split_scope
from domain.values import Role, Source
from infrastructure.bootstrap import System
from infrastructure.clock import epoch_ns
from infrastructure.credentials import new_key
from projections import queries

router = APIRouter(tags=["risk governance"], route_class=StrictJSONRoute)

LIMIT_EVENTS = ("LimitChangeRequested", "LimitChangeApproved", "LimitChangeRejected",
                "LimitChangeReverted")
KILL_EVENTS = ("KillSwitchTripped", "KillSwitchReset")
# Every action's documented answers besides success: a refusal by the rules (409), and the
# shared errors of a route with a JSON body (400 unreadable, 413 too large, 422 invalid).
ACTION_ERRORS: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "Refused by the rules (the reason says which); "
                                            "nothing recorded."},
    **responses(400, 413, 422, 503),
    403: {"model": ErrorOut, "description": "The caller's role or entitlements do not allow "
                                            "it (recorded as an AccessDenied event)."},
}


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason


class LocateBody(Body):
    account_id: Identifier
    symbol: Symbol
    quantity: m.Quantity


def _in_epoch_range(moment: datetime) -> datetime:
    # The log keeps times as signed 64-bit epoch nanoseconds (1970 to 2262): years 1971 to
    # 2259 are inside that range whatever the offset.
    if not 1971 <= moment.year <= 2259:
        raise ValueError("a time between the years 1971 and 2259")
    return moment


Expiry = Annotated[
    datetime, AfterValidator(_in_epoch_range),
    # The whole form as one pattern (no "format" beside it): clients and fuzzers can build
    # valid values from it. Days 29-31 are accepted too, where the month has them.
    WithJsonSchema({"type": "string",
                    "pattern": r"^(197[1-9]|19[89][0-9]|2[01][0-9]{2}|22[0-5][0-9])"
                               r"-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
                               r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
                               r"(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])?$",
                    "description": "ISO 8601 date and time between the years 1971 and 2259, "
                                   "e.g. 2026-11-27T20:00:00Z; without an offset, UTC"}),
]


class GrantBody(Body):
    quantity: m.Quantity
    expires_at: Expiry


class ScopeBody(Body):
    scope: Scope


class LimitRequestBody(Body):
    field: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z_]+$")]
    value: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[0-9]+(\.[0-9]+)?$",
                                description="The new value as text (exact decimals).")]
    expires_at: Expiry | None = Field(
        None, description="After approval the change reverts by itself at this time.")
    change_id: UUID | None = Field(
        None, description="Chosen by the caller (a resend with the same id is refused); "
                          "by default the engine assigns one.")


class UserBody(Body):
    username: Username
    role: Role


class EntitlementBody(Body):
    account_id: Identifier


async def _decide(request: Request, system: System, caller: Principal, command: Any,
                  account_id: str | None = None) -> dict[str, Any]:
    outcome = await run_command(system, command)
    detail = outcome.detail or {}
    if outcome.kind == "refused":
        if detail.get("denied"):
            raise deny(request, caller, detail["reason"], account_id)
        raise HTTPException(status.HTTP_409_CONFLICT, detail.get("reason"))
    return detail


def _acting(caller: Principal) -> dict[str, Any]:
    return {"actor": caller.username, "source": Source.API}


# ------------------------------------------------------------------ symbols


SymbolPath = Annotated[str, Path(min_length=1, max_length=16, pattern=r"^[A-Z0-9][A-Z0-9.\-]*$")]
ScopePath = Annotated[str, Path(min_length=1, max_length=80, pattern=SCOPE_PATTERN,
                                description="firm, account:<id>, strategy:<tag> or symbol:<sym>")]
AccountPath = Annotated[str, Path(min_length=1, max_length=64, pattern=IDENTIFIER_PATTERN)]
KeyPath = Annotated[str, Path(min_length=1, max_length=32, pattern=IDENTIFIER_PATTERN)]


@router.get("/symbols", responses=responses(422))
async def symbols(system: SystemDep, caller: Caller) -> Any:
    """Every listed symbol's trading state: halted (why), Rule 201 restriction in force."""
    gov = system.engine.book.gov
    return [{"symbol": s, "halted": s in gov.halted, "halt_reason": gov.halted.get(s),
             "short_sale_restricted": gov.ssr_active(s), "ssr_triggered_on": gov.ssr.get(s)}
            for s in sorted(system.engine.book.instruments)]


@router.post("/symbols/{symbol}/halt", responses=ACTION_ERRORS)
async def halt(symbol: SymbolPath, body: Body, request: Request, system: SystemDep,
               caller: RiskOrAdminCaller) -> Any:
    """Halt trading in a symbol (TradingHalted): its orders are refused (``halt``)."""
    return await _decide(request, system, caller, m.HaltSymbol(
        symbol=symbol, reason=body.reason, **_acting(caller)))


@router.post("/symbols/{symbol}/resume", responses=ACTION_ERRORS)
async def resume(symbol: SymbolPath, body: Body, request: Request, system: SystemDep,
                 caller: RiskOrAdminCaller) -> Any:
    return await _decide(request, system, caller, m.ResumeSymbol(
        symbol=symbol, reason=body.reason, **_acting(caller)))


@router.post("/symbols/{symbol}/short-sale-restriction",
             responses=ACTION_ERRORS)
async def restrict_short_sales(symbol: SymbolPath, body: Body, request: Request,
                               system: SystemDep, caller: RiskCaller) -> Any:
    """Rule 201 on the listing market's notice (a 10% decline triggers it by itself)."""
    return await _decide(request, system, caller, m.TriggerShortSaleRestriction(
        symbol=symbol, reason=body.reason, **_acting(caller)))


# ------------------------------------------------------------------ locates


@router.get("/locates", responses=responses(401, 422))
async def locates(system: SystemDep, caller: Caller) -> Any:
    """Locates requested or granted and not yet used up or expired (a trader: theirs)."""
    return [{"locate_id": str(loc.locate_id), "account_id": loc.account_id,
             "symbol": loc.symbol, "requested": loc.requested, "granted": loc.granted,
             "remaining": loc.remaining, "status": loc.status,
             "expires_ns": loc.expires_ns or None}
            for loc in list(system.engine.book.gov.locates.values())
            if caller.may_see(loc.account_id)]


@router.post("/locates", status_code=201, responses=ACTION_ERRORS)
async def request_locate(body: LocateBody, request: Request, system: SystemDep,
                         caller: LocateCaller) -> Any:
    """Request a locate (Reg SHO 203(b)(1)) for a short sale; a risk officer grants it."""
    check_account(request, caller, body.account_id)
    detail = await _decide(request, system, caller, m.RequestLocate(
        account_id=body.account_id, symbol=body.symbol, quantity=body.quantity,
        reason=body.reason, **_acting(caller)), body.account_id)
    return {"locate_id": detail["id"], **detail}


@router.post("/locates/{locate_id}/grant", responses=ACTION_ERRORS)
async def grant_locate(locate_id: UUID, body: GrantBody, request: Request, system: SystemDep,
                       caller: RiskCaller) -> Any:
    return await _decide(request, system, caller, m.GrantLocate(
        locate_id=locate_id, quantity=body.quantity, expires_at_ns=epoch_ns(body.expires_at),
        reason=body.reason, **_acting(caller)))


# ------------------------------------------------------------------ kill switches


def _trip_view(trip: Any) -> dict[str, Any]:
    return {"scope": trip.scope, "trigger": trip.trigger, "threshold": trip.threshold,
            "observed": trip.observed, "reason": trip.reason, "actor": trip.actor,
            "tripped_ns": trip.ts_ns, "canceled_orders": list(trip.canceled_orders)}


@router.get("/kill-switches", responses=responses(401, 422, 503))
def kill_switches(system: SystemDep, probes: ProbesDep, response: Response, caller: Caller
                  ) -> Any:
    """The switches tripped now, and every trip and reset in log order (the audit trail)."""
    tripped = [_trip_view(t) for t in list(system.engine.book.gov.tripped.values())
               if caller.sees_everything or any(in_scope(t.scope, a, None)
                                                for a in caller.accounts)]
    with read_models(system, probes, response) as conn:
        history = queries.audit_events(conn, event_types=KILL_EVENTS, limit=10_000)
    return {"tripped": tripped,
            "history": [h for h in history if caller.sees_everything
                        or any(in_scope(h["payload"]["scope"], a, None) for a in caller.accounts)]}


@router.post("/kill-switches/trip", responses=ACTION_ERRORS)
async def trip(body: ScopeBody, request: Request, system: SystemDep, caller: RiskCaller) -> Any:
    """Trip a switch: new orders in its scope refused, resting ones canceled (each cancel
    an event with reason kill_switch)."""
    return await _decide(request, system, caller, m.TripKillSwitch(
        scope=body.scope, reason=body.reason, **_acting(caller)))


@router.post("/kill-switches/reset", responses=ACTION_ERRORS)
async def reset(body: ScopeBody, request: Request, system: SystemDep, caller: RiskCaller) -> Any:
    """Only a risk officer resets a switch, with a recorded reason."""
    return await _decide(request, system, caller, m.ResetKillSwitch(
        scope=body.scope, reason=body.reason, **_acting(caller)))


# ------------------------------------------------------------------ governed limits


def _limits_view(scope: str, limits: Any) -> dict[str, Any]:
    kind, _ = split_scope(scope)
    return {"scope": scope, "version": limits.version,
            "values": {f: str(getattr(limits, f)) for f in GOVERNED[kind]}}


@router.get("/limits", responses=responses(401, 422))
async def limits(system: SystemDep, caller: Caller, response: Response,
                 as_of: AsOfQuery = None) -> Any:
    """Every governed threshold in force now, with its version, per scope; with ``as_of``,
    those in force then and the requests pending then (header X-As-Of-Position)."""
    book = system.engine.book
    if as_of is not None:  # a replay: off the event loop
        state = await run_in_threadpool(at_moment, system, as_of, response)
        book = (await run_in_threadpool(state.book)).book
    scopes = [_limits_view("firm", book.firm)] if caller.sees_everything else []
    scopes += [_limits_view(f"account:{a}", acc.limits) for a, acc in book.accounts.items()
               if caller.may_see(a)]
    scopes += [_limits_view(f"symbol:{s}", book.gov.limits_of(f"symbol:{s}"))
               for s in sorted(book.instruments)]
    pending = [{"change_id": str(r.change_id), "scope": r.scope, "field": r.field,
                "old_value": r.old_value, "new_value": r.new_value, "requested_by": r.actor,
                "reason": r.reason, "expires_ns": r.expires_ns}
               for r in list(book.gov.pending.values()) if _visible(caller, r.scope)]
    return {"scopes": scopes, "pending": pending}


def _visible(caller: Principal, scope: str) -> bool:
    kind, key = split_scope(scope)
    return caller.sees_everything or kind == "symbol" or (kind == "account"
                                                         and caller.may_see(key))


@router.get("/limits/{scope}/history", responses=responses(401, 403, 422, 503))
def limit_history(scope: ScopePath, request: Request,
                  system: SystemDep, probes: ProbesDep, response: Response, caller: Caller
                  ) -> Any:
    """Every request, approval, rejection and reversion of the scope's limits, in log order
    (from the audit trail): who asked, who approved, why, until when, the version after."""
    if not _visible(caller, scope):
        raise deny(request, caller, f"{caller.username} may not read {scope}")
    with read_models(system, probes, response) as conn:
        events = queries.audit_events(conn, event_types=LIMIT_EVENTS, limit=10_000)
    return [e for e in events if e["payload"].get("scope") == scope]


@router.post("/limits/{scope}/requests", status_code=201,
             responses=ACTION_ERRORS)
async def request_limit_change(scope: ScopePath,
                               body: LimitRequestBody, request: Request, system: SystemDep,
                               caller: LimitRequestCaller) -> Any:
    """Maker: propose a new value; it takes effect only when a different risk officer
    approves it."""
    command = m.RequestLimitChange(
        change_id=body.change_id, scope=scope, field=body.field, value=body.value,
        reason=body.reason,
        expires_at_ns=None if body.expires_at is None else epoch_ns(body.expires_at),
        **_acting(caller))
    detail = await _decide(request, system, caller, command)
    return {"change_id": detail["id"], **detail}


@router.post("/limits/requests/{change_id}/approve",
             responses=ACTION_ERRORS)
async def approve_limit_change(change_id: UUID, body: Body, request: Request,
                               system: SystemDep, caller: RiskCaller) -> Any:
    """Checker: a risk officer other than the requester puts the change in force."""
    return await _decide(request, system, caller, m.ApproveLimitChange(
        change_id=change_id, reason=body.reason, **_acting(caller)))


@router.post("/limits/requests/{change_id}/reject",
             responses=ACTION_ERRORS)
async def reject_limit_change(change_id: UUID, body: Body, request: Request,
                              system: SystemDep, caller: LimitRequestCaller) -> Any:
    """A risk officer refuses the request (or its requester withdraws it)."""
    return await _decide(request, system, caller, m.RejectLimitChange(
        change_id=change_id, reason=body.reason, **_acting(caller)))


# ------------------------------------------------------------------ users and access


@router.get("/users", responses=responses(401, 403))
async def users(request: Request, system: SystemDep, caller: Caller) -> Any:
    """Users, roles, entitlements and key ids (never keys). Traders see only themselves."""
    gov = system.engine.book.gov
    keys: dict[str, list[str]] = {}
    for key_id, (_, user, _) in list(gov.key_ids.items()):
        keys.setdefault(user, []).append(key_id)
    return [{"username": u.username, "role": u.role, "accounts": sorted(u.accounts),
             "active": u.active, "key_ids": sorted(keys.get(u.username, []))}
            for u in list(gov.users.values())
            if caller.sees_everything or u.username == caller.username]


@router.post("/users", status_code=201, responses=ACTION_ERRORS)
async def create_user(body: UserBody, request: Request, system: SystemDep,
                      caller: AdminCaller) -> Any:
    return await _decide(request, system, caller, m.CreateUser(
        username=body.username, role=body.role, reason=body.reason, **_acting(caller)))


UserPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9._-]*$")]


@router.post("/users/{username}/disable", responses=ACTION_ERRORS)
async def disable_user(username: UserPath, body: Body, request: Request, system: SystemDep,
                       caller: AdminCaller) -> Any:
    return await _decide(request, system, caller, m.DisableUser(
        username=username, reason=body.reason, **_acting(caller)))


@router.post("/users/{username}/entitlements",
             responses=ACTION_ERRORS)
async def entitle(username: UserPath, body: EntitlementBody, request: Request,
                  system: SystemDep, caller: AdminCaller) -> Any:
    """15c3-5(c)(2)(iii): let a user trade an account (an event: entitlement changes are
    reported)."""
    return await _decide(request, system, caller, m.Entitle(
        username=username, account_id=body.account_id, reason=body.reason, **_acting(caller)))


@router.post("/users/{username}/entitlements/revoke",
             responses=ACTION_ERRORS)
async def revoke_entitlement(username: UserPath, body: EntitlementBody, request: Request,
                             system: SystemDep, caller: AdminCaller) -> Any:
    return await _decide(request, system, caller, m.RevokeEntitlement(
        username=username, account_id=body.account_id, reason=body.reason, **_acting(caller)))


@router.post("/users/{username}/keys", status_code=201,
             responses=ACTION_ERRORS)
async def issue_key(username: UserPath, body: Body, request: Request, system: SystemDep,
                    caller: Caller) -> Any:
    """A new API key for the user (an admin, or the user themself). The token is in this
    answer only: the log keeps its SHA-256."""
    if caller.role != Role.ADMIN and caller.username != username:
        raise deny(request, caller, f"{caller.username} may not issue keys for {username}")
    key = new_key()
    detail = await _decide(request, system, caller, m.IssueApiKey(
        username=username, key_id=key.key_id, key_sha256=key.sha256, reason=body.reason,
        **_acting(caller)))
    return {"username": username, "key_id": key.key_id, "token": key.token, **detail}


@router.post("/keys/{key_id}/revoke", responses=ACTION_ERRORS)
async def revoke_key(key_id: KeyPath, body: Body, request: Request, system: SystemDep,
                     caller: Caller) -> Any:
    """Revoke a key (an admin, or its owner): refused from the moment this answers."""
    return await _decide(request, system, caller, m.RevokeApiKey(
        key_id=key_id, reason=body.reason, **_acting(caller)))


@router.post("/accounts/{account_id}/suspend",
             responses=ACTION_ERRORS)
async def suspend(account_id: AccountPath, body: Body,
                  request: Request, system: SystemDep, caller: RiskOrAdminCaller) -> Any:
    return await _decide(request, system, caller, m.SuspendAccount(
        account_id=account_id, reason=body.reason, **_acting(caller)))


@router.post("/accounts/{account_id}/reinstate",
             responses=ACTION_ERRORS)
async def reinstate(account_id: AccountPath, body: Body,
                    request: Request, system: SystemDep, caller: RiskOrAdminCaller) -> Any:
    return await _decide(request, system, caller, m.ReinstateAccount(
        account_id=account_id, reason=body.reason, **_acting(caller)))


@router.get("/access/denials", responses=responses(401, 403, 422, 503))
def denials(request: Request, system: SystemDep, probes: ProbesDep, response: Response,
            caller: Caller, limit: int = 1000) -> Any:
    """Every refused request in log order (who, what, when, why) and this process's count.
    Compliance, auditors, risk officers and admins only."""
    if not caller.sees_everything:
        raise deny(request, caller, "traders may not read the access log")
    with read_models(system, probes, response) as conn:
        events = queries.audit_events(conn, event_types=("AccessDenied",),
                                      limit=max(1, min(limit, 10_000)))
    return {"recorded": events, "counted": dict(request.app.state.denials.by_reason)}

