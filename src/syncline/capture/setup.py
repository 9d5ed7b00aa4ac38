"""What each capture source needs in the database: a publication, replica identity, triggers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from syncline.core.rules import ReplicaIdentity, Rule, required_replica_identity
from syncline.logs import get_logger

log = get_logger(__name__)

ROW_TRIGGER = "syncline_capture"
TRUNCATE_TRIGGER = "syncline_capture_truncate"

Table = tuple[str, str]


@dataclass
class SetupReport:
    """What setup did, and the rule tables that do not exist (yet)."""

    missing: list[Table] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)


def _ident(table: Table) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(table[0]), sql.Identifier(table[1]))


async def existing_tables(
    conn: psycopg.AsyncConnection[TupleRow], tables: Iterable[Table]
) -> tuple[list[Table], list[Table]]:
    """Split tables into those that exist and those that don't."""
    present: list[Table] = []
    missing: list[Table] = []
    for schema, table in tables:
        row = await (
            await conn.execute(
                "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))", (schema, table)
            )
        ).fetchone()
        (present if row and row[0] else missing).append((schema, table))
    return present, missing


async def _primary_key(conn: psycopg.AsyncConnection[TupleRow], table: Table) -> list[str]:
    rows = await (
        await conn.execute(
            """
            SELECT a.attname FROM pg_index i
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
            WHERE i.indrelid = format('%%I.%%I', %s::text, %s::text)::regclass
              AND i.indisprimary
            """,
            table,
        )
    ).fetchall()
    return [r[0] for r in rows]


async def setup_logical(
    conn: psycopg.AsyncConnection[TupleRow],
    rules: Iterable[Rule],
    publication: str,
    *,
    extra: Iterable[Table] = (),
    full_identity: Iterable[Table] = (),
) -> SetupReport:
    """Publication of exactly the rule tables (and `extra`, e.g. syncline.sync_rules, and
    `full_identity`, the tables of [[shapes]] rules); REPLICA IDENTITY FULL where routing needs
    it and on every table of `full_identity` (a shape needs the old row's filtered columns)."""
    rules = list(rules)
    report = SetupReport()
    full = set(full_identity)
    wanted = {r.table_key for r in rules} | set(extra) | full
    present, report.missing = await existing_tables(conn, sorted(wanted))
    exists = await (
        await conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,))
    ).fetchone()
    if not exists:
        await conn.execute(sql.SQL("CREATE PUBLICATION {}").format(sql.Identifier(publication)))
        report.changed.append(f"created publication {publication}")
    members = {
        (r[0], r[1])
        for r in await (
            await conn.execute(
                "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
                (publication,),
            )
        ).fetchall()
    }
    for table in present:
        if table not in members:
            await conn.execute(
                sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
                    sql.Identifier(publication), _ident(table)
                )
            )
            report.changed.append(f"added {table[0]}.{table[1]} to publication {publication}")
    for table in sorted(members - wanted):
        await conn.execute(
            sql.SQL("ALTER PUBLICATION {} DROP TABLE {}").format(
                sql.Identifier(publication), _ident(table)
            )
        )
        report.changed.append(f"dropped {table[0]}.{table[1]} from publication {publication}")
    for table in present:
        key = await _primary_key(conn, table)
        needs_full = table in full or any(
            required_replica_identity(r, key) is ReplicaIdentity.FULL
            for r in rules
            if r.table_key == table
        )
        if needs_full:
            row = await (
                await conn.execute(
                    "SELECT relreplident FROM pg_class"
                    " WHERE oid = format('%%I.%%I', %s::text, %s::text)::regclass",
                    table,
                )
            ).fetchone()
            if row and row[0] != "f":
                await conn.execute(
                    sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(_ident(table))
                )
                report.changed.append(f"set REPLICA IDENTITY FULL on {table[0]}.{table[1]}")
    await drop_triggers(conn, present)
    _log(report, "logical")
    return report


async def setup_triggers(
    conn: psycopg.AsyncConnection[TupleRow], rules: Iterable[Rule], *, extra: Iterable[Table] = ()
) -> SetupReport:
    """Row and truncate triggers that fill the outbox, on every rule table (and `extra`)."""
    report = SetupReport()
    wanted = sorted({r.table_key for r in rules} | set(extra))
    present, report.missing = await existing_tables(conn, wanted)
    for table in present:
        await conn.execute(
            sql.SQL(
                "CREATE OR REPLACE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {}"
                " FOR EACH ROW EXECUTE FUNCTION syncline.capture_row()"
            ).format(sql.Identifier(ROW_TRIGGER), _ident(table))
        )
        await conn.execute(
            sql.SQL(
                "CREATE OR REPLACE TRIGGER {} AFTER TRUNCATE ON {}"
                " FOR EACH STATEMENT EXECUTE FUNCTION syncline.capture_truncate()"
            ).format(sql.Identifier(TRUNCATE_TRIGGER), _ident(table))
        )
    # Triggers left on tables that no longer have rules would fill the outbox for nothing.
    rows = await (
        await conn.execute(
            "SELECT n.nspname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE t.tgname = %s",
            (ROW_TRIGGER,),
        )
    ).fetchall()
    stale = [(r[0], r[1]) for r in rows if (r[0], r[1]) not in set(present)]
    await drop_triggers(conn, stale)
    _log(report, "trigger")
    return report


async def drop_triggers(conn: psycopg.AsyncConnection[TupleRow], tables: Iterable[Table]) -> None:
    """Remove our triggers (the logical source must not also fill the outbox)."""
    for table in tables:
        for name in (ROW_TRIGGER, TRUNCATE_TRIGGER):
            await conn.execute(
                sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                    sql.Identifier(name), _ident(table)
                )
            )


async def drop_inactive_slot(conn: psycopg.AsyncConnection[TupleRow], slot: str) -> bool:
    """An unread slot pins WAL forever: drop ours when another source takes over."""
    row = await (
        await conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE slot_name = %s AND NOT active",
            (slot,),
        )
    ).fetchone()
    if row is not None:
        log.warning("dropped the unused replication slot", slot=slot)
    return row is not None


def _log(report: SetupReport, mode: str) -> None:
    for change in report.changed:
        log.info("capture setup", mode=mode, change=change)
    for schema, table in report.missing:
        log.warning(
            "a sync rule names a table that does not exist; it is captured once created"
            " and Syncline restarted",
            table=f"{schema}.{table}",
        )


async def record_mode(conn: psycopg.AsyncConnection[TupleRow], mode: str) -> None:
    """Tell syncline.publish() which road publications take: WAL message or outbox row."""
    await conn.execute(
        "INSERT INTO syncline.capture_state (mode) VALUES (%s)"
        " ON CONFLICT (singleton) DO UPDATE SET mode = EXCLUDED.mode, updated_at = now()",
        (mode,),
    )
