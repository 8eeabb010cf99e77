"""The daily 15c3-5 report, its calibration table and its certifications (issue 8, item 1).

Read by compliance, auditors, risk officers and admins (traders are refused, and the
refusal is recorded). Figures come from the control statistics read models
(projections/report_15c3_5.py); a certification is an event through the engine
(``ReportCertified``), accepted only for the hash of the report as it reads now.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from api.access import Principal, allow
from api.deps import ProbesDep, SystemDep
from api.errors import responses
from api.governance import ACTION_ERRORS, _decide
from api.probes import read_models
from api.report_html import render_html
from api.schemas import ErrorOut
from api.strict_json import StrictJSONRoute
from commands.models import CertifyReport, Reason
from domain.values import Role, Source
from infrastructure.bootstrap import System
from projections import report_15c3_5 as r
from projections.tables import control_governance

router = APIRouter(tags=["reports"], route_class=StrictJSONRoute)

# 15c3-5(e): the review is compliance's; risk and audit read it, admins run the system.
ReportReader = Annotated[Principal, allow(frozenset({Role.COMPLIANCE, Role.AUDITOR,
                                                     Role.RISK_OFFICER, Role.ADMIN}))]
Certifier = Annotated[Principal, allow(frozenset({Role.COMPLIANCE}))]

DateQuery = Annotated[date | None, Query(description="A trading date, YYYY-MM-DD.")]
FromQuery = Annotated[date | None, Query(alias="from", description="First trading date of a "
                                                                  "range, YYYY-MM-DD.")]
ToQuery = Annotated[date | None, Query(description="Last trading date of a range, YYYY-MM-DD.")]
MAX_RANGE_DAYS = 366
DEFAULT_CALIBRATION_DAYS = 20  # about a month of trading days
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No trading day of that date in the log."}}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {**responses(*codes), **NOT_FOUND}


def firm_limit(system: System) -> Decimal:
    """The firm credit limit the configuration seeds (the log records it only through
    its changes, which the report prefers)."""
    return system.config.firm.credit_limit


def _unprocessable(parameter: str, message: str) -> HTTPException:
    # The shape of every 422 of the API (ValidationErrorOut): the parameter, and why.
    return HTTPException(422, [
        {"type": "value_error", "loc": ["query", parameter], "msg": message}])


def build(conn: sa.Connection, system: System, day: date | None, first: date | None,
          last: date | None) -> dict[str, Any]:
    """The report for ``day``; or for ``first``..``last`` (either end open: the first or the
    last trading day); with neither, the latest trading day. 404 / 422 named."""
    try:
        if day is not None:
            if first is not None or last is not None:
                raise _unprocessable("date", "give either date or from/to, not both")
            return r.daily_report(conn, day.isoformat(), firm_limit(system))
        if first is None and last is None:
            latest = r.trading_dates(conn, days=1)
            if not latest:
                raise r.NoTradingDay("no trading day in the log yet")
            return r.daily_report(conn, latest[0], firm_limit(system))
        if first is not None and last is not None and first > last:
            raise _unprocessable("from", f"from ({first}) is after to ({last})")
        dates = r.trading_dates(conn, None if first is None else first.isoformat(),
                                None if last is None else last.isoformat())
        start = first.isoformat() if first is not None else (dates[0] if dates else None)
        end = last.isoformat() if last is not None else (dates[-1] if dates else None)
        if start is None or end is None:
            raise r.NoTradingDay("no trading day in that range")
        return r.range_report(conn, start, end, firm_limit(system))
    except r.NoTradingDay as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


def _json(report: dict[str, Any]) -> Response:
    return Response(orjson.dumps(report), media_type="application/json")


@router.get("/reports/15c3-5", responses=_errors(422, 503))
def report_15c3_5(system: SystemDep, probes: ProbesDep, response: Response,
                  caller: ReportReader, date: DateQuery = None, first: FromQuery = None,
                  to: ToQuery = None) -> Any:
    """The daily SEC Rule 15c3-5 report (all nine items of the compliance checklist), for
    a trading day (``date``; none: the latest) or a range (``from``/``to``, either end open);
    ``sha256`` is over its canonical JSON. 422: ``date`` together with ``from``/``to``, or
    ``from`` after ``to``."""
    with read_models(system, probes, response) as conn:
        return _json(build(conn, system, date, first, to))


@router.get("/reports/15c3-5.html", responses={
    **_errors(422, 503),
    200: {"description": "The report as an HTML document.",
          "content": {"text/html": {"schema": {"type": "string"}}}}})
def report_15c3_5_html(system: SystemDep, probes: ProbesDep, response: Response,
                       caller: ReportReader, date: DateQuery = None, first: FromQuery = None,
                       to: ToQuery = None) -> Any:
    """The same report as a printable HTML document with inline SVG charts."""
    with read_models(system, probes, response) as conn:
        return HTMLResponse(render_html(build(conn, system, date, first, to)))


@router.get("/reports/calibration", responses=responses(422, 503))
def calibration(system: SystemDep, probes: ProbesDep, response: Response, caller: ReportReader,
                days: Annotated[int | None, Query(ge=1, le=MAX_RANGE_DAYS, description=(
                    "The last N trading days."))] = None,
                first: FromQuery = None, to: ToQuery = None) -> Any:
    """Peak use against the limit per account over the last N trading days (default
    ``DEFAULT_CALIBRATION_DAYS``) or from/to. 422: ``days`` together with ``from``/``to``,
    or ``from`` after ``to``."""
    if days is not None and (first is not None or to is not None):
        raise _unprocessable("days", "give either days or from/to, not both")
    if days is None and first is None and to is None:
        days = DEFAULT_CALIBRATION_DAYS
    if first is not None and to is not None and first > to:
        raise _unprocessable("from", f"from ({first}) is after to ({to})")
    with read_models(system, probes, response) as conn:
        dates = r.trading_dates(conn, None if first is None else first.isoformat(),
                                None if to is None else to.isoformat(), days)
        return _json(r.calibration(conn, dates, firm_limit(system)))


class CertificationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    report_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    date: date
    reason: Reason


@router.post("/reports/15c3-5/certifications", status_code=201,
             responses={**ACTION_ERRORS, **NOT_FOUND})
async def certify(body: CertificationBody, request: Request, system: SystemDep,
                  probes: ProbesDep, response: Response, caller: Certifier) -> Any:
    """Certify the day's report as reviewed (a ``ReportCertified`` event naming the
    reviewer, the time and the report's SHA-256). Refused (409) unless the hash is that of
    the report as it reads now."""
    with read_models(system, probes, response) as conn:
        current = build(conn, system, body.date, None, None)["sha256"]
    if body.report_sha256 != current:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"report_sha256 is not the hash of the current 15c3-5 report for "
                            f"{body.date} ({current}); review the current report")
    detail = await _decide(request, system, caller, CertifyReport(
        trading_date=body.date.isoformat(), report_sha256=body.report_sha256,
        reason=body.reason, actor=caller.username, source=Source.API))
    return {"certification_id": detail["id"], "trading_date": body.date.isoformat(),
            "report_sha256": body.report_sha256, "certified_by": caller.username}


@router.get("/reports/15c3-5/certifications", responses=responses(422, 503))
def certifications(system: SystemDep, probes: ProbesDep, response: Response,
                   caller: ReportReader, date: DateQuery = None) -> Any:
    """Every certification recorded, in log order (of one trading date if given)."""
    with read_models(system, probes, response) as conn:
        return list_certifications(conn, None if date is None else date.isoformat())


def list_certifications(conn: sa.Connection, trading_date: str | None) -> list[dict[str, Any]]:
    t = control_governance
    out = []
    for position, ts_ns, actor, payload in conn.execute(
            sa.select(t.c.position, t.c.ts_ns, t.c.actor, t.c.payload)
            .where(t.c.event_type == "ReportCertified").order_by(t.c.position)):
        body = orjson.loads(payload)
        if trading_date is None or body["trading_date"] == trading_date:
            out.append({"certification_id": body["certification_id"], "position": position,
                        "report": body["report"], "trading_date": body["trading_date"],
                        "report_sha256": body["report_sha256"], "certified_by": actor,
                        "certified_at": r.iso_ns(ts_ns), "reason": body["reason"]})
    return out
