"""CLI commands for records (issue 8): ``lineage``, ``export`` and ``export-verify``.

``marketlog lineage ORDER_ID`` prints an order's timeline with the inputs of each decision,
the approvals of the limit versions in force and each record's chain check;
``marketlog export --from D --to D [--account A] --out DIR`` writes audit.jsonl, audit.csv
and manifest.json (SEC 17a-4 exports); ``marketlog export-verify DIR`` is the one command
an auditor runs on such a directory: files against the manifest, every record against the
store, exit 1 on any problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import orjson
import psycopg
import typer
from eventsourcing.persistence import PersistenceError
from rich.markup import escape

from infrastructure.codec import UndecodableEvent
from infrastructure.event_store import EventStore
from infrastructure.store_schema import StoreNotInitialised


def lineage(
    order_id: Annotated[str, typer.Argument(help="The order's id (a UUID).")],
    as_json: Annotated[bool, typer.Option("--json", help="The lineage as JSON.")] = False,
) -> None:
    """Print an order's lineage: every event of the order in log order, the controls that
    ran and the inputs each used, who approved each limit version in force, fills with
    trade id and counterparty, and each record's chain links checked against the store.

    Exit 1 when a record's chain check fails, 2 when the order is unknown.
    """
    from api import cli  # at call time: api.cli imports this module
    from infrastructure.bootstrap import caught_up_read_side
    from projections.lineage import order_lineage

    try:
        UUID(order_id)
    except ValueError:
        raise cli._fail(f"{order_id!r} is not an order id (a UUID)", 2) from None
    settings = cli._settings()
    cli._open_store(settings).close()  # a clear error instead of an empty new store
    read = caught_up_read_side(settings)
    try:
        with read.read_models.connect() as conn:
            found = order_lineage(conn, str(UUID(order_id)), read.store)
    finally:
        read.close()
    if found is None:
        raise cli._fail(f"no order {order_id} in the audit trail", 2)
    if as_json:
        typer.echo(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())
    else:
        _print_lineage(found)
    if not found["chain_ok"]:
        raise typer.Exit(1)


def _print_lineage(found: dict[str, Any]) -> None:
    from api import cli  # at call time: api.cli imports this module

    console = cli._console()
    console.print(f"[bold]Order {found['order_id']}[/] {escape(found['account_id'] or '')} "
                  f"{escape(found['symbol'] or '')} client id "
                  f"{escape(found['client_order_id'] or '')}, status {found['status']}")
    table = cli._table(f"{len(found['records'])} events in log order")
    for column in ("#", "time (UTC)", "event", "who", "what", "chain"):
        table.add_column(column, overflow="fold")
    for r in found["records"]:
        c = r["chain"]
        check = ("ok" if c["ok"] else "[red]FAIL[/] " + ", ".join(
            what for what, bad in (("row hash", not c["recomputed"]),
                                   (f"store {c['store']}", c["store"] not in (None, "same")),
                                   ("link", c["linked"] is False)) if bad))
        table.add_row(str(r["position"]), r["timestamp"], r["event_type"],
                      f"{escape(r['actor'])}/{r['source']}", escape(r["summary"]),
                      f"{check}\nprev {c['prev_hash'][:12]}…\nhash {c['hash'][:12]}…")
    console.print(table)
    for r in found["records"]:
        d = r["details"]
        if "controls" not in d:
            continue
        console.print(f"[bold]#{r['position']} {r['event_type']}[/]: controls "
                      f"{', '.join(d['controls'])}")
        if d.get("reference_price") is not None:
            console.print(f"  reference price {d['reference_price']} "
                          f"({d.get('reference_source')}, as of {d.get('reference_as_of')}); "
                          f"exposure before {d.get('exposure_before')}"
                          + (f", firm {d['firm_exposure_before']}"
                             if d.get("firm_exposure_before") is not None else ""))
        for name, value in (d.get("inputs") or {}).items():
            console.print(f"  input {name}: {escape(str(value))}")
        for lim in r.get("limits_in_force", []):
            console.print(f"  limits {lim['scope']} v{lim['version']}: {_origin(lim)}")


def _origin(lim: dict[str, Any]) -> str:
    if lim["origin"] == "approved":
        request = lim.get("request") or {}
        return escape(f"{lim['field']} {lim['old_value']} -> {lim['new_value']}, requested by "
                      f"{request.get('requester')} ({request.get('reason')}), approved by "
                      f"{lim['approver']} at {lim['at']} ({lim['reason']}), position "
                      f"{lim['position']}")
    if lim["origin"] == "reverted":
        return escape(f"{lim['field']} reverted to {lim['restored_value']} at {lim['at']} "
                      f"({lim['reason']})")
    return lim["origin"]  # type: ignore[no-any-return]


def export(
    from_: Annotated[str | None, typer.Option(
        "--from", help="UTC date (YYYY-MM-DD) or ISO 8601 time, inclusive.")] = None,
    to: Annotated[str | None, typer.Option(
        "--to", help="UTC date (through its end) or ISO 8601 time (exclusive).")] = None,
    account: Annotated[str | None, typer.Option(help="Only this account's records.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Directory to write the files into.")
                   ] = Path("export"),
    through: Annotated[int | None, typer.Option(
        min=0, help="Last log position to consider (default: the store's head now).")] = None,
) -> None:
    """Export the audit trail (SEC 17a-4): audit.jsonl, audit.csv and manifest.json in --out.

    The manifest holds the filters, the record count, first and last position, each file's
    SHA-256 and the store's chain head at export time. Check it with `marketlog
    export-verify DIR`.
    """
    from api import cli  # at call time: api.cli imports this module
    from infrastructure.bootstrap import caught_up_read_side
    from projections import exports

    try:
        sel = exports.selection(0, from_, to, account)
    except exports.BadBound as exc:
        raise cli._fail(f"--{exc}", 2) from None
    except ValueError as exc:
        raise cli._fail(str(exc), 2) from None
    if out.exists() and any(out.iterdir()):
        raise cli._fail(f"{out} is not empty: an export goes into a new directory", 2)
    settings = cli._settings()
    store = cli._open_store(settings)
    try:
        head = exports.chain_head(store)
        if through is not None:
            if through > head.position:
                raise cli._fail(f"--through {through}: the store's head is at "
                                f"{head.position}", 2)
            head = exports.chain_head(store, through)
    finally:
        store.close()
    read = caught_up_read_side(settings, head.position)
    try:
        if read.projections.position < head.position:
            raise cli._fail(f"the read models reached position {read.projections.position}, "
                        f"not the store's head {head.position}")
        sel = exports.Selection(head.position, sel.since_ns, sel.until_ns, sel.account_id,
                                sel.from_text, sel.to_text)
        manifest = exports.write_export(read.read_models, sel, head, read.store.store_id, out)
    finally:
        read.close()
    cli._console().print(
        f"exported {manifest['records']:,} records (positions {manifest['first_position']}"
        f"-{manifest['last_position']}) to {escape(str(out))}: {exports.JSONL_NAME}, "
        f"{exports.CSV_NAME}, {exports.MANIFEST_NAME}; chain head {head.position} "
        f"{head.hash}")


def export_verify(
    directory: Annotated[Path, typer.Argument(help="An export directory (manifest.json, "
                                                   "audit.jsonl, audit.csv).")],
) -> None:
    """Verify an export: each file's SHA-256 against the manifest, and every record against
    the store (same position, same bytes, its hash and chain links intact, none missing or
    added, and the store still ending at the manifest's chain head). Names each problem by
    file, line and position. Exit 1 on any problem, 2 when there is nothing to verify.

    Connects as MARKETLOG_READER_DATABASE_URL when set (a SELECT-only role).
    """
    from api import cli  # at call time: api.cli imports this module
    from projections.exports import verify_export

    if not directory.is_dir():
        raise cli._fail(f"{directory} is not a directory", 2)
    settings = cli._settings()
    if not settings.uses_postgres and not settings.sqlite_store_path.exists():
        raise cli._fail(f"no event store at {settings.sqlite_store_path.resolve()}", 2)
    try:
        store = EventStore.open(settings, reader=True)
    except (StoreNotInitialised, psycopg.Error, PersistenceError) as exc:
        raise cli._fail(str(exc), 2) from None
    try:
        report = verify_export(directory, store)
    except UndecodableEvent as exc:
        raise cli._fail(str(exc)) from None
    finally:
        store.close()
    console = cli._console()
    if report.ok:
        m = report.manifest or {}
        console.print(f"export OK: {report.records:,} records in both files match the store "
                      f"(positions {m.get('first_position')}-{m.get('last_position')}); "
                      f"{report.store_records:,} store records chained up to the manifest's "
                      f"head {m['chain_head']['position']} {m['chain_head']['hash']}")
        return
    console.print(f"[red]export verification FAILED[/]: {len(report.findings)} problem"
                  f"{'' if len(report.findings) == 1 else 's'}")
    for finding in report.findings:
        console.print(f"  {escape(str(finding))}")
    raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Called by api/cli.py with ITS app: under ``python -m api.cli`` that module is
    ``__main__``, and commands put on an imported ``api.cli.app`` would never be seen."""
    app.command()(lineage)
    app.command()(export)
    app.command("export-verify")(export_verify)
