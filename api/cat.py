"""FINRA CAT order event files over HTTP (issue 8): the day's ``.json.bz2`` and its metadata,
built from the read models (projections/cat.py), for compliance, auditors, risk officers and
admins. Traders are refused (403, recorded as ``AccessDenied``): the file holds every
account's orders.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response, status

from api.access import Principal, allow
from api.deps import ProbesDep, SystemDep
from api.errors import responses
from api.probes import read_models
from domain.values import Role
from projections.cat import CatError, CatFiles, Firm, generate

router = APIRouter(prefix="/cat", tags=["cat"])

CAT_READERS = frozenset({Role.COMPLIANCE, Role.AUDITOR, Role.RISK_OFFICER, Role.ADMIN})
CatCaller = Annotated[Principal, allow(CAT_READERS)]
TradingDate = Annotated[date, Path(alias="date", description="The trading day, YYYY-MM-DD.")]
LAG_HEADER = "X-Marketlog-Projection-Lag"


def _files(system: SystemDep, probes: ProbesDep, day: date) -> CatFiles:
    response = Response()
    with read_models(system, probes, response) as conn:
        # A CAT file must hold every acknowledged event of the day: a lagging read model
        # would give a short file that looks complete.
        if LAG_HEADER in response.headers:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                f"read models are {response.headers[LAG_HEADER]} events "
                                "behind the log; retry", headers={"Retry-After": "1"})
        try:
            return generate(conn, Firm.of(system.config.cat), day)
        except CatError as exc:  # a record failing its schema: nothing is served
            raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, str(exc)) from None


@router.get("/{date}/order-events", response_class=Response, responses={
    **responses(422, 503), 200: {"content": {"application/x-bzip2": {}},
                                 "description": "newline-delimited JSON, bzip2-compressed"}})
def order_events(system: SystemDep, probes: ProbesDep, caller: CatCaller,
                 day: TradingDate) -> Response:
    """The day's CAT order events (MENO, MEOA, MEOM, MEOC, MEOT): the same bytes as
    ``marketlog cat`` writes; ``X-Marketlog-SHA256`` is the digest the metadata holds."""
    files = _files(system, probes, day)
    return Response(files.data, media_type="application/x-bzip2", headers={
        "Content-Disposition": f'attachment; filename="{files.data_name}"',
        "X-Marketlog-SHA256": files.sha256})


@router.get("/{date}/metadata", response_class=Response, responses={
    **responses(422, 503), 200: {"content": {"application/json": {}},
                                 "description": "record counts and the SHA-256 of the file"}})
def metadata(system: SystemDep, probes: ProbesDep, caller: CatCaller,
             day: TradingDate) -> Response:
    """The metadata file of the day's CAT order events (the bytes ``marketlog cat`` writes)."""
    files = _files(system, probes, day)
    return Response(files.meta, media_type="application/json", headers={
        "Content-Disposition": f'attachment; filename="{files.meta_name}"'})
