"""Records for examiners and auditors (issue 8): an order's lineage, and exports of the audit
trail with a manifest (SEC Rule 17a-4: records in human-readable and machine-usable form,
verifiable for completeness and accuracy).

Who reads what: every role reads lineages and exports, a trader only of their own accounts
(a trader's export must name one of their accounts); anything else is a recorded denial
(403). Exports stream: rows are read in keyset pages and written as they come.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator, WithJsonSchema

from api.access import Caller, Principal, deny
from api.deps import AccountQuery, ProbesDep, SystemDep
from api.errors import Unavailable, responses
from api.probes import read_models
from api.schemas import ErrorOut
from api.strict_json import StrictJSONRoute
from infrastructure.bootstrap import System
from projections import exports
from projections.lineage import order_lineage

router = APIRouter(route_class=StrictJSONRoute)

CATCH_UP_S = 10.0  # an export waits this long for the read models to reach its head
INT64_MAX = 2**63 - 1


@router.get("/orders/{order_id}/lineage", tags=["records"],
            responses={404: {"model": ErrorOut, "description": "Unknown order"},
                       **responses(422, 503)})
def lineage(order_id: UUID, request: Request, system: SystemDep, probes: ProbesDep,
            response: Response, caller: Caller) -> Any:
    """Every event of the order in log order (from the audit trail): the controls that ran
    and the inputs each used, who approved each limit version in force, fills with trade id
    and counterparty, rejections, cancels and replaces; each record with its chain links
    (position, prev_hash, hash), its hash recomputed from the row, and a comparison with the
    store's record at that position (``chain``)."""
    with read_models(system, probes, response) as conn:
        found = order_lineage(conn, str(order_id), system.store)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no order {order_id} in the audit trail")
    if not caller.may_see(found["account_id"]):
        raise deny(request, caller,
                   f"{caller.username} is not entitled to {found['account_id']}",
                   found["account_id"])
    return found


# ------------------------------------------------------------------------------ exports

_EARLIEST = exports.parse_bound("1971-01-01", end=False)
_LATEST = exports.parse_bound("2259-12-31", end=True)


def _bound(text: str) -> str:
    # 422 naming the parameter (FastAPI's validation) for a value that is no date or time,
    # or one outside what the log's int64 nanoseconds hold whatever the offset (as the
    # document's pattern says).
    if not _EARLIEST <= exports.parse_bound(text, end=False) < _LATEST:
        raise ValueError("a date or time between the years 1971 and 2259")
    return text


# The document says what is valid (a date or an RFC 3339 time, years 1971 to 2259 as the log's
# int64 nanoseconds allow), so generated valid values are accepted.
_BOUND_SCHEMA = {"anyOf": [{"type": "string", "format": "date"},
                           {"type": "string", "format": "date-time"}],
                 "pattern": r"^(197[1-9]|19[89][0-9]|2[01][0-9]{2}|22[0-5][0-9])-"}
FromQuery = Annotated[str | None, Query(
    alias="from", max_length=64,
    description="UTC date (YYYY-MM-DD: from its first instant) or ISO 8601 time, inclusive."),
    AfterValidator(lambda v: None if v is None else _bound(v)),
    WithJsonSchema(_BOUND_SCHEMA)]
ToQuery = Annotated[str | None, Query(
    alias="to", max_length=64,
    description="UTC date (YYYY-MM-DD: through its last instant) or ISO 8601 time, "
    "exclusive; not before from."),
    AfterValidator(lambda v: None if v is None else _bound(v)),
    WithJsonSchema(_BOUND_SCHEMA)]
ThroughQuery = Annotated[int | None, Query(
    ge=0, le=INT64_MAX,
    description="Last log position to consider (default, and at most: the store's head "
    "now). Pass the manifest's chain_head.position to get the files that manifest "
    "describes.")]


def _invalid(name: str, message: str, value: Any) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": ("query", name),
                                    "msg": message, "input": value}])


