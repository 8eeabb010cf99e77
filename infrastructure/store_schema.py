"""The event store's tables, the guards the database itself enforces, and its roles.

ARCHITECTURE rule 5 (events are facts, never edited) and rule 11 (least privilege): the
database, not the application, refuses to change the record.

Tables (both dialects): the eventsourcing library's ``stored_events`` (the log; its
notification id / rowid is the log position), ``writer_epochs`` (one row per engine that
claimed the store: fencing, issue 5 item 7), ``snapshots`` (the engine's recovery
snapshots) and ``store_meta`` (the store's id, which its chain-head anchors carry).

SQLite (one file, no roles): triggers refuse UPDATE and DELETE on every table, and a
BEFORE INSERT trigger refuses any insert that is not the next position of the log or that
would replace an existing row, so ``INSERT OR REPLACE`` (which replaces without firing the
DELETE trigger) cannot rewrite an event.

PostgreSQL: an OWNER role creates and owns the tables, triggers and trigger functions; the
ENGINE role gets only SELECT and INSERT on them (plus CREATE on the schema for the
disposable read models); READER roles get SELECT. A statement trigger refuses UPDATE,
DELETE and TRUNCATE even to the owner; the unique position index refuses a replacement
(``ON CONFLICT DO UPDATE`` meets the UPDATE trigger). An insert past the head or into a gap
is caught by the engine's head check in its next append transaction and by ``verify``; a
statement trigger checking contiguity over a transition table was measured at 15-25% of the
durable PostgreSQL throughput for that, and is gone (``install`` drops it from older stores).
The engine refuses to start when its role could switch any of that off
(``check_engine_role``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql

EVENTS_TABLE = "stored_events"
STORE_TABLES = (EVENTS_TABLE, "writer_epochs", "snapshots", "store_meta")
ENGINE_WRITES = (EVENTS_TABLE, "writer_epochs", "snapshots")  # INSERT + SELECT
IMMUTABLE_MESSAGE = "stored events are immutable (SEC 17a-4): append a correcting event instead"
APPEND_ONLY_MESSAGE = (
    "stored events are immutable (SEC 17a-4): an event is only ever appended at the next "
    "position of the log, never replaced")
# Serialises concurrent schema installs (two engines starting at once with an owner URL).
INSTALL_LOCK_KEY = 0x6D6C5F696E7374  # "ml_inst"


class StoreNotInitialised(RuntimeError):
    """The PostgreSQL database has no event store yet and this role may not create one."""


class InsecureStoreRole(RuntimeError):
    """The engine's database role could switch tamper protection off (ARCHITECTURE rule 11)."""


def role_of(url: str) -> str:
    return unquote(urlsplit(url).username or "")


# ------------------------------------------------------------------------------- SQLite

SQLITE_DDL = [
    # The library's table (eventsourcing.sqlite.SQLiteApplicationRecorder), rowid = position.
    f"CREATE TABLE IF NOT EXISTS {EVENTS_TABLE} (originator_id TEXT, originator_version "
    "INTEGER, topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))",
    "CREATE TABLE IF NOT EXISTS writer_epochs (epoch INTEGER PRIMARY KEY, claimed_at_ns "
    "INTEGER NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL, head_position INTEGER "
    "NOT NULL)",
    "CREATE TABLE IF NOT EXISTS snapshots (position INTEGER PRIMARY KEY, head_hash TEXT NOT "
    "NULL, state BLOB NOT NULL, state_sha256 TEXT NOT NULL, created_at_ns INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS store_meta (store_id TEXT PRIMARY KEY, created_at_ns INTEGER "
    "NOT NULL)",
    # NEW.rowid is -1 in a BEFORE INSERT trigger when the insert does not name the rowid, so
    # only an insert that names exactly the next position passes: no replacement (same rowid
    # or same originator id and version), no insert below the head, no gap.
    f"CREATE TRIGGER IF NOT EXISTS {EVENTS_TABLE}_append_only BEFORE INSERT ON {EVENTS_TABLE} "
    f"WHEN NEW.rowid IS NOT (SELECT coalesce(max(rowid), 0) + 1 FROM {EVENTS_TABLE}) "
    f"OR EXISTS (SELECT 1 FROM {EVENTS_TABLE} WHERE originator_id = NEW.originator_id "
    "AND originator_version = NEW.originator_version) "
    f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END",
    "CREATE TRIGGER IF NOT EXISTS writer_epochs_append_only BEFORE INSERT ON writer_epochs "
    "WHEN NEW.epoch IS NOT (SELECT coalesce(max(epoch), 0) + 1 FROM writer_epochs) "
    "BEGIN SELECT RAISE(ABORT, 'writer epochs are only ever appended'); END",
    "CREATE TRIGGER IF NOT EXISTS snapshots_append_only BEFORE INSERT ON snapshots "
    "WHEN EXISTS (SELECT 1 FROM snapshots WHERE position = NEW.position) "
    "BEGIN SELECT RAISE(ABORT, 'snapshots are never replaced'); END",
    "CREATE TRIGGER IF NOT EXISTS store_meta_once BEFORE INSERT ON store_meta "
    "WHEN EXISTS (SELECT 1 FROM store_meta) "
    "BEGIN SELECT RAISE(ABORT, 'the store id is set once'); END",
    *(
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{IMMUTABLE_MESSAGE}'); END"
        for table in STORE_TABLES for op in ("UPDATE", "DELETE")
    ),
]


