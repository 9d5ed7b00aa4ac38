"""A shape's life on a real server: limits per connection and per server, idle shapes dropped
(their channel refused afterwards), and a stream that can't go on (a table whose replica
identity was changed behind Syncline's back) ending with a reset that clients recover from."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from syncline.client import ReplyError, SynclineClient
from syncline.client.shape import LiveShape

from helpers.live_server import LiveServer, start_live_server, stop_live_server
from helpers.waiting import eventually

NOTES = """
CREATE TABLE IF NOT EXISTS shape_cycle (id serial PRIMARY KEY, status text NOT NULL);
TRUNCATE shape_cycle RESTART IDENTITY;
INSERT INTO shape_cycle (status) VALUES ('open'), ('open'), ('done');
"""
OPTIONS: dict[str, Any] = {
    "shapes": [{"table": "shape_cycle", "policy": "authenticated"}],
    "max_shapes": 3,
    "max_shapes_per_connection": 2,
    "shape_idle_timeout": 0.5,
}


@pytest.fixture
async def server(schema_url: str) -> AsyncIterator[LiveServer]:
    with psycopg.connect(schema_url, autocommit=True) as conn:
        conn.execute(NOTES)
    live = await start_live_server(schema_url, **OPTIONS)
    try:
        yield live
    finally:
        await stop_live_server(live)


async def _client(server: LiveServer, user: str) -> SynclineClient:
    client = SynclineClient(server.ws_url, token=server.token(user))
    await client.connect()
    return client


def _open(where: str) -> dict[str, Any]:
    return {"table": "shape_cycle", "where": where}


async def test_limits_per_connection_and_per_server(server: LiveServer) -> None:
    one, two, three = [await _client(server, user) for user in ("1", "2", "3")]
    try:
        await one.rpc("shape.open", _open("id = 1"))
        await one.rpc("shape.open", _open("id = 2"))
        await one.rpc("shape.open", _open("id = 2"))  # the same shape again: no new one
        with pytest.raises(ReplyError) as mine:
            await one.rpc("shape.open", _open("id = 3"))
        assert (mine.value.code, mine.value.message) == (
            106,
            "a connection may have 2 shapes open at most",
        )
        await two.rpc("shape.open", _open("id = 3"))
        await two.rpc("shape.open", _open("id = 1"))  # shared with `one`: not a new shape
        await one.rpc("shape.close", {"channel": "shape:nothing.here"})  # unknown: ignored
        with pytest.raises(ReplyError) as full:
            await three.rpc("shape.open", _open("status = 'open'"))
        assert (full.value.code, full.value.message) == (
            106,
            "this server has 3 shapes open already",
        )
    finally:
        for client in (one, two, three):
            await client.close()


async def test_an_idle_shape_is_dropped_and_its_channel_refused(server: LiveServer) -> None:
    shapes = server.runtime.shapes
    assert shapes is not None
    first = await _client(server, "1")
    shape = await LiveShape(first, "shape_cycle", "status = 'open'").open()
    channel = shape.channel
    await asyncio.sleep(1.5)  # held by a connection: kept however long
    assert len(shapes.registry) == 1
    await first.close()
    await eventually(lambda: len(shapes.registry) == 0, timeout=5)
    second = await _client(server, "2")
    try:
        with pytest.raises(ReplyError) as refused:
            await second.subscribe(channel)
        assert refused.value.code == 103
        again = await LiveShape(second, "shape_cycle", "status = 'open'").open()
        assert again.channel != channel  # a new registration, a new channel
        assert sorted(again.rows) == [(1,), (2,)]
    finally:
        await second.close()


async def test_a_stream_that_cannot_go_on_ends_with_a_reset_and_clients_reopen(
    server: LiveServer,
) -> None:
    client = await _client(server, "1")
    try:
        shape = await LiveShape(client, "shape_cycle", "status = 'open'").open()
        first = shape.channel
        # Behind Syncline's back: updates now come without the old row.
        await server.sql("ALTER TABLE shape_cycle REPLICA IDENTITY DEFAULT")
        await server.sql("UPDATE shape_cycle SET status = 'done' WHERE id = 1")
        await eventually(lambda: shape.channel != first or shape.opened > 1, timeout=10)
        await server.sql("ALTER TABLE shape_cycle REPLICA IDENTITY FULL")
        await eventually(lambda: shape.opened > 1, timeout=30)
        await server.sql("UPDATE shape_cycle SET status = 'open' WHERE id = 3")
        async with asyncio.timeout(30):
            await shape.until(lambda rows: sorted(rows) == [(2,), (3,)])
        assert shape.channel != first
    finally:
        await client.close()
