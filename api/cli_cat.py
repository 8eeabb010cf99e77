"""``marketlog cat``: the FINRA CAT order event files of a trading day (projections/cat.py),
written from the read models after catching them up with the log; the same bytes as
``GET /cat/{date}/order-events`` and ``GET /cat/{date}/metadata``. Registered on ``marketlog``
at the end of api/cli.py.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from infrastructure.config import load_config
from projections.cat import RECORD_TYPES, CatError, Firm, generate

ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def cat(
    day: Annotated[str, typer.Option("--date", metavar="YYYY-MM-DD",
                                     help="The trading day (its TradingDayOpened date).")],
    out: Annotated[Path, typer.Option("--out", file_okay=False, dir_okay=True,
                                      help="Directory to write both files into.")],
) -> None:
    """Write the day's CAT order events (`<IMID>_<YYYYMMDD>_OrderEvents_000001.json.bz2`) and
    their metadata (`....meta.json`: record counts, SHA-256) into --out.

    Every record is validated against its JSON Schema first; a record that fails stops
    the command (exit 1) naming it, and nothing is written.
    """
    from api.cli import _console, _fail, _open_store, _settings, _table
    from infrastructure.bootstrap import caught_up_read_side

    try:
        # Exactly YYYY-MM-DD, as the API takes it (fromisoformat alone also reads 20260102).
        if not ISO_DATE.fullmatch(day):
            raise ValueError(day)
        trading_date = date.fromisoformat(day)
    except ValueError:
        raise _fail(f"--date: {day!r} is not a date (YYYY-MM-DD)", 2) from None
    settings = _settings()
    firm = Firm.of(load_config(settings.config_file).cat)
    _open_store(settings).close()  # a clear error instead of an empty new store
    read = caught_up_read_side(settings)
    try:
        with read.read_models.connect() as conn:
            files = generate(conn, firm, trading_date)
    except CatError as exc:
        raise _fail(str(exc), 1) from None
    finally:
        read.close()
    out.mkdir(parents=True, exist_ok=True)
    (out / files.data_name).write_bytes(files.data)
    (out / files.meta_name).write_bytes(files.meta)
    console = _console()
    table = _table(f"CAT order events of {trading_date} ({firm.imid})")
    table.add_column("type", no_wrap=True)
    table.add_column("records", justify="right")
    for kind in RECORD_TYPES:
        table.add_row(kind, f"{files.counts[kind]:,}")
    table.add_row("total", f"{files.records:,}")
    console.print(table)
    console.print(f"data     {out / files.data_name}\nmetadata {out / files.meta_name}\n"
                  f"sha256   {files.sha256}")
