"""The `syncline` command: one module per command group, shared helpers in base."""

from __future__ import annotations

from typing import Annotated

import typer

from syncline import __version__
from syncline.cli import bench, db, doctor, mail, server, sync, tail, up
from syncline.cli.base import out
from syncline.cli.help import hide_flag_types

hide_flag_types()

app = typer.Typer(
    name="syncline",
    help="Real-time sync from PostgreSQL to WebSocket clients (Centrifuge protocol).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
sync_app = typer.Typer(
    name="sync", help="Show and add sync rules (syncline.toml).", no_args_is_help=True
)
sync_app.command("add")(sync.sync_add)
sync_app.command("list")(sync.sync_list)


def _print_version(value: bool) -> None:
    if value:
        out.print(f"syncline {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    # Eager, with its own callback: the group's callback alone runs only with a command, so
    # `syncline --version` would say "Missing command."
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="print the version and exit", is_eager=True, callback=_print_version
        ),
    ] = False,
) -> None:
    """Real-time sync from PostgreSQL to WebSocket clients (Centrifuge protocol)."""


app.command()(up.up)
app.command(name="worker", hidden=True)(up.worker)
app.command()(db.migrate)
app.command()(db.config)
app.command()(db.psql)
app.add_typer(sync_app, name="sync")
app.command()(tail.tail)
app.command()(doctor.doctor)
app.command()(server.publish)
app.command()(server.channels)
app.command()(mail.mail)
app.add_typer(bench.bench_app, name="bench")


def main() -> None:
    """Console entry point."""
    app()
