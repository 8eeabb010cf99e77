"""What the API and the CLI read: views only, never aggregates or the store."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from domain.values import price_text
from projections.tables import audit_trail, orders_view, positions_view
from projections.tables import projection_positions as positions_table

NS_PER_S = 1_000_000_000


def order_body(row: Mapping[str, Any]) -> dict[str, Any]:
    """The API's representation of an ``orders_view`` row."""
    filled = row["filled_quantity"]
    reject = None
    if row["reject_control"] is not None:
        reject = {
            "control": row["reject_control"],
            "threshold": row["reject_threshold"],
            "observed": row["reject_observed"],
        }
    return {
        "order_id": row["order_id"],
        "client_order_id": row["client_order_id"],
        "account_id": row["account_id"],
        "symbol": row["symbol"],
        "side": row["side"],
        "quantity": row["quantity"],
        "order_type": row["order_type"],
        "limit_price": price_text(row["limit_price"]),
        "time_in_force": row["time_in_force"],
        "status": row["status"],
        "filled_quantity": filled,
        "average_fill_price": price_text(row["filled_notional"] / filled) if filled else None,
        "reject": reject,
    }


def get_order(conn: sa.Connection, order_id: str) -> dict[str, Any] | None:
    row = (
        conn.execute(sa.select(orders_view).where(orders_view.c.order_id == str(order_id)))
        .mappings()
        .first()
    )
    return None if row is None else order_body(row)


def list_orders(
    conn: sa.Connection,
    *,
    account_id: str | None = None,
    accounts: Collection[str] | None = None,
    symbol: str | None = None,
    status: str | None = None,
    limit: int = 500,
    after: str | None = None,
) -> list[dict[str, Any]]:
    """Orders oldest first; ``after`` is the order_id that ended the previous page."""
    o = orders_view.c
    stmt = sa.select(orders_view).order_by(o.created_ns, o.order_id).limit(limit)
    if account_id is not None:
        stmt = stmt.where(o.account_id == account_id)
    if accounts is not None:  # a trader's reads: only the accounts they are entitled to
        stmt = stmt.where(o.account_id.in_(sorted(accounts)))
    if symbol is not None:
        stmt = stmt.where(o.symbol == symbol)
    if status is not None:
        stmt = stmt.where(o.status == status)
    if after is not None:
        # Keyset pagination: stable under concurrent inserts, unlike OFFSET.
        cursor = sa.select(o.created_ns).where(o.order_id == str(after)).scalar_subquery()
        stmt = stmt.where(
            sa.or_(o.created_ns > cursor, sa.and_(o.created_ns == cursor, o.order_id > str(after)))
        )
    return [order_body(row) for row in conn.execute(stmt).mappings()]


def list_positions(conn: sa.Connection, *, account_id: str | None = None,
                   accounts: Collection[str] | None = None) -> list[dict[str, Any]]:
    p = positions_view.c
    stmt = sa.select(positions_view).order_by(p.account_id, p.symbol)
    if account_id is not None:
        stmt = stmt.where(p.account_id == account_id)
    if accounts is not None:  # a trader's reads: only the accounts they are entitled to
        stmt = stmt.where(p.account_id.in_(sorted(accounts)))
    return [
        {
            "account_id": row["account_id"],
            "symbol": row["symbol"],
            "quantity": row["quantity"],
            "average_price": price_text(row["average_price"]),
            "realized_pnl": price_text(row["realized_pnl"]),
        }
        for row in conn.execute(stmt).mappings()
    ]


def iso_timestamp(ts_ns: int) -> str:
    """ISO-8601 UTC with all nine digits: datetime alone would drop the nanoseconds."""
    seconds, nanos = divmod(ts_ns, NS_PER_S)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z"


def audit_events(
    conn: sa.Connection,
    *,
    account_id: str | None = None,
    accounts: Collection[str] | None = None,
    order_id: str | None = None,
    event_types: Collection[str] | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
    limit: int = 100,
    after: int | None = None,
) -> list[dict[str, Any]]:
    """Events in log order with position > ``after``; ``since_ns`` inclusive, ``until_ns`` not."""
    a = audit_trail.c
    stmt = sa.select(audit_trail).order_by(a.position).limit(limit)
    if account_id is not None:
        stmt = stmt.where(a.account_id == account_id)
    if accounts is not None:  # a trader's reads: only the accounts they are entitled to
        stmt = stmt.where(a.account_id.in_(sorted(accounts)))
    if order_id is not None:
        stmt = stmt.where(a.order_id == str(order_id))
    if event_types is not None:
        stmt = stmt.where(a.event_type.in_(sorted(event_types)))
    if since_ns is not None:
        stmt = stmt.where(a.ts_ns >= since_ns)
    if until_ns is not None:
        stmt = stmt.where(a.ts_ns < until_ns)
    if after is not None:
        stmt = stmt.where(a.position > after)
    return [
        {
            "position": row["position"],
            "event_type": row["event_type"],
            "aggregate_id": row["aggregate_id"],
            "aggregate_version": row["aggregate_version"],
            "timestamp": iso_timestamp(row["ts_ns"]),
            "ts_ns": row["ts_ns"],
            "actor": row["actor"],
            "source": row["source"],
            "account_id": row["account_id"],
            "order_id": row["order_id"],
            "payload": orjson.loads(row["payload"]),
        }
        for row in conn.execute(stmt).mappings()
    ]


def projection_positions(conn: sa.Connection) -> dict[str, int]:
    """Last log position applied, per view (lag monitoring, replay proofs)."""
    return dict(conn.execute(sa.select(positions_table)).tuples().all())