def _export_selection(request: Request, system: System, caller: Principal,
                      from_: str | None, to: str | None, account: str | None,
                      through: int | None) -> tuple[exports.Selection, exports.ChainHead]:
    if not caller.sees_everything and (account is None or not caller.may_see(account)):
        # A trader exports one of their own accounts, never the firm's trail.
        raise deny(request, caller,
                   f"{caller.username} may export only an account they are entitled to "
                   f"({account or 'no account given'})", account)
    try:
        sel = exports.selection(0, from_, to, account)
    except exports.BadBound as exc:
        name = str(exc).partition(":")[0]
        raise _invalid(name, str(exc), from_ if name == "from" else to) from None
    except ValueError as exc:
        raise _invalid("from", str(exc), from_) from None
    store = system.store
    head = exports.chain_head(store)
    if through is not None and through < head.position:
        # Beyond the head is a fair question with a plain answer: everything up to the head
        # (the manifest and the X-Marketlog-Chain-Head-Position header say which).
        head = exports.chain_head(store, through)
    # The export is complete up to the head only once the read models hold it.
    if system.projections.position < head.position:
        system.projections.notify()
        if not system.projections.wait_for(head.position, CATCH_UP_S):
            raise Unavailable("the audit trail", f"the read models are at position "
                              f"{system.projections.position}, the store at {head.position}")
    sel = exports.Selection(head.position, sel.since_ns, sel.until_ns, sel.account_id,
                            sel.from_text, sel.to_text)
    return sel, head


def _headers(head: exports.ChainHead, filename: str) -> dict[str, str]:
    return {"X-Marketlog-Chain-Head-Position": str(head.position),
            "X-Marketlog-Chain-Head-Hash": head.hash,
            "Content-Disposition": f'attachment; filename="{filename}"'}


def _stream(system: System, sel: exports.Selection,
            render: Any) -> Iterator[bytes]:
    yield from render(exports.rows(system.read_models, sel))


@router.get("/exports/audit.jsonl", tags=["records"], response_class=StreamingResponse,
            responses={200: {"description": "JSON lines, one record a line.", "content": {
                "application/x-ndjson": {"schema": {"type": "string"}}}},
                **responses(422, 503)})
def export_jsonl(request: Request, system: SystemDep, probes: ProbesDep, caller: Caller,
                 from_: FromQuery = None, to: ToQuery = None, account: AccountQuery = None,
                 through: ThroughQuery = None) -> StreamingResponse:
    """The selected audit-trail records as JSON lines (one record a line, its stored body
    verbatim as ``payload``), streamed in log order."""
    probes.reads.check()
    sel, head = _export_selection(request, system, caller, from_, to, account, through)
    return StreamingResponse(_stream(system, sel, exports.jsonl_chunks),
                             media_type="application/x-ndjson",
                             headers=_headers(head, exports.JSONL_NAME))


@router.get("/exports/audit.csv", tags=["records"], response_class=StreamingResponse,
            responses={200: {"description": "CSV with a header row.", "content": {
                "text/csv": {"schema": {"type": "string"}}}},
                **responses(422, 503)})
def export_csv(request: Request, system: SystemDep, probes: ProbesDep, caller: Caller,
               from_: FromQuery = None, to: ToQuery = None, account: AccountQuery = None,
               through: ThroughQuery = None) -> StreamingResponse:
    """The same records as CSV (a header row; ``prev_hash``, ``hash`` and the payload as
    columns), streamed in log order."""
    probes.reads.check()
    sel, head = _export_selection(request, system, caller, from_, to, account, through)
    return StreamingResponse(_stream(system, sel, exports.csv_chunks),
                             media_type="text/csv; charset=utf-8",
                             headers=_headers(head, exports.CSV_NAME))


@router.get("/exports/manifest", tags=["records"], response_class=Response,
            responses={200: {"description": "The manifest (JSON).", "content": {
                "application/json": {"schema": {"type": "object"}}}},
                **responses(422, 503)})
def export_manifest(request: Request, system: SystemDep, probes: ProbesDep, caller: Caller,
                    from_: FromQuery = None, to: ToQuery = None, account: AccountQuery = None,
                    through: ThroughQuery = None) -> Response:
    """The manifest of the export with these filters: record count, first and last position,
    SHA-256 and size of each file, the store's chain head at export time, the filters and
    the format version. Fetch the files with ``through`` = ``chain_head.position`` to get
    exactly the files it describes."""
    probes.reads.check()
    sel, head = _export_selection(request, system, caller, from_, to, account, through)
    manifest = exports.build_manifest(system.read_models, sel, head, system.store.store_id)
    return Response(exports.manifest_bytes(manifest), media_type="application/json",
                    headers=_headers(head, exports.MANIFEST_NAME))
