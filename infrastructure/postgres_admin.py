"""The local PostgreSQL that infrastructure/postgres.sh provisions, as tests and benchmarks use it:
its admin, engine and reader URLs, throwaway databases (each test or measurement gets its own,
dropped after), throwaway event stores initialised by the owner role (ARCHITECTURE rule 11),
and private throwaway clusters for tests that must restart a server."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ADMIN_URL_VAR = "MARKETLOG_TEST_PG_URL"
ENGINE_URL_VAR = "MARKETLOG_TEST_PG_ENGINE_URL"
READER_URL_VAR = "MARKETLOG_TEST_PG_READER_URL"
STATE_FILE = Path(__file__).resolve().parent.parent / ".state" / "postgres.env"


def _configured(var: str) -> str | None:
    """From the environment (``make test``/``make bench`` export it), else from
    .state/postgres.env (written by infrastructure/postgres.sh)."""
    url = os.environ.get(var)
    if url or not STATE_FILE.is_file():
        return url
    for raw in STATE_FILE.read_text(encoding="utf-8").splitlines():
        key, _, value = raw.strip().removeprefix("export ").partition("=")
        if key.strip() == var:
            return value.strip().strip("'\"")
    return None


def admin_url() -> str | None:
    """postgresql:// URL of the maintenance database as the CREATEDB role (the store owner)."""
    return _configured(ADMIN_URL_VAR)


def engine_url() -> str | None:
    """The engine role (INSERT and SELECT on the event tables), maintenance database."""
    return _configured(ENGINE_URL_VAR)


def reader_url() -> str | None:
    """The read-only role (SELECT on the event tables), maintenance database."""
    return _configured(READER_URL_VAR)


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@contextmanager
def throwaway_database(admin_url: str, prefix: str = "marketlog_t") -> Iterator[str]:
    """A fresh, empty database; yields its postgresql:// URL (as the admin) and drops it."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        _retry_in_use(conn, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            # Only sessions of roles the admin is a member of (its own, the engine's and the
            # reader's): an autovacuum worker on the database is a superuser process we may
            # not terminate, and WITH (FORCE) would try and fail; a plain DROP asks
            # autovacuum to leave by itself.
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid() "
                "AND pg_has_role(current_user, usesysid, 'MEMBER')",
                (name,),
            )
            _retry_in_use(
                conn, sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


@dataclass(frozen=True)
class StoreUrls:
    """One event-store database as each of its roles reaches it (rule 11)."""

    owner: str  # owns the tables; creates the schema and grants (marketlog db init)
    engine: str  # INSERT and SELECT only: what the engine connects as
    reader: str  # SELECT only: verify and audit tools


def store_urls(owner_url: str, engine: str, reader: str) -> StoreUrls:
    """The engine and reader URLs pointed at the owner URL's database."""
    name = urlsplit(owner_url).path.lstrip("/")
    return StoreUrls(owner_url, with_database(engine, name), with_database(reader, name))


def role_urls() -> tuple[str, str]:
    engine, reader = engine_url(), reader_url()
    if not engine or not reader:
        raise RuntimeError(
            f"{ENGINE_URL_VAR} / {READER_URL_VAR} are not set and not in {STATE_FILE}: run "
            "`bash infrastructure/postgres.sh` (it creates the engine and reader roles)")
    return engine, reader


@contextmanager
def throwaway_store(admin_url: str, prefix: str = "marketlog_t", *,
                    engine: str | None = None, reader: str | None = None
                    ) -> Iterator[StoreUrls]:
    """A fresh database with the event store created by the owner (the admin role) and the
    engine and reader roles granted what they may do; dropped afterwards."""
    from infrastructure.store_schema import install_postgres, role_of

    if engine is None or reader is None:
        engine, reader = role_urls()
    with throwaway_database(admin_url, prefix) as owner:
        urls = store_urls(owner, engine, reader)
        install_postgres(owner, role_of(urls.engine), (role_of(urls.reader),))
        yield urls


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


# ------------------------------------------------------------ private throwaway clusters


@dataclass
class TemporaryCluster:
    """A private PostgreSQL server for tests that restart or stop it: the shared cluster
    that infrastructure/postgres.sh runs must never be restarted (others' tests use it).
    Same roles as the shared one: ``admin`` (CREATEDB, owner), ``engine``, ``reader``."""

    data_dir: Path
    port: int
    bin_dir: Path
    admin: str
    engine: str
    reader: str
    _as_postgres: bool

    def _pg_ctl(self, *args: str) -> None:
        cmd = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-w", "-t", "60",
               "-l", str(self.data_dir.parent / "server.log"), *args]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True)

    def start(self) -> None:
        self._pg_ctl("start")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("stop", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        """Every session ends (session advisory locks with them); the data stays."""
        self._pg_ctl("restart", "-m", mode)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin_dir() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name))
    if not versions:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql: run "
                           "`bash infrastructure/postgres.sh` (it installs them)")
    return versions[-1].parent


@contextmanager
def temporary_cluster() -> Iterator[TemporaryCluster]:
    """initdb into a temporary directory, start on a free loopback port, create the roles;
    yields the cluster; stops it and removes everything afterwards."""
    bin_dir = _bin_dir()
    as_postgres = os.geteuid() == 0  # initdb refuses to run as root
    root = Path(tempfile.mkdtemp(prefix="marketlog-pgtmp-"))
    data_dir = root / "data"
    superuser_pw = secrets.token_hex(16)
    (root / "pw").write_text(superuser_pw + "\n", encoding="utf-8")
    if as_postgres:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(root / "pw", "postgres", "postgres")
    port = _free_port()
    cluster = TemporaryCluster(data_dir, port, bin_dir, "", "", "", as_postgres)
    started = False
    try:
        cmd = [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres",
               "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={root / 'pw'}",
               "-E", "UTF8", "--locale=C.UTF-8"]
        if as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True)
        with (data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {port}\n"
                       f"unix_socket_directories = '{root}'\nshared_buffers = 16MB\n"
                       "max_connections = 30\nfsync = off\n")  # throwaway: speed over safety
        cluster.start()
        started = True
        superuser = f"postgres://postgres:{superuser_pw}@127.0.0.1:{port}/postgres"
        passwords = {r: secrets.token_hex(16) for r in ("marketlog", "marketlog_engine",
                                                         "marketlog_reader")}
        with psycopg.connect(superuser, autocommit=True) as conn:
            for role, pw in passwords.items():
                extra = sql.SQL(" CREATEDB" if role == "marketlog" else "")
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}{}").format(
                    sql.Identifier(role), sql.Literal(pw), extra))
            conn.execute("GRANT marketlog_engine, marketlog_reader TO marketlog")

        def url(role: str) -> str:
            return f"postgresql://{role}:{passwords[role]}@127.0.0.1:{port}/postgres"

        cluster.admin, cluster.engine, cluster.reader = (
            url("marketlog"), url("marketlog_engine"), url("marketlog_reader"))
        yield cluster
    finally:
        if started:
            with contextlib.suppress(subprocess.CalledProcessError):  # stopped by the test
                cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
