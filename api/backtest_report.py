"""A backtest's HTML report: metrics tables and inline SVG charts (equity, drawdown, the
Monte Carlo distribution). One self-contained file: no scripts, no external assets."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from domain.backtest_metrics import drawdown_curve

WIDTH, HEIGHT, PAD = 720, 220, 36


def svg_line(values: Sequence[float], title: str, color: str = "#1f6feb") -> str:
    if not values:
        return f"<p>{escape(title)}: no data</p>"
    low, high = min(values), max(values)
    span = high - low or 1.0
    n = max(len(values) - 1, 1)
    points = " ".join(
        f"{PAD + i * (WIDTH - 2 * PAD) / n:.1f},"
        f"{HEIGHT - PAD - (v - low) / span * (HEIGHT - 2 * PAD):.1f}"
        for i, v in enumerate(values))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'role="img" aria-label="{escape(title)}">'
            f'<title>{escape(title)}</title>'
            f'<rect width="100%" height="100%" fill="#fff" stroke="#ddd"/>'
            f'<text x="{PAD}" y="20" font-size="13">{escape(title)}</text>'
            f'<text x="4" y="{PAD + 4}" font-size="10">{high:,.2f}</text>'
            f'<text x="4" y="{HEIGHT - PAD}" font-size="10">{low:,.2f}</text>'
            f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}"/>'
            "</svg>")


def svg_histogram(values: Sequence[float], title: str, bins: int = 20) -> str:
    if not values:
        return f"<p>{escape(title)}: no data</p>"
    low, high = min(values), max(values)
    width = (high - low) / bins or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(int((v - low) / width), bins - 1)] += 1
    top = max(counts)
    bar = (WIDTH - 2 * PAD) / bins
    rects = "".join(
        f'<rect x="{PAD + i * bar:.1f}" y="{HEIGHT - PAD - c / top * (HEIGHT - 2 * PAD):.1f}" '
        f'width="{bar - 1:.1f}" height="{c / top * (HEIGHT - 2 * PAD):.1f}" fill="#8250df">'
        f"<title>{low + i * width:,.2f} to {low + (i + 1) * width:,.2f}: {c}</title></rect>"
        for i, c in enumerate(counts))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
            f'<rect width="100%" height="100%" fill="#fff" stroke="#ddd"/>'
            f'<text x="{PAD}" y="20" font-size="13">{escape(title)}</text>{rects}'
            f'<text x="{PAD}" y="{HEIGHT - 8}" font-size="10">{low:,.2f}</text>'
            f'<text x="{WIDTH - PAD - 60}" y="{HEIGHT - 8}" font-size="10">{high:,.2f}</text>'
            "</svg>")


def _table(title: str, rows: dict[str, Any]) -> str:
    body = "".join(f"<tr><th>{escape(str(k))}</th><td>{_fmt(v)}</td></tr>"
                   for k, v in rows.items())
    return f"<h2>{escape(title)}</h2><table>{body}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.6g}"
    return escape(str(value))


def _page(title: str, body: str) -> str:
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{escape(title)}</title><style>body{{font-family:sans-serif;margin:2em}}"
            "table{border-collapse:collapse}th,td{border:1px solid #ddd;padding:3px 8px;"
            "text-align:right}th{text-align:left}</style></head>"
            f"<body><h1>{escape(title)}</h1>{body}</body></html>")


def backtest_html(result: dict[str, Any]) -> str:
    equity = [e for _, e in result["equity"]]
    parts = [
        _table("Run", {"strategy": result["strategy"], "ticks": result["ticks"],
                       "orders": result["orders"], "rejects": result["rejects"] or "none",
                       "fees": result["fees"],
                       "chain head": f"#{result['chain_head']['position']} "
                                     f"{result['chain_head']['hash'][:16]}"}),
        _table(f"Metrics ({result['strategy']})", result["metrics"]),
        svg_line(equity, "Equity (mark-to-market on the mid)"),
        svg_line([100 * d for d in drawdown_curve(equity)], "Drawdown (%)", "#cf222e"),
    ]
    for symbol, metrics in result["by_symbol"].items():
        parts.append(_table(f"Metrics: {symbol}", metrics))
    return _page(f"Backtest: {result['strategy']}", "".join(parts))


def monte_carlo_html(summary: dict[str, Any], final_pnls: Sequence[float]) -> str:
    parts = [
        _table("Distribution", {"runs": summary["runs"], "mean P&L": summary["mean_pnl"],
                                "probability of ruin": summary["probability_of_ruin"]}),
        _table("Final P&L percentiles", summary["pnl_percentiles"]),
        _table("Max drawdown percentiles", summary["drawdown_percentiles"]),
        svg_histogram(list(final_pnls), "Final P&L across runs"),
    ]
    return _page("Monte Carlo", "".join(parts))


def walk_forward_html(summary: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{w['window']}</td><td>{escape(str(w['best_params']))}</td>"
        f"<td>{_fmt(w['in_sample'])}</td><td>{_fmt(w['out_of_sample'])}</td>"
        f"<td>{_fmt(w['out_of_sample_pnl'])}</td></tr>" for w in summary["windows"])
    parts = [
        _table("In- vs out-of-sample", {k: summary[k] for k in (
            "mean_in_sample", "mean_out_of_sample", "out_of_sample_stderr", "degradation",
            "efficiency")}),
        "<h2>Windows</h2><table><tr><th>window</th><th>best parameters</th><th>in sample"
        f"</th><th>out of sample</th><th>OOS P&amp;L</th></tr>{rows}</table>",
        svg_line(summary["stitched_equity"], "Stitched out-of-sample equity"),
    ]
    return _page("Walk-forward", "".join(parts))
