"""The ``marketlog`` command line end to end, on the embedded default in a temporary directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from api.cli import app
from api.demo import unbreachable_controls
from domain.controls import NEW_ORDER_CONTROLS
from infrastructure.config import load_config
from infrastructure.settings import Settings
from projections.rebuild import digest

COMMANDS = ("demo", "serve", "verify", "rebuild", "audit", "day", "snapshot", "db", "relay",
            "project", "replay", "digest", "users", "keys", "symbols", "locates", "kill",
            "limits", "accounts", "cat", "lineage", "export", "export-verify")
HEX64 = re.compile(r"\b[0-9a-f]{64}\b")
# Unset anything of the caller's that would point the CLI elsewhere; wide output, no colour.
BASE_ENV: dict[str, str | None] = {
    "MARKETLOG_DATABASE_URL": None,
    "MARKETLOG_READ_DATABASE_URL": None,
    "MARKETLOG_CONFIG_FILE": None,
    "COLUMNS": "200",
    "NO_COLOR": "1",
}

runner = CliRunner()


def env_for(data_dir: Path) -> dict[str, str | None]:
    return {**BASE_ENV, "MARKETLOG_DATA_DIR": str(data_dir)}


def invoke(data_dir: Path, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), env=env_for(data_dir))


def marketlog_process(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own (the installed console script if there is one)."""
    script = Path(sys.executable).with_name("marketlog")
    command = [str(script)] if script.exists() else [
        sys.executable, "-c", "from api.cli import app; app()"]
    env = {k: v for k, v in os.environ.items() if k not in BASE_ENV}
    env.update({k: v for k, v in env_for(data_dir).items() if v is not None})
    return subprocess.run([*command, *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    data_dir = tmp_path_factory.mktemp("demo") / "data"
    result = invoke(data_dir, "demo", "--orders", "600", "--seed", "7")
    assert result.exit_code == 0, result.output
    return data_dir, result.output


def test_python_dash_m_has_every_command_of_the_installed_script() -> None:
    # Under ``python -m api.cli`` that module is __main__: commands registered on the
    # imported api.cli.app would be missing there (they were, for relay and replay).
    listing = subprocess.run([sys.executable, "-m", "api.cli", "--help"], check=False,
                             capture_output=True,
                             text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert listing.returncode == 0, listing.stderr
    for command in COMMANDS:
        assert re.search(rf"^│ {re.escape(command)}\s", listing.stdout, re.MULTILINE), (
            command, listing.stdout)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_of_every_command(command: str | None) -> None:
    args = ["--help"] if command is None else [command, "--help"]
    result = runner.invoke(app, args, env=BASE_ENV)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_demo_prints_positions_and_a_rejection_for_every_breachable_control(
    demo_run: tuple[Path, str],
) -> None:
    data_dir, output = demo_run
    assert "600 orders" in output
    assert "Positions" in output
    assert re.search(r"^ACC-ALPHA\s+AAPL\s+-?[\d,]+\s", output, re.MULTILINE), output
    unbreachable = unbreachable_controls(load_config(None))
    # The default firm limit is below the sum of the accounts': firm_credit is breachable;
    # a session of seconds never lets the liquidity provider's last print go stale.
    assert set(unbreachable) == {"stale_reference"}
    for control in NEW_ORDER_CONTROLS:
        if control in unbreachable:
            assert f"{control}: not breachable with this configuration" in output
        else:
            assert re.search(rf"^{control}\s+[1-9][\d,]*\s", output, re.MULTILINE), (
                f"no rejection by {control}:\n{output}")
    assert "not breached this session" not in output
    assert "Hash chain: OK" in output
    assert re.search(r"[\d,]+ orders/s, [\d,]+ events/s", output)
    assert str((data_dir / "events.sqlite").resolve()) in output


def test_the_demo_is_deterministic_for_a_seed(tmp_path: Path, demo_run: tuple[Path, str]) -> None:
    _, first = demo_run
    again = invoke(tmp_path / "data", "demo", "--orders", "600", "--seed", "7")
    assert again.exit_code == 0, again.output

    def stable(text: str) -> list[str]:  # timings, paths and hashes (timestamps) vary
        # The users' table that ends the summary names each key file (in the data directory,
        # its width follows that path) and the keys are new each run: compared apart.
        session, _, users = text.partition("Users (API keys")
        assert users, text
        return [line for line in session.splitlines()
                if not re.search(r"orders/s|^Hash chain|^Files|^\s+read models ", line)]

    def users(text: str) -> list[list[str]]:  # user, role, accounts (not the key's path)
        table = text.partition("Users (API keys")[2].partition("Try:")[0]
        return [line.split()[:-1] for line in table.splitlines()[3:] if line.strip()]

    assert len(stable(first)) > 30

    assert stable(again.output) == stable(first)
    assert users(again.output) == users(first)
    assert ["maria", "trader", "ACC-ALPHA"] in users(first)


def test_keep_adds_a_new_session_to_the_same_store(tmp_path: Path) -> None:
    first = invoke(tmp_path, "demo", "--orders", "150")
    assert first.exit_code == 0, first.output
    second = invoke(tmp_path, "demo", "--orders", "150", "--keep")
    assert second.exit_code == 0, second.output

    def count(label: str, text: str) -> int:
        return int(re.search(rf"^{label}\s+([\d,]+)$", text, re.MULTILINE)  # type: ignore[union-attr]
                   .group(1).replace(",", ""))

    # New client ids: the second session's orders are new orders, not idempotent resends.
    assert count("orders accepted", second.output) > 50
    assert count("events journaled", second.output) > 100
    heads = [int(m) for m in re.findall(r"head position (\d+)", first.output + second.output)]
    assert heads[1] > heads[0]
    assert "Hash chain: OK" in second.output


def test_verify_in_another_process_reports_the_chain_ok(demo_run: tuple[Path, str]) -> None:
    data_dir, output = demo_run
    done = marketlog_process(data_dir, "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hash chain OK" in done.stdout
    heads = HEX64.findall(done.stdout.replace("\n", ""))
    assert heads and heads[0] in output.replace("\n", "")  # the head the demo printed


def test_verify_without_a_store_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    result = invoke(tmp_path / "empty", "verify")
    assert result.exit_code == 2
    assert "no event store" in result.output
    assert not (tmp_path / "empty").exists()


def test_rebuild_prints_the_digest_of_the_live_read_models(
    demo_run: tuple[Path, str], tmp_path: Path,
) -> None:
    data_dir, _ = demo_run
    target = f"sqlite:///{(tmp_path / 'rebuilt' / 'x.sqlite').as_posix()}"
    result = invoke(data_dir, "rebuild", "--into", target)
    assert result.exit_code == 0, result.output
    printed = re.search(r"^digest ([0-9a-f]{64})$", result.output, re.MULTILINE)
    assert printed, result.output

    engine = sa.create_engine(Settings(data_dir=data_dir).read_models_url)
    try:
        with engine.connect() as conn:
            live = digest(conn)
    finally:
        engine.dispose()
    assert printed.group(1) == live

    again = invoke(data_dir, "rebuild", "--into", target, "--compare-live")
    assert again.exit_code == 1  # not an empty database any more
    assert "empty database" in again.output


def test_rebuild_compare_live_reports_matching_digests(
    demo_run: tuple[Path, str], tmp_path: Path,
) -> None:
    data_dir, _ = demo_run
    result = invoke(data_dir, "rebuild", "--into", f"sqlite:///{tmp_path / 'y.sqlite'}",
                    "--compare-live")
    assert result.exit_code == 0, result.output
    assert "digests match" in result.output


def test_audit_filters_by_account_and_order(demo_run: tuple[Path, str]) -> None:
    data_dir, _ = demo_run
    result = invoke(data_dir, "audit", "--account", "ACC-GAMMA", "--limit", "500")
    assert result.exit_code == 0, result.output
    assert "control restricted" in result.output
    headers = re.findall(r"^#\d+ \S+ (\w+) (\S+)/(\w+) (\S+)$", result.output, re.MULTILINE)
    assert headers and {account for *_, account in headers} == {"ACC-GAMMA"}
    assert {"rita"} <= {actor for _, actor, _, _ in headers}

    order_id = re.search(r"order ([0-9a-f-]{36}) v1: ", result.output).group(1)  # type: ignore[union-attr]
    one = invoke(data_dir, "audit", "--order", order_id, "--json")
    assert one.exit_code == 0, one.output
    lines = one.output.splitlines()
    assert lines and all(f'"order_id":"{order_id}"' in line for line in lines)


def test_demo_refuses_a_configured_database_url(tmp_path: Path) -> None:
    env = {**env_for(tmp_path), "MARKETLOG_DATABASE_URL": "postgresql://u:s3cr3t-pw@h/db"}
    result = runner.invoke(app, ["demo", "--orders", "10"], env=env)
    assert result.exit_code == 2
    assert "--use-configured-store" in result.output
    assert "s3cr3t-pw" not in result.output
