"""The 15c3-5 report as a PDF file, made with fpdf2.

fpdf2 rather than reportlab: pure Python with no compiled parts (nothing to build on a
fresh machine), actively maintained, and its table and drawing primitives are all a
one-document report needs. ``render_pdf(report)`` returns the file's bytes; the first page
quotes the chain head and the report's SHA-256, each page's footer the SHA-256 again.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

from fpdf import FPDF

from api.report_html import CLOCK_HEADERS, ITEMS, accounts_text, clock_rows


def _latin(value: Any) -> str:
    # The PDF core fonts are Latin-1: anything else prints as "?" rather than failing.
    text = "-" if value is None else str(value)
    return text.encode("latin-1", "replace").decode("latin-1")


class _Document(FPDF):
    def __init__(self, sha256: str) -> None:
        super().__init__(orientation="L", format="A4")
        self.sha256 = sha256
        self.set_auto_page_break(auto=True, margin=15)
        self.set_creator("marketlog")

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", size=7)
        self.cell(0, 5, _latin(f"report SHA-256 {self.sha256}  -  page {self.page_no()}"),
                  align="C")


def _heading(pdf: FPDF, text: str, size: int = 12) -> None:
    pdf.set_font("Helvetica", "B", size)
    pdf.multi_cell(0, 7, _latin(text), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=8)


def _para(pdf: FPDF, text: str) -> None:
    pdf.set_font("Helvetica", size=8)
    pdf.multi_cell(0, 4.5, _latin(text), new_x="LMARGIN", new_y="NEXT")


def _fit(pdf: FPDF, text: str, width: float) -> str:
    """``text`` cut to ``width`` mm (with "..."): a row stays one line."""
    if pdf.get_string_width(text) <= width:
        return text
    while text and pdf.get_string_width(text + "...") > width:
        text = text[:-1]
    return text + "..."


def _table(pdf: FPDF, headers: list[str], rows: list[list[Any]]) -> None:
    """One line per row, equal columns, cells cut to fit (fpdf2's own table lays out every
    cell's wrapping: ~20 s for a thousand accounts, where this takes well under one)."""
    if not rows:
        _para(pdf, "None.")
        return
    width = (pdf.w - pdf.l_margin - pdf.r_margin) / len(headers)
    pdf.set_font("Helvetica", "B", 7)
    for h in headers:
        pdf.cell(width, 4.5, _fit(pdf, _latin(h), width - 1), border=1)
    pdf.ln()
    pdf.set_font("Helvetica", size=7)
    for values in rows:
        for v in values:
            pdf.cell(width, 4.5, _fit(pdf, _latin(v), width - 1), border=1)
        pdf.ln()
    pdf.ln(2)


def _line_chart(pdf: FPDF, title: str, points: list[list[Any]]) -> None:
    """Exposure (solid) against the limit (dashed) over the day's five-minute buckets."""
    if not points:
        return
    _para(pdf, title)
    x0, y0, w, h = pdf.l_margin + 15, pdf.get_y() + 2, 200.0, 40.0
    if y0 + h + 8 > pdf.h - pdf.b_margin:
        pdf.add_page()
        y0 = pdf.get_y() + 2
    values = [Decimal(p[1]) for p in points] + [Decimal(p[2]) for p in points if p[2]]
    top = max(values) or Decimal(1)
    n = max(len(points) - 1, 1)

    def xy(i: int, v: Decimal) -> tuple[float, float]:
        return x0 + w * i / n, y0 + h - float(v / top) * h

    pdf.set_draw_color(0, 0, 0)
    pdf.line(x0, y0 + h, x0 + w, y0 + h)
    pdf.line(x0, y0, x0, y0 + h)
    pdf.set_font("Helvetica", size=6)
    pdf.text(pdf.l_margin, y0 + 2, _latin(top))
    pdf.text(pdf.l_margin, y0 + h, "0")
    for column, color, dashed in ((2, (200, 0, 0), True), (1, (0, 50, 110), False)):
        pdf.set_draw_color(*color)
        if dashed:
            pdf.set_dash_pattern(dash=2, gap=1)
        path = [xy(i, Decimal(p[column])) for i, p in enumerate(points) if p[column]]
        if len(path) == 1:
            path = [path[0], (path[0][0] + 1, path[0][1])]
        for a, b in itertools.pairwise(path):
            pdf.line(a[0], a[1], b[0], b[1])
        pdf.set_dash_pattern()
    pdf.set_draw_color(0, 0, 0)
    pdf.set_y(y0 + h + 4)


def _bar_chart(pdf: FPDF, bars: list[tuple[str, int]]) -> None:
    if not bars:
        return
    top = max(v for _, v in bars) or 1
    pdf.set_font("Helvetica", size=7)
    for label, value in bars:
        y = pdf.get_y()
        pdf.text(pdf.l_margin, y + 3, _latin(label))
        pdf.set_fill_color(170, 50, 50)
        pdf.rect(pdf.l_margin + 35, y, 150 * value / top, 3.5, style="F")
        pdf.text(pdf.l_margin + 37 + 150 * value / top, y + 3, str(value))
        pdf.set_y(y + 5)
    pdf.ln(2)


def _day(pdf: FPDF, d: dict[str, Any]) -> None:
    pdf.add_page()
    _heading(pdf, f"SEC Rule 15c3-5 daily report - {d['trading_date']}", 15)
    head = d["chain_head"]
    _para(pdf, f"Chain head covered: position {head['position']}, hash {head['hash']}")
    _para(pdf, f"Report SHA-256: {d.get('sha256')}")
    day = d["trading_day"]
    _para(pdf, f"Trading day opened {day['opened_at']}, closed {day['closed_at']} "
               f"({day['status']}); exposure mode {day['exposure_mode']}. Orders: "
               f"{d['orders']['accepted']} accepted, {d['orders']['rejected']} rejected.")
    titles = dict(ITEMS)
    use = d["limit_use"]
    firm = use["firm"]
    _heading(pdf, titles["limit_use"])
    _table(pdf, ["scope", "limit", "limit source", "peak", "peak at", "peak use %", "end of day",
                 "EOD use %", "breaches"],
           [["firm", firm["credit_limit"], firm["credit_limit_source"], firm["peak_exposure"],
             firm["peak_at"], firm["peak_use_pct"], firm["end_of_day_exposure"],
             firm["end_of_day_use_pct"], firm["breaches"]]]
           + [[a["account_id"], a["credit_limit"], "decision event", a["peak_exposure"],
               a["peak_at"], a["peak_use_pct"], a["end_of_day_exposure"],
               a["end_of_day_use_pct"], a["breaches"]] for a in use["accounts"]])
    for s in use["intraday"]:
        _line_chart(pdf, f"Limit use vs limit over the day: {s['scope']}", s["points"])
    rejections = d["rejections"]["by_control"]
    _heading(pdf, titles["rejections"])
    _bar_chart(pdf, [(r["control"], r["total"]) for r in rejections])
    _table(pdf, ["control", "total", "by account"],
           [[r["control"], r["total"], accounts_text(r["by_account"])] for r in rejections])
    _heading(pdf, titles["overrides"])
    _para(pdf, d["overrides"]["statement"])
    _heading(pdf, titles["limit_changes"])
    _table(pdf, ["change", "scope", "field", "old", "new", "requested by", "reason",
                 "approved by", "expires", "reverted", "status"],
           [[c["change_id"][:8], c["scope"], c["field"], c["old_value"], c["new_value"],
             c["requested_by"], c["reason"], c["approved_by"], c["expires_at"],
             "yes" if c["reverted"] else "no", c["status"]]
            for c in d["limit_changes"]["changes"]])
    _para(pdf, "Temporary changes still open: "
               + (", ".join(d["limit_changes"]["temporary_still_open"]) or "none"))
    kill = d["kill_switches_and_throttles"]
    _heading(pdf, titles["kill_switches_and_throttles"])
    _table(pdf, ["event", "scope", "at", "by", "trigger", "reason", "orders canceled"],
           [[k["event"], k["scope"], k["at"], k["by"], k["trigger"], k["reason"],
             k["canceled_orders"]] for k in kill["kill_switch_events"]])
    _para(pdf, "Throttle (rate) rejections: "
          + (accounts_text(kill["throttle_rejections"]) or "none"))
    _heading(pdf, titles["entitlement_changes"])
    _table(pdf, ["event", "user", "account", "role", "by", "at", "reason"],
           [[x["event"], x["username"], x["account_id"], x["role"], x["by"], x["at"],
             x["reason"]] for x in d["entitlement_changes"]])
    post = d["post_trade"]
    _heading(pdf, titles["post_trade"])
    _table(pdf, ["fills delivered", "quantity", "sequence gaps", "complete", "taker fills",
                 "max delay (ns)"],
           [[post["fills_delivered"], post["fill_quantity"], post["sequence_gaps"],
             post["complete"], post["taker_fills"], post["max_delay_ns"]]])
    _para(pdf, d["definitions"]["fill_delay"])
    _heading(pdf, titles["clock_exceptions"])
    _table(pdf, CLOCK_HEADERS, clock_rows(d["clock_exceptions"]))
    _para(pdf, d["clock_exceptions"]["statement"])
    _heading(pdf, titles["coverage"])
    _para(pdf, d["coverage"]["statement"])
    _table(pdf, ["control", "applicable", "checked", "rejected", "share %"],
           [[c["control"], c["applicable"], c["checked"], c["rejected"], c["share_pct"]]
            for c in d["coverage"]["controls"]])
    _heading(pdf, "Definitions")
    for key, text in d["definitions"].items():
        _para(pdf, f"{key}: {text}")


def render_pdf(report: dict[str, Any]) -> bytes:
    """The PDF document for a day's report or a range of days."""
    pdf = _Document(report["sha256"])
    pdf.set_title(_latin(f"SEC Rule 15c3-5 report {report.get('trading_date') or ''}"))
    if "days" in report:
        pdf.add_page()
        _heading(pdf, f"SEC Rule 15c3-5 report {report['from']} to {report['to']}", 15)
        head = report["chain_head"] or {}
        _para(pdf, f"Chain head covered: position {head.get('position')}, "
                   f"hash {head.get('hash')}")
        _para(pdf, f"Report SHA-256: {report['sha256']}")
        _table(pdf, list(report["totals"]), [list(report["totals"].values())])
        for d in report["days"]:
            _day(pdf, d)
    else:
        _day(pdf, report)
    return bytes(pdf.output())
