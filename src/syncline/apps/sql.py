"""SQL helpers of the application services: dict rows and syncline.publish (migration 0002)."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

Row = dict[str, Any]


async def fetch_one(
    conn: AsyncConnection[Any], query: str | sql.SQL | sql.Composed, params: Any = None
) -> Row | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchone()


async def fetch_all(
    conn: AsyncConnection[Any], query: str | sql.SQL | sql.Composed, params: Any = None
) -> list[Row]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def publish(conn: AsyncConnection[Any], channel: str, data: dict[str, Any]) -> None:
    """Publish with the caller's transaction: delivered after its commit, in commit order,
    through capture like the rows it wrote; nothing if it rolls back."""
    await conn.execute("SELECT syncline.publish(%s, %s)", (channel, Jsonb(data)))
