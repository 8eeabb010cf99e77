"""The compliance page (issue 8, item 6): pick a trading day, read its 15c3-5 report with
its charts, follow an order's lineage, download the day's records (17a-4 exports, CAT files).

Server-rendered HTML over the same read models and endpoints as the JSON API: the page adds
no figures of its own, so what it shows is what the API answers. A browser cannot send a
Bearer header on a link, so the page signs in once with an API key and keeps it in an
HttpOnly, SameSite=Strict cookie that ``api.access.authenticate`` accepts on GET requests
only: every read works from the page's links, and nothing that changes state can be
triggered by a cookie (no cross-site request forgery).
"""

from __future__ import annotations

import html
import re
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode
from uuid import UUID

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.access import SESSION_COOKIE, deny, principal_of_token, record_denial
from api.deps import ProbesDep, SystemDep
from api.probes import read_models
from projections.lineage import order_lineage
from projections.tables import audit_trail, orders_view

router = APIRouter(tags=["compliance page"], include_in_schema=False)

DATE_PATTERN = r"^(19[7-9][0-9]|2[0-9]{3})-[0-9]{2}-[0-9]{2}$"
MAX_TOKEN = 200
ORDERS_SHOWN = 50

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#1d2433}
header{background:#1d2433;color:#fff;padding:.8rem 1.5rem;display:flex;gap:1rem;
       align-items:center;justify-content:space-between}
