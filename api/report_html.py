"""The 15c3-5 report as a human-readable, printable HTML document (no JavaScript).

``render_html(report)`` takes the report dict (projections/report_15c3_5.py) and returns
the whole document as a string; charts are inline SVG drawn here, server-side. The page
quotes the chain head and the report's SHA-256, so a printed copy names what it covers.
"""

from __future__ import annotations

from decimal import Decimal
from html import escape
from typing import Any

CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:2em;color:#111;max-width:1100px}
h1{font-size:1.5em}h2{font-size:1.15em;border-bottom:1px solid #999;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.85em}
td,th{border:1px solid #bbb;padding:2px 6px;text-align:left}th{background:#eee}
.seal{font-family:monospace;font-size:.85em;background:#f4f4f4;padding:.5em}
.gap{color:#a00;font-weight:bold}.ok{color:#060;font-weight:bold}
@media print{body{margin:0}h2{page-break-after:avoid}section{page-break-inside:avoid}}
"""

ITEMS = (
    ("limit_use", "1. Limit use per account and firm-wide"),
    ("rejections", "2. Rejections by control and account"),
    ("overrides", "3. Overrides of soft blocks"),
    ("limit_changes", "4. Limit changes"),
    ("kill_switches_and_throttles", "5. Kill switch and throttle trips and resets"),
    ("entitlement_changes", "6. Entitlement changes"),
    ("post_trade", "7. Post-trade surveillance completeness"),
    ("clock_exceptions", "8. Clock exceptions"),
    ("coverage", "9. Control coverage"),
)


SHOWN_ACCOUNTS = 20  # per cell; the JSON has every account


def accounts_text(by_account: dict[str, int]) -> str:
    """"ACC: n, ..." for the accounts with the most, the rest summed (a printable cell)."""
    ranked = sorted(by_account.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{a}: {n}" for a, n in ranked[:SHOWN_ACCOUNTS])
    rest = ranked[SHOWN_ACCOUNTS:]
    if rest:
        text += f" and {len(rest)} more accounts ({sum(n for _, n in rest)})"
    return text


CLOCK_HEADERS = ["state", "where", "at", "system clock", "engine or reference clock",
                 "step (ns)", "tolerance (ns)"]


def clock_rows(item: dict[str, Any]) -> list[list[Any]]:
    """Item 8's table: each clock exception as the report records it."""
    return [[x["state"], x["where"], x["at"], x["system_clock"], x["engine_clock"],
             x["step_ns"], x["tolerance_ns"]] for x in item["exceptions"]]


def _e(value: Any) -> str:
    return "&mdash;" if value is None else escape(str(value))


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return "<p>None.</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def line_chart(title: str, points: list[list[Any]], width: int = 640, height: int = 180
               ) -> str:
    """Exposure (solid) against the limit (dashed) over the day's five-minute buckets."""
    values = [Decimal(p[1]) for p in points] + [Decimal(p[2]) for p in points if p[2]]
    top = max(values, default=Decimal(1)) or Decimal(1)
    n = max(len(points) - 1, 1)
    left, bottom = 60, height - 20

    def xy(i: int, v: Decimal) -> str:
        x = left + (width - left - 10) * i / n
        y = bottom - float(v / top) * (bottom - 10)
        return f"{x:.1f},{y:.1f}"

    use = " ".join(xy(i, Decimal(p[1])) for i, p in enumerate(points))
    limit = " ".join(xy(i, Decimal(p[2])) for i, p in enumerate(points) if p[2])
    first = points[0][0][11:16] if points else ""
    last = points[-1][0][11:16] if points else ""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
            f'height="{height}" aria-label="{escape(title)}">'
            f"<title>{escape(title)}</title>"
            f'<line x1="{left}" y1="{bottom}" x2="{width - 10}" y2="{bottom}" stroke="#333"/>'
            f'<line x1="{left}" y1="10" x2="{left}" y2="{bottom}" stroke="#333"/>'
            f'<text x="2" y="14" font-size="10">{escape(str(top))}</text>'
            f'<text x="2" y="{bottom}" font-size="10">0</text>'
            f'<text x="{left}" y="{height - 4}" font-size="10">{first} UTC</text>'
            f'<text x="{width - 60}" y="{height - 4}" font-size="10">{last} UTC</text>'
            f'<polyline fill="none" stroke="#c00" stroke-dasharray="6 3" points="{limit}"/>'
            f'<polyline fill="none" stroke="#036" stroke-width="2" points="{use}"/>'
            f'<circle cx="{use.split()[-1].split(",")[0] if use else left}" '
            f'cy="{use.split()[-1].split(",")[1] if use else bottom}" r="2" fill="#036"/>'
            "</svg>")


def bar_chart(title: str, bars: list[tuple[str, int]], width: int = 640) -> str:
    """Rejections per control, one horizontal bar each."""
    height = 20 * len(bars) + 10
    top = max((v for _, v in bars), default=1) or 1
    rows = []
    for i, (label, value) in enumerate(bars):
        w = (width - 190) * value / top
        y = 5 + 20 * i
        rows.append(f'<text x="0" y="{y + 12}" font-size="11">{escape(label)}</text>'
                    f'<rect x="130" y="{y}" width="{w:.1f}" height="14" fill="#a33"/>'
                    f'<text x="{135 + w:.1f}" y="{y + 12}" font-size="11">{value}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
            f'height="{height}" aria-label="{escape(title)}"><title>{escape(title)}</title>'
            + "".join(rows) + "</svg>")


def _day(d: dict[str, Any]) -> str:
    use = d["limit_use"]
    firm = use["firm"]
    parts = [f"<h1>SEC Rule 15c3-5 daily report &mdash; {_e(d['trading_date'])}</h1>",
             _seal(d),
             f"<p>Trading day opened {_e(d['trading_day']['opened_at'])}, closed "
             f"{_e(d['trading_day']['closed_at'])} ({_e(d['trading_day']['status'])}); "
             f"exposure mode {_e(d['trading_day']['exposure_mode'])}. Orders: "
             f"{d['orders']['accepted']} accepted, {d['orders']['rejected']} rejected.</p>"]
    sections = {
        "limit_use": _table(
            ["scope", "limit", "limit source", "peak", "peak at", "peak use %",
             "end of day", "EOD use %", "breaches"],
            [["firm", firm["credit_limit"], firm["credit_limit_source"], firm["peak_exposure"],
              firm["peak_at"], firm["peak_use_pct"], firm["end_of_day_exposure"],
              firm["end_of_day_use_pct"], firm["breaches"]]]
            + [[a["account_id"], a["credit_limit"], "decision event", a["peak_exposure"],
                a["peak_at"], a["peak_use_pct"], a["end_of_day_exposure"],
                a["end_of_day_use_pct"], a["breaches"]] for a in use["accounts"]])
        + "".join(f"<h3>Limit use vs limit over the day: {escape(s['scope'])}</h3>"
                  + line_chart(f"exposure vs limit, {s['scope']}", s["points"])
                  for s in use["intraday"] if s["points"]),
        "rejections": (bar_chart("rejections by control",
                                 [(r["control"], r["total"]) for r in
                                  d["rejections"]["by_control"]])
                       if d["rejections"]["by_control"] else "")
        + _table(["control", "total", "by account"],
                 [[r["control"], r["total"], accounts_text(r["by_account"])]
                  for r in d["rejections"]["by_control"]]),
        "overrides": f"<p>{_e(d['overrides']['statement'])}</p>",
        "limit_changes": _table(
            ["change", "scope", "field", "old", "new", "requested by", "reason", "approved by",
             "approved at", "expires", "reverted", "status"],
            [[c["change_id"][:8], c["scope"], c["field"], c["old_value"], c["new_value"],
              c["requested_by"], c["reason"], c["approved_by"], c["approved_at"],
              c["expires_at"], "yes" if c["reverted"] else "no", c["status"]]
             for c in d["limit_changes"]["changes"]])
        + f"<p>Temporary changes still open: "
          f"{_e(', '.join(d['limit_changes']['temporary_still_open']) or 'none')}</p>",
        "kill_switches_and_throttles": _table(
            ["event", "scope", "at", "by", "trigger", "reason", "orders canceled"],
            [[k["event"], k["scope"], k["at"], k["by"], k["trigger"], k["reason"],
              k["canceled_orders"]] for k in d["kill_switches_and_throttles"][
                "kill_switch_events"]])
        + "<p>Throttle (rate) rejections: " + _e(accounts_text(
            d["kill_switches_and_throttles"]["throttle_rejections"]) or "none")
        + "; orders refused by a tripped kill switch: " + _e(accounts_text(
            d["kill_switches_and_throttles"]["kill_switch_rejections"]) or "none") + "</p>",
        "entitlement_changes": _table(
            ["event", "user", "account", "role", "by", "at", "reason"],
            [[x["event"], x["username"], x["account_id"], x["role"], x["by"], x["at"],
              x["reason"]] for x in d["entitlement_changes"]]),
        "post_trade": _table(
            ["fills delivered", "quantity", "sequence gaps", "complete", "taker fills",
             "max delay (ns)"],
            [[d["post_trade"]["fills_delivered"], d["post_trade"]["fill_quantity"],
              d["post_trade"]["sequence_gaps"], d["post_trade"]["complete"],
              d["post_trade"]["taker_fills"], d["post_trade"]["max_delay_ns"]]])
        + f"<p>{_e(d['definitions']['fill_delay'])}</p>",
        "clock_exceptions": _table(CLOCK_HEADERS, clock_rows(d["clock_exceptions"]))
        + f"<p>{_e(d['clock_exceptions']['statement'])}</p>",
        "coverage": (f'<p class="{"ok" if d["coverage"]["complete"] else "gap"}">'
                     f"{_e(d['coverage']['statement'])}</p>")
        + _table(["control", "applicable", "checked", "rejected", "share %"],
                 [[c["control"], c["applicable"], c["checked"], c["rejected"], c["share_pct"]]
                  for c in d["coverage"]["controls"]]),
    }
    for key, title in ITEMS:
        parts.append(f'<section id="{key}"><h2>{escape(title)}</h2>{sections[key]}</section>')
    parts.append("<section><h2>Definitions</h2><dl>" + "".join(
        f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in d["definitions"].items())
        + "</dl></section>")
    return "".join(parts)


def _seal(report: dict[str, Any]) -> str:
    head = report.get("chain_head") or {}
    return (f'<p class="seal">chain head: position {_e(head.get("position"))}, hash '
            f'{_e(head.get("hash"))}<br>report SHA-256: {_e(report.get("sha256"))}</p>')


def render_html(report: dict[str, Any]) -> str:
    """The whole HTML document for a day's report or a range of days."""
    if "days" in report:
        title = f"SEC Rule 15c3-5 report {report['from']} to {report['to']}"
        body = (f"<h1>{escape(title)}</h1>{_seal(report)}"
                + _table(list(report["totals"]), [list(report["totals"].values())])
                + "".join(f'<article style="page-break-before:always">{_day(d)}</article>'
                          for d in report["days"]))
    else:
        title = f"SEC Rule 15c3-5 daily report {report['trading_date']}"
        body = _day(report)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head>"
            f"<body>{body}</body></html>")
