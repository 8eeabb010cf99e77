"""The ``marketlog`` command line of risk governance (issue 7): users and API keys, symbol
halts and Rule 201, locates, kill switches, governed limits (maker-checker) and account
suspensions, the same operations as the API's (api/governance.py).

Actions run one command on an engine of this process, the store's single writer: each is
recorded as an event naming the acting user (``--as``), the source ``cli`` and the reason,
or refused with nothing recorded (exit 1; exit 3 when it is the acting user's role or
entitlements that do not allow it). While ``marketlog serve`` holds the store they are
refused (exit 2): use the API then. Reading commands (list, show, pending, history) replay
the event store read-only, without the writer lock, so they also work beside a server.

The sub-apps are registered on ``marketlog`` at the end of api/cli.py.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import orjson
import typer
from pydantic import ValidationError
from rich.markup import escape

from commands import models as m
from domain.book_of_record import BookOfRecord
from domain.events import BookSnapshotTaken
from domain.governance import Refused
from domain.governance_events import (
    LimitChangeApproved,
    LimitChangeRejected,
    LimitChangeRequested,
    LimitChangeReverted,
)
from domain.limits import GOVERNED, split_scope
from domain.values import Role, Source
from infrastructure.clock import epoch_ns
from infrastructure.settings import Settings
from projections.queries import iso_timestamp

SECOND_NS = 1_000_000_000

users_app: typer.Typer = typer.Typer(
    help="Users, roles and account entitlements (15c3-5(c)(2)(iii)). Changes: role admin.",
    no_args_is_help=True)
keys_app: typer.Typer = typer.Typer(
    help="API keys: issued (the token shown once; the log keeps its SHA-256), listed by key "
    "id, revoked.", no_args_is_help=True)
symbols_app: typer.Typer = typer.Typer(
    help="Symbols' trading state: halts (risk_officer or admin) and Reg SHO Rule 201 "
    "short-sale restrictions.", no_args_is_help=True)
locates_app: typer.Typer = typer.Typer(
    help="Reg SHO locates: requested for an account's short sales, granted by a "
    "risk_officer until an expiry.", no_args_is_help=True)
kill_app: typer.Typer = typer.Typer(
    help="Kill switches (firm, account:ID, strategy:TAG): a trip refuses new orders in "
    "its scope and cancels resting ones; only a risk_officer trips by hand or resets.",
    no_args_is_help=True)
limits_app: typer.Typer = typer.Typer(
    help="Governed risk limits under maker-checker: one user requests a change, a different "
    "risk_officer approves it; every step an event.", no_args_is_help=True)
accounts_app: typer.Typer = typer.Typer(
    help="Accounts and their suspensions (risk_officer or admin): a suspended account's "
    "orders are refused.", no_args_is_help=True)

# After the sub-apps: api/cli.py registers them when it is imported, and this import runs
# it when this module is imported first.
from api.cli import _cli_actor, _console, _fail, _settings, _table  # noqa: E402

# --------------------------------------------------------------------------- options

AS_HELP = ("The acting user, recorded on the event; the engine checks their role and "
           "entitlements. Not authenticated: the CLI trusts whoever can write the store "
           "(the API authenticates with keys). Default: your OS user, which is usually no "
           "configured user and is then refused (exit 3).")
Actor = Annotated[str | None, typer.Option("--as", metavar="USER", help=AS_HELP,
                                           show_default=False)]
Reason = Annotated[str, typer.Option("--reason", help="Why (recorded in the event).")]
ExpiresIn = Annotated[int | None, typer.Option(
    "--expires-in", min=1, metavar="SECONDS", help="Expiry, in seconds from now.")]
ExpiresAt = Annotated[str | None, typer.Option(
    "--expires-at", metavar="ISO", help="Expiry as ISO 8601, e.g. 2026-11-27T20:00:00Z "
    "(UTC when no offset is given).")]
ScopeArg = Annotated[str, typer.Argument(
    metavar="SCOPE", help="firm, account:ID, strategy:TAG or symbol:SYMBOL.")]


def _command(cls: type[m.Governed], actor: str | None, **fields: Any) -> Any:
    """The command, validated as the API's models validate it (exit 2 when malformed)."""
    try:
        return cls(actor=actor or _cli_actor(), source=Source.CLI, **fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}"
                             for e in exc.errors())
        raise _fail(f"invalid {cls.__name__}: {problems}", 2) from None


