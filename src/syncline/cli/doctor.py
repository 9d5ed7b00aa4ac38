"""`syncline doctor`: what the database needs for Syncline, and how to fix what it lacks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import typer
from rich.markup import escape

from syncline.capture import live_rules, setup
from syncline.capture.choose import ServerCapabilities, capabilities, choose
from syncline.capture.service import CAPTURE_APPLICATION_PREFIX, LEADER_LOCK_KEY
from syncline.cli.base import ConfigOption, connect, guarded, out, reason, running_url, settings_for
from syncline.cli.sync_live import with_database_rules
from syncline.errors import ConfigError, SynclineError
from syncline.settings import Settings, mask_url

# An inactive slot retaining more WAL than this is a problem, not a pause.
SLOT_RETAINED_LIMIT = 64 * 1024 * 1024
OUTBOX_BACKLOG_LIMIT = 10_000


@dataclass
class _Check:
    """Doctor's findings: (level, text, fix) with level ok, info, warn or fail."""

    lines: list[tuple[str, str, str | None]] = field(default_factory=list)

    def add(self, level: str, text: str, fix: str | None = None) -> None:
        self.lines.append((level, text, fix))

    @property
    def failed(self) -> int:
        return sum(1 for level, _, _ in self.lines if level == "fail")


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


async def _slot_checks(
    conn: psycopg.AsyncConnection[Any], settings: Settings, mode: str, running: bool, c: _Check
) -> None:
    slot = settings.slot_name
    row = await (
        await conn.execute(
            "SELECT active, restart_lsn::text, confirmed_flush_lsn::text,"
            " pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint,"
            " pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint, wal_status"
            " FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        )
    ).fetchone()
    if row is None:
        if mode == "logical":
            c.add("info", f"replication slot {slot}: not created yet (Syncline makes it at start)")
        return
    active, restart_lsn, _, retained, lag, wal_status = row
    retained, lag = int(retained or 0), int(lag or 0)
    text = (
        f"replication slot {slot}: {'active' if active else 'inactive'},"
        f" restart_lsn {restart_lsn}, retains {_mb(retained)} of WAL, lag {_mb(lag)}"
    )
    drop = f"SELECT pg_drop_replication_slot('{slot}');"
    if wal_status == "lost":
        c.add("fail", text + ", WAL lost", f"the slot is unusable: {drop} then restart Syncline")
    elif mode != "logical":
        c.add("warn", text, f"{mode} capture does not read this slot; {drop} frees its WAL")
    elif not active and retained > SLOT_RETAINED_LIMIT:
        fix = f"the slot retains {_mb(retained)}: is Syncline running? start it, or {drop}"
        c.add("fail", text, fix)
    elif not active:
        c.add("warn" if running else "info", text, "start Syncline to read the slot")
    else:
        c.add("ok", text)


async def _doctor_checks(url: str, settings: Settings, c: _Check) -> None:
    conn = await connect(url)
    async with conn:
        version = await (await conn.execute("SHOW server_version")).fetchone()
        c.add("ok", f"PostgreSQL {version[0] if version else '?'} at {mask_url(url)}")
        caps: ServerCapabilities = await capabilities(conn)
        wal_fix = "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL"
        role_fix = f"ALTER ROLE {caps.role} REPLICATION;"
        level = "warn" if settings.capture == "auto" else "fail"
        needs_logical = settings.capture in ("auto", "logical")
        if caps.wal_level == "logical":
            c.add("ok", "wal_level is logical")
        else:
            c.add(level if needs_logical else "info", f"wal_level is {caps.wal_level}", wal_fix)
        if caps.can_replicate:
            c.add("ok", f"role {caps.role} may replicate")
        else:
            who = f"role {caps.role} has no REPLICATION privilege"
            c.add(level if needs_logical else "info", who, role_fix)
        mode, why = choose(settings.capture, caps)
        c.add("ok", f"capture mode: {mode} ({why})")
        lock = await (
            await conn.execute(
                "SELECT l.pid, a.application_name FROM pg_locks l"
                " LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted"
                " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND l.classid = %s AND l.objid = %s AND l.objsubid = 1",
                (LEADER_LOCK_KEY >> 32, LEADER_LOCK_KEY & 0xFFFFFFFF),
            )
        ).fetchone()
        running = lock is not None
        leader = str(lock[1] or "").removeprefix(CAPTURE_APPLICATION_PREFIX) if lock else ""
        c.add(
            "ok" if running else "info",
            f"capture leader: node {leader or '?'} (backend pid {lock[0]})"
            if lock
            else "no Syncline is capturing from this database now",
        )
        await _slot_checks(conn, settings, mode, running, c)
        outbox = await (await conn.execute("SELECT to_regclass('syncline.changes')")).fetchone()
        if outbox and outbox[0]:
            count_row = await (
                await conn.execute("SELECT count(*) FROM syncline.changes")
            ).fetchone()
            backlog = int(count_row[0]) if count_row else 0
            text = f"outbox backlog: {backlog} change(s) in syncline.changes"
            if backlog == 0:
                c.add("ok", text)
            elif not running:
                fix = "start Syncline (syncline up) to deliver them"
                fix += "; stale? DELETE FROM syncline.changes"
                c.add("fail", text, fix)
            elif backlog > OUTBOX_BACKLOG_LIMIT:
                c.add(
                    "fail", text, "Syncline is falling behind: check its log and the database load"
                )
            else:
                c.add("ok", text)
        try:
            stored = await live_rules.fetch(conn)
            config = with_database_rules(settings, [body for _, body in stored or []])
        except ConfigError as error:
            c.add("fail", f"sync rules: {error}", "fix syncline.toml (see `syncline sync list`)")
            return
        tables = sorted({r.table_key for r in config.rules.rules})
        _, missing = await setup.existing_tables(conn, tables)
        for schema, name in missing:
            c.add(
                "warn", f"rule table {schema}.{name} does not exist", "create it, or drop its rule"
            )


def _doctor(config: Path | None) -> None:
    settings = settings_for(config, quiet=True)
    url = running_url(settings)
    if url is None:
        raise SynclineError(
            f"nothing to check: the embedded PostgreSQL in {settings.data_dir} is not running"
            " (start it with `syncline up`, or set DATABASE_URL)"
        )
    c = _Check()
    asyncio.run(_doctor_checks(url, settings, c))
    from syncline.db import migrate  # Alembic loads only for the commands that need it

    try:
        current, head = migrate.current_revision(url), migrate.head_revision()
    except Exception as error:
        c.add("fail", f"migrations: cannot read the revision: {reason(error)}")
    else:
        if current == head:
            c.add("ok", f"migrations at head ({head})")
        else:
            c.add("fail", f"migrations at {current or 'none'}, head is {head}", "syncline migrate")
    marks = {"ok": "[green]ok  [/]", "info": "[blue]info[/]", "warn": "[yellow]warn[/]"}
    marks["fail"] = "[bold red]FAIL[/]"
    for level, text, fix in c.lines:
        out.print(f"{marks[level]} {escape(text)}")
        if fix and level != "ok":
            out.print(f"     fix: {escape(fix)}")
    if c.failed:
        out.print(f"[bold red]{c.failed} problem(s) found[/]")
        raise typer.Exit(1)
    out.print("[green]healthy[/]")


def doctor(config: ConfigOption = None) -> None:
    """Check the database for Syncline: wal_level, privileges, slot, outbox, migrations."""
    guarded(lambda: _doctor(config))
