"""Core SQL parts (text, identifiers, ``%s``) composed into psycopg's safe SQL objects."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from syncline.core.shapes.filters import Expr, Ident, SqlPart, render_sql

__all__ = ["compose", "where_clause"]


def compose(parts: Sequence[SqlPart]) -> sql.Composed:
    """Identifiers quoted by psycopg; text parts are Syncline's own, never a client's."""
    return sql.Composed(
        [
            sql.Identifier(*part.names) if isinstance(part, Ident) else sql.SQL(part)
            for part in parts
        ]
    )


def where_clause(expr: Expr) -> tuple[sql.Composed, list[str]]:
    """A filter as a WHERE condition and its parameters."""
    parts, params = render_sql(expr)
    return compose(parts), params
