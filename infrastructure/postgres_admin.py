"""The local PostgreSQL that infrastructure/postgres.sh provisions, as tests and benchmarks use it:
its admin URL, and throwaway databases (each test or measurement gets its own, dropped after)."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ADMIN_URL_VAR = "MARKETLOG_TEST_PG_URL"
STATE_FILE = Path(__file__).resolve().parent.parent / ".state" / "postgres.env"


def admin_url() -> str | None:
    """postgresql:// URL of the maintenance database as the CREATEDB role: from the
    environment (``make test``/``make bench`` export it), else from .state/postgres.env."""
    url = os.environ.get(ADMIN_URL_VAR)
    if url or not STATE_FILE.is_file():
        return url
    for raw in STATE_FILE.read_text(encoding="utf-8").splitlines():
        key, _, value = raw.strip().removeprefix("export ").partition("=")
        if key.strip() == ADMIN_URL_VAR:
            return value.strip().strip("'\"")
    return None


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@contextmanager
def throwaway_database(admin_url: str, prefix: str = "marketlog_t") -> Iterator[str]:
    """A fresh, empty database; yields its postgresql:// URL and drops it afterwards."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        _retry_in_use(conn, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            # Only our own sessions: an autovacuum worker on the database is a superuser
            # process we may not terminate, and WITH (FORCE) would try and fail; a plain DROP
            # asks autovacuum to leave by itself.
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid() AND usename = current_user",
                (name,),
            )
            _retry_in_use(
                conn, sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def _retry_in_use(conn: psycopg.Connection[Any], statement: sql.Composed,
                  attempts: int = 40) -> None:
    """CREATE/DROP DATABASE fail while a server process (autovacuum on template1 or on the
    database) is attached; it leaves within moments, so wait for it rather than flake."""
    for attempt in range(attempts):
        try:
            conn.execute(statement)
            return
        except psycopg.errors.ObjectInUse:
            if attempt == attempts - 1:
                raise
            time.sleep(0.25)
