"""Read models: orders, positions, audit trail and projection positions.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Types are spelled out here rather than imported from projections.tables, so this revision
keeps describing what it created even after the tables module moves on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _money() -> sa.types.TypeEngine:
    # Same rule as projections.tables.ExactDecimal: SQLite NUMERIC would store a float.
    return sa.Numeric() if op.get_bind().dialect.name == "postgresql" else sa.Text()


def upgrade() -> None:
    op.create_table(
        "orders_view",
        sa.Column("order_id", sa.String(36), primary_key=True),
        sa.Column("client_order_id", sa.String, nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("side", sa.String(64), nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("order_type", sa.String(64), nullable=False),
        sa.Column("limit_price", _money(), nullable=True),
        sa.Column("time_in_force", sa.String(64), nullable=False),
        sa.Column("status", sa.String(64), nullable=False),
        sa.Column("filled_quantity", sa.BigInteger, nullable=False),
        sa.Column("filled_notional", _money(), nullable=False),
        sa.Column("reject_control", sa.String(64), nullable=True),
        sa.Column("reject_threshold", sa.String, nullable=True),
        sa.Column("reject_observed", sa.String, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("updated_ns", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_orders_view_account_id", "orders_view", ["account_id"])
    op.create_index("ix_orders_view_symbol", "orders_view", ["symbol"])
    op.create_index("ix_orders_view_status", "orders_view", ["status"])
    op.create_index("ix_orders_view_created", "orders_view", ["created_ns", "order_id"])

    op.create_table(
        "positions_view",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("symbol", sa.String(64), primary_key=True),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("average_price", _money(), nullable=False),
        sa.Column("realized_pnl", _money(), nullable=False),
    )

    op.create_table(
        "audit_trail",
        sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("aggregate_id", sa.String(36), nullable=False),
        sa.Column("aggregate_version", sa.Integer, nullable=False),
        sa.Column("ts_ns", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(36), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_trail_ts_ns", "audit_trail", ["ts_ns"])
    op.create_index("ix_audit_trail_account_id", "audit_trail", ["account_id"])
    op.create_index("ix_audit_trail_order_id", "audit_trail", ["order_id"])

    op.create_table(
        "projection_positions",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("projection_positions")
    op.drop_table("audit_trail")
    op.drop_table("positions_view")
    op.drop_table("orders_view")
