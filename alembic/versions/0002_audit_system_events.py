"""Audit trail: events of no account or order (trading days, engine records).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_trail") as batch:
        batch.alter_column("account_id", existing_type=sa.String(64), nullable=True)
        batch.alter_column("order_id", existing_type=sa.String(36), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("audit_trail") as batch:
        batch.alter_column("order_id", existing_type=sa.String(36), nullable=False)
        batch.alter_column("account_id", existing_type=sa.String(64), nullable=False)