def _expiry(expires_in: int | None, expires_at: str | None, *, required: bool) -> int | None:
    """--expires-in / --expires-at as UTC epoch nanoseconds."""
    if expires_in is not None and expires_at is not None:
        raise _fail("give --expires-in or --expires-at, not both", 2)
    if expires_in is not None:
        return time.time_ns() + expires_in * SECOND_NS
    if expires_at is not None:
        try:
            moment = datetime.fromisoformat(expires_at)
        except ValueError:
            raise _fail(f"--expires-at {expires_at!r} is not an ISO 8601 time "
                        "(e.g. 2026-11-27T20:00:00Z)", 2) from None
        return epoch_ns(moment)
    if required:
        raise _fail("give the expiry: --expires-in SECONDS or --expires-at ISO", 2)
    return None


def _show(table: Any, empty: str) -> None:
    """The table, or one line saying there is nothing to show."""
    _console().print(table if table.row_count else empty)


def _when(ts_ns: int | None) -> str:
    """An instant to the second, UTC (history prints the log's nanoseconds)."""
    return "-" if not ts_ns else iso_timestamp(ts_ns)[:19] + "Z"


# --------------------------------------------------------------------------- acting


def _act(command: Any, api: str, prepare: Callable[[BookOfRecord], Any] | None = None
         ) -> tuple[Any, dict[str, Any]]:
    """Run one governance command on an engine of this process: the command run and its
    outcome's detail (events, id, version). Refusals exit 1 (3 when denied for who asked);
    nothing of a refused command is recorded. ``prepare`` builds the command from the
    recovered book instead (defaults that depend on the state). ``api`` names the endpoint
    to use while a server holds the store."""
    import psycopg
    from eventsourcing.persistence import PersistenceError

    from commands.ports import StoreHalted
    from infrastructure.bootstrap import bootstrap
    from infrastructure.store_schema import InsecureStoreRole, StoreNotInitialised
    from infrastructure.writer_lock import AnotherWriterRunning

    settings = _settings()
    try:
        system = bootstrap(settings, start=False)
    except AnotherWriterRunning:
        raise _fail("an engine (marketlog serve) is running on this store and is its only "
                    f"writer: use its API instead, {api} on "
                    f"http://{settings.host}:{settings.port} (nothing was recorded)", 2) from None
    except (StoreNotInitialised, InsecureStoreRole, psycopg.Error, PersistenceError) as exc:
        raise _fail(f"cannot open the event store: {exc}", 2) from None
    try:
        if system.engine.halted:
            raise _fail(f"the engine does not write to this store: {system.engine.halted}")
        if prepare is not None:
            command = prepare(system.engine.book)
        [outcome] = system.engine.execute([command])
    except StoreHalted as exc:
        raise _fail(f"the store refused the write: {exc}") from None
    finally:
        system.close()
    if isinstance(outcome, BaseException):  # EngineHalted, NotRecorded
        raise _fail(f"not recorded: {outcome}")
    detail: dict[str, Any] = outcome.detail or {}
    if outcome.kind != "done":
        raise _fail(f"refused: {detail.get('reason')}", 3 if detail.get("denied") else 1)
    return command, detail


def _recorded(detail: dict[str, Any], what: str, command: Any) -> None:
    """One line: what happened, the events recorded, and as whom."""
    events = detail.get("events", [])
    first = f"{events[0]} v{detail['version']}" if events and "version" in detail else ""
    more = f" + {len(events) - 1} more" if len(events) > 1 else ""
    _console().print(f"{escape(what)} [dim]({first}{more}; recorded as "
                     f"{escape(command.actor)}/{command.source}: {escape(command.reason)})[/]")


# --------------------------------------------------------------------------- reading


def _new_book(settings: Settings) -> BookOfRecord:
    from infrastructure.config import load_config

    config = load_config(settings.config_file)
    return BookOfRecord(config.instruments, config.new_accounts(), config.firm,
                        users=config.new_users(), symbol_limits=config.new_symbol_limits())


