"""Replay the log into a fresh read-model database and prove the result with a digest."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa

from domain.values import price_text
from projections.runner import NotificationSource, ProjectionRunner
from projections.schema import migrate
from projections.tables import audit_trail, orders_view, positions_view, projection_positions

DIGESTED = (orders_view, positions_view, audit_trail)


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
    """Each view's own digest (same rules as ``digest``), by table name."""
    out = {}
    for table in DIGESTED:
        hasher = hashlib.sha256()
        _feed(hasher, conn, table)
        out[table.name] = hasher.hexdigest()
    return out


def _feed(hasher: Any, conn: sa.Connection, table: sa.Table) -> None:
    hasher.update(orjson.dumps([table.name, [c.name for c in table.columns]]) + b"\n")
    stmt = sa.select(table).order_by(*table.primary_key.columns)
    for row in conn.execution_options(yield_per=10_000).execute(stmt):
        hasher.update(orjson.dumps([_canonical(v) for v in row]) + b"\n")


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
