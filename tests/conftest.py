"""Shared fixtures: the real PostgreSQL started by infrastructure/postgres.sh, and both backends.

* ``pg_admin_url`` (session): URL of the ``postgres`` database as the CREATEDB role
  ``marketlog``, from ``MARKETLOG_TEST_PG_URL`` or, failing that, ``.state/postgres.env``.
  Missing => the test FAILS (never skips: a skipped PostgreSQL suite would hide failures).
* ``pg_url`` (function): a throwaway database ``marketlog_t_<8 hex>``, dropped afterwards.
* ``backend`` (function, params ``sqlite``/``postgres``): an ``infrastructure.settings.Settings``
  for each backend; the sqlite case never touches PostgreSQL.

Any test that uses ``pg_url`` (directly or through ``backend[postgres]``) is marked ``postgres``,
so ``pytest -m "not postgres"`` runs the rest without a server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from infrastructure.postgres_admin import ADMIN_URL_VAR, STATE_FILE, admin_url, throwaway_database
from infrastructure.settings import Settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "pg_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """postgresql:// URL of the maintenance database ``postgres`` (role may CREATE DATABASE)."""
    url = admin_url()
    if not url:
        pytest.fail(
            f"{ADMIN_URL_VAR} is not set and {STATE_FILE} does not exist. Run `make test`, or "
            "`bash infrastructure/postgres.sh` and then `set -a; . .state/postgres.env; set +a` "
            "before pytest.",
            pytrace=False,
        )
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"cannot connect to the test PostgreSQL ({ADMIN_URL_VAR}): {exc}. "
            "Run `bash infrastructure/postgres.sh` (it starts the server and resets the password).",
            pytrace=False,
        )
    return url


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty database for this test only; its postgresql:// URL."""
    with throwaway_database(pg_admin_url) as url:
        yield url


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
    ids=["sqlite", "postgres"],
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for the embedded SQLite default, then for a fresh PostgreSQL database."""
    data_dir = tmp_path / "data"
    # Explicit None: a MARKETLOG_DATABASE_URL in the developer's shell must not leak in.
    if request.param == "sqlite":
        return Settings(data_dir=data_dir, database_url=None, read_database_url=None)
    return Settings(data_dir=data_dir, database_url=request.getfixturevalue("pg_url"),
                    read_database_url=None)
