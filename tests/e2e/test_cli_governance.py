"""``marketlog users/keys/symbols/locates/kill/limits/accounts`` end to end, on the embedded
default in a temporary directory, acting as the test firm's users (tests/config/test.toml:
admin "admin", risk officers "rose" and "raj", trader "tester" entitled to every account)."""

from __future__ import annotations

import getpass
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from api.cli import app
from commands.models import HaltSymbol
from domain.values import Source
from infrastructure.bootstrap import bootstrap
from infrastructure.credentials import token_sha256
from infrastructure.event_store import EventStore
from infrastructure.settings import Settings

runner = CliRunner()
UUID_TEXT = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
TOKEN = re.compile(r"\bmlk_([0-9a-f]+)_[A-Za-z0-9_-]+")
GROUPS = {
    "users": ("list", "create", "disable", "entitle", "revoke-entitlement"),
    "keys": ("issue", "list", "revoke"),
    "symbols": ("list", "halt", "resume", "restrict-short-sales"),
    "locates": ("list", "request", "grant"),
    "kill": ("list", "trip", "reset"),
    "limits": ("show", "pending", "history", "request", "approve", "reject"),
    "accounts": ("list", "suspend", "reinstate"),
}


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh embedded store whose trading day is open (the calendar's, opened by the first
    engine), so that counting events around a command counts only that command's."""
    folder = tmp_path / "data"
    monkeypatch.setenv("MARKETLOG_DATA_DIR", str(folder))
    for name in ("MARKETLOG_DATABASE_URL", "MARKETLOG_READ_DATABASE_URL",
                 "MARKETLOG_DATABASE_OWNER_URL", "MARKETLOG_READER_DATABASE_URL",
                 "MARKETLOG_KAFKA_BOOTSTRAP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(getpass, "getuser", lambda: "os-user")  # the default --as
    ok("day", "status")
    return folder


def run(*args: str) -> Result:
    return runner.invoke(app, list(args))


def ok(*args: str) -> str:
    result = run(*args)
    assert result.exit_code == 0, f"{args}: {result.output}"
    return result.output


def recorded() -> list[Any]:
    """Every event of the store but the engine's own schedule (a trading day that opens or
    closes when an engine starts across midnight)."""
    store = EventStore.open(Settings(), reader=True)
    try:
        return [e for _, e in store.read() if getattr(e, "actor", None) != "system"]
    finally:
        store.close()


def refused(code: int, *args: str) -> str:
    """The command exits with ``code`` and the store holds exactly what it held before."""
    before = recorded()
    result = run(*args)
    assert result.exit_code == code, f"{args}: {result.output}"
    assert recorded() == before, f"{args} recorded something"
    return result.output


def first_id(text: str) -> str:
    found = UUID_TEXT.search(text)
    assert found, text
    return found.group(0)


# --------------------------------------------------------------------------- help


@pytest.mark.parametrize(("group", "command"),
                         [(g, None) for g in GROUPS] + [(g, c) for g, cs in GROUPS.items()
                                                         for c in cs])
def test_help_of_every_governance_command(group: str, command: str | None) -> None:
    args = [group, "--help"] if command is None else [group, command, "--help"]
    result = runner.invoke(app, args, env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    if command not in (None, "list", "show", "pending", "history"):
        assert "--as" in result.output
        assert "--reason" in result.output


# --------------------------------------------------------------------------- limits


def test_maker_checker_limit_change(data_dir: Path) -> None:
    shown = ok("limits", "show", "account:ACC-ALPHA")
    assert re.search(r"account:ACC-ALPHA \(version 1\)", shown), shown
    assert re.search(r"^max_order_quantity\s+10000$", shown, re.MULTILINE), shown

    requested = ok("limits", "request", "account:ACC-ALPHA", "max_order_quantity", "12000",
                   "--as", "rose", "--reason", "desk grows", "--expires-in", "3600")
    change = first_id(requested)
    assert "LimitChangeRequested" in requested
    pending = ok("limits", "pending")
    assert change in pending and "10000 -> 12000" in pending and "rose/cli" in pending
    # Requested, not in force.
    assert re.search(r"^max_order_quantity\s+10000$",
                     ok("limits", "show", "account:ACC-ALPHA"), re.MULTILINE)

    # Maker-checker: the requester may not approve her own request (denied: exit 3).
    own = refused(3, "limits", "approve", change, "--as", "rose", "--reason", "looks fine")
    assert "may not be approved by the user who requested it" in own
    # A trader is no checker either.
    refused(3, "limits", "approve", change, "--as", "tester", "--reason", "fine")

    approved = ok("limits", "approve", change, "--as", "raj", "--reason", "checked the desk")
    assert "LimitChangeApproved" in approved and "raj/cli" in approved
    shown = ok("limits", "show", "account:ACC-ALPHA")
    assert re.search(r"account:ACC-ALPHA \(version 2\)", shown), shown
    assert re.search(r"^max_order_quantity\s+12000$", shown, re.MULTILINE), shown
    assert "no limit change is pending" in ok("limits", "pending")
    # Approved once: a second approval finds nothing pending (refused, not denied).
    refused(1, "limits", "approve", change, "--as", "raj", "--reason", "again")

    history = ok("limits", "history", "account:ACC-ALPHA")
    lines = [line for line in history.splitlines() if line.startswith("#")]
    assert len(lines) == 2, history
    assert "requested by rose/cli: max_order_quantity 10000 -> 12000 until" in lines[0]
    assert "approved by raj/cli: max_order_quantity 10000 -> 12000, version 2" in lines[1]
    assert "desk grows" in history and "checked the desk" in history
    assert f"change {change}" in history
    assert "no limit changes of account:ACC-BETA" in ok("limits", "history",
                                                          "account:ACC-BETA")


def test_a_limit_request_can_be_withdrawn_and_a_bad_one_is_refused(data_dir: Path) -> None:
    change = first_id(ok("limits", "request", "firm", "loss_limit", "9000000", "--as", "raj",
                         "--reason", "tighter"))
    ok("limits", "reject", change, "--as", "raj", "--reason", "withdrawn")
    assert "no limit change is pending" in ok("limits", "pending")
    assert "rejected by raj/cli" in ok("limits", "history", "firm")
    assert "not a governed limit" in refused(
        1, "limits", "request", "firm", "tick_size", "1", "--as", "raj", "--reason", "x")
    assert "unknown limit scope" in refused(
        1, "limits", "request", "account:ACC-NOPE", "credit_limit", "1", "--as", "raj",
        "--reason", "x")
    assert "invalid RequestLimitChange" in refused(
        2, "limits", "request", "firm", "loss_limit", "1,000", "--as", "raj", "--reason", "x")
    assert "version 1" in ok("limits", "show", "firm")
    assert "unknown limit scope" in run("limits", "show", "nowhere").output


# --------------------------------------------------------------------------- symbols


def test_halt_shows_in_symbols_list_and_resume_lifts_it(data_dir: Path) -> None:
    done = ok("symbols", "halt", "AAPL", "--as", "rose", "--reason", "news pending")
    assert "AAPL halted" in done and "TradingHalted v1" in done
    listed = ok("symbols", "list")
    assert re.search(r"^AAPL\s+HALTED\s+news pending", listed, re.MULTILINE), listed
    assert re.search(r"^MSFT\s+trading", listed, re.MULTILINE), listed
    assert "already halted" in refused(1, "symbols", "halt", "aapl", "--as", "rose",
                                       "--reason", "again")
    refused(3, "symbols", "resume", "AAPL", "--as", "tester", "--reason", "mine now")
    ok("symbols", "resume", "AAPL", "--as", "admin", "--reason", "news out")
    assert re.search(r"^AAPL\s+trading", ok("symbols", "list"), re.MULTILINE)
    assert "unknown symbol" in refused(1, "symbols", "halt", "ZZZZ", "--as", "rose",
                                       "--reason", "x")

    ok("symbols", "restrict-short-sales", "MSFT", "--as", "rose", "--reason", "SIP notice")
    assert re.search(r"^MSFT\s+trading\s+restricted \(Rule 201",
                     ok("symbols", "list"), re.MULTILINE)


def test_without_as_the_os_user_acts_and_is_refused(data_dir: Path) -> None:
    output = refused(3, "symbols", "halt", "AAPL", "--reason", "who am i")
    assert "'os-user' (unknown user) may not do this" in output


def test_the_reason_is_required(data_dir: Path) -> None:
    result = run("symbols", "halt", "AAPL", "--as", "rose")
    assert result.exit_code == 2
    assert "--reason" in result.output


# --------------------------------------------------------------------------- keys


def test_a_key_is_issued_once_listed_by_id_and_revoked(data_dir: Path) -> None:
    issued = ok("keys", "issue", "maria", "--as", "admin", "--reason", "new desk")
    token = TOKEN.search(issued)
    assert token, issued
    key_id = token.group(1)
    assert f'curl -H "Authorization: Bearer {token.group(0)}" http://' in issued
    [event] = [e for e in recorded() if type(e).__name__ == "ApiKeyIssued"]
    assert (event.username, event.key_id, event.actor, event.source) == (
        "maria", key_id, "admin", Source.CLI)
    assert event.key_sha256 == token_sha256(token.group(0))  # only the hash is recorded

    listed = ok("keys", "list")
    assert re.search(rf"^{key_id}\s+maria\s*$", listed, re.MULTILINE), listed
    assert "mlk_" not in listed and "mlk_" not in ok("users", "list")
    assert key_id in ok("users", "list")

    refused(3, "keys", "revoke", key_id, "--as", "fred", "--reason", "not his")
    ok("keys", "revoke", key_id, "--as", "maria", "--reason", "lost laptop")
    assert "no active API keys of maria" in ok("keys", "list", "--user", "maria")
    assert "no active key" in refused(1, "keys", "revoke", key_id, "--as", "admin",
                                      "--reason", "again")


def test_a_key_written_to_the_credentials_folder_is_not_printed(data_dir: Path) -> None:
    issued = ok("keys", "issue", "rita", "--as", "rita", "--reason", "rotation", "--write")
    path = data_dir / "credentials" / "rita.token"
    token = path.read_text().strip()
    assert TOKEN.fullmatch(token)
    assert token not in issued
    assert "$(cat " in issued and "rita.token" in issued
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Another user's key: admins only; an unknown user has none.
    refused(3, "keys", "issue", "rita", "--as", "maria", "--reason", "x")
    refused(1, "keys", "issue", "nobody", "--as", "admin", "--reason", "x")
    assert not (data_dir / "credentials" / "nobody.token").exists()


# --------------------------------------------------------------------------- users


def test_user_creation_entitlement_and_disabling(data_dir: Path) -> None:
    refused(3, "users", "create", "zed", "--role", "trader", "--as", "rose", "--reason", "x")
    ok("users", "create", "zed", "--role", "trader", "--as", "admin", "--reason", "new hire")
    assert re.search(r"^zed\s+trader\s+yes\s*$", ok("users", "list"), re.MULTILINE)
    refused(1, "users", "create", "zed", "--role", "trader", "--as", "admin", "--reason", "x")
    assert "invalid CreateUser" in refused(2, "users", "create", "Zed", "--role", "trader",
                                           "--as", "admin", "--reason", "x")

    ok("users", "entitle", "zed", "ACC-BETA", "--as", "admin", "--reason", "joins beta")
    ok("users", "entitle", "zed", "ACC-GAMMA", "--as", "admin", "--reason", "and gamma")
    assert re.search(r"^zed\s+trader\s+yes\s+ACC-BETA, ACC-GAMMA", ok("users", "list"),
                     re.MULTILINE)
    refused(1, "users", "entitle", "zed", "ACC-NOPE", "--as", "admin", "--reason", "x")
    refused(3, "users", "entitle", "zed", "ACC-ALPHA", "--as", "zed", "--reason", "x")
    # The new trader acts on the accounts entitled: a locate for his account.
    locate = first_id(ok("locates", "request", "ACC-BETA", "AAPL", "500", "--as", "zed",
                         "--reason", "short"))
    refused(3, "locates", "request", "ACC-ALPHA", "AAPL", "500", "--as", "zed",
            "--reason", "not mine")

    ok("users", "revoke-entitlement", "zed", "ACC-GAMMA", "--as", "admin", "--reason", "moved")
    ok("users", "disable", "zed", "--as", "admin", "--reason", "left")
    assert re.search(r"^zed\s+trader\s+disabled\s+ACC-BETA\s*$", ok("users", "list"),
                     re.MULTILINE)
    events = [(type(e).__name__, e.actor, e.source, e.reason) for e in recorded()
              if getattr(e, "username", None) == "zed"]
    assert events == [("UserCreated", "admin", "cli", "new hire"),
                      ("EntitlementGranted", "admin", "cli", "joins beta"),
                      ("EntitlementGranted", "admin", "cli", "and gamma"),
                      ("EntitlementRevoked", "admin", "cli", "moved"),
                      ("UserDisabled", "admin", "cli", "left")]
    assert locate in ok("locates", "list")


# --------------------------------------------------------------------------- kill switches


def test_kill_switch_trip_and_reset(data_dir: Path) -> None:
    assert "no kill switch is tripped" in ok("kill", "list")
    refused(3, "kill", "trip", "account:ACC-ALPHA", "--as", "tester", "--reason", "x")
    tripped = ok("kill", "trip", "account:ACC-ALPHA", "--as", "rose", "--reason", "drill")
    assert "KillSwitchTripped v1" in tripped
    listed = ok("kill", "list")
    assert re.search(r"^account:ACC-ALPHA\s+manual\s.*\srose/cli\s.*\sdrill\s*$", listed,
                     re.MULTILINE), listed
    assert re.search(r"^ACC-ALPHA\s+accepted\s+TRIPPED", ok("accounts", "list"), re.MULTILINE)
    refused(1, "kill", "trip", "account:ACC-ALPHA", "--as", "raj", "--reason", "again")

    # Only a risk officer resets, with a reason: a trader's reset is denied (exit 3).
    denied = refused(3, "kill", "reset", "account:ACC-ALPHA", "--as", "tester",
                     "--reason", "back to work")
    assert "needs the role risk_officer" in denied
    refused(3, "kill", "reset", "account:ACC-ALPHA", "--as", "admin", "--reason", "x")
    ok("kill", "reset", "account:ACC-ALPHA", "--as", "raj", "--reason", "drill over")
    assert "no kill switch is tripped" in ok("kill", "list")
    assert "is not tripped" in refused(1, "kill", "reset", "account:ACC-ALPHA", "--as", "raj",
                                       "--reason", "again")
    assert "invalid TripKillSwitch" in refused(2, "kill", "trip", "everything", "--as", "rose",
                                               "--reason", "x")


# --------------------------------------------------------------------------- locates, accounts


def test_locate_request_and_grant(data_dir: Path) -> None:
    assert "no locates" in ok("locates", "list")
    locate = first_id(ok("locates", "request", "ACC-ALPHA", "tsla", "400", "--as", "tester",
                         "--reason", "short TSLA"))
    assert "expiry" in refused(2, "locates", "grant", locate, "--as", "rose", "--reason", "x")
    refused(3, "locates", "grant", locate, "--as", "tester", "--expires-in", "600",
            "--reason", "x")
    refused(1, "locates", "grant", locate, "--as", "rose", "--quantity", "401",
            "--expires-in", "600", "--reason", "x")
    granted = ok("locates", "grant", locate, "--as", "rose", "--expires-at",
                 "2200-01-01T00:00:00Z", "--reason", "borrow found")
    assert "granted: 400 until 2200-01-01T00:00:00Z" in granted
    assert re.search(rf"^{locate}\s+ACC-ALPHA\s+TSLA\s+400\s+400\s+400\s+granted\s+"
                     r"2200-01-01T00:00:00Z\s*$", ok("locates", "list"), re.MULTILINE)
    refused(1, "locates", "grant", locate, "--as", "raj", "--expires-in", "600",
            "--reason", "twice")


def test_account_suspension(data_dir: Path) -> None:
    refused(3, "accounts", "suspend", "ACC-BETA", "--as", "tester", "--reason", "x")
    ok("accounts", "suspend", "ACC-BETA", "--as", "rose", "--reason", "margin call")
    assert re.search(r"^ACC-BETA\s+SUSPENDED", ok("accounts", "list"), re.MULTILINE)
    refused(1, "accounts", "suspend", "ACC-BETA", "--as", "rose", "--reason", "again")
    ok("accounts", "reinstate", "ACC-BETA", "--as", "admin", "--reason", "paid")
    assert re.search(r"^ACC-BETA\s+accepted", ok("accounts", "list"), re.MULTILINE)


# --------------------------------------------------------------------------- a running server


@pytest.fixture
def running_engine(data_dir: Path) -> Iterator[Any]:
    """What `marketlog serve` holds: an engine of another process would hold the same lock."""
    system = bootstrap(Settings())
    try:
        yield system
    finally:
        system.close()


def test_actions_are_refused_clearly_while_a_server_holds_the_store_and_reads_work(
    running_engine: Any,
) -> None:
    output = refused(2, "symbols", "halt", "AAPL", "--as", "rose", "--reason", "x")
    assert "marketlog serve" in output
    assert "POST /symbols/AAPL/halt on http://" in output
    assert "nothing was recorded" in output
    # The server's own halt, read beside it without its lock.
    outcome = running_engine.engine.submit(HaltSymbol(
        symbol="MSFT", reason="through the API", actor="rose", source=Source.API)
    ).result(timeout=30)
    assert outcome.kind == "done", outcome
    assert re.search(r"^MSFT\s+HALTED\s+through the API", ok("symbols", "list"), re.MULTILINE)
    assert "version 1" in ok("limits", "show", "firm")


def test_reading_without_a_store_creates_nothing(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETLOG_DATA_DIR", str(tmp_path / "none"))
    monkeypatch.delenv("MARKETLOG_DATABASE_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    assert re.search(r"^rose\s+risk_officer\s+yes", ok("users", "list"), re.MULTILINE)
    assert "no limit changes" in ok("limits", "history", "firm")
    assert not (tmp_path / "none").exists()


def test_reads_start_from_a_snapshot_the_log_vouches_for(data_dir: Path) -> None:
    ok("users", "create", "zed", "--role", "trader", "--as", "admin", "--reason", "new hire")
    ok("symbols", "halt", "SPY", "--as", "rose", "--reason", "before the snapshot")
    ok("snapshot")
    ok("symbols", "halt", "TSLA", "--as", "rose", "--reason", "after the snapshot")
    listed = ok("symbols", "list")
    assert re.search(r"^SPY\s+HALTED\s+before the snapshot", listed, re.MULTILINE), listed
    assert re.search(r"^TSLA\s+HALTED\s+after the snapshot", listed, re.MULTILINE), listed
    assert re.search(r"^zed\s+trader\s+yes", ok("users", "list"), re.MULTILINE)