@contextmanager
def _reading(settings: Settings) -> Iterator[Any]:
    """The event store opened for reading (never its writer: a running server may hold it),
    or None when the embedded default has no store yet (nothing is created)."""
    from infrastructure.event_store import EventStore

    if not settings.uses_postgres and not settings.sqlite_store_path.exists():
        yield None
        return
    import psycopg
    from eventsourcing.persistence import PersistenceError

    try:
        store = EventStore.open(settings, reader=True)
    except (RuntimeError, OSError, psycopg.Error, PersistenceError) as exc:
        raise _fail(f"cannot open the event store: {exc}", 2) from None
    try:
        yield store
    finally:
        store.close()


def _book() -> BookOfRecord:
    """The book of record as the log has it now: the latest snapshot the log vouches for,
    then the events after it (the engine's recovery, read-only: no writer lock, no venue)."""
    from domain import book_snapshot
    from infrastructure.codec import UndecodableEvent

    settings = _settings()
    with _reading(settings) as store:
        book = _new_book(settings)
        if store is None:
            return book
        try:
            found = store.latest_snapshot()
            if found is not None:
                position, state = found
                events = store.read(position)
                first = next(events, None)
                if (first is not None and type(first[1]) is BookSnapshotTaken
                        and first[1].position == position
                        and first[1].sha256 == hashlib.sha256(state).hexdigest()):
                    try:
                        book_snapshot.restore(book, orjson.loads(state))
                    except (ValueError, KeyError, TypeError):
                        book = _new_book(settings)
                    else:
                        book.apply(first[1])
                        for _, event in events:
                            book.apply(event)
                        return book
            for _, event in store.read():
                book.apply(event)
        except UndecodableEvent as exc:
            raise _fail(str(exc)) from None
    return book


# --------------------------------------------------------------------------- users


@users_app.command("list")
def users_list() -> None:
    """Users, roles, account entitlements and API key ids (never keys)."""
    gov = _book().gov
    keys: dict[str, list[str]] = {}
    for key_id, (_, user, _) in gov.key_ids.items():
        keys.setdefault(user, []).append(key_id)
    table = _table("Users")
    for name in ("user", "role", "active", "accounts", "key ids"):
        table.add_column(name, no_wrap=name != "accounts")
    for u in sorted(gov.users.values(), key=lambda u: u.username):
        table.add_row(escape(u.username), u.role, "yes" if u.active else "disabled",
                      escape(", ".join(sorted(u.accounts))),
                      ", ".join(sorted(keys.get(u.username, []))))
    _console().print(table)


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Argument(help="Lowercase: a-z, 0-9, '.', '_', '-'.")],
    role: Annotated[Role, typer.Option(help="The new user's role.")],
    reason: Reason,
    actor: Actor = None,
) -> None:
    """Create a user (UserCreated); entitle a trader to accounts with `users entitle`.
    Needs --as an admin."""
    command = _command(m.CreateUser, actor, username=username, role=role, reason=reason)
    _, detail = _act(command, "POST /users")
    _recorded(detail, f"user {username} created ({role})", command)


@users_app.command("disable")
def users_disable(username: str, reason: Reason, actor: Actor = None) -> None:
    """Disable a user: their keys stop working and their orders are refused. Needs --as an
    admin."""
    command = _command(m.DisableUser, actor, username=username, reason=reason)
    _, detail = _act(command, f"POST /users/{username}/disable")
    _recorded(detail, f"user {username} disabled", command)


@users_app.command("entitle")
def users_entitle(username: str, account: str, reason: Reason, actor: Actor = None) -> None:
    """Let USERNAME trade ACCOUNT (EntitlementGranted). Needs --as an admin."""
    command = _command(m.Entitle, actor, username=username, account_id=account, reason=reason)
    _, detail = _act(command, f"POST /users/{username}/entitlements")
    _recorded(detail, f"{username} entitled to {account}", command)


@users_app.command("revoke-entitlement")
def users_revoke_entitlement(username: str, account: str, reason: Reason,
                             actor: Actor = None) -> None:
    """Stop USERNAME trading ACCOUNT (EntitlementRevoked). Needs --as an admin."""
    command = _command(m.RevokeEntitlement, actor, username=username, account_id=account,
                       reason=reason)
    _, detail = _act(command, f"POST /users/{username}/entitlements/revoke")
    _recorded(detail, f"{username} no longer entitled to {account}", command)


