"""Shapes through the whole system: PostgreSQL → logical capture → engine (memory and Redis) →
gateway → the Python client's LiveShape, with the errors and the authorization of shape.open
and of subscribing to a shape's channel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from syncline.client import ReplyError, SynclineClient
from syncline.client.shape import LiveShape

from helpers.live_server import LiveServer, server_on_engine

NOTES = """
CREATE TABLE IF NOT EXISTS shape_notes (
    id serial PRIMARY KEY, owner_id int NOT NULL, status text NOT NULL, body text
);
TRUNCATE shape_notes RESTART IDENTITY;
"""
SHAPES = [
    {"table": "shape_notes", "policy": "row", "row_filter": "owner_id = {sub}"},
]


@pytest.fixture(params=["memory", "redis"])
async def server(request: pytest.FixtureRequest, schema_url: str) -> AsyncIterator[LiveServer]:
    with psycopg.connect(schema_url, autocommit=True) as conn:
        conn.execute(NOTES)
    async with server_on_engine(request, schema_url, shapes=SHAPES) as live:
        yield live


async def _client(server: LiveServer, user: str) -> SynclineClient:
    client = SynclineClient(server.ws_url, token=server.token(user))
    await client.connect()
    return client


async def _select(server: LiveServer, query: str) -> dict[tuple[Any, ...], str]:
    async with await psycopg.AsyncConnection.connect(server.database_url) as conn:
        cur = await conn.execute(query)
        return {(row[0],): row[1] for row in await cur.fetchall()}


async def test_orders_shape_follows_rows_entering_and_leaving(server: LiveServer) -> None:
    await server.sql(
        "INSERT INTO orders (customer_name, product_name, status)"
        " SELECT 'c' || g, 'p', CASE WHEN g % 2 = 0 THEN 'pending' ELSE 'shipped' END"
        " FROM generate_series(1, 2500) g"
    )
    client = await _client(server, "1")
    try:
        shape = await LiveShape(client, "orders", "status = 'pending'").open()
        assert shape.key == ("id",)
        assert len(shape.rows) == 1250  # two pages and more: read through shape.page
        await server.sql("UPDATE orders SET status = 'pending' WHERE id = 1")  # enters
        await server.sql("UPDATE orders SET status = 'shipped' WHERE id = 2")  # leaves
        await server.sql("UPDATE orders SET product_name = 'q' WHERE id = 4")  # changes
        await server.sql("DELETE FROM orders WHERE id = 6")
        await server.sql(
            "INSERT INTO orders (customer_name, product_name, status) VALUES ('n', 'p', 'pending')"
        )
        expected = await _select(
            server, "SELECT id, product_name FROM orders WHERE status = 'pending'"
        )
        async with asyncio.timeout(10):
            await shape.until(
                lambda rows: {k: r["product_name"] for k, r in rows.items()} == expected
            )
        assert (1,) in shape.rows and (2,) not in shape.rows and (6,) not in shape.rows
        assert shape.rows[(4,)]["product_name"] == "q"
        await shape.close()
    finally:
        await client.close()


async def test_open_errors_name_the_problem(server: LiveServer) -> None:
    client = await _client(server, "1")
    try:
        with pytest.raises(ReplyError) as bad:
            await client.rpc("shape.open", {"table": "orders", "where": "status = "})
        assert bad.value.code == 400 and "at character" in bad.value.message
        with pytest.raises(ReplyError) as unknown:
            await client.rpc("shape.open", {"table": "orders", "where": "nope = 1"})
        assert "unknown column 'nope'" in unknown.value.message
        with pytest.raises(ReplyError) as hidden:
            await client.rpc("shape.open", {"table": "orders", "where": "secret_note = 'x'"})
        assert "unknown column 'secret_note'" in hidden.value.message
        with pytest.raises(ReplyError) as closed:
            await client.rpc("shape.open", {"table": "users"})
        assert closed.value.code == 403 and "no [[shapes]] rule" in closed.value.message
        with pytest.raises(ReplyError) as malformed:
            await client.rpc("shape.open", {"table": "orders", "limit": 5})
        assert malformed.value.code == 107
    finally:
        await client.close()


async def test_row_policy_bounds_every_filter_and_channel(server: LiveServer) -> None:
    await server.sql(
        "INSERT INTO shape_notes (owner_id, status, body) VALUES"
        " (7, 'open', 'mine'), (8, 'open', 'theirs'), (7, 'done', 'mine too')"
    )
    seven, eight = await _client(server, "7"), await _client(server, "8")
    try:
        wide = await LiveShape(seven, "shape_notes", "status = 'open' or owner_id = 8").open()
        assert {r["body"] for r in wide.rows.values()} == {"mine"}
        theirs = await LiveShape(eight, "shape_notes", "owner_id = 7").open()
        assert theirs.rows == {}
        # The same filter text is another shape for another user: its own channel.
        same = await LiveShape(eight, "shape_notes", "status = 'open' or owner_id = 8").open()
        assert same.channel != wide.channel
        assert {r["body"] for r in same.rows.values()} == {"theirs"}
        # A channel name is no key: user 8 may not subscribe to user 7's shape channel.
        with pytest.raises(ReplyError) as denied:
            await eight.subscribe(wide.channel)
        assert denied.value.code == 103
        with pytest.raises(ReplyError):
            await eight.subscribe("shape:" + "0" * 32 + ".abc")
        await server.sql("INSERT INTO shape_notes (owner_id, status, body) VALUES (8, 'open', 'x')")
        await server.sql("INSERT INTO shape_notes (owner_id, status, body) VALUES (7, 'open', 'y')")
        async with asyncio.timeout(10):
            await wide.until(lambda rows: {r["body"] for r in rows.values()} == {"mine", "y"})
            await same.until(lambda rows: {r["body"] for r in rows.values()} == {"theirs", "x"})
        assert theirs.rows == {}
    finally:
        await seven.close()
        await eight.close()


async def test_anonymous_and_unknown_users_get_no_shape(server: LiveServer) -> None:
    client = await _client(server, "abc")  # a user id the policy's int column can't hold
    try:
        with pytest.raises(ReplyError) as refused:
            await client.rpc("shape.open", {"table": "shape_notes"})
        assert "row policy does not admit this user" in refused.value.message
    finally:
        await client.close()
