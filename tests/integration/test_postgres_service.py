"""The PostgreSQL the suite runs against is a real, durable server, reached by password over TCP."""

from __future__ import annotations

from urllib.parse import urlsplit

import psycopg

from infrastructure.settings import Settings


def test_fresh_database_is_a_real_durable_server(pg_url: str) -> None:
    """``pg_url`` is a fresh database holding only the event store, reached as the engine."""
    parts = urlsplit(pg_url)
    assert parts.scheme == "postgresql"
    assert parts.hostname == "127.0.0.1"  # TCP with a password, not the peer-auth Unix socket
    assert parts.password
    database = parts.path.lstrip("/")
    assert database.startswith("marketlog_t_")

    with psycopg.connect(pg_url) as conn:
        assert conn.info.server_version >= 130000  # DROP DATABASE ... WITH (FORCE) needs 13+
        assert conn.execute("SELECT current_database()").fetchone() == (database,)
        # A throwaway database holds nothing but the event store the owner initialised.
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
            "ORDER BY 1").fetchall()
        assert tables == [("snapshots",), ("store_meta",), ("stored_events",),
                          ("writer_epochs",)]
        assert conn.execute("SELECT current_user").fetchone() == ("marketlog_engine",)
        conn.execute("CREATE TABLE probe (id bigint PRIMARY KEY, note text NOT NULL)")
        conn.execute("INSERT INTO probe VALUES (%s, %s), (%s, %s)", (1, "one", 2, "two"))
        conn.commit()
        # Durability is the product's point: the server must not be tuned for speed over it.
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            assert conn.execute(f"SHOW {setting}").fetchone() == ("on",), setting

    # A second connection sees the committed rows: a server, not an in-process fake.
    with psycopg.connect(pg_url) as other:
        rows = other.execute("SELECT id, note FROM probe ORDER BY id").fetchall()
        assert rows == [(1, "one"), (2, "two")]
        assert other.execute("SHOW password_encryption").fetchone() == ("scram-sha-256",)


def test_throwaway_database_exists_on_the_admin_connection(pg_url: str,
                                                           pg_admin_url: str) -> None:
    name = urlsplit(pg_url).path.lstrip("/")
    with psycopg.connect(pg_admin_url) as admin:
        assert admin.execute(
            "SELECT count(*) FROM pg_database WHERE datname = %s", (name,)
        ).fetchone() == (1,)


def test_backend_fixture_yields_settings(backend: Settings) -> None:
    assert backend.data_dir.name == "data"
    if backend.uses_postgres:
        assert backend.database_url
        assert urlsplit(backend.database_url).path.startswith("/marketlog_t_")
        assert urlsplit(backend.database_url).username == "marketlog_engine"
        assert backend.reader_database_url
        assert urlsplit(backend.reader_database_url).username == "marketlog_reader"
        assert backend.read_models_url.startswith("postgresql+psycopg://")
    else:
        assert backend.database_url is None
        assert backend.sqlite_store_path == backend.data_dir / "events.sqlite"
