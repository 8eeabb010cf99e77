"""Who is calling, and what their role lets them do (issue 7, item 4).

Every endpoint but ``/health`` takes ``Authorization: Bearer <token>``. The token's SHA-256
is looked up among the active keys the engine's book holds (``ApiKeyIssued`` /
``ApiKeyRevoked`` events): a revoked key stops working as soon as its revocation is durable.
The lookup reads dictionaries the engine thread replaces entry by entry, never a structure
in the middle of a change, so it needs no lock (one C-level ``dict.get``).

The role table (``ROLES``) is the access policy in one place; the domain enforces the
regulatory rules again on its own (only a risk officer resets a kill switch, the approver of
a limit change is not its requester, traders trade only their accounts), so an entry point
other than this API cannot bypass them. Every denial is recorded (``AccessDenied``: who,
what, when, why) and counted (``/health``).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from commands.engine import EngineBusy, EngineHalted
from commands.models import RecordDenial
from domain.values import Role, Source
from infrastructure.bootstrap import System
from infrastructure.credentials import token_sha256

log = logging.getLogger(__name__)

UNAUTHENTICATED = "unauthenticated"
READERS = (Role.TRADER, Role.RISK_OFFICER, Role.COMPLIANCE, Role.AUDITOR, Role.ADMIN)
EVERYONE_READS = frozenset(READERS)


@dataclass(frozen=True)
class Principal:
    username: str
    role: str
    accounts: frozenset[str]

    @property
    def sees_everything(self) -> bool:
        """Every role but trader reads every account (compliance, auditors, risk, admin)."""
        return self.role != Role.TRADER

    def may_see(self, account_id: str | None) -> bool:
        return self.sees_everything or (account_id is not None and account_id in self.accounts)


# What each kind of action needs. Reading is open to every role (a trader's reads are
# narrowed to their accounts by the routes); changing is narrow.
TRADE = frozenset({Role.TRADER})
RISK = frozenset({Role.RISK_OFFICER})
RISK_OR_ADMIN = frozenset({Role.RISK_OFFICER, Role.ADMIN})
ADMIN = frozenset({Role.ADMIN})
LOCATE_REQUEST = frozenset({Role.TRADER, Role.RISK_OFFICER})
LIMIT_REQUEST = frozenset({Role.TRADER, Role.RISK_OFFICER, Role.ADMIN})


class DenialCounter:
    """Denials answered by this process, by reason (``/health``)."""

    def __init__(self) -> None:
        self.by_reason: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())


def record_denial(request: Request, actor: str, reason: str, account_id: str | None = None,
                  kind: str = "forbidden") -> None:
    """Record who was refused what and why: an event through the engine (not awaited: a
    flood of bad requests must not hold requests up), and a count in this process."""
    app = request.app
    counter: DenialCounter = app.state.denials
    counter.by_reason[kind] += 1
    system: System = app.state.system
    action = f"{request.method} {request.url.path}"[:200]
    try:
        system.engine.submit(RecordDenial(actor=actor[:64] or UNAUTHENTICATED,
                                          source=Source.API, action=action,
                                          account_id=account_id, reason=reason[:300]))
    except (EngineBusy, EngineHalted) as exc:  # counted all the same
        log.warning("denial not recorded (%s): %s %s", exc, actor, action)


def deny(request: Request, principal: Principal, reason: str,
         account_id: str | None = None) -> HTTPException:
    record_denial(request, principal.username, reason, account_id)
    return HTTPException(status.HTTP_403_FORBIDDEN, reason)


def _unauthenticated(request: Request, reason: str) -> HTTPException:
    record_denial(request, UNAUTHENTICATED, reason, kind="unauthenticated")
    return HTTPException(status.HTTP_401_UNAUTHORIZED, reason,
                         headers={"WWW-Authenticate": "Bearer"})


# The compliance page's session (api/compliance_page.py): the API key in an HttpOnly,
# SameSite=Strict cookie, accepted on reads (GET, HEAD) only, so that no state-changing
# request can ride on it (cross-site request forgery).
SESSION_COOKIE = "marketlog_session"
READ_METHODS = frozenset({"GET", "HEAD"})


def principal_of_token(request: Request, token: str) -> Principal | None:
    """The active user an API key belongs to, or None (unknown, revoked or disabled)."""
    gov = request.app.state.system.engine.book.gov
    found = gov.keys.get(token_sha256(token))
    user = None if found is None else gov.users.get(found[1])
    if user is None or not user.active:
        return None
    return Principal(user.username, user.role, user.accounts)


async def authenticate(request: Request) -> Principal:
    header = request.headers.get("authorization")
    if not header:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie is None or request.method not in READ_METHODS:
            raise _unauthenticated(request,
                                   "an Authorization: Bearer <token> header is required")
        header = "Bearer " + cookie
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 200:
        raise _unauthenticated(request, "the Authorization header must be Bearer <token>")
    principal = principal_of_token(request, token)
    if principal is None:
        raise _unauthenticated(request, "unknown or revoked API key, or its user is disabled")
    return principal


def allow(roles: frozenset[str]) -> object:
    """A dependency: the caller, if their role is one of ``roles``; else 403, recorded."""

    async def check(request: Request,
                    principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if principal.role not in roles:
            raise deny(request, principal,
                       f"role {principal.role} may not {request.method} {request.url.path} "
                       f"(needs {' or '.join(sorted(roles))})")
        return principal

    return Depends(check)


def check_account(request: Request, principal: Principal, account_id: str | None) -> None:
    """A trader reads only their accounts (an unfiltered read by a trader is narrowed by the
    route instead); others read all."""
    if account_id is not None and not principal.may_see(account_id):
        raise deny(request, principal, f"{principal.username} is not entitled to {account_id}",
                   account_id)


Caller = Annotated[Principal, allow(EVERYONE_READS)]
TraderCaller = Annotated[Principal, allow(TRADE)]
RiskCaller = Annotated[Principal, allow(RISK)]
RiskOrAdminCaller = Annotated[Principal, allow(RISK_OR_ADMIN)]
AdminCaller = Annotated[Principal, allow(ADMIN)]
LocateCaller = Annotated[Principal, allow(LOCATE_REQUEST)]
LimitRequestCaller = Annotated[Principal, allow(LIMIT_REQUEST)]