def install_sqlite(curs: Any, store_id: str, now_ns: int) -> None:
    """Create the tables and triggers (idempotent) inside the caller's transaction."""
    for statement in SQLITE_DDL:
        curs.execute(statement)
    curs.execute("INSERT INTO store_meta (store_id, created_at_ns) SELECT ?, ? "
                 "WHERE NOT EXISTS (SELECT 1 FROM store_meta)", (store_id, now_ns))


# --------------------------------------------------------------------------- PostgreSQL

PG_DDL = [
    "CREATE TABLE IF NOT EXISTS writer_epochs (epoch bigint PRIMARY KEY, "
    "claimed_at timestamptz NOT NULL DEFAULT now(), db_user text NOT NULL DEFAULT "
    "current_user, host text NOT NULL, pid integer NOT NULL, head_position bigint NOT NULL)",
    "CREATE TABLE IF NOT EXISTS snapshots (position bigint PRIMARY KEY, head_hash text NOT "
    "NULL, state bytea NOT NULL, state_sha256 text NOT NULL, created_at timestamptz NOT NULL "
    "DEFAULT now())",
    "CREATE TABLE IF NOT EXISTS store_meta (store_id uuid PRIMARY KEY, created_at "
    "timestamptz NOT NULL DEFAULT now())",
    "INSERT INTO store_meta (store_id) SELECT gen_random_uuid() "
    "WHERE NOT EXISTS (SELECT FROM store_meta)",
    # Owned by the owner role: the engine role can neither replace nor drop it. A fixed
    # search_path so no object the engine creates in ``public`` can shadow what it uses.
    "CREATE OR REPLACE FUNCTION marketlog_refuse_change() RETURNS trigger LANGUAGE plpgsql "
    "SET search_path = pg_catalog AS $$ BEGIN "
    f"RAISE EXCEPTION '{IMMUTABLE_MESSAGE} (table %)', TG_TABLE_NAME; END $$",
    # Stores installed before carry a contiguity trigger on INSERT: too costly (above).
    f"DROP TRIGGER IF EXISTS marketlog_events_contiguous ON {EVENTS_TABLE}",
    "DROP FUNCTION IF EXISTS marketlog_events_contiguous()",
    *(
        f"CREATE OR REPLACE TRIGGER {name} BEFORE UPDATE OR DELETE OR TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION marketlog_refuse_change()"
        for table, name in zip(
            STORE_TABLES,
            ("marketlog_events_immutable", "marketlog_epochs_immutable",
             "marketlog_snapshots_immutable", "marketlog_meta_immutable"),
            strict=True)
    ),
]


def install_postgres(owner_url: str, engine_role: str | None,
                     reader_roles: tuple[str, ...] = ()) -> None:
    """Create or upgrade the store's schema as the owner role and grant the engine and the
    readers exactly what they need. Idempotent; safe to run at every engine start."""
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

    owner = role_of(owner_url)
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (INSTALL_LOCK_KEY,))
        try:
            parts = urlsplit(owner_url)
            datastore = PostgresDatastore(
                dbname=parts.path.lstrip("/") or "postgres", host=parts.hostname or "127.0.0.1",
                port=parts.port or 5432, user=owner, password=unquote(parts.password or ""))
            try:  # the library's events table, index and types, owned by the owner
                PostgresApplicationRecorder(datastore, events_table_name=EVENTS_TABLE
                                            ).create_table()
            finally:
                datastore.close()
            with conn.transaction():
                for statement in PG_DDL:
                    conn.execute(statement)
                _grant(conn, owner, engine_role, reader_roles)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (INSTALL_LOCK_KEY,))