# --------------------------------------------------------------------------- keys


@keys_app.command("issue")
def keys_issue(
    username: str,
    reason: Reason,
    actor: Actor = None,
    write: Annotated[bool, typer.Option(
        "--write", help="Store the token in DATA_DIR/credentials/USER.token (mode 0600, "
        "replacing an earlier one) instead of printing it.")] = False,
) -> None:
    """Issue an API key to USERNAME (ApiKeyIssued records its SHA-256 only). The token is
    printed once, here, and never again: keep it. Needs --as an admin, or --as the user
    themself."""
    from infrastructure.credentials import new_key, write_token

    key = new_key()
    command = _command(m.IssueApiKey, actor, username=username, key_id=key.key_id,
                       key_sha256=key.sha256, reason=reason)
    _, detail = _act(command, f"POST /users/{username}/keys")
    _recorded(detail, f"key {key.key_id} issued to {username}", command)
    settings = _settings()
    url = f"http://{settings.host}:{settings.port}/users"
    console = _console()
    if write:
        path = write_token(settings.data_dir, username, key.token)
        console.print(f"token written to {escape(str(path))} (mode 0600)")
        typer.echo(f'curl -H "Authorization: Bearer $(cat {path})" {url}')
        return
    console.print("token (shown this once; only its SHA-256 is kept):")
    typer.echo(key.token)
    typer.echo(f'curl -H "Authorization: Bearer {key.token}" {url}')


@keys_app.command("list")
def keys_list(
    user: Annotated[str | None, typer.Option(help="Only this user's keys.")] = None,
) -> None:
    """Active API keys by key id and owner (the tokens themselves are nowhere to list)."""
    gov = _book().gov
    table = _table("Active API keys")
    table.add_column("key id", no_wrap=True)
    table.add_column("user", no_wrap=True)
    for key_id, (_, owner, _) in sorted(gov.key_ids.items(), key=lambda k: (k[1][1], k[0])):
        if user is None or owner == user:
            table.add_row(key_id, escape(owner))
    _show(table, "no active API keys" + (f" of {escape(user)}" if user else ""))


@keys_app.command("revoke")
def keys_revoke(key_id: str, reason: Reason, actor: Actor = None) -> None:
    """Revoke a key by its id: refused from the moment this is recorded. Needs --as an admin,
    or --as the key's owner."""
    command = _command(m.RevokeApiKey, actor, key_id=key_id, reason=reason)
    _, detail = _act(command, f"POST /keys/{key_id}/revoke")
    _recorded(detail, f"key {key_id} revoked", command)


# --------------------------------------------------------------------------- symbols


@symbols_app.command("list")
def symbols_list() -> None:
    """Every listed symbol: halted (why), Rule 201 restriction in force."""
    book = _book()
    gov = book.gov
    table = _table("Symbols")
    for name in ("symbol", "trading", "halt reason", "short sales"):
        table.add_column(name, no_wrap=name != "halt reason")
    for s in sorted(book.instruments):
        triggered = gov.ssr.get(s)
        ssr = ("-" if triggered is None
               else f"restricted (Rule 201, triggered {triggered})" if gov.ssr_active(s)
               else f"unrestricted (last triggered {triggered})")
        table.add_row(s, "HALTED" if s in gov.halted else "trading",
                      escape(gov.halted.get(s, "")), ssr)
    _console().print(table)


SymbolArg = Annotated[str, typer.Argument(metavar="SYMBOL", help="e.g. AAPL.")]


@symbols_app.command("halt")
def symbols_halt(symbol: SymbolArg, reason: Reason, actor: Actor = None) -> None:
    """Halt trading in SYMBOL (TradingHalted): its orders are refused until it resumes.
    Needs --as a risk_officer or an admin."""
    symbol = symbol.upper()
    command = _command(m.HaltSymbol, actor, symbol=symbol, reason=reason)
    _, detail = _act(command, f"POST /symbols/{symbol}/halt")
    _recorded(detail, f"{symbol} halted", command)


