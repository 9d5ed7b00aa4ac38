"""Shapes with the official SDKs, unchanged: centrifuge-python and centrifuge-js call
`shape.open` by RPC and subscribe with `get_state`/`getState` returning the position the rows
stand at; their copies follow rows entering and leaving, across a reconnect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from centrifuge import Client, PublicationContext, StreamPosition

from syncline.core.shapes.stream import apply_event

from helpers.live_server import LiveServer, server_on_engine
from helpers.node import JS_DIR
from helpers.sdk_events import Events
from helpers.sdk_js import node_client
from helpers.waiting import eventually

REQUEST = {"table": "orders", "where": "status = 'pending'", "columns": ["id", "status"]}


@pytest.fixture(params=["memory", "redis"])
async def server(request: pytest.FixtureRequest, schema_url: str) -> AsyncIterator[LiveServer]:
    async with server_on_engine(request, schema_url) as live:
        yield live


async def _pending(server: LiveServer) -> list[int]:
    async with await psycopg.AsyncConnection.connect(server.database_url) as conn:
        cur = await conn.execute("SELECT id FROM orders WHERE status = 'pending' ORDER BY id")
        return [row[0] for row in await cur.fetchall()]


async def _changes(server: LiveServer) -> None:
    await server.sql("UPDATE orders SET status = 'pending' WHERE id = 1")
    await server.sql("UPDATE orders SET status = 'shipped' WHERE id = 2")
    await server.sql(
        "INSERT INTO orders (customer_name, product_name, status) VALUES ('x', 'y', 'pending')"
    )


async def _seed(server: LiveServer) -> None:
    await server.sql(
        "INSERT INTO orders (customer_name, product_name, status)"
        " SELECT 'c', 'p', CASE WHEN g % 2 = 0 THEN 'pending' ELSE 'shipped' END"
        " FROM generate_series(1, 1500) g"
    )


class _Copy(Events):
    """A subscription's recorder that also keeps the shape's rows."""

    rows: dict[tuple[Any, ...], Any]

    async def on_publication(self, ctx: PublicationContext) -> None:
        await super().on_publication(ctx)
        apply_event(self.rows, ("id",), ctx.pub.data)


async def test_centrifuge_python_keeps_a_copy(server: LiveServer) -> None:
    await _seed(server)
    client = Client(server.ws_url, token=server.token("1"))
    await client.connect()
    events = _Copy()
    events.rows = {}
    try:
        first = (await client.rpc("shape.open", REQUEST)).data
        states: list[int] = []

        async def get_state(channel: str) -> StreamPosition:
            opened = first if not states else (await client.rpc("shape.open", REQUEST)).data
            rows = list(opened["rows"])
            cursor = opened["cursor"]
            while cursor:
                page = (await client.rpc("shape.page", {"cursor": cursor})).data
                rows += page["rows"]
                cursor = page["cursor"]
            events.rows = {(row["id"],): row for row in rows}
            states.append(len(rows))
            return StreamPosition(offset=opened["offset"], epoch=opened["epoch"])

        sub = client.new_subscription(first["channel"], events=events, get_state=get_state)
        await sub.subscribe()
        await eventually(lambda: states == [750])
        await _changes(server)
        expected = await _pending(server)
        await eventually(lambda: sorted(k[0] for k in events.rows) == expected)
        # A dropped connection: the SDK recovers from its offset, get_state is not called.
        await client.disconnect()
        await server.sql("UPDATE orders SET status = 'pending' WHERE id = 3")
        await client.connect()
        expected = await _pending(server)
        await eventually(lambda: sorted(k[0] for k in events.rows) == expected)
        assert states == [750]
        assert all(row["status"] == "pending" for row in events.rows.values())
    finally:
        await client.disconnect()


async def test_centrifuge_js_keeps_a_copy(server: LiveServer) -> None:
    await _seed(server)
    async with node_client(
        server, "shape", token=server.token("1"), script=JS_DIR / "sdk_shape.js", SHAPE=REQUEST
    ) as node:

        def ids(expected: list[int]) -> Any:
            return lambda e: e["event"] == "rows" and sorted(r["id"] for r in e["rows"]) == expected

        await node.expect(ids(await _pending(server)))
        await _changes(server)
        await node.expect(ids(await _pending(server)))
        await node.send("disconnect")
        await server.sql("UPDATE orders SET status = 'pending' WHERE id = 5")
        await asyncio.sleep(0.2)
        await node.send("connect")
        await node.expect(ids(await _pending(server)))
        assert not node.named("error")