def _grant(conn: psycopg.Connection[Any], owner: str, engine_role: str | None,
           reader_roles: tuple[str, ...]) -> None:
    tables = sql.SQL(", ").join(sql.Identifier(t) for t in STORE_TABLES)
    writes = sql.SQL(", ").join(sql.Identifier(t) for t in ENGINE_WRITES)
    conn.execute(sql.SQL("REVOKE ALL ON {} FROM PUBLIC").format(tables))
    conn.execute(sql.SQL("REVOKE ALL ON SEQUENCE {} FROM PUBLIC").format(
        sql.Identifier(f"{EVENTS_TABLE}_notification_id_seq")))
    grantees = [r for r in (engine_role, *reader_roles) if r and r != owner]
    for role in grantees:
        # Normalise: whatever was granted before, these roles get exactly what follows.
        conn.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(tables, sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(tables, sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(role)))
    if engine_role and engine_role != owner:
        engine = sql.Identifier(engine_role)
        conn.execute(sql.SQL("GRANT INSERT ON {} TO {}").format(writes, engine))
        # The read models are disposable (rule 1): the engine's role may create them.
        conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(engine))


def store_exists(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('public.writer_epochs') IS NOT NULL "
                       f"AND to_regclass('public.{EVENTS_TABLE}') IS NOT NULL AS e").fetchone()
    return bool(row and (row["e"] if isinstance(row, dict) else row[0]))


ROLE_CHECK = f"""
SELECT t.name,
       c.oid IS NULL AS missing,
       coalesce(pg_has_role(current_user, c.relowner, 'USAGE'), false) AS owns,
       coalesce(has_any_column_privilege(c.oid, 'UPDATE'), false) AS can_update,
       coalesce(has_table_privilege(c.oid, 'DELETE'), false) AS can_delete,
       coalesce(has_table_privilege(c.oid, 'TRUNCATE'), false) AS can_truncate,
       coalesce(has_table_privilege(c.oid, 'TRIGGER'), false) AS can_trigger,
       coalesce(has_table_privilege(c.oid, 'INSERT'), false) AS can_insert,
       coalesce(has_table_privilege(c.oid, 'SELECT'), false) AS can_select,
       coalesce(pg_has_role(current_user, n.nspowner, 'USAGE'), false) AS owns_schema,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
       (SELECT pg_has_role(current_user, datdba, 'USAGE') FROM pg_database
         WHERE datname = current_database()) AS owns_database
FROM unnest(ARRAY[{", ".join(f"'{t}'" for t in ENGINE_WRITES)}]) AS t(name)
LEFT JOIN pg_class c ON c.oid = to_regclass('public.' || t.name)
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
"""

FIX = ("connect the engine as a role with only INSERT and SELECT on the event tables: set "
       "MARKETLOG_DATABASE_OWNER_URL to the owner role and MARKETLOG_DATABASE_URL to the "
       "engine role (infrastructure/postgres.sh creates marketlog_engine), then run "
       "`marketlog db init`")


def check_engine_role(conn: Any) -> None:
    """Refuse to write as a role that could switch tamper protection off (rule 11): one query.

    ``conn`` is a psycopg connection or cursor with a dict or tuple row factory."""
    rows = conn.execute(ROLE_CHECK).fetchall()
    user = conn.execute("SELECT current_user").fetchone()
    user = user["current_user"] if isinstance(user, dict) else user[0]
    problems: list[str] = []
    for row in rows:
        r = row if isinstance(row, dict) else dict(zip(
            ("name", "missing", "owns", "can_update", "can_delete", "can_truncate",
             "can_trigger", "can_insert", "can_select", "owns_schema", "superuser",
             "owns_database"), row, strict=True))
        if r["missing"]:
            raise StoreNotInitialised(
                f"table {r['name']} of the event store does not exist: run `marketlog db "
                "init` with MARKETLOG_DATABASE_OWNER_URL set")
        if r["superuser"]:
            problems.append("is a superuser")
        if r["owns"]:
            problems.append(f"owns {r['name']}")
        if r["owns_schema"]:
            problems.append(f"owns the schema of {r['name']} (and may drop it)")
        if r["owns_database"]:
            problems.append("owns the database")
        granted = [p for p, flag in (("UPDATE", r["can_update"]), ("DELETE", r["can_delete"]),
                                     ("TRUNCATE", r["can_truncate"]),
                                     ("TRIGGER", r["can_trigger"])) if flag]
        if granted:
            problems.append(f"holds {', '.join(granted)} on {r['name']}")
        if not (r["can_insert"] and r["can_select"]):
            raise InsecureStoreRole(
                f"the engine's database role {user!r} lacks INSERT or SELECT on {r['name']}: "
                "run `marketlog db init` with MARKETLOG_DATABASE_OWNER_URL set")
    if problems:
        unique = list(dict.fromkeys(problems))
        raise InsecureStoreRole(
            f"refusing to write events as database role {user!r}: it {'; '.join(unique)}. "
            "Tamper protection that the application could switch off is no protection "
            f"(ARCHITECTURE rule 11): {FIX}")