@symbols_app.command("resume")
def symbols_resume(symbol: SymbolArg, reason: Reason, actor: Actor = None) -> None:
    """Resume trading in a halted SYMBOL (TradingResumed). Needs --as a risk_officer or an
    admin."""
    symbol = symbol.upper()
    command = _command(m.ResumeSymbol, actor, symbol=symbol, reason=reason)
    _, detail = _act(command, f"POST /symbols/{symbol}/resume")
    _recorded(detail, f"{symbol} resumed", command)


@symbols_app.command("restrict-short-sales")
def symbols_restrict(symbol: SymbolArg, reason: Reason, actor: Actor = None) -> None:
    """Reg SHO Rule 201 on the listing market's notice, for today and the next trading day
    (a 10% decline triggers it by itself). Needs an open trading day and --as a
    risk_officer or an admin."""
    symbol = symbol.upper()
    command = _command(m.TriggerShortSaleRestriction, actor, symbol=symbol, reason=reason)
    _, detail = _act(command, f"POST /symbols/{symbol}/short-sale-restriction")
    _recorded(detail, f"short sales of {symbol} restricted (Rule 201)", command)


# --------------------------------------------------------------------------- locates


@locates_app.command("list")
def locates_list() -> None:
    """Locates requested or granted and not yet used up or expired."""
    gov = _book().gov
    table = _table("Locates")
    for name in ("locate id", "account", "symbol", "requested", "granted", "remaining",
                 "status", "expires"):
        table.add_column(name, no_wrap=True,
                         justify="right" if name in ("requested", "granted", "remaining")
                         else "left")
    for loc in gov.locates.values():
        table.add_row(str(loc.locate_id), escape(loc.account_id), loc.symbol,
                      f"{loc.requested:,}", f"{loc.granted:,}", f"{loc.remaining:,}",
                      loc.status, _when(loc.expires_ns))
    _show(table, "no locates requested or in force")


@locates_app.command("request")
def locates_request(
    account: str,
    symbol: SymbolArg,
    quantity: Annotated[int, typer.Argument(min=1, help="Shares to locate.")],
    reason: Reason,
    actor: Actor = None,
) -> None:
    """Request a locate (Reg SHO 203(b)(1)) for ACCOUNT's short sales of SYMBOL; prints the
    locate id a risk_officer grants. Needs --as a user entitled to ACCOUNT, a risk_officer
    or an admin."""
    symbol = symbol.upper()
    command = _command(m.RequestLocate, actor, account_id=account, symbol=symbol,
                       quantity=quantity, reason=reason)
    _, detail = _act(command, "POST /locates")
    _recorded(detail, f"locate {detail.get('id')} requested: {quantity:,} {symbol} for "
                      f"{account}", command)


@locates_app.command("grant")
def locates_grant(
    locate_id: UUID,
    reason: Reason,
    quantity: Annotated[int | None, typer.Option(
        min=1, help="Shares granted; default: all requested.")] = None,
    expires_in: ExpiresIn = None,
    expires_at: ExpiresAt = None,
    actor: Actor = None,
) -> None:
    """Grant a requested locate until an expiry (--expires-in or --expires-at, required).
    Needs --as a risk_officer."""
    expires_ns = _expiry(expires_in, expires_at, required=True)

    def grant(book: BookOfRecord) -> Any:
        requested = book.gov.locates.get(locate_id)
        # An unknown locate: the engine refuses it by name (the quantity is never used).
        granted = quantity or (requested.requested if requested is not None else 1)
        return _command(m.GrantLocate, actor, locate_id=locate_id, quantity=granted,
                        expires_at_ns=expires_ns, reason=reason)

    command, detail = _act(None, f"POST /locates/{locate_id}/grant", prepare=grant)
    _recorded(detail, f"locate {locate_id} granted: {command.quantity:,} until "
                      f"{_when(expires_ns)}", command)


# --------------------------------------------------------------------------- kill switches


@kill_app.command("list")
def kill_list() -> None:
    """The kill switches tripped now: why, by whom, when, and the orders canceled."""
    gov = _book().gov
    table = _table("Kill switches tripped")
    for name in ("scope", "trigger", "threshold", "observed", "by", "at", "canceled",
                 "reason"):
        table.add_column(name, no_wrap=name != "reason",
                         justify="right" if name == "canceled" else "left")
    for t in gov.tripped.values():
        table.add_row(escape(t.scope), t.trigger, escape(t.threshold), escape(t.observed),
                      f"{escape(t.actor)}/{t.source}", _when(t.ts_ns),
                      str(len(t.canceled_orders)), escape(t.reason))
    _show(table, "no kill switch is tripped")


