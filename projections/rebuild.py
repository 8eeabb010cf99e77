"""Replay the log into a fresh read-model database and prove the result with a digest."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from uuid import uuid4

import orjson
import sqlalchemy as sa

from domain.values import price_text
from projections.runner import NotificationSource, ProjectionRunner
from projections.schema import migrate
from projections.tables import (
    ExactDecimal,
    audit_trail,
    control_coverage,
    control_day_accounts,
    control_days,
    control_exposure_buckets,
    control_governance,
    control_open_orders,
    control_rejections,
    orders_view,
    positions_view,
    projection_positions,
)

# The 15c3-5 control statistics view keeps several tables; its digest covers them all.
CONTROL_STATS = (control_days, control_day_accounts, control_exposure_buckets,
                 control_rejections, control_coverage, control_open_orders, control_governance)
SINGLE_TABLE_VIEWS = (orders_view, positions_view, audit_trail)
DIGESTED = (*SINGLE_TABLE_VIEWS, *CONTROL_STATS)


def _canonical(value: Any) -> Any:
    # price_text makes 190, 190.00 (SQLite text) and 190.000 (PostgreSQL NUMERIC) hash alike.
    return price_text(value) if isinstance(value, Decimal) else value


def digest(conn: sa.Connection) -> str:
    """sha256 over every row of the views, ordered by primary key, decimals via price_text."""
    hasher = hashlib.sha256()
    for table in DIGESTED:
        _feed(hasher, conn, table)
    return hasher.hexdigest()


def digests(conn: sa.Connection) -> dict[str, str]:
    """Each view's own digest (same rules as ``digest``), by table name; the control
    statistics' tables together as ``control_stats``."""
    out = {}
    for table in SINGLE_TABLE_VIEWS:
        hasher = hashlib.sha256()
        _feed(hasher, conn, table)
        out[table.name] = hasher.hexdigest()
    hasher = hashlib.sha256()
    for table in CONTROL_STATS:
        _feed(hasher, conn, table)
    out["control_stats"] = hasher.hexdigest()
    return out


def _feed(hasher: Any, conn: sa.Connection, table: sa.Table) -> None:
    hasher.update(orjson.dumps([table.name, [c.name for c in table.columns]]) + b"\n")
    # The rows as ``select(table).order_by(primary key)`` returns them, read at the driver
    # level: only ExactDecimal columns hold Decimals (the rest are ints, strings and None,
    # which _canonical leaves alone), so only they are converted, as the column type would
    # (Decimal(value)), then canonicalised. Same bytes hashed as through Core, fewer calls.
    decimals = [i for i, c in enumerate(table.columns) if isinstance(c.type, ExactDecimal)]
    quote = conn.dialect.identifier_preparer.quote
    stmt = (f"SELECT {', '.join(quote(c.name) for c in table.columns)} "
            f"FROM {quote(table.name)} "
            f"ORDER BY {', '.join(quote(c.name) for c in table.primary_key.columns)}")
    dumps, update = orjson.dumps, hasher.update
    # Fed a chunk at a time: SHA-256 of the concatenation, as line by line.
    for chunk in _chunks(conn, stmt):
        rows = chunk
        if decimals:
            rows = [list(row) for row in chunk]
            for values in rows:
                for i in decimals:
                    value = values[i]
                    if value is not None:
                        values[i] = price_text(Decimal(value))
        # orjson writes a row tuple as the JSON array it writes for the same list.
        update(b"\n".join(map(dumps, rows)) + b"\n")


def _chunks(conn: sa.Connection, stmt: str, size: int = 10_000) -> Iterator[list[Any]]:
    """The result of ``stmt`` in lists of rows, from the DBAPI cursor in the connection's
    transaction; on PostgreSQL a server-side cursor, so a large view is never held whole."""
    raw: Any = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        cursor = raw.cursor(name=f"digest_{uuid4().hex}")
        cursor.itersize = size
    else:
        cursor = raw.cursor()
    try:
        cursor.execute(stmt)
        while rows := cursor.fetchmany(size):
            yield rows
    finally:
        cursor.close()


def rebuild(source: NotificationSource, url: str, batch_size: int = 5000) -> str:
    """Build the views at ``url`` (an empty database) from log position zero; return the digest."""
    migrate(url)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if conn.execute(sa.select(sa.func.count()).select_from(projection_positions)).scalar():
                raise ValueError(f"rebuild needs an empty database; {engine.url!r} has views")
        ProjectionRunner(engine, source, batch_size).catch_up()
        with engine.connect() as conn:
            return digest(conn)
    finally:
        engine.dispose()
