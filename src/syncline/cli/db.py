"""`syncline migrate`, `config` and `psql`: the schema, the settings, a shell on the database."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer
from rich.markup import escape

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
from syncline.cli.effective import as_text, effective, namespace_options, namespace_rows
from syncline.db.embedded import pg_binary
from syncline.errors import SynclineError
from syncline.settings import load_settings
from syncline.tables import print_table


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


def config(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    namespaces: Annotated[
        bool,
        typer.Option(
            "--namespaces",
            help="only the namespaces: every option in force, defaults included, in a table",
        ),
    ] = False,
) -> None:
    """Print the settings, rules and namespaces in force; secrets masked."""

    def body() -> None:
        if namespaces:
            options = namespace_options(load_settings(config))
            if as_json:
                sys.stdout.write(json.dumps(options, indent=2) + "\n")
                return
            headers, rows = namespace_rows(options)
            print_table("Namespaces in force", headers, rows)
            for note in options["notes"]:
                out.print(escape(f"note: {note}"))
            return
        data = effective(load_settings(config))
        if as_json:
            sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
            return
        out.print(escape("\n".join(as_text(data))))

    guarded(body)


def psql(
    psql_args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="PSQL_ARGS",
            help="passed to psql as they are, after --: syncline psql -- -c 'select 1'",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Open psql on Syncline's database (the embedded one must be running); arguments
    after -- go to psql."""

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
        # The URL first, so that the user's own options (even a -d) come after and win.
        argv = ["psql", "--dbname", url, *(psql_args or [])]
        os.execv(str(pg_binary("psql")), argv)  # noqa: S606  (no shell: arguments stay as given)

    guarded(body)