KillScope = Annotated[str, typer.Argument(
    metavar="SCOPE", help="firm, account:ID or strategy:TAG.")]


@kill_app.command("trip")
def kill_trip(scope: KillScope, reason: Reason, actor: Actor = None) -> None:
    """Trip a kill switch: new orders in SCOPE are refused and its resting orders canceled
    (each cancel an event with reason kill_switch). Needs --as a risk_officer."""
    command = _command(m.TripKillSwitch, actor, scope=scope, reason=reason)
    _, detail = _act(command, "POST /kill-switches/trip")
    cancels = sum(1 for e in detail.get("events", []) if e == "CancelRequested")
    _recorded(detail, f"kill switch {scope} tripped; {cancels} resting orders canceled",
              command)


@kill_app.command("reset")
def kill_reset(scope: KillScope, reason: Reason, actor: Actor = None) -> None:
    """Reset a tripped kill switch: orders in SCOPE are accepted again. Needs --as a
    risk_officer (FINRA practice: a named role, a recorded reason)."""
    command = _command(m.ResetKillSwitch, actor, scope=scope, reason=reason)
    _, detail = _act(command, "POST /kill-switches/reset")
    _recorded(detail, f"kill switch {scope} reset", command)


# --------------------------------------------------------------------------- limits


def _scopes(book: BookOfRecord) -> list[str]:
    return (["firm"] + [f"account:{a}" for a in book.accounts]
            + [f"symbol:{s}" for s in sorted(book.instruments)])


@limits_app.command("show")
def limits_show(
    scope: Annotated[str | None, typer.Argument(
        metavar="SCOPE", help="firm, account:ID or symbol:SYMBOL; default: all.",
        show_default=False)] = None,
) -> None:
    """The governed limits in force now, with each scope's version."""
    book = _book()
    console = _console()
    for name in [scope] if scope is not None else _scopes(book):
        try:
            limits = book.gov.limits_of(name)
        except Refused as exc:
            raise _fail(str(exc)) from None
        table = _table(f"{escape(name)} (version {limits.version})")
        table.add_column("limit", no_wrap=True)
        table.add_column("value", justify="right", no_wrap=True)
        for field in GOVERNED[split_scope(name)[0]]:
            table.add_row(field, str(getattr(limits, field)))
        console.print(table)


@limits_app.command("pending")
def limits_pending() -> None:
    """Limit changes requested and neither approved nor rejected yet."""
    gov = _book().gov
    table = _table("Pending limit changes")
    for name in ("change id", "scope", "limit", "change", "requested by", "expires",
                 "reason"):
        table.add_column(name, no_wrap=name != "reason")
    for r in gov.pending.values():
        table.add_row(str(r.change_id), escape(r.scope), r.field,
                      f"{r.old_value} -> {r.new_value}", f"{escape(r.actor)}/{r.source}",
                      _when(r.expires_ns), escape(r.reason))
    _show(table, "no limit change is pending")


@limits_app.command("history")
def limits_history(scope: ScopeArg) -> None:
    """Every request, approval, rejection and reversion of SCOPE's limits in log order, from
    the event store: who asked, who approved, why, until when, the version after."""
    from infrastructure.codec import UndecodableEvent

    kinds = {LimitChangeRequested: "requested", LimitChangeApproved: "approved",
             LimitChangeRejected: "rejected", LimitChangeReverted: "reverted"}
    console = _console()
    found = 0
    with _reading(_settings()) as store:
        try:
            for position, e in ([] if store is None else store.read()):
                kind = kinds.get(type(e))
                if kind is None or e.scope != scope:
                    continue
                found += 1
                if type(e) is LimitChangeRequested:
                    what = f"{e.field} {e.old_value} -> {e.new_value}"
                elif type(e) is LimitChangeApproved:
                    what = (f"{e.field} {e.old_value} -> {e.new_value}, "
                            f"version {e.limits_version}")
                elif type(e) is LimitChangeReverted:
                    what = f"{e.field} back to {e.value}, version {e.limits_version}"
                else:
                    what = e.field
                expiry = getattr(e, "expires_ns", None)
                until = f" until {_when(expiry)}" if expiry else ""
                console.print(f"[bold]#{position}[/] {iso_timestamp(e.ts_ns)} [cyan]{kind}[/] by "
                              f"{escape(e.actor)}/{e.source}: {what}{until}\n"
                              f"    change {e.change_id}: {escape(e.reason)}")
        except UndecodableEvent as exc:
            raise _fail(str(exc)) from None
    if not found:
        console.print(f"no limit changes of {escape(scope)} recorded")


