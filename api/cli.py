"""The ``marketlog`` command line: demo session, API server, chain check, rebuild, audit trail.

Every command builds ``Settings()`` (MARKETLOG_* environment variables) once and passes it on;
nothing else reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import psycopg
import sqlalchemy as sa
import typer
from eventsourcing.persistence import PersistenceError
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from api.demo import DEFAULT_ORDERS, DEFAULT_SEED, DemoResult, run_demo
from domain.values import Source
from infrastructure.codec import UndecodableEvent
from infrastructure.event_store import EventStore
from infrastructure.settings import Settings
from infrastructure.store_schema import StoreNotInitialised
from projections.queries import iso_timestamp

app = typer.Typer(
    name="marketlog",
    help="marketlog: compliance-first trading. Every order, fill and risk decision is an "
    "immutable, hash-chained event. Configuration comes from MARKETLOG_* environment variables "
    "(MARKETLOG_DATA_DIR, MARKETLOG_DATABASE_URL, MARKETLOG_READ_DATABASE_URL, ...).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",  # reflows docstring paragraphs to the terminal width
    pretty_exceptions_show_locals=False,  # locals may hold connection URLs with passwords
)

SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def _console() -> Console:
    return Console(highlight=False)


def _fail(message: str, code: int = 1) -> typer.Exit:
    Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise _fail(f"invalid MARKETLOG_* settings:\n{exc}", 2) from None


def _open_store(settings: Settings) -> EventStore:
    """The configured event store; refuses to create an empty SQLite file by looking at it."""
    if not settings.uses_postgres and not settings.sqlite_store_path.exists():
        raise _fail(f"no event store at {settings.sqlite_store_path.resolve()} "
                    "(set MARKETLOG_DATA_DIR, or run `marketlog demo` first)", 2)
    return EventStore.open(settings)


def _table(title: str, **options: Any) -> Table:
    return Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD,
                 show_edge=False, pad_edge=False, **options)


def _redacted(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


# --------------------------------------------------------------------------- demo


@app.command()
def demo(
    orders: Annotated[int, typer.Option(
        "--orders", "-n", min=1, max=1_000_000, help="Orders the traders send in total.")
    ] = DEFAULT_ORDERS,
    seed: Annotated[int, typer.Option(
        help="Seed of the traders' decisions: the same seed replays the same session.")
    ] = DEFAULT_SEED,
    fresh: Annotated[bool, typer.Option(
        "--fresh/--keep",
        help="--fresh deletes the demo's SQLite files (events and read models) in "
        "MARKETLOG_DATA_DIR first, so each run starts clean; --keep adds to them.")
    ] = True,
    use_configured_store: Annotated[bool, typer.Option(
        "--use-configured-store",
        help="Run against MARKETLOG_DATABASE_URL / MARKETLOG_READ_DATABASE_URL instead of "
        "refusing (requires --keep: the demo never deletes a configured database).")
    ] = False,
) -> None:
    """Run a seeded trading session on the embedded default (SQLite in MARKETLOG_DATA_DIR).

    Scripted traders (a market maker, a momentum trader, a fat finger, a trader probing
    restricted and unknown symbols, a duplicate resender and one exhausting her credit) send
    market, limit, IOC, FOK, DAY and GTC orders, cancels and replaces against the venue's
    synthetic liquidity provider, breaching every pre-trade control this configuration can
    breach. The session ends with an end-of-day; then the read models are caught up and the
    positions, rejections by control and account, fills, throughput and hash-chain head are
    printed.
    """
    settings = _settings()
    configured = settings.database_url or settings.read_database_url
    if configured and not use_configured_store:
        raise _fail("MARKETLOG_DATABASE_URL or MARKETLOG_READ_DATABASE_URL is set; the demo runs "
                    "on the embedded SQLite default. Unset them, or pass "
                    "--use-configured-store --keep to write the demo into that database.", 2)
    if configured and fresh:
        raise _fail("--fresh deletes only the embedded SQLite files; pass --keep to add the "
                    "demo to the configured database", 2)
    console = _console()
    if settings.config_file is not None:
        console.print(f"[yellow]note:[/] ignoring MARKETLOG_CONFIG_FILE={settings.config_file}: "
                      "the demo's traders are scripted for the built-in configuration")
    settings = settings.model_copy(update={"liquidity_provider": True, "config_file": None})
    if fresh:
        _delete_demo_files(settings)

    with Progress(TextColumn("[bold]demo[/]"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("orders"), TimeElapsedColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task("demo", total=orders)
        result = run_demo(settings, orders=orders, seed=seed,
                          progress=lambda done, _total: bar.update(task, completed=done))
    _print_demo(console, result)
    if result.errors or not result.chain.ok:
        raise typer.Exit(1)


def _delete_demo_files(settings: Settings) -> None:
    data_dir = settings.data_dir
    for name in ("events.sqlite", "read_models.sqlite"):
        for suffix in SQLITE_SUFFIXES:
            (data_dir / f"{name}{suffix}").unlink(missing_ok=True)


def _print_demo(console: Console, r: DemoResult) -> None:
    o = r.outcomes
    console.print(f"[bold]marketlog demo[/]: {r.orders:,} orders (seed {r.seed}), "
                  f"{r.commands:,} commands in {r.cycles} engine cycles")

    positions = _table("Positions (from the read models)")
    for name in ("account", "symbol"):
        positions.add_column(name, no_wrap=True)
    for name in ("quantity", "avg price", "realized P&L"):
        positions.add_column(name, justify="right", no_wrap=True)
    for p in r.positions:
        positions.add_row(p["account_id"], p["symbol"], f"{p['quantity']:,}",
                          _money(p["average_price"], small=True), _money(p["realized_pnl"]))
    console.print(positions)

    accounts = sorted({a for per in r.rejections.values() for a in per})
    rejections = _table("Rejections by control and account")
    rejections.add_column("control", no_wrap=True, min_width=15)
    rejections.add_column("total", justify="right", no_wrap=True)
    for account in accounts:  # "ACC-\nALPHA": two-line headers keep the table in 80 columns
        rejections.add_column(escape(account.replace("-", "-\n", 1)), justify="right",
                              no_wrap=True)
    for control, total in r.rejections_by_control().items():
        per = r.rejections.get(control, {})
        first = "n/a" if control in r.unbreachable else str(total)
        rejections.add_row(control, first, *(str(per.get(a, "")) for a in accounts))
    console.print(rejections)
    for control, why in r.unbreachable.items():
        console.print(f"  {control}: not breachable with this configuration ({why})")
    if r.missed_controls:
        console.print(f"  [yellow]not breached this session:[/] {', '.join(r.missed_controls)}")

    activity = _table("Activity", show_header=False)
    activity.add_column(no_wrap=True)
    activity.add_column(justify="right", no_wrap=True)
    for label, value in (
        ("orders accepted", o["accepted"]),
        ("orders rejected", o["rejected"]),
        ("resends answered idempotently (nothing journaled)", o["idempotent_resend"]),
        ("resends conflicting with the original (nothing journaled)", o["conflict"]),
        ("cancels done / refused", f"{o['cancel_done']:,} / {o['cancel_refused']:,}"),
        ("replaces done / refused", f"{o['replace_done']:,} / {o['replace_refused']:,}"),
        ("risk desk actions done / refused",
         f"{o['governance_done']:,} / {o['governance_refused']:,}"),
        ("DAY orders canceled at end of day", o["end_of_day_canceled"]),
        ("fills (executions per order)", r.fills),
        ("events journaled", r.events),
        ("errors", o["error"]),
    ):
        activity.add_row(label, value if isinstance(value, str) else f"{value:,}")
    console.print(activity)
    for error in r.errors[:10]:
        console.print(f"  [red]{escape(error)}[/]")

    console.print(
        f"[bold]Throughput[/]: {r.orders_per_second:,.0f} orders/s, "
        f"{r.events_per_second:,.0f} events/s (engine, durable; {r.trading_seconds:.2f} s); "
        f"read models caught up in {r.projection_seconds:.2f} s; "
        f"{r.elapsed_seconds:.2f} s in all")
    chain = r.chain
    state = "[green]OK[/]" if chain.ok else f"[red]BROKEN at {chain.first_broken_position}[/]"
    console.print(f"[bold]Hash chain[/]: {state}, {chain.events:,} events, head position "
                  f"{chain.head_position}, head hash {chain.head_hash}")
    console.print(f"[bold]Files[/]: event store {r.store}\n       read models {r.read_models}")
    users = _table("Users (API keys in the data directory's credentials/, written on first run)")
    for name in ("user", "role", "accounts", "key file"):
        users.add_column(name, no_wrap=name != "accounts")
    for name, role, accounts in r.users:
        users.add_row(name, role, ", ".join(accounts) or "all (reads)" if role != "trader"
                      else ", ".join(accounts), r.credentials.get(name, "issued earlier"))
    console.print(users)
    console.print("Try: [bold]make serve[/], then\n  curl -H \"Authorization: Bearer $(cat "
                  "data/credentials/maria.token)\" http://127.0.0.1:8000/orders")


def _money(text: str | None, *, small: bool = False) -> str:
    """Display only (the read models keep exact decimals): sub-dollar prices to 4 places."""
    if text is None:
        return ""
    value = float(text)
    return f"{value:,.4f}" if small and abs(value) < 1 else f"{value:,.2f}"


# --------------------------------------------------------------------------- serve


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(
        help="Interface to listen on; default MARKETLOG_HOST (127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(
        min=1, max=65535, help="Port; default MARKETLOG_PORT (8000).")] = None,
) -> None:
    """Run the REST API (FastAPI under uvicorn) on the configured store.

    The engine and the projection runner start with the app and stop with it.
    """
    import uvicorn

    from api.app import create_app

    settings = _settings()
    uvicorn.run(lambda: create_app(settings), factory=True,
                host=host or settings.host, port=port or settings.port)


# --------------------------------------------------------------------------- verify


@app.command()
def verify() -> None:
    """Verify the event store's hash chain (SEC 17a-4: completeness and accuracy).

    Recomputes every record's whole-record hash (position, topic, originator id and version,
    body) and every link from the first event, and checks the chain against every committed
    head recorded outside the database (MARKETLOG_CHAIN_ANCHOR_FILE, default
    <data_dir>/chain-heads.jsonl), which shows a deleted tail or a recomputed chain. Names
    each changed, replaced or missing record. Connects as MARKETLOG_READER_DATABASE_URL when
    set (a SELECT-only role). Exit code 1 when the chain is broken, 2 when there is no store.
    """
    settings = _settings()
    if not settings.uses_postgres and not settings.sqlite_store_path.exists():
        raise _fail(f"no event store at {settings.sqlite_store_path.resolve()} "
                    "(set MARKETLOG_DATABASE_URL or MARKETLOG_DATA_DIR)", 2)
    try:
        store = EventStore.open(settings, reader=True)
    except (StoreNotInitialised, psycopg.Error, PersistenceError) as exc:
        raise _fail(str(exc), 2) from None
    if settings.kafka_bootstrap:
        # The relay's checkpoints topic is a second anchor, outside this machine's disk.
        from infrastructure.bootstrap import kafka_topics
        from infrastructure.kafka_log import CheckpointsAnchor

        try:
            store.anchors.append(CheckpointsAnchor(settings.kafka_bootstrap,
                                                   kafka_topics(settings), store.store_id))
        except Exception as exc:
            store.close()
            raise _fail(f"cannot read the checkpoints from Kafka: {exc}", 2) from None
    try:
        check = store.verify()
        anchors = ", ".join(a.name for a in store.anchors)
    except UndecodableEvent as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()
    console = _console()
    if check.ok:
        console.print(f"hash chain OK: {check.events:,} events checked, head position "
                      f"{check.head_position}, head hash {check.head_hash}; "
                      f"{check.anchors_checked:,} anchored heads checked ({escape(anchors)})")
        return
    console.print(f"[red]hash chain BROKEN[/] at position {check.first_broken_position}: "
                  f"{escape(check.problem or '')}")
    for problem in check.problems[1:20]:
        console.print(f"  also: {escape(problem.detail)}")
    if len(check.problems) > 20:
        console.print(f"  ... {len(check.problems) - 20} more problems")
    console.print(f"({check.events:,} records read, last at position {check.head_position}; "
                  f"{check.anchors_checked:,} anchored heads checked)")
    raise typer.Exit(1)


# --------------------------------------------------------------------------- db

db_app = typer.Typer(help="The event store's database: schema, triggers and role grants.",
                     no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("init")
def db_init() -> None:
    """Create or upgrade the event store's schema and grant its roles (ARCHITECTURE rule 11).

    PostgreSQL: connects as MARKETLOG_DATABASE_OWNER_URL (the role that will own the event
    tables and their triggers), creates or upgrades them, grants the engine's role
    (MARKETLOG_DATABASE_URL) only INSERT and SELECT on them (and CREATE on the schema for the
    disposable read models) and the reader role (MARKETLOG_READER_DATABASE_URL) only SELECT,
    then checks that the engine's role could not switch tamper protection off. Idempotent.
    SQLite: creates the store file with its tables and triggers in MARKETLOG_DATA_DIR.
    The database itself must exist (CREATE DATABASE stays with the database administrator).
    """
    from infrastructure.store_schema import check_engine_role, install_postgres, role_of

    settings = _settings()
    console = _console()
    if not settings.uses_postgres:
        EventStore.open(settings).close()
        console.print(f"event store ready at {settings.sqlite_store_path.resolve()}")
        return
    owner, engine = settings.database_owner_url, settings.database_url
    if not owner or not engine:
        raise _fail("set MARKETLOG_DATABASE_OWNER_URL (the owner role) and "
                    "MARKETLOG_DATABASE_URL (the engine role) for `marketlog db init`", 2)
    databases = {_database_of(u) for u in (owner, engine, settings.reader_database_url) if u}
    if len(databases) != 1:
        raise _fail("MARKETLOG_DATABASE_OWNER_URL, MARKETLOG_DATABASE_URL and "
                    "MARKETLOG_READER_DATABASE_URL must name the same database", 2)
    reader = settings.reader_database_url
    try:
        install_postgres(owner, role_of(engine), (role_of(reader),) if reader else ())
        with psycopg.connect(engine, connect_timeout=10) as conn:
            check_engine_role(conn)
    except psycopg.Error as exc:
        raise _fail(f"could not initialise the event store: {exc}") from None
    except RuntimeError as exc:  # InsecureStoreRole, StoreNotInitialised
        raise _fail(str(exc)) from None
    roles = f"engine {role_of(engine)!r} (INSERT, SELECT)"
    if reader:
        roles += f", reader {role_of(reader)!r} (SELECT)"
    console.print(f"event store ready in {_redacted(owner)}: owned by {role_of(owner)!r}; "
                  f"{roles}")


# --------------------------------------------------------------------------- trading day

day_app = typer.Typer(help="Trading days: the engine opens and closes them from the calendar; "
                      "operators may open or close one by hand (each an event with a reason).",
                      no_args_is_help=True)
app.add_typer(day_app, name="day")


def _engine_command(command: Any, api: str | None = "GET /trading-day") -> Any:
    """Run one command (or none) on an engine of this process, the store's single writer;
    the outcome and the trading day after it. ``api`` names the endpoint that does the same
    while a server holds the store."""
    from infrastructure.bootstrap import bootstrap
    from infrastructure.writer_lock import AnotherWriterRunning

    settings = _settings()
    try:
        system = bootstrap(settings, start=False)
    except AnotherWriterRunning:
        where = (f"use its API, {api} on http://{settings.host}:{settings.port}"
                 if api else "it does this by itself")
        raise _fail(f"an engine (marketlog serve) is running on this store: {where}",
                    2) from None
    try:
        [outcome] = system.engine.execute([command]) if command is not None else [None]
        day = system.engine.health()["trading_day"]
    finally:
        system.close()
    if isinstance(outcome, BaseException):
        raise _fail(str(outcome))
    return outcome, day


def _print_day(day: dict[str, Any]) -> None:
    state = "open" if day["open"] else "closed"
    close = day["scheduled_close_ns"]
    until = "" if close is None else f", scheduled close {iso_timestamp(close)}"
    _console().print(f"trading day {day['date'] or '-'}: {state} "
                     f"(exposure {day['exposure_mode']}{until})")


@day_app.command("status")
def day_status() -> None:
    """The trading day as the log records it (the engine, starting, opens the calendar's day
    if one is due)."""
    _, day = _engine_command(None)
    _print_day(day)


@day_app.command("open")
def day_open(
    reason: Annotated[str, typer.Option(help="Why (recorded in the event).")],
    date: Annotated[str | None, typer.Option(
        help="Trading date YYYY-MM-DD; default: the calendar's date now.")] = None,
) -> None:
    """Open a trading day by hand; exposure restarts from the orders carried over."""
    from commands.models import OpenTradingDay

    outcome, day = _engine_command(OpenTradingDay(trading_date=date, reason=reason,
                                                  actor=_cli_actor(), source=Source.CLI),
                                   api="POST /trading-day/open")
    if outcome.kind != "done":
        raise _fail(outcome.detail["reason"])
    _print_day(day)


@day_app.command("close")
def day_close(
    reason: Annotated[str, typer.Option(help="Why (recorded in the event).")],
) -> None:
    """Close the trading day now: DAY orders expire, later orders are refused."""
    from commands.models import CloseTradingDay

    outcome, day = _engine_command(CloseTradingDay(reason=reason, actor=_cli_actor(),
                                                   source=Source.CLI),
                                   api="POST /trading-day/close")
    if outcome.kind != "done":
        raise _fail(outcome.detail["reason"])
    _console().print(f"{outcome.detail['expiring_orders']} DAY orders expired")
    _print_day(day)


def _cli_actor() -> str:
    import getpass

    return getpass.getuser() or "cli"


@app.command()
def snapshot() -> None:
    """Store a snapshot of the book of record now (the engine also takes them by itself);
    a restart then replays only the log after it."""
    from commands.models import TakeSnapshot

    outcome, _ = _engine_command(TakeSnapshot(actor=_cli_actor(), source=Source.CLI),
                                 api=None)
    if not (outcome.detail or {}).get("snapshot"):
        raise _fail("the store refused the snapshot (see the log)")
    _console().print("snapshot stored and recorded in the log")


def _database_of(url: str) -> tuple[str | None, int | None, str]:
    parts = sa.make_url(url)
    return parts.host, parts.port, parts.database or ""


# --------------------------------------------------------------------------- rebuild


@app.command()
def rebuild(
    into: Annotated[str, typer.Option(
        "--into", help="SQLAlchemy URL of an EMPTY database to build the read models in, "
        "e.g. sqlite:///rebuilt.sqlite or postgresql+psycopg://user:pw@host/db.")],
    compare_live: Annotated[bool, typer.Option(
        "--compare-live",
        help="Also catch up the live read models and compare digests (exit 1 if they differ).")
    ] = False,
) -> None:
    """Replay the whole event log into a fresh read-model database and print its digest.

    The digest is a SHA-256 over every row of the orders, positions and audit-trail views:
    auditors rebuild independently and compare digests with the live read models.
    """
    from projections.rebuild import digest
    from projections.rebuild import rebuild as rebuild_views

    settings = _settings()
    _new_read_models_target(into, settings)
    store = _open_store(settings)
    try:
        rebuilt = rebuild_views(store, into, settings.projection_batch)
        events = store.head_position
    except (ValueError, sa.exc.SQLAlchemyError) as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()
    console = _console()
    console.print(f"rebuilt the read models from {events:,} events into {_redacted(into)}")
    console.print(f"digest {rebuilt}")
    if compare_live:
        from infrastructure.bootstrap import caught_up_read_side

        read = caught_up_read_side(settings)
        try:
            with read.read_models.connect() as conn:
                live = digest(conn)
        finally:
            read.close()
        console.print(f"live   {live}")
        if live != rebuilt:
            console.print("[red]digests differ[/]: the live read models do not match the log")
            raise typer.Exit(1)
        console.print("[green]digests match[/]")


def _new_read_models_target(into: str, settings: Settings) -> None:
    """Refuse the live read models as a rebuild's target; create a SQLite file's folder."""
    if sa.make_url(into) == sa.make_url(settings.read_models_url):
        raise _fail("--into is the live read-model database; give an empty one", 2)
    _make_sqlite_parent(into)


def _make_sqlite_parent(url: str) -> None:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


# --------------------------------------------------------------------------- audit


@app.command()
def audit(
    account: Annotated[str | None, typer.Option(help="Only this account's events.")] = None,
    order: Annotated[str | None, typer.Option(help="Only this order's events (order id).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="Most events to print.")] = 50,
    after: Annotated[int | None, typer.Option(
        min=0, help="Start after this log position (the last one of the previous page).")
    ] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object per line, with the stored body, instead of a table.")
    ] = False,
) -> None:
    """Print the audit trail: events in log order with who, through what, when and why.

    The read models are caught up with the log first, so the trail is complete up to now.
    """
    from infrastructure.bootstrap import caught_up_read_side
    from projections.queries import audit_events

    settings = _settings()
    _open_store(settings).close()  # a clear error instead of an empty new store
    read = caught_up_read_side(settings)
    try:
        with read.read_models.connect() as conn:
            events = audit_events(conn, account_id=account, order_id=order, limit=limit,
                                  after=after)
    finally:
        read.close()
    console = _console()
    if as_json:
        for event in events:
            typer.echo(orjson.dumps(event).decode())
        return
    plural = "" if len(events) == 1 else "s"
    console.print(f"[bold]Audit trail[/]: {len(events)} event{plural} in log order "
                  "(#position timestamp event actor/source account)")
    for e in events:
        console.print(
            f"[bold]#{e['position']}[/] {e['timestamp']} [cyan]{e['event_type']}[/] "
            f"{escape(e['actor'])}/{e['source']} {escape(e['account_id'] or '')}\n"
            f"    {'order' if e['order_id'] else 'aggregate'} {e['aggregate_id']} "
            f"v{e['aggregate_version']}: {escape(_details(e))}")
    if len(events) == limit:
        console.print(f"more: --after {events[-1]['position']}")


def _details(event: dict[str, Any]) -> str:
    p, kind = event["payload"], event["event_type"]
    if kind in ("OrderAccepted", "OrderRejected"):
        price = p.get("limit_price") or "market"
        text = (f"{p['side']} {p['quantity']} {p['symbol']} @ {price} {p['time_in_force']} "
                f"(client id {p['client_order_id']})")
        if kind == "OrderRejected":
            text += (f"; control {p['control']}: threshold {p['threshold']}, "
                     f"observed {p['observed']}")
        return text
    if kind == "OrderFilled":
        return (f"{p['fill_quantity']} @ {p['fill_price']} ({p['liquidity']}), "
                f"leaves {p['leaves_quantity']}, counterparty {p['counterparty']}")
    if kind == "OrderCanceled":
        return f"canceled {p['canceled_quantity']} ({p['reason']})"
    if kind == "OrderReplaced":
        return (f"quantity {p['old_quantity']} -> {p['quantity']}, "
                f"price {p['old_limit_price']} -> {p['limit_price']}")
    if kind == "ReplaceRejected":
        return (f"control {p['control']}: threshold {p['threshold']}, "
                f"observed {p['observed']}")
    skip = {  # anything else (CancelRejected, ...): the body minus bookkeeping fields
"order_id", "version", "ts_ns", "actor", "source", "account_id", "symbol",
            "schema", "prev_hash", "hash", "day_id", "engine_id", "snapshot_id"}
    return ", ".join(f"{k}={v}" for k, v in p.items() if k not in skip)


if __name__ == "__main__":  # pragma: no cover
    # ``python -m api.cli``: this module is __main__; run the module proper (api.cli), on
    # which the commands of the modules below register (they import api.cli themselves).
    from api.cli import app as registered

    registered()
else:
    # The event log's distribution commands (relay, project, replay, digest) live beside this.
    from api import cli_log

    cli_log.register(app)

    # Risk governance (issue 7): users, keys, symbols, locates, kill switches, limits, accounts.
    from api import cli_governance

    app.add_typer(cli_governance.users_app, name="users")
    app.add_typer(cli_governance.keys_app, name="keys")
    app.add_typer(cli_governance.symbols_app, name="symbols")
    app.add_typer(cli_governance.locates_app, name="locates")
    app.add_typer(cli_governance.kill_app, name="kill")
    app.add_typer(cli_governance.limits_app, name="limits")
    app.add_typer(cli_governance.accounts_app, name="accounts")

    # FINRA CAT order event files (issue 8).
    from api import cli_cat

    app.command("cat")(cli_cat.cat)

    # Records (issue 8): lineage, export, export-verify.
    from api import cli_records

    cli_records.register(app)

    # The daily 15c3-5 report and the limit calibration (issue 8).
    from api import cli_report

    app.add_typer(cli_report.report_app, name="report")

    # Strategies of the paper-trading desk (issue 9).
    from api import cli_strategies

    app.add_typer(cli_strategies.strategies_app, name="strategies")

    # Backtesting, Monte Carlo and walk-forward (issue 9).
    from api import cli_backtest

    app.add_typer(cli_backtest.backtest_app, name="backtest")
