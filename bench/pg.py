"""Throwaway PostgreSQL databases (``marketlog_bench_<hex>``) and the server's settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from infrastructure import postgres_admin


class NoPostgres(RuntimeError):
    pass


def admin_url() -> str:
    url = postgres_admin.admin_url()
    if not url:
        raise NoPostgres(
            f"{postgres_admin.ADMIN_URL_VAR} is not set and {postgres_admin.STATE_FILE} does not "
            "define it: start the local server (infrastructure/postgres.sh) or pass "
            "--skip-postgres")
    return url


@contextmanager
def throwaway_database(url: str) -> Iterator[str]:
    """A fresh database for one measurement, dropped afterwards."""
    with postgres_admin.throwaway_database(url, "marketlog_bench") as database:
        yield database


@contextmanager
def throwaway_store(url: str) -> Iterator[postgres_admin.StoreUrls]:
    """A fresh database with the event store initialised by the owner (``url``'s role); the
    engine connects as the engine role (ARCHITECTURE rule 11), as in production."""
    with postgres_admin.throwaway_store(url, "marketlog_bench") as urls:
        yield urls


def server_settings(url: str) -> dict[str, str]:
    with psycopg.connect(url, autocommit=True) as conn:
        out = {}
        for name in ("server_version", "fsync", "synchronous_commit", "wal_sync_method",
                     "commit_delay", "full_page_writes", "shared_buffers"):
            row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
            out[name] = str(row[0]) if row else "?"
        return out
