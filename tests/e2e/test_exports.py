"""Record exports (SEC 17a-4; issue 8, item 4) end to end on SQLite and PostgreSQL: the CLI's
``export`` and ``export-verify`` and the API's streamed ``/exports/*`` over a scripted
trading session of the real engine, with tampering an auditor must catch by name.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app as cli_app
from infrastructure.settings import Settings
from projections.exports import CSV_COLUMNS, FORMAT
from tests.auth import login, user_headers

pytestmark = pytest.mark.timeout(300)

_ids = itertools.count(1)
runner = CliRunner()


@pytest.fixture
def client(backend: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(backend)) as c:
        login(c, "tester")
        for user in ("abe", "cleo", "rose", "maria", "bob"):
            user_headers(c, user)  # keys first: their events come before the session
        yield c


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def place(client: TestClient, **fields: Any) -> dict[str, Any]:
    body = {"client_order_id": f"exp-{next(_ids)}-{uuid.uuid4().hex[:6]}",
            "account_id": "ACC-ALPHA", "symbol": "AAPL", "side": "buy", "quantity": 10,
            "order_type": "limit", "limit_price": "190.00", "time_in_force": "gtc", **fields}
    r = client.post("/orders", json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def scripted_session(client: TestClient) -> tuple[str, str]:
    """A small day: resting orders of two accounts, fills, a rejection, a replace and a
    cancel. Returns the ISO (from, to) times around it."""
    start = datetime.now(UTC)
    time.sleep(0.002)
    place(client, account_id="ACC-BETA", side="sell", quantity=40)
    place(client, account_id="ACC-DELTA", side="sell", quantity=25, limit_price="190.01")
    buy = place(client, quantity=60, limit_price="190.01")  # fills 40 + 20
    place(client, quantity=20_000)  # max_qty: rejected
    resting = place(client, quantity=15, limit_price="189.00")
    assert client.post(f"/orders/{resting['order_id']}/replace",
                       json={"limit_price": "189.10"}).status_code == 200
    assert client.post(f"/orders/{resting['order_id']}/cancel").status_code == 200
    place(client, account_id="ACC-GAMMA", symbol="MSFT", quantity=5, limit_price="410.00")
    assert buy["filled_quantity"] == 60
    # Wait for the venue's confirmation of the cancel: everything of the session is in.
    deadline = time.monotonic() + 10
    while client.get(f"/orders/{resting['order_id']}").json()["status"] != "canceled":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.002)
    return iso(start), iso(datetime.now(UTC))


def cli_env(settings: Settings) -> dict[str, str | None]:
    return {"MARKETLOG_DATA_DIR": str(settings.data_dir),
            "MARKETLOG_DATABASE_URL": settings.database_url,
            "MARKETLOG_READER_DATABASE_URL": settings.reader_database_url,
            "MARKETLOG_READ_DATABASE_URL": None, "MARKETLOG_KAFKA_BOOTSTRAP": None,
            "COLUMNS": "250", "NO_COLOR": "1"}


def cli(settings: Settings, *args: str) -> Any:
    return runner.invoke(cli_app, list(args), env=cli_env(settings))


def export(settings: Settings, out: Path, *args: str) -> dict[str, Any]:
    result = cli(settings, "export", "--out", str(out), *args)
    assert result.exit_code == 0, result.output
    return orjson.loads((out / "manifest.json").read_bytes())  # type: ignore[no-any-return]


def verify(settings: Settings, directory: Path) -> Any:
    return cli(settings, "export-verify", str(directory))


def trail(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/audit", params={"limit": 10_000, **params},
                   headers=user_headers(client, "abe"))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def edit_line(path: Path, line_no: int, change: Any) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    lines[line_no - 1] = change(lines[line_no - 1])
    path.write_bytes(b"".join(lines))


def one_byte(marker: bytes) -> Any:
    """Change the byte just after ``marker`` to another letter: a one-byte edit."""
    def change(line: bytes) -> bytes:
        at = line.index(marker) + len(marker)
        new = b"X" if line[at:at + 1] != b"X" else b"Y"
        return line[:at] + new + line[at + 1:]
    return change


@pytest.fixture
def exported(client: TestClient, backend: Settings, tmp_path: Path
             ) -> tuple[TestClient, Path, dict[str, Any], tuple[str, str]]:
    window = scripted_session(client)
    out = tmp_path / "export"
    manifest = export(backend, out, "--from", window[0], "--to", window[1])
    return client, out, manifest, window


# --------------------------------------------------------------------------- exports


def test_an_export_of_a_scripted_day_verifies(
        exported: tuple[TestClient, Path, dict[str, Any], tuple[str, str]],
        backend: Settings) -> None:
    client, out, manifest, (since, until) = exported
    expected = trail(client, since=since, until=until)
    assert len(expected) >= 12
    assert manifest["format"] == FORMAT and manifest["records"] == len(expected)
    assert (manifest["first_position"], manifest["last_position"]) == (
        expected[0]["position"], expected[-1]["position"])
    assert manifest["filters"]["from"] == since and manifest["filters"]["to"] == until
    head = client.get("/health").json()["store"]["head_position"]
    assert expected[-1]["position"] <= manifest["chain_head"]["position"] <= head
    assert len(manifest["chain_head"]["hash"]) == 64
    for name in ("audit.jsonl", "audit.csv"):
        assert manifest["files"][name]["sha256"] == sha256(out / name)
        assert manifest["files"][name]["records"] == len(expected)

    # JSON lines: the trail's records, each payload the stored body verbatim.
    lines = [orjson.loads(line) for line in (out / "audit.jsonl").read_bytes().splitlines()]
    assert [(r["position"], r["event_type"], r["payload"]) for r in lines] == [
        (e["position"], e["event_type"], e["payload"]) for e in expected]
    # CSV: the same records with the hash links as columns.
    rows = list(csv.DictReader(io.StringIO((out / "audit.csv").read_text())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(int(r["position"]), r["hash"], r["prev_hash"]) for r in rows] == [
        (e["position"], e["payload"]["hash"], e["payload"]["prev_hash"]) for e in expected]
    assert {r["event_type"] for r in rows} >= {"OrderAccepted", "OrderFilled", "OrderRejected",
                                               "ReplaceRequested", "OrderCanceled"}

    result = verify(backend, out)
    assert result.exit_code == 0, result.output
    assert f"export OK: {len(expected)} records" in result.output

    # One account only, by UTC date: that account's records of the day, and it verifies.
    today = datetime.now(UTC).date().isoformat()
    by_account = export(backend, out.parent / "beta", "--from", today, "--to", today,
                        "--account", "ACC-BETA")
    beta = trail(client, account_id="ACC-BETA", since=today + "T00:00:00Z")
    assert by_account["records"] == len(beta) >= 2
    assert {orjson.loads(x)["account_id"] for x in
            (out.parent / "beta" / "audit.jsonl").read_bytes().splitlines()} == {"ACC-BETA"}
    assert verify(backend, out.parent / "beta").exit_code == 0


def _failing(settings: Settings, directory: Path) -> str:
    result = verify(settings, directory)
    assert result.exit_code == 1, result.output
    assert "export verification FAILED" in result.output
    return " ".join(result.output.split())  # rich wraps long lines


def test_a_one_byte_change_in_the_jsonl_fails_naming_the_record(
        exported: tuple[TestClient, Path, dict[str, Any], tuple[str, str]],
        backend: Settings) -> None:
    _, out, _, _ = exported
    line = 4
    position = orjson.loads((out / "audit.jsonl").read_bytes().splitlines()[line - 1])[
        "position"]
    edit_line(out / "audit.jsonl", line, one_byte(b'"payload":{"'))
    output = _failing(backend, out)
    assert "audit.jsonl: its SHA-256" in output
    assert f"audit.jsonl line {line}, position {position}: changed" in output
    assert "payload" in output
    assert "audit.csv" not in output  # the other file is intact


def test_a_one_byte_change_in_the_csv_fails_naming_the_record(
        exported: tuple[TestClient, Path, dict[str, Any], tuple[str, str]],
        backend: Settings) -> None:
    _, out, _, _ = exported
    line = 6  # the header is line 1
    row = (out / "audit.csv").read_bytes().splitlines()[line - 1]
    position = int(row.split(b",")[0])
    actor = next(csv.reader([row.decode()]))[6]
    edit_line(out / "audit.csv", line, one_byte(b"," + actor.encode()[:1]))
    output = _failing(backend, out)
    assert f"audit.csv line {line}, position {position}: changed" in output
    assert "actor (" in output and f"'{actor}' in the store" in output
    assert "audit.jsonl line" not in output


def test_a_record_missing_from_the_file_is_named(
        exported: tuple[TestClient, Path, dict[str, Any], tuple[str, str]],
        backend: Settings) -> None:
    _, out, manifest, _ = exported
    lines = (out / "audit.jsonl").read_bytes().splitlines(keepends=True)
    gone = orjson.loads(lines[2])["position"]
    (out / "audit.jsonl").write_bytes(b"".join(lines[:2] + lines[3:]))
    # Even with the manifest's hash made to agree, the store says the record is missing.
    manifest["files"]["audit.jsonl"]["sha256"] = sha256(out / "audit.jsonl")
    manifest["files"]["audit.jsonl"]["bytes"] = (out / "audit.jsonl").stat().st_size
    (out / "manifest.json").write_bytes(orjson.dumps(manifest))
    output = _failing(backend, out)
    assert f"audit.jsonl line 3, position {gone}: missing" in output
    assert "SHA-256" not in output


def test_an_added_record_and_a_missing_file_are_named(
        exported: tuple[TestClient, Path, dict[str, Any], tuple[str, str]],
        backend: Settings) -> None:
    _, out, _, _ = exported
    lines = (out / "audit.jsonl").read_bytes().splitlines(keepends=True)
    (out / "audit.jsonl").write_bytes(b"".join([lines[0], lines[0], *lines[1:]]))
    first = orjson.loads(lines[0])["position"]
    output = _failing(backend, out)
    assert f"audit.jsonl line 2, position {first}: not a record of this export" in output
    (out / "audit.csv").unlink()
    assert "audit.csv: missing" in _failing(backend, out)


def test_a_tampered_store_row_is_caught(
        exported: tuple[TestClient, Path, dict[str, Any], tuple[str, str]],
        backend: Settings, request: pytest.FixtureRequest) -> None:
    _, out, _, _ = exported
    record = orjson.loads((out / "audit.jsonl").read_bytes().splitlines()[4])
    position = record["position"]
    # An insider with the owner's rights goes around the store's protection.
    if backend.uses_postgres:
        with psycopg.connect(request.getfixturevalue("pg_owner_url")) as conn:
            conn.execute("ALTER TABLE stored_events DISABLE TRIGGER USER")
            changed = conn.execute(
                "UPDATE stored_events SET state = convert_to(replace(convert_from(state, "
                "'UTF8'), '\"actor\":\"', '\"actor\":\"x'), 'UTF8') WHERE notification_id = %s",
                (position,)).rowcount
            assert changed == 1
            conn.execute("ALTER TABLE stored_events ENABLE TRIGGER USER")
    else:
        db = sqlite3.connect(backend.sqlite_store_path, isolation_level=None)
        try:
            for name in ("no_update", "no_delete", "append_only"):
                db.execute(f"DROP TRIGGER IF EXISTS stored_events_{name}")
            state = bytes(db.execute("SELECT state FROM stored_events WHERE rowid = ?",
                                     (position,)).fetchone()[0])
            db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?",
                       (state.replace(b'"actor":"', b'"actor":"x', 1), position))
        finally:
            db.close()
    output = _failing(backend, out)
    assert f"position {position}: the store's chain is broken: record {position} was " \
           "changed" in output
    assert f"audit.jsonl line 5, position {position}: changed" in output


def test_the_streamed_api_export_equals_the_cli_files_byte_for_byte(
        exported: tuple[TestClient, Path, dict[str, Any], tuple[str, str]]) -> None:
    client, out, manifest, (since, until) = exported
    params = {"from": since, "to": until, "through": manifest["chain_head"]["position"]}
    headers = user_headers(client, "cleo")
    for name in ("audit.jsonl", "audit.csv", "manifest"):
        with client.stream("GET", f"/exports/{name}", params=params, headers=headers) as r:
            assert r.status_code == 200, r.read()
            body = b"".join(r.iter_bytes())
            if name != "manifest":
                assert "content-length" not in r.headers  # streamed, chunk by chunk
            assert r.headers["x-marketlog-chain-head-position"] == str(params["through"])
        on_disk = out / (name if name != "manifest" else "manifest.json")
        assert body == on_disk.read_bytes(), name
    # Without ``through`` the API exports up to the store's head now: same records here,
    # since the time range ended before.
    r = client.get("/exports/audit.jsonl", params={"from": since, "to": until},
                   headers=headers)
    assert r.content == (out / "audit.jsonl").read_bytes()
    # A ``through`` beyond the head asks for everything up to the head, and says so.
    r = client.get("/exports/manifest", params={"from": since, "to": until,
                                                "through": 10**12}, headers=headers)
    assert r.status_code == 200 and r.json()["records"] == manifest["records"]
    assert int(r.headers["x-marketlog-chain-head-position"]) >= params["through"]


def test_an_empty_range_gives_a_valid_manifest_with_no_records(
        client: TestClient, backend: Settings, tmp_path: Path) -> None:
    place(client, quantity=3)
    manifest = export(backend, tmp_path / "empty", "--from", "2001-01-01", "--to",
                      "2001-01-31")
    assert (manifest["records"], manifest["first_position"], manifest["last_position"]) == (
        0, None, None)
    assert (tmp_path / "empty" / "audit.jsonl").read_bytes() == b""
    assert (tmp_path / "empty" / "audit.csv").read_bytes() == (
        ",".join(CSV_COLUMNS) + "\n").encode()
    assert manifest["chain_head"]["position"] > 0
    result = verify(backend, tmp_path / "empty")
    assert result.exit_code == 0, result.output
    r = client.get("/exports/manifest", params={"from": "2001-01-01", "to": "2001-01-31"},
                   headers=user_headers(client, "abe"))
    assert r.status_code == 200 and r.json()["records"] == 0


# ----------------------------------------------------------------------- who and what


def test_who_may_export(client: TestClient) -> None:
    place(client, quantity=4)
    for user in ("cleo", "abe", "rose", "admin"):
        r = client.get("/exports/manifest", headers=user_headers(client, user))
        assert r.status_code == 200, (user, r.text)
    # maria trades ACC-ALPHA: her own account only, and never the firm's whole trail.
    mine = client.get("/exports/audit.jsonl", params={"account": "ACC-ALPHA"},
                      headers=user_headers(client, "maria"))
    assert mine.status_code == 200, mine.text
    assert {orjson.loads(x)["account_id"] for x in mine.content.splitlines()} == {"ACC-ALPHA"}
    for params in ({"account": "ACC-DELTA"}, {}):
        r = client.get("/exports/audit.csv", params=params,
                       headers=user_headers(client, "maria"))
        assert r.status_code == 403, r.text
    r = client.get("/exports/manifest")
    assert r.status_code == 403  # the client's own trader, tester, gave no account


@pytest.mark.parametrize(("params", "name"), [
    ({"from": "2026-13-01"}, "from"),
    ({"to": "yesterday"}, "to"),
    ({"from": "2026-11-27", "to": "2026-11-26"}, "from"),
    ({"from": "2026-11-26T10:00:00Z", "to": "2026-11-26T09:00:00Z"}, "from"),
    ({"through": "-1"}, "through"),
    ({"from": "1900-01-01"}, "from"),  # before the log's int64 nanoseconds can reach
    ({"account": "bad account"}, "account"),
])
def test_invalid_filters_are_422_naming_the_parameter(
        client: TestClient, params: dict[str, str], name: str) -> None:
    for path in ("/exports/audit.jsonl", "/exports/audit.csv", "/exports/manifest"):
        r = client.get(path, params=params, headers=user_headers(client, "abe"))
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["query", name], r.text


def test_cli_refuses_bad_bounds_and_a_non_empty_directory(backend: Settings,
                                                         tmp_path: Path,
                                                         client: TestClient) -> None:
    bad = cli(backend, "export", "--from", "2026-02-30", "--out", str(tmp_path / "x"))
    assert bad.exit_code == 2 and "--from" in bad.output
    reversed_ = cli(backend, "export", "--from", "2026-02-03", "--to", "2026-02-01",
                    "--out", str(tmp_path / "y"))
    assert reversed_.exit_code == 2 and "after" in reversed_.output
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "keep").write_text("x")
    full = cli(backend, "export", "--out", str(tmp_path / "z"))
    assert full.exit_code == 2 and "not empty" in full.output
    assert verify(backend, tmp_path / "nowhere").exit_code == 2
    (tmp_path / "bare").mkdir()
    output = _failing(backend, tmp_path / "bare")
    assert "manifest.json: missing" in output


def test_a_store_rewritten_after_the_export_no_longer_matches_its_chain_head(
        exported: tuple[TestClient, Path, dict[str, Any], tuple[str, str]],
        backend: Settings) -> None:
    """The manifest's chain head is an anchor outside the database: an export whose head
    the store no longer reaches (as if the tail were cut) fails."""
    _, out, manifest, _ = exported
    manifest["chain_head"]["position"] += 10_000
    (out / "manifest.json").write_bytes(orjson.dumps(manifest))
    output = _failing(backend, out)
    assert "records were removed from the store" in output
    shutil.rmtree(out)


def test_exports_page_through_more_than_one_keyset_page(
        client: TestClient, backend: Settings, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 3 rows: the files are the same as with one page, and verify."""
    from projections import exports
    for i in range(4):
        place(client, quantity=20 + i)
    whole = export(backend, tmp_path / "one")
    monkeypatch.setattr(exports, "PAGE", 3)
    monkeypatch.setattr(exports.rows, "__defaults__", (3,))
    paged = export(backend, tmp_path / "paged", "--through",
                   str(whole["chain_head"]["position"]))
    assert paged == whole
    assert verify(backend, tmp_path / "paged").exit_code == 0
