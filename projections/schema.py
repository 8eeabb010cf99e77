"""Bring a read-model database to the current schema (alembic ``upgrade head``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

# alembic/ sits next to the package at the repository root.
ALEMBIC_DIR = Path(__file__).resolve().parent.parent / "alembic"


def migrate(url: str) -> None:
    """Upgrade the database at ``url`` to head; a no-op when it is already there.

    Safe at every start-up: concurrent callers on PostgreSQL serialise on an advisory lock
    (alembic/env.py).
    """
    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    # ConfigParser interpolation would read a percent-encoded password as a reference.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")
