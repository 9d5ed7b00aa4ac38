"""Alembic environment: Syncline's version table lives in the `syncline` schema."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

VERSION_SCHEMA = "syncline"
config = context.config


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        literal_binds=True,
        version_table_schema=VERSION_SCHEMA,
        transactional_ddl=True,
    )
    context.execute(f"CREATE SCHEMA IF NOT EXISTS {VERSION_SCHEMA}")
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_engine(url, poolclass=pool.NullPool, connect_args={"connect_timeout": 10})
    with engine.connect() as connection:
        # Two processes migrating at once would race on DDL; one waits for the other.
        connection.execute(text("SELECT pg_advisory_lock(hashtext('syncline.migrate'))"))
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {VERSION_SCHEMA}"))
        connection.commit()
        context.configure(
            connection=connection, version_table_schema=VERSION_SCHEMA, transactional_ddl=True
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.execute(text("SELECT pg_advisory_unlock(hashtext('syncline.migrate'))"))
        connection.commit()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
