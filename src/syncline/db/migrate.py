"""Schema migrations with Alembic: upgrade to head, print the SQL, read the current revision."""

from __future__ import annotations

import io
from pathlib import Path

import sqlalchemy
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from syncline.errors import SynclineError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_SCHEMA = "syncline"


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy spelling of a libpq URL, on the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def alembic_config(url: str, *, output: io.StringIO | None = None) -> Config:
    """An Alembic config that needs no alembic.ini."""
    config = Config(output_buffer=output) if output is not None else Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would choke on % in passwords.
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest migration this code knows."""
    head = ScriptDirectory.from_config(alembic_config("postgresql://")).get_current_head()
    assert head is not None
    return head


def upgrade(url: str) -> None:
    """Apply every pending migration."""
    try:
        command.upgrade(alembic_config(url), "head")
    except sqlalchemy.exc.OperationalError as err:
        raise SynclineError(f"migration failed: cannot reach the database: {err.orig}") from None
    except sqlalchemy.exc.SQLAlchemyError as err:
        raise SynclineError(f"migration failed: {err}") from None


def upgrade_sql() -> str:
    """The SQL that `upgrade` would run on an empty database (Alembic offline mode)."""
    buffer = io.StringIO()
    command.upgrade(alembic_config("postgresql+psycopg://", output=buffer), "head", sql=True)
    return buffer.getvalue()


def current_revision(url: str) -> str | None:
    """The revision a database is at, or None before the first migration."""
    engine = sqlalchemy.create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(
                conn, opts={"version_table_schema": VERSION_SCHEMA}
            ).get_current_revision()
    finally:
        engine.dispose()
