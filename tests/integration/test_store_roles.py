"""Least privilege on the real PostgreSQL (issue 5, items 8 and 10; ARCHITECTURE rule 11).

The owner role owns the event tables and their triggers; the engine's role may only INSERT
and SELECT, so it cannot switch tamper protection off; readers may only SELECT. The engine
refuses to start as a role that could. ``marketlog db init`` sets a database up that way,
and infrastructure/postgres.sh keeps one machine-wide credential per role, so a second
checkout running it leaves the first one's credentials valid.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from typer.testing import CliRunner

from api.cli import app
from infrastructure.event_store import EventStore
from infrastructure.postgres_admin import (
    ENGINE_URL_VAR,
    READER_URL_VAR,
    StoreUrls,
    admin_url,
    store_urls,
    throwaway_database,
)
from infrastructure.settings import Settings
from infrastructure.store_schema import InsecureStoreRole, StoreNotInitialised
from tests import builders as b

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]


def settings_for(urls: StoreUrls, tmp_path: Path, **update: object) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=urls.engine,
                    reader_database_url=urls.reader, read_database_url=None,
                    database_owner_url=None, chain_anchor_file=None).model_copy(update=update)


def events(n: int) -> list[object]:
    book = b.book()
    return [b.submit(book, quantity=1) for _ in range(n)]


@pytest.fixture
def written(pg_store: StoreUrls, tmp_path: Path) -> StoreUrls:
    store = EventStore.open(settings_for(pg_store, tmp_path))
    try:
        store.claim_writer()
        store.append(events(5))
        store.save_snapshot(5, b"snapshot")
    finally:
        store.close()
    return pg_store


# --------------------------------------------------------------------- the engine role

ENGINE_MAY_NOT = [
    "ALTER TABLE stored_events DISABLE TRIGGER marketlog_events_immutable",
    "ALTER TABLE stored_events DISABLE TRIGGER USER",
    "ALTER TABLE stored_events DISABLE TRIGGER ALL",
    "DROP TRIGGER marketlog_events_immutable ON stored_events",
    "CREATE OR REPLACE FUNCTION marketlog_refuse_change() RETURNS trigger LANGUAGE plpgsql "
    "AS $$ BEGIN RETURN NULL; END $$",
    "UPDATE stored_events SET state = state",
    "UPDATE stored_events SET topic = 'forged' WHERE notification_id = 3",
    "DELETE FROM stored_events WHERE notification_id = 5",
    "TRUNCATE stored_events",
    "DROP TABLE stored_events",
    "ALTER TABLE stored_events RENAME TO old_events",
    "ALTER TABLE stored_events OWNER TO marketlog_engine",
    "CREATE TRIGGER sneaky BEFORE INSERT ON stored_events FOR EACH ROW "
    "EXECUTE FUNCTION marketlog_refuse_change()",
    "UPDATE writer_epochs SET epoch = 99",
    "DELETE FROM writer_epochs",
    "TRUNCATE writer_epochs",
    "UPDATE snapshots SET state = 'x'",
    "DELETE FROM snapshots",
    "DELETE FROM store_meta",
    "INSERT INTO store_meta (store_id) VALUES (gen_random_uuid())",
    "SELECT nextval('stored_events_notification_id_seq')",
]


@pytest.mark.parametrize("statement", ENGINE_MAY_NOT, ids=lambda s: s[:48])
def test_engine_role_cannot_switch_tamper_protection_off(written: StoreUrls,
                                                         statement: str) -> None:
    """Issue 5, item 8: the application's role owned the table, so it could disable or drop
    the trigger, or replace its function, and then rewrite events."""
    with psycopg.connect(written.engine) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM stored_events").fetchone() == (5,)


def test_engine_role_may_insert_and_select_only(written: StoreUrls) -> None:
    with psycopg.connect(written.engine) as conn:
        # Granting itself more only earns a warning ("no privileges were granted").
        conn.execute("GRANT UPDATE, DELETE, TRIGGER ON stored_events TO marketlog_engine")
        rows = conn.execute(
            "SELECT t, p FROM unnest(ARRAY['stored_events', 'writer_epochs', 'snapshots', "
            "'store_meta']) t, unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', "
            "'TRUNCATE', 'TRIGGER', 'REFERENCES']) p WHERE has_table_privilege(t, p) "
            "ORDER BY 1, 2").fetchall()
    assert rows == [("snapshots", "INSERT"), ("snapshots", "SELECT"),
                    ("store_meta", "SELECT"),
                    ("stored_events", "INSERT"), ("stored_events", "SELECT"),
                    ("writer_epochs", "INSERT"), ("writer_epochs", "SELECT")]


def test_reader_role_may_only_select(written: StoreUrls, tmp_path: Path) -> None:
    with psycopg.connect(written.reader) as conn:
        assert conn.execute("SELECT count(*) FROM stored_events").fetchone() == (5,)
        for statement in (
                "INSERT INTO stored_events (notification_id, originator_id, "
                "originator_version, topic, state) VALUES (6, gen_random_uuid(), 1, 't', 'x')",
                "INSERT INTO writer_epochs (epoch, host, pid, head_position) "
                "VALUES (9, 'h', 1, 5)",
                "INSERT INTO snapshots (position, head_hash, state, state_sha256) "
                "VALUES (1, 'h', 'x', 'x')",
                "UPDATE stored_events SET state = state",
                "CREATE TABLE probe (id int)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()
    # The reader verifies; it cannot claim the store.
    reader = EventStore.open(settings_for(written, tmp_path), reader=True)
    try:
        assert reader.verify().ok
        with pytest.raises(PermissionError):
            reader.claim_writer()
    finally:
        reader.close()
    as_writer = EventStore.open(settings_for(written, tmp_path, database_url=written.reader))
    try:
        with pytest.raises(InsecureStoreRole, match="lacks INSERT"):
            as_writer.claim_writer()
    finally:
        as_writer.close()


# --------------------------------------------------------- refusing to start insecurely


def test_engine_refuses_to_write_as_the_owner(written: StoreUrls, tmp_path: Path) -> None:
    store = EventStore.open(settings_for(written, tmp_path, database_url=written.owner))
    try:
        with pytest.raises(InsecureStoreRole) as refused:
            store.claim_writer()
        message = str(refused.value)
        assert "owns stored_events" in message
        assert "MARKETLOG_DATABASE_OWNER_URL" in message and "marketlog db init" in message
        with pytest.raises(InsecureStoreRole):
            store.append(events(1))  # an unclaimed writer claims first, and is refused too
    finally:
        store.close()


def test_engine_refuses_extra_privileges_until_db_init_normalises_them(
        written: StoreUrls, tmp_path: Path) -> None:
    with psycopg.connect(written.owner, autocommit=True) as owner:
        owner.execute("GRANT UPDATE, TRUNCATE ON stored_events TO marketlog_engine")
        owner.execute("GRANT DELETE ON snapshots TO marketlog_engine")
    settings = settings_for(written, tmp_path)
    store = EventStore.open(settings)
    try:
        with pytest.raises(InsecureStoreRole,
                           match=r"holds UPDATE, TRUNCATE on stored_events.*DELETE on snapshots"):
            store.claim_writer()
    finally:
        store.close()
    env = {"MARKETLOG_DATABASE_OWNER_URL": written.owner,
           "MARKETLOG_DATABASE_URL": written.engine,
           "MARKETLOG_READER_DATABASE_URL": written.reader,
           "MARKETLOG_DATA_DIR": str(tmp_path / "data")}
    result = CliRunner().invoke(app, ["db", "init"], env=env)
    assert result.exit_code == 0, result.output
    store = EventStore.open(settings)
    try:
        assert store.claim_writer() == 2
        assert store.append(events(1)) == 6
    finally:
        store.close()


# ------------------------------------------------------------------ initialising a store


def test_db_init_sets_up_a_fresh_database(pg_admin_url: str, pg_role_urls: tuple[str, str],
                                          tmp_path: Path) -> None:
    with throwaway_database(pg_admin_url, "mlinit") as owner:
        urls = store_urls(owner, *pg_role_urls)
        settings = settings_for(urls, tmp_path)
        with pytest.raises(StoreNotInitialised, match="marketlog db init"):
            EventStore.open(settings)
        runner = CliRunner()
        no_owner = runner.invoke(app, ["db", "init"], env={
            "MARKETLOG_DATABASE_URL": urls.engine, "MARKETLOG_DATABASE_OWNER_URL": None})
        assert no_owner.exit_code == 2
        assert "MARKETLOG_DATABASE_OWNER_URL" in no_owner.output
        env = {"MARKETLOG_DATABASE_OWNER_URL": urls.owner, "MARKETLOG_DATABASE_URL": urls.engine,
               "MARKETLOG_READER_DATABASE_URL": urls.reader,
               "MARKETLOG_DATA_DIR": str(tmp_path / "data")}
        for _ in range(2):  # idempotent
            result = runner.invoke(app, ["db", "init"], env=env)
            assert result.exit_code == 0, result.output
            assert "owned by 'marketlog'" in result.output
        with psycopg.connect(urls.owner) as conn:
            owners = conn.execute(
                "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        assert owners == [("marketlog",)]
        store = EventStore.open(settings)
        try:
            store.claim_writer()
            assert store.append(events(3)) == 3
        finally:
            store.close()
        verified = runner.invoke(app, ["verify"], env=env)
        assert verified.exit_code == 0, verified.output
        assert "hash chain OK: 3 events" in verified.output


def test_engine_start_with_an_owner_url_initialises_the_store(
        pg_admin_url: str, pg_role_urls: tuple[str, str], tmp_path: Path) -> None:
    with throwaway_database(pg_admin_url, "mlboot") as owner:
        urls = store_urls(owner, *pg_role_urls)
        settings = settings_for(urls, tmp_path, database_owner_url=urls.owner)
        store = EventStore.open(settings)
        try:
            store.claim_writer()
            assert store.append(events(2)) == 2
        finally:
            store.close()
        with psycopg.connect(urls.engine) as conn:
            assert conn.execute("SELECT pg_has_role('marketlog_engine', relowner, 'USAGE') "
                                "FROM pg_class WHERE relname = 'stored_events'").fetchone() == (
                False,)


# ------------------------------------------------------- one machine-wide credential


def test_postgres_sh_in_a_second_checkout_keeps_the_first_ones_credentials(
        tmp_path: Path, pg_admin_url: str, pg_role_urls: tuple[str, str]) -> None:
    """Issue 5, item 10: the password lived in each checkout's .state/ while the role is
    global, so running the script from a second checkout re-set it and broke the first."""
    written: dict[str, str] = {}
    for checkout in ("first", "second"):
        script = tmp_path / checkout / "infrastructure" / "postgres.sh"
        script.parent.mkdir(parents=True)
        shutil.copy(ROOT / "infrastructure" / "postgres.sh", script)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETLOG_")}
        port = urlsplit(pg_admin_url).port
        done = subprocess.run(["bash", str(script)], env={**env, "MARKETLOG_PG_PORT": str(port)},
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        state = tmp_path / checkout / ".state" / "postgres.env"
        assert oct(state.stat().st_mode & 0o777) == "0o600"
        written[checkout] = state.read_text(encoding="utf-8")
    assert written["first"] == written["second"]
    urls = dict(line.split("=", 1) for line in written["first"].split())
    # every URL either checkout was given still logs in, and so does this checkout's own
    for url in (*urls.values(), admin_url(), *pg_role_urls):
        assert url
        with psycopg.connect(url, connect_timeout=10) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    assert urls["MARKETLOG_TEST_PG_URL"] == pg_admin_url
    assert (urls[ENGINE_URL_VAR], urls[READER_URL_VAR]) == pg_role_urls
