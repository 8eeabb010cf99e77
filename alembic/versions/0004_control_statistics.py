"""15c3-5 control statistics: the read models of the daily 15c3-5 report (issue 8).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

Types spelled out (as in 0001) so this revision keeps describing what it created.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BIG = sa.BigInteger
DATE = sa.String(10)
NAME = sa.String(64)


def _money() -> sa.types.TypeEngine:
    # Same rule as projections.tables.ExactDecimal: SQLite NUMERIC would store a float.
    return sa.Numeric() if op.get_bind().dialect.name == "postgresql" else sa.Text()


def _counts(*names: str) -> list[sa.Column]:
    return [sa.Column(n, BIG, nullable=False) for n in names]


def upgrade() -> None:
    op.create_table(
        "control_days",
        sa.Column("trading_date", DATE, primary_key=True),
        sa.Column("opened_ns", BIG, nullable=True),
        sa.Column("opened_position", BIG, nullable=True),
        sa.Column("closed_ns", BIG, nullable=True),
        sa.Column("closed_position", BIG, nullable=True),
        sa.Column("exposure_mode", NAME, nullable=True),
        *_counts("accepted", "rejected", "fills", "fill_quantity", "fill_gaps", "taker_fills"),
        sa.Column("max_fill_delay_ns", BIG, nullable=True),
        sa.Column("firm_peak_exposure", _money(), nullable=True),
        sa.Column("firm_peak_ns", BIG, nullable=True),
        sa.Column("firm_peak_position", BIG, nullable=True),
    )
    op.create_table(
        "control_day_accounts",
        sa.Column("trading_date", DATE, primary_key=True),
        sa.Column("account_id", NAME, primary_key=True),
        *_counts("accepted", "rejected", "breaches"),
        sa.Column("credit_limit", _money(), nullable=True),
        *[sa.Column(n, _money(), nullable=False)
          for n in ("buy_entered", "sell_entered", "buy_filled", "sell_filled")],
        *_counts("fills"),
        sa.Column("peak_exposure", _money(), nullable=True),
        sa.Column("peak_limit", _money(), nullable=True),
        sa.Column("peak_ns", BIG, nullable=True),
        sa.Column("peak_position", BIG, nullable=True),
    )
    op.create_table(
        "control_exposure_buckets",
        sa.Column("trading_date", DATE, primary_key=True),
        sa.Column("scope", NAME, primary_key=True),
        sa.Column("bucket_ns", BIG, primary_key=True, autoincrement=False),
        sa.Column("exposure", _money(), nullable=False),
        sa.Column("credit_limit", _money(), nullable=True),
        *_counts("at_ns", "at_position"),
    )
    op.create_table(
        "control_rejections",
        sa.Column("trading_date", DATE, primary_key=True),
        sa.Column("control", NAME, primary_key=True),
        sa.Column("account_id", NAME, primary_key=True),
        *_counts("orders"),
    )
    op.create_table(
        "control_coverage",
        sa.Column("trading_date", DATE, primary_key=True),
        sa.Column("control", NAME, primary_key=True),
        *_counts("applicable", "checked", "rejected"),
    )
    op.create_table(
        "control_open_orders",
        sa.Column("order_id", sa.String(36), primary_key=True),
        sa.Column("trading_date", DATE, nullable=False),
        sa.Column("account_id", NAME, nullable=False),
        sa.Column("side", NAME, nullable=False),
        *_counts("quantity", "filled_quantity"),
        sa.Column("exposure_price", _money(), nullable=False),
        sa.Column("reserved", _money(), nullable=False),
        *_counts("released_ns"),
    )
    op.create_table(
        "control_governance",
        sa.Column("position", BIG, primary_key=True, autoincrement=False),
        sa.Column("event_type", NAME, nullable=False),
        sa.Column("ts_ns", BIG, nullable=False),
        sa.Column("actor", NAME, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
    )
    op.create_index("ix_control_governance_ts_ns", "control_governance", ["ts_ns"])


def downgrade() -> None:
    for name in ("control_governance", "control_open_orders", "control_coverage",
                 "control_rejections", "control_exposure_buckets", "control_day_accounts",
                 "control_days"):
        op.drop_table(name)
