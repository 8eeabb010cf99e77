"""Shared fixtures: the real PostgreSQL started by infrastructure/postgres.sh, and both backends.

* ``pg_admin_url`` (session): URL of the ``postgres`` database as the admin role ``marketlog``
  (CREATEDB; it owns the event stores it creates), from ``MARKETLOG_TEST_PG_URL`` or, failing
  that, ``.state/postgres.env``. Missing => the test FAILS (never skips: a skipped PostgreSQL
  suite would hide failures).
* ``pg_role_urls`` (session): (engine, reader) role URLs of the maintenance database, from
  ``MARKETLOG_TEST_PG_ENGINE_URL`` / ``MARKETLOG_TEST_PG_READER_URL`` (postgres.sh).
* ``pg_store`` (function): a throwaway database ``marketlog_t_<8 hex>`` whose event store the
  owner has initialised (tables, triggers, grants; ARCHITECTURE rule 11), as a
  ``StoreUrls(owner, engine, reader)``; dropped afterwards.
* ``pg_url`` (function): that database as the ENGINE role (INSERT and SELECT on the event
  tables; may create the read models). ``pg_owner_url``: the same database as the owner.
* ``backend`` (function, params ``sqlite``/``postgres``): an ``infrastructure.settings.Settings``
  for each backend; the postgres case connects as the engine role, with the reader role as
  ``reader_database_url``; the sqlite case never touches PostgreSQL.

Any test that uses one of these PostgreSQL fixtures (directly or through
``backend[postgres]``) is marked ``postgres``, so ``pytest -m "not postgres"`` runs the rest
without a server.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from infrastructure.kafka_service import BOOTSTRAP_VAR as KAFKA_BOOTSTRAP_VAR
from infrastructure.kafka_service import STATE_FILE as KAFKA_STATE_FILE
from infrastructure.kafka_service import bootstrap_from_env, wait_until_ready
from infrastructure.postgres_admin import (
    ADMIN_URL_VAR,
    ENGINE_URL_VAR,
    READER_URL_VAR,
    STATE_FILE,
    StoreUrls,
    admin_url,
    engine_url,
    reader_url,
    throwaway_store,
)
from infrastructure.settings import Settings

# Every Settings() of the run, and every subprocess (the CLI, servers), uses the tests' firm:
# the default configuration plus the users the tests act as (tests/config/test.toml).
TEST_CONFIG = Path(__file__).resolve().parent / "config" / "test.toml"
os.environ["MARKETLOG_CONFIG_FILE"] = str(TEST_CONFIG)

PG_FIXTURES = {"pg_url", "pg_store", "pg_owner_url", "pg_admin_url", "pg_role_urls"}
KAFKA_FIXTURES = {"kafka_bootstrap"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if PG_FIXTURES & names:
            item.add_marker(pytest.mark.postgres)
        if KAFKA_FIXTURES & names:
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """host:port of the shared broker (infrastructure/kafka.sh). Missing or not answering =>
    the test FAILS (never skips: a skipped Kafka suite would hide failures)."""
    bootstrap = bootstrap_from_env()
    if not bootstrap:
        pytest.fail(f"{KAFKA_BOOTSTRAP_VAR} is not set and {KAFKA_STATE_FILE} does not hold "
                    "it. Run `make test`, or `bash infrastructure/kafka.sh`.", pytrace=False)
    try:
        wait_until_ready(bootstrap, timeout=20)
    except TimeoutError as exc:
        pytest.fail(f"the test Kafka ({bootstrap}) does not answer: {exc}. "
                    "Run `bash infrastructure/kafka.sh`.", pytrace=False)
    return bootstrap


# A thread some test left running keeps the interpreter from exiting after the summary, and
# CI then waits for its own timeout with no clue (it happened). Name such threads, and if the
# exit still hangs, print every thread's stack and fail the run instead of hanging.
EXIT_GRACE_S = 120


def pytest_unconfigure(config: pytest.Config) -> None:
    left = [t for t in threading.enumerate()
            if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if left:
        print(f"\nthreads still running after the tests: {[t.name for t in left]}",
              file=sys.stderr)
    faulthandler.dump_traceback_later(EXIT_GRACE_S, exit=True)


def _reachable(var: str, url: str | None) -> str:
    if not url:
        pytest.fail(
            f"{var} is not set and {STATE_FILE} does not hold it. Run `make test`, or "
            "`bash infrastructure/postgres.sh` and then `set -a; . .state/postgres.env; set +a` "
            "before pytest.",
            pytrace=False,
        )
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"cannot connect to the test PostgreSQL ({var}): {exc}. "
            "Run `bash infrastructure/postgres.sh` (it starts the server and provisions the "
            "roles from the machine-wide credentials).",
            pytrace=False,
        )
    return url


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """postgresql:// URL of the maintenance database ``postgres`` (role may CREATE DATABASE)."""
    return _reachable(ADMIN_URL_VAR, admin_url())


@pytest.fixture(scope="session")
def pg_role_urls() -> tuple[str, str]:
    """(engine, reader) role URLs of the maintenance database."""
    return (_reachable(ENGINE_URL_VAR, engine_url()), _reachable(READER_URL_VAR, reader_url()))


@pytest.fixture
def pg_store(pg_admin_url: str, pg_role_urls: tuple[str, str]) -> Iterator[StoreUrls]:
    """A fresh database with an initialised event store, as each of its roles reaches it."""
    engine, reader = pg_role_urls
    with throwaway_store(pg_admin_url, engine=engine, reader=reader) as urls:
        yield urls


@pytest.fixture
def pg_url(pg_store: StoreUrls) -> str:
    """The fresh store's database as the engine role (what MARKETLOG_DATABASE_URL holds)."""
    return pg_store.engine


@pytest.fixture
def pg_owner_url(pg_store: StoreUrls) -> str:
    """The same database as the owner of the event tables (tamper tests, grants)."""
    return pg_store.owner


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
    ids=["sqlite", "postgres"],
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for the embedded SQLite default, then for a fresh PostgreSQL database."""
    data_dir = tmp_path / "data"
    # Explicit None: a MARKETLOG_* URL in the developer's shell must not leak in.
    if request.param == "sqlite":
        return Settings(data_dir=data_dir, database_url=None, read_database_url=None,
                        database_owner_url=None, reader_database_url=None,
                        chain_anchor_file=None)
    store: StoreUrls = request.getfixturevalue("pg_store")
    return Settings(data_dir=data_dir, database_url=store.engine, read_database_url=None,
                    database_owner_url=None, reader_database_url=store.reader,
                    chain_anchor_file=None)
