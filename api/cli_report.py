"""``marketlog report``: the daily 15c3-5 report and the calibration table, from the read
models (the live ones, or any other database with ``--url``, e.g. a replay's)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import orjson
import sqlalchemy as sa
import typer

from api.cli import _console, _fail, _redacted, _settings

report_app = typer.Typer(help="The daily SEC Rule 15c3-5 report and the limit calibration.",
                         no_args_is_help=True)

UrlOption = Annotated[str | None, typer.Option(
    "--url", help="Read-model database to report from; default the live one.")]


def _date(text: str | None, option: str) -> str | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text).isoformat() if len(text) == 10 else \
            date.fromisoformat("invalid").isoformat()
    except ValueError:
        raise _fail(f"{option} {text!r} is not a date YYYY-MM-DD", 2) from None


def _with_read_models(url: str | None, read: Callable[[sa.Connection, Decimal], Any]) -> Any:
    from infrastructure.bootstrap import read_models_engine
    from infrastructure.config import load_config
    from projections.report_15c3_5 import NoTradingDay

    settings = _settings()
    # The log records the firm's credit limit only through its changes; the configured
    # seed is what was in force before any (the report names which it used).
    firm_limit = load_config(settings.config_file).firm.credit_limit
    target = url or settings.read_models_url
    engine = read_models_engine(target)
    try:
        with engine.connect() as conn:
            return read(conn, firm_limit)
    except NoTradingDay as exc:
        raise _fail(str(exc), 1) from None
    except sa.exc.SQLAlchemyError as exc:
        raise _fail(f"cannot read {_redacted(target)}: {exc}") from None
    finally:
        engine.dispose()


def _write(path: Path | None, data: bytes, what: str) -> None:
    if path is not None:
        path.write_bytes(data)
        _console().print(f"{what} written to {path}")


@report_app.command("15c3-5")
def report_15c3_5(
    on: Annotated[str, typer.Option("--date", help="The trading date (or the first of a "
                                                   "range with --to), YYYY-MM-DD.")],
    to: Annotated[str | None, typer.Option("--to", help="Last trading date of a range.")] = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="Write the JSON here.")] = None,
    html_file: Annotated[Path | None, typer.Option("--html", help="Write the HTML here.")] = None,
    pdf_file: Annotated[Path | None, typer.Option("--pdf", help="Write the PDF here.")] = None,
    url: UrlOption = None,
) -> None:
    """The daily 15c3-5 report: every item of the compliance checklist, its chain head and
    its SHA-256. Without --json/--html/--pdf the JSON goes to standard output."""
    from api.report_html import render_html
    from api.report_pdf import render_pdf
    from projections import report_15c3_5 as r

    first = _date(on, "--date")
    last = _date(to, "--to")
    assert first is not None
    if last is not None and last < first:
        raise _fail(f"--to {last} is before --date {first}", 2)
    report = _with_read_models(url, lambda conn, limit: (
        r.daily_report(conn, first, limit) if last is None
        else r.range_report(conn, first, last, limit)))
    data = orjson.dumps(report, option=orjson.OPT_INDENT_2)
    if json_file is None and html_file is None and pdf_file is None:
        typer.echo(data.decode())
        return
    _write(json_file, data, "JSON")
    _write(html_file, render_html(report).encode(), "HTML")
    _write(pdf_file, render_pdf(report), "PDF")
    _console().print(f"report SHA-256 {report['sha256']}")


@report_app.command("calibration")
def calibration(
    days: Annotated[int | None, typer.Option("--days", min=1, help="The last N trading days.")
                    ] = None,
    first: Annotated[str | None, typer.Option("--from", help="First trading date.")] = None,
    last: Annotated[str | None, typer.Option("--to", help="Last trading date.")] = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="Write the JSON here.")] = None,
    url: UrlOption = None,
) -> None:
    """Peak use against the limit per account over N trading days (examiners ask for it)."""
    from projections import report_15c3_5 as r

    start, end = _date(first, "--from"), _date(last, "--to")
    if days is None and (start is None or end is None):
        raise _fail("--days N (or both --from and --to) is required", 2)
    if start is not None and end is not None and start > end:
        raise _fail(f"--from {start} is after --to {end}", 2)
    table = _with_read_models(url, lambda conn, limit: r.calibration(
        conn, r.trading_dates(conn, start, end, days), limit))
    if json_file is not None:
        _write(json_file, orjson.dumps(table, option=orjson.OPT_INDENT_2), "JSON")
        return
    from api.cli import _table

    out = _table(f"limit calibration, {table['from']} to {table['to']}")
    for column in ("scope", "days", "limit", "max peak", "max use %", "mean use %",
                   "days with breach", "assessment"):
        out.add_column(column)
    for s in table["scopes"]:
        out.add_row(s["scope"], str(s["days"]), str(s["credit_limit"]),
                    str(s["max_peak_exposure"]), str(s["max_peak_use_pct"]),
                    str(s["mean_peak_use_pct"]), str(s["days_with_breach"]), s["assessment"])
    _console().print(out)
    _console().print(f"SHA-256 {table['sha256']}")