header form{margin:0}
main{padding:1rem 1.5rem;max-width:1200px}
section{margin:1.5rem 0}
h1{font-size:1.2rem;margin:0}
h2{font-size:1.05rem;border-bottom:1px solid #ccd;padding-bottom:.3rem}
table{border-collapse:collapse;font-size:.9rem}
td,th{border:1px solid #ccd;padding:.25rem .5rem;text-align:left}
iframe{width:100%;height:1400px;border:1px solid #ccd}
.muted{color:#667}
"""


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>", status_code=status_code,
        headers={"Cache-Control": "no-store", "X-Frame-Options": "SAMEORIGIN",
                 "Referrer-Policy": "no-referrer"})


def _login(message: str | None = None, status_code: int = 401) -> HTMLResponse:
    note = f"<p role=alert>{html.escape(message)}</p>" if message else ""
    return _page("marketlog: sign in", f"""
<header><h1>marketlog compliance</h1></header>
<main><h2>Sign in</h2>{note}
<p class=muted>With your API key (for the demo users:
<code>data/credentials/&lt;user&gt;.token</code>). It is kept in a cookie for this browser
session, and used for reading only.</p>
<form method=post action=/compliance/session>
<label>API key <input id=token name=token type=password autocomplete=off size=60></label>
<button id=sign-in type=submit>Sign in</button></form></main>""", status_code)


@router.post("/compliance/session")
async def sign_in(request: Request) -> Response:
    """Exchange an API key typed into the form for the page's session cookie."""
    body = (await request.body())[:4096].decode("utf-8", "replace")
    token = (parse_qs(body).get("token") or [""])[0].strip()
    principal = principal_of_token(request, token) if 0 < len(token) <= MAX_TOKEN else None
    if principal is None:
        record_denial(request, "unauthenticated", "compliance page: unknown or revoked API key",
                      kind="unauthenticated")
        return _login("Unknown or revoked API key.")
    response = RedirectResponse("/compliance", status_code=303)
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
    return response


@router.post("/compliance/sign-out")
async def sign_out() -> Response:
    response = RedirectResponse("/compliance", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _trading_days(conn: sa.Connection) -> list[str]:
    """Every trading day opened in the log, newest first (from the audit trail)."""
    rows = conn.execute(sa.select(audit_trail.c.payload).where(
        audit_trail.c.event_type == "TradingDayOpened").order_by(audit_trail.c.position))
    days = {orjson.loads(p)["trading_date"] for (p,) in rows}
    return sorted(days, reverse=True)


def _day_orders(conn: sa.Connection, day_start_ns: int | None, day_end_ns: int | None,
                accounts: frozenset[str] | None) -> list[sa.RowMapping]:
    o = orders_view.c
    stmt = sa.select(o.order_id, o.account_id, o.symbol, o.side, o.quantity, o.status,
                     o.reject_control).order_by(o.created_ns.desc()).limit(ORDERS_SHOWN)
    if day_start_ns is not None:
        stmt = stmt.where(o.created_ns >= day_start_ns)
    if day_end_ns is not None:
        stmt = stmt.where(o.created_ns < day_end_ns)
    if accounts is not None:
        stmt = stmt.where(o.account_id.in_(sorted(accounts)))
    return list(conn.execute(stmt).mappings())


def _day_bounds(conn: sa.Connection, day: str) -> tuple[int | None, int | None]:
    """The log time from this day's opening to the next day's opening (the CAT day too)."""
    opens = [(ts, orjson.loads(p)["trading_date"]) for ts, p in conn.execute(
        sa.select(audit_trail.c.ts_ns, audit_trail.c.payload).where(
            audit_trail.c.event_type == "TradingDayOpened").order_by(audit_trail.c.position))]
    start = next((ts for ts, d in opens if d == day), None)
    if start is None:
        return None, None
    later = [ts for ts, d in opens if ts > start and d != day]
    return start, (min(later) if later else None)


def _link(path: str, label: str, ident: str, **query: str) -> str:
    url = path + ("?" + urlencode(query) if query else "")
    return f'<a id="{ident}" href="{html.escape(url)}">{html.escape(label)}</a>'


@router.get("/compliance", response_class=HTMLResponse)
def compliance_page(request: Request, system: SystemDep, probes: ProbesDep,
                    date: Annotated[str | None, Query(pattern=DATE_PATTERN)] = None) -> Response:
    principal = _principal(request)
    if principal is None:
        return _login()
    response = Response()
    with read_models(system, probes, response) as conn:
        days = _trading_days(conn)
        day = date or (days[0] if days else None)
        bounds = _day_bounds(conn, day) if day else (None, None)
        # A date no trading day opened on has no orders (not everyone's latest ones).
        orders = _day_orders(conn, *bounds, None if principal.sees_everything
                             else principal.accounts) if bounds[0] is not None else []
    options = "".join(f"<option{' selected' if d == day else ''}>{html.escape(d)}</option>"
                      for d in days)
    header = f"""<header><h1>marketlog compliance</h1>
<span>{html.escape(principal.username)} ({html.escape(principal.role)})</span>
<form method=post action=/compliance/sign-out><button>Sign out</button></form></header>"""
    if day is None:
        return _page("marketlog compliance", header +
                     "<main><p id=no-days>No trading day has been opened yet.</p></main>")
    q = {"date": day}
    report = f"""<section id=report><h2>Daily 15c3-5 report, {html.escape(day)}</h2>
<p>{_link("/reports/15c3-5", "JSON", "report-json", **q)} ·
{_link("/reports/15c3-5.html", "open alone (print to PDF)", "report-html", **q)} ·
{_link("/reports/calibration", "calibration, last 20 days", "calibration", days="20")}</p>
<iframe id=report-frame title="15c3-5 report" src="/reports/15c3-5.html?{urlencode(q)}">
</iframe></section>"""
    rows = "".join(_order_row(r) for r in orders)
    lineage = f"""<section id=lineage><h2>Order lineage</h2>
<form method=get action=/compliance/lineage><label>Order id
<input id=order-id name=order_id size=40 pattern="[0-9a-fA-F-]{{36}}"></label>
<button id=follow type=submit>Follow</button></form>
<p class=muted>The day's latest {ORDERS_SHOWN} orders:</p>
<table id=day-orders><tr><th>order</th><th>account</th><th>symbol</th><th>side</th>
<th>quantity</th><th>status</th><th>rejected by</th></tr>{rows}</table></section>"""
    span = {"from": day, "to": day}
    exports = f"""<section id=exports><h2>Records of the day</h2><ul>
<li>Audit trail (SEC 17a-4): {_link("/exports/audit.jsonl", "JSON lines", "export-jsonl", **span)},
{_link("/exports/audit.csv", "CSV", "export-csv", **span)},
{_link("/exports/manifest", "manifest", "export-manifest", **span)}</li>
<li>FINRA CAT order events: {_link(f"/cat/{day}/order-events", "file (.json.bz2)", "cat-file")},
{_link(f"/cat/{day}/metadata", "metadata", "cat-metadata")}</li></ul></section>"""
    form = f"""<form id=pick-day method=get action=/compliance><label>Trading day
<select id=date name=date>{options}</select></label> <button id=show type=submit>Show</button>
</form>"""
    return _page(f"marketlog compliance {day}",
                 f"{header}<main>{form}{report}{lineage}{exports}</main>")


def _order_row(r: sa.RowMapping) -> str:
    order_id = str(r["order_id"])
    cells = [_link("/compliance/lineage", order_id, "lineage-" + order_id, order_id=order_id),
             html.escape(r["account_id"]), html.escape(r["symbol"]), html.escape(r["side"]),
             f"{r['quantity']:,}", html.escape(r["status"]), html.escape(r["reject_control"] or "")]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")


@router.get("/compliance/lineage", response_class=HTMLResponse)
def lineage_page(request: Request, system: SystemDep, probes: ProbesDep,
                 order_id: Annotated[str, Query(max_length=40)] = "") -> Response:
    """An order's lineage (the same as ``GET /orders/{id}/lineage``) as a timeline."""
    principal = _principal(request)
    if principal is None:
        return _login()
    back = '<p><a id=back href="/compliance">Back to the day</a></p>'
    if not UUID_RE.match(order_id):
        return _page("marketlog lineage", f"<main>{back}<p role=alert id=error>"
                     f"{html.escape(order_id)!s} is not an order id.</p></main>", 422)
    uuid = str(UUID(order_id))
    response = Response()
    with read_models(system, probes, response) as conn:
        found = order_lineage(conn, uuid, system.store)
    if found is None:
        return _page("marketlog lineage", f"<main>{back}<p role=alert id=error>No order "
                     f"{html.escape(uuid)} in the audit trail.</p></main>", 404)
    if not principal.may_see(found["account_id"]):
        raise deny(request, principal, f"{principal.username} is not entitled to "
                   f"{found['account_id']}", found["account_id"])
    rows = "".join(
        f"<tr><td>{r['position']}</td><td>{html.escape(r['timestamp'])}</td>"
        f"<td>{html.escape(r['event_type'])}</td><td>{html.escape(r['actor'])}</td>"
        f"<td>{html.escape(r['summary'])}</td>"
        f"<td><code title=\"prev {html.escape(str(r['chain']['prev_hash']))}\">"
        f"{html.escape(str(r['chain']['hash'])[:16])}</code> "
        f"{'intact' if r['chain']['ok'] else '<strong>BROKEN</strong>'}</td></tr>"
        for r in found["records"])
    verdict = ("every record is what the store holds" if found["chain_ok"]
               else "a record does NOT match the store")
    body = f"""<main>{back}<h2>Lineage of order <span id=lineage-order>{html.escape(uuid)}
</span></h2><p>Account {html.escape(found['account_id'])}, {html.escape(str(found['symbol']))},
client id {html.escape(str(found['client_order_id']))}, status
<span id=lineage-status>{html.escape(str(found['status']))}</span>.
Chain: <span id=chain-verdict>{verdict}</span>.
{_link(f"/orders/{uuid}/lineage", "JSON (with every control's inputs)", "lineage-json")}</p>
<table id=lineage-records><tr><th>position</th><th>time (UTC)</th><th>event</th><th>actor</th>
<th>what</th><th>hash</th></tr>{rows}</table></main>"""
    return _page(f"marketlog lineage {uuid}", body)


def _principal(request: Request) -> Any:
    token = request.cookies.get(SESSION_COOKIE)
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        token = header[7:].strip()
    if not token or len(token) > MAX_TOKEN:
        return None
    return principal_of_token(request, token)



