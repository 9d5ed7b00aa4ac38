"""`syncline migrate`, `config` and `psql`: the schema, the settings, a shell on the database."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer

from syncline.cli.base import (
    ConfigOption,
    DataDirOption,
    JsonOption,
    LogLevelOption,
    database,
    embedded_url,
    guarded,
    out,
    settings_for,
)
from syncline.db.embedded import pg_binary
from syncline.errors import SynclineError
from syncline.settings import load_settings, masked


def migrate(
    config: ConfigOption = None,
    sql: Annotated[bool, typer.Option("--sql", help="print the SQL instead of running it")] = False,
    data_dir: DataDirOption = None,
    log_level: LogLevelOption = None,
) -> None:
    """Upgrade the database schema to the newest version (or print its SQL)."""

    def body() -> None:
        from syncline.db import migrate

        if sql:
            sys.stdout.write(migrate.upgrade_sql())
            return
        settings = settings_for(config, data_dir=data_dir, log_level=log_level)
        with database(settings) as (url, _):
            before = migrate.current_revision(url)
            migrate.upgrade(url)
            after = migrate.current_revision(url)
        if before == after:
            out.print(f"database is up to date (revision {after})")
        else:
            out.print(f"migrated from {before or 'empty'} to {after}")

    guarded(body)


def config(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Print the effective settings, with secrets masked."""

    def body() -> None:
        data = masked(load_settings(config))
        if as_json:
            sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
            return
        for key, value in data.items():
            out.print(f"{key} = {json.dumps(value, default=str)}")

    guarded(body)


def psql(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Open psql on Syncline's database (the embedded one must be running)."""

    def body() -> None:
        settings = load_settings(config, data_dir=data_dir)
        if settings.database_url is not None:
            url = settings.database_url.get_secret_value()
        else:
            found = embedded_url(settings.data_dir)
            if found is None:
                raise SynclineError(
                    f"the embedded PostgreSQL in {settings.data_dir} is not running"
                )
            url = found
        os.execv(str(pg_binary("psql")), ["psql", url])  # noqa: S606  (fixed argv, no shell)

    guarded(body)
