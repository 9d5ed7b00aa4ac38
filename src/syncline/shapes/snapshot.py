"""The snapshot reader: a shape's rows as of one snapshot, and the boundary that joins them to
the capture stream (docs/topics/shapes.md, "The snapshot boundary")."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import IsolationLevel, sql
from psycopg.rows import TupleRow

from syncline.core.changes import Lsn
from syncline.core.pgvalues import builtin_type_oid, converter_for
from syncline.core.shapes.shape import Shape, TableSchema
from syncline.core.shapes.snapshot import PgSnapshot, SnapshotBoundary
from syncline.shapes.sql import where_clause

__all__ = ["SNAPSHOT_BATCH_ROWS", "ShapeSnapshot", "open_snapshot", "read_table_schema"]

# Rows fetched from the server-side cursor at a time: large enough that the round trips don't
# dominate, small enough that a batch of wide rows stays a few MB.
SNAPSHOT_BATCH_ROWS = 1000

# The replication connection's settings (see pgvalues): values then have the same text as in
# pgoutput, so a row of the snapshot and a row of a captured change decode alike.
_SESSION_OPTIONS = (
    "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=1"
    " -c client_encoding=UTF8"
)

_SCHEMA_QUERY = """
SELECT a.attname, coalesce(base.typname, t.typname),
       array_position(i.indkey::int2[], a.attnum), c.relreplident = 'f'
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type base ON t.typtype = 'd' AND base.oid = t.typbasetype
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
ORDER BY a.attnum
"""


async def read_table_schema(
    conn: psycopg.AsyncConnection[TupleRow], schema: str, table: str
) -> TableSchema | None:
    """A table's columns (domains as their base type), primary key and replica identity."""
    cur = await conn.execute(_SCHEMA_QUERY, (schema, table))
    rows = await cur.fetchall()
    if not rows:
        return None
    columns = {str(name): str(type_name) for name, type_name, _, _ in rows}
    # indkey is an int2vector, whose subscripts start at 0: the position is only for order.
    key = sorted((int(pos), str(name)) for name, _, pos, _ in rows if pos is not None)
    return TableSchema(schema, table, columns, tuple(name for _, name in key), bool(rows[0][3]))


@dataclass
class ShapeSnapshot:
    """An open snapshot: its boundary, known before any row, and the rows in batches."""

    boundary: SnapshotBoundary
    _cursor: psycopg.AsyncServerCursor[TupleRow]
    _columns: tuple[str, ...]
    _converters: tuple[Callable[[str], Any] | None, ...]
    _batch_rows: int

    async def batches(self) -> AsyncIterator[list[dict[str, Any]]]:
        """The shape's rows, decoded as capture decodes a row (pgvalues)."""
        columns, converters = self._columns, self._converters
        while records := await self._cursor.fetchmany(self._batch_rows):
            yield [
                {
                    name: text if text is None or convert is None else convert(text)
                    for name, convert, text in zip(columns, converters, record, strict=True)
                }
                for record in records
            ]


@contextlib.asynccontextmanager
async def open_snapshot(
    url: str, shape: Shape, table: TableSchema, *, batch_rows: int = SNAPSHOT_BATCH_ROWS
) -> AsyncIterator[ShapeSnapshot]:
    """Read ``shape``'s rows in one REPEATABLE READ transaction of a connection of its own.

    The transaction's first statement reads ``pg_current_snapshot()`` and the WAL insert
    position; in REPEATABLE READ that snapshot is the one every later statement of the
    transaction uses, so the rows are exactly those of the boundary's snapshot.
    """
    async with await psycopg.AsyncConnection.connect(url, options=_SESSION_OPTIONS) as conn:
        await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
        await conn.set_read_only(True)
        cur = await conn.execute("SELECT pg_current_snapshot()::text, pg_current_wal_insert_lsn()")
        row = await cur.fetchone()
        assert row is not None
        snapshot = PgSnapshot.parse(row[0])
        boundary = SnapshotBoundary(snapshot, Lsn.parse(str(row[1])).value)
        where, params = where_clause(shape.filter)
        # Each column as its type's output text, as pgoutput sends it (a cast to text is not
        # the same for bool and char(n)); format() turns NULL into '', hence the CASE.
        selected = sql.SQL(", ").join(
            sql.SQL("CASE WHEN {0} IS NULL THEN NULL ELSE format('%%s', {0}) END").format(
                sql.Identifier(name)
            )
            for name in shape.columns
        )
        query = sql.SQL("SELECT {} FROM {} WHERE {}").format(
            selected, sql.Identifier(shape.schema, shape.table), where
        )
        converters = tuple(_converter(table.columns[name]) for name in shape.columns)
        async with conn.cursor(name="syncline_shape_snapshot") as cursor:
            await cursor.execute(query, params)
            yield ShapeSnapshot(boundary, cursor, shape.columns, converters, batch_rows)
        await conn.commit()


def _converter(type_name: str) -> Callable[[str], Any] | None:
    oid = builtin_type_oid(type_name)
    return None if oid is None else converter_for(oid)
