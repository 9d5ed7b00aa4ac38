"""OrderService: orders in PostgreSQL; the `orders` channel hears of them through capture."""

from __future__ import annotations

from typing import Any

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from syncline.apps.errors import AppError, not_found
from syncline.apps.orders.models import (
    MAX_PAGE_SIZE,
    CreateOrder,
    Order,
    OrderPage,
    Status,
    UpdateOrder,
)
from syncline.apps.sql import fetch_all, fetch_one

COLUMNS = "id, customer_name, product_name, status, created_at, updated_at"
# Offsets past this are refused: a deep OFFSET scans every skipped row.
MAX_OFFSET = 100_000


class OrderService:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def list(self, status: Status | None, limit: int, offset: int) -> OrderPage:
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise AppError(400, "invalid_limit", f"limit must be 1 to {MAX_PAGE_SIZE}")
        if not 0 <= offset <= MAX_OFFSET:
            raise AppError(400, "invalid_offset", f"offset must be 0 to {MAX_OFFSET}")
        where = "WHERE status = %(status)s" if status is not None else ""
        params: dict[str, Any] = {"status": status, "limit": limit, "offset": offset}
        async with self.pool.connection() as conn, conn.transaction():
            rows = await fetch_all(
                conn,
                f"SELECT {COLUMNS} FROM orders {where}"
                " ORDER BY created_at DESC, id DESC LIMIT %(limit)s OFFSET %(offset)s",
                params,
            )
            total = await fetch_one(conn, f"SELECT count(*) AS n FROM orders {where}", params)
        assert total is not None
        return OrderPage(orders=[Order.model_validate(r) for r in rows], total=total["n"])

    async def get(self, order_id: int) -> Order:
        async with self.pool.connection() as conn:
            row = await fetch_one(conn, f"SELECT {COLUMNS} FROM orders WHERE id = %s", (order_id,))
        if row is None:
            raise not_found("order")
        return Order.model_validate(row)

    async def create(self, order: CreateOrder) -> Order:
        async with self.pool.connection() as conn:
            row = await fetch_one(
                conn,
                f"INSERT INTO orders (customer_name, product_name, status) VALUES (%s, %s, %s)"
                f" RETURNING {COLUMNS}",
                (order.customer_name, order.product_name, order.status),
            )
        assert row is not None
        return Order.model_validate(row)

    async def update(self, order_id: int, change: UpdateOrder) -> Order:
        fields = change.model_dump(exclude_unset=True, exclude_none=True)
        sets: list[sql.Composable] = [
            sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in fields
        ]
        sets.append(sql.SQL("updated_at = now()"))
        query = sql.SQL("UPDATE orders SET {} WHERE id = {} RETURNING {}").format(
            sql.SQL(", ").join(sets), sql.Placeholder("id"), sql.SQL(COLUMNS)
        )
        async with self.pool.connection() as conn:
            row = await fetch_one(conn, query, {**fields, "id": order_id})
        if row is None:
            raise not_found("order")
        return Order.model_validate(row)

    async def delete(self, order_id: int) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute("DELETE FROM orders WHERE id = %s", (order_id,))
        if cur.rowcount == 0:
            raise not_found("order")
