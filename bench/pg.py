"""Throwaway PostgreSQL databases (``marketlog_bench_<hex>``) and the server's settings."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ENV = "MARKETLOG_TEST_PG_URL"
STATE_FILE = Path(__file__).resolve().parent.parent / ".state" / "postgres.env"


class NoPostgres(RuntimeError):
    pass


def admin_url() -> str:
    """The admin URL from the environment (``make bench``), else from .state/postgres.env."""
    url = os.environ.get(ENV)
    if not url and STATE_FILE.is_file():
        for line in STATE_FILE.read_text().splitlines():
            name, _, value = line.strip().partition("=")
            if name.removeprefix("export ").strip() == ENV:
                url = value.strip().strip("'\"")
    if not url:
        raise NoPostgres(
            f"{ENV} is not set and {STATE_FILE} does not define it: start the local server "
            "(infrastructure/postgres.sh) or pass --skip-postgres")
    return url


def with_dbname(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


@contextmanager
def throwaway_database(url: str) -> Iterator[str]:
    """A fresh database for one measurement; dropped (forcibly) afterwards."""
    name = f"marketlog_bench_{secrets.token_hex(6)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_dbname(url, name)
    finally:
        drop_database(url, name)


def drop_database(url: str, name: str, attempts: int = 40) -> None:
    """Drop a bench database. Our own sessions are terminated; a server process of another
    role (an autovacuum worker) cannot be, so wait for it to leave."""
    statement = sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name))
    with psycopg.connect(url, autocommit=True) as conn:
        for attempt in range(attempts):
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND usename = current_user", (name,))
            try:
                conn.execute(statement)
                return
            except psycopg.errors.ObjectInUse:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.25)


def server_settings(url: str) -> dict[str, str]:
    with psycopg.connect(url, autocommit=True) as conn:
        out = {}
        for name in ("server_version", "fsync", "synchronous_commit", "wal_sync_method",
                     "commit_delay", "full_page_writes", "shared_buffers"):
            row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
            out[name] = str(row[0]) if row else "?"
        return out