@limits_app.command("request")
def limits_request(
    scope: ScopeArg,
    field: Annotated[str, typer.Argument(help="The limit, e.g. max_order_quantity.")],
    value: Annotated[str, typer.Argument(help="The new value (exact decimal text).")],
    reason: Reason,
    expires_in: ExpiresIn = None,
    expires_at: ExpiresAt = None,
    actor: Actor = None,
) -> None:
    """Maker: propose a new value for a limit of SCOPE; prints the change id. Nothing changes
    until a different risk_officer approves it; with an expiry the approved change reverts
    by itself then. Needs --as a risk_officer, an admin, or a trader entitled to the
    account."""
    expires_ns = _expiry(expires_in, expires_at, required=False)
    command = _command(m.RequestLimitChange, actor, scope=scope, field=field, value=value,
                       expires_at_ns=expires_ns, reason=reason)
    _, detail = _act(command, f"POST /limits/{scope}/requests")
    _recorded(detail, f"limit change {detail.get('id')} requested: {scope} {field} -> {value}"
                      + (f" until {_when(expires_ns)}" if expires_ns else ""), command)


@limits_app.command("approve")
def limits_approve(change_id: UUID, reason: Reason, actor: Actor = None) -> None:
    """Checker: put a requested change in force. Needs --as a risk_officer other than the
    requester."""
    command = _command(m.ApproveLimitChange, actor, change_id=change_id, reason=reason)
    _, detail = _act(command, f"POST /limits/requests/{change_id}/approve")
    _recorded(detail, f"limit change {change_id} approved and in force", command)


@limits_app.command("reject")
def limits_reject(change_id: UUID, reason: Reason, actor: Actor = None) -> None:
    """Refuse a requested change (a risk_officer), or withdraw it (its requester)."""
    command = _command(m.RejectLimitChange, actor, change_id=change_id, reason=reason)
    _, detail = _act(command, f"POST /limits/requests/{change_id}/reject")
    _recorded(detail, f"limit change {change_id} rejected", command)


# --------------------------------------------------------------------------- accounts


@accounts_app.command("list")
def accounts_list() -> None:
    """Accounts: suspended or not, kill switch, limits version."""
    book = _book()
    gov = book.gov
    table = _table("Accounts")
    for name in ("account", "orders", "kill switch", "limits version"):
        table.add_column(name, no_wrap=True)
    for account_id, account in book.accounts.items():
        table.add_row(escape(account_id),
                      "SUSPENDED" if account_id in gov.suspended else "accepted",
                      "TRIPPED" if f"account:{account_id}" in gov.tripped else "-",
                      str(account.limits.version))
    _console().print(table)


@accounts_app.command("suspend")
def accounts_suspend(account: str, reason: Reason, actor: Actor = None) -> None:
    """Suspend ACCOUNT: its orders are refused until reinstated. Needs --as a risk_officer or
    an admin."""
    command = _command(m.SuspendAccount, actor, account_id=account, reason=reason)
    _, detail = _act(command, f"POST /accounts/{account}/suspend")
    _recorded(detail, f"account {account} suspended", command)


@accounts_app.command("reinstate")
def accounts_reinstate(account: str, reason: Reason, actor: Actor = None) -> None:
    """Reinstate a suspended ACCOUNT. Needs --as a risk_officer or an admin."""
    command = _command(m.ReinstateAccount, actor, account_id=account, reason=reason)
    _, detail = _act(command, f"POST /accounts/{account}/reinstate")
    _recorded(detail, f"account {account} reinstated", command)
