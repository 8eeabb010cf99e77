"""Alembic environment for the read models (online mode only: they are always reachable)."""

from __future__ import annotations

from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context

from infrastructure.settings import Settings
from projections.tables import metadata

config = context.config
# Only the alembic CLI has an ini file; migrate() must not reconfigure the service's logging.
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# An arbitrary constant shared by every marketlog process migrating the same database.
MIGRATION_LOCK_ID = 0x6D61726B65746C67  # "marketlg"


def run_migrations() -> None:
    url = config.get_main_option("sqlalchemy.url") or Settings().read_models_url
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            compare_type=True,
            # SQLite cannot ALTER most things; batch mode recreates the table instead.
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Services migrate at start-up; two starting together must not both create
                # the tables. The lock ends with the (transactional) DDL.
                connection.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID}
                )
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations()
