"""Behind a balancer the gateway counts per-IP limits by X-Forwarded-For, but only from
`trusted_proxies`: otherwise any client could pick the address it is counted under."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from helpers.live_server import LiveServer, start_live_server, stop_live_server


async def connect_code(server: LiveServer, forwarded: str) -> int | None:
    """Open a connection claiming `forwarded`; the close code if the server refused it."""
    ws = await websockets.connect(server.ws_url, additional_headers={"X-Forwarded-For": forwarded})
    try:
        await ws.send(json.dumps({"id": 1, "connect": {"token": server.token("1")}}))
        await asyncio.wait_for(ws.recv(), 5)
    except ConnectionClosed:
        return ws.close_code
    held.append(ws)
    return None


held: list[websockets.ClientConnection] = []


@pytest.fixture
async def close_held() -> AsyncIterator[None]:
    yield
    for ws in held:
        await ws.close()
    held.clear()


@pytest.mark.usefixtures("close_held")
async def test_a_trusted_proxys_forwarded_address_is_counted(schema_url: str) -> None:
    server = await start_live_server(
        schema_url, trusted_proxies=["127.0.0.0/8"], max_connections_per_ip=1
    )
    try:
        assert await connect_code(server, "203.0.113.1") is None
        assert await connect_code(server, "203.0.113.2") is None  # another client
        assert await connect_code(server, "198.51.100.9, 203.0.113.1") == 3504  # its second
    finally:
        await stop_live_server(server)


@pytest.mark.usefixtures("close_held")
async def test_without_trusted_proxies_the_header_is_ignored(schema_url: str) -> None:
    server = await start_live_server(schema_url, max_connections_per_ip=1)
    try:
        assert await connect_code(server, "203.0.113.1") is None
        # A different claimed address changes nothing: it is the same TCP peer.
        assert await connect_code(server, "203.0.113.2") == 3504
    finally:
        await stop_live_server(server)
