"""`syncline mail`: the account mails in the outbox (the only way to read them without SMTP)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

import psycopg
import typer
from psycopg.rows import dict_row
from rich.markup import escape

from syncline.cli.base import (
    ConfigOption,
    JsonOption,
    database,
    guarded,
    out,
    running_url,
    settings_for,
)
from syncline.errors import SynclineError
from syncline.settings import Settings, mask_url

MAX_LIMIT = 1000


@contextlib.contextmanager
def _outboxdatabase(settings: Settings) -> Iterator[str]:
    """The running Syncline's database; else the embedded one, started for the command."""
    url = running_url(settings)
    if url is not None:
        yield url
        return
    with database(settings) as (started_url, _):
        yield started_url


def read_outbox(url: str, limit: int, to: str | None) -> tuple[list[dict[str, Any]], int]:
    """The newest `limit` mails (to one address, if given), newest first, and, when there is
    none to that address, how many the outbox holds for anyone."""
    query = (
        "SELECT id, to_address AS to, subject, body, created_at, sent_at, error"
        " FROM mail_outbox WHERE (%(to)s::text IS NULL OR lower(to_address) = lower(%(to)s))"
        " ORDER BY id DESC LIMIT %(limit)s"
    )
    try:
        with psycopg.connect(url, connect_timeout=5, row_factory=dict_row) as conn:
            mails = conn.execute(query, {"to": to, "limit": limit}).fetchall()
            if mails or to is None:
                return mails, len(mails)
            # Nothing to that address: say how much the outbox holds for others.
            total = conn.execute("SELECT count(*) AS n FROM mail_outbox").fetchone()
            return mails, int(total["n"]) if total else 0
    except psycopg.errors.UndefinedTable:
        raise SynclineError(
            "this database has no mail outbox yet: run `syncline migrate` (or `syncline up`)"
        ) from None
    except psycopg.OperationalError as err:
        raise SynclineError(f"cannot reach PostgreSQL at {mask_url(url)}: {err}") from None


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if value else ""


def _status(mail: dict[str, Any]) -> str:
    if mail["sent_at"] is not None:
        return f"sent {_when(mail['sent_at'])}"
    if mail["error"]:
        return f"not sent: {mail['error']}"
    return "not sent (no SMTP configured, or pending)"


def format_mail(mail: dict[str, Any]) -> str:
    """One mail as text: a header block, then the body indented."""
    body = "\n".join(f"    {line}" for line in mail["body"].splitlines())
    return (
        f"#{mail['id']}  {_when(mail['created_at'])}  to {mail['to']}\n"
        f"  subject: {mail['subject']}\n"
        f"  status:  {_status(mail)}\n"
        f"{body}\n"
    )


def mail(
    config: ConfigOption = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=MAX_LIMIT, help="how many, newest first")
    ] = 20,
    to: Annotated[str | None, typer.Option("--to", help="only mails to this address")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show the account mails (verification, password reset) in the outbox, newest first."""

    def body() -> None:
        settings = settings_for(config, quiet=True)
        with _outboxdatabase(settings) as url:
            mails, total = read_outbox(url, limit, to)
        if as_json:
            data = [
                {
                    **m,
                    "created_at": m["created_at"].isoformat(),
                    "sent_at": m["sent_at"].isoformat() if m["sent_at"] else None,
                }
                for m in mails
            ]
            sys.stdout.write(json.dumps(data, indent=2) + "\n")
            return
        if not mails:
            empty = total == 0
            out.print(
                "the mail outbox is empty"
                if empty
                else escape(f"no mail to {to} ({total} in the outbox)")
            )
            return
        out.print("\n".join(escape(format_mail(m)) for m in mails).rstrip("\n"))

    guarded(body)
