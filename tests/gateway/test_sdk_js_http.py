"""The official `centrifuge` JS SDK over the HTTP transports only (WebSocket off): its
``http_stream`` (JSON and the Protobuf build) and ``sse`` emulation, commands POSTed to
/emulation, all on the gateway's port (tests/js/sdk_client.js with TRANSPORT set).

The README's test command installs Node and the SDK; without them these tests fail.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from syncline.rpc import RpcContext

from helpers.live_server import LiveServer, start_live_server, stop_live_server
from helpers.node import NodeProcess
from helpers.sdk_js import insert_order, node_client, publications_and_recovery

Sdk = Callable[..., AbstractAsyncContextManager[NodeProcess]]

TRANSPORTS = [
    pytest.param(("http_stream", False), id="http_stream"),
    pytest.param(("sse", False), id="sse"),
    pytest.param(("http_stream", True), id="http_stream-protobuf"),
]


@pytest.fixture(params=TRANSPORTS)
def sdk(request: pytest.FixtureRequest) -> Sdk:
    transport, protobuf = request.param
    return functools.partial(node_client, transport=transport, protobuf=protobuf)


@pytest.fixture
def transport_name(sdk: Sdk) -> str:
    assert isinstance(sdk, functools.partial)
    return str(sdk.keywords["transport"])


async def test_publications_and_recovery_after_reconnect(
    live_server: LiveServer, sdk: Sdk, transport_name: str
) -> None:
    token = live_server.token("1")
    async with sdk(live_server, "subscribe", token=token, CHANNEL="orders") as client:
        connected = await publications_and_recovery(live_server, client)
        assert connected["transport"] == transport_name


async def test_presence_history_and_publish(live_server: LiveServer, sdk: Sdk) -> None:
    await live_server.sql("INSERT INTO room_members (room_id, user_id) VALUES (5, 1)")
    for product in ("a", "b"):
        await insert_order(live_server, product)
    token = live_server.token("1")
    async with sdk(live_server, "subscribe", token=token, CHANNEL="room:5") as client:
        connected = await client.expect_event("connected")
        await client.expect_event("subscribed", channel="room:5")
        await client.send("presence room:5")
        presence = await client.expect_event("presence_result")
        assert [c["user"] for c in presence["clients"].values()] == ["1"]
        assert connected["client"] in presence["clients"]
        await client.send("presence_stats room:5")
        stats = await client.expect_event("presence_stats_result")
        assert (stats["numClients"], stats["numUsers"]) == (1, 1)
        await client.send('history orders {"limit": 10}')
        history = await client.expect_event("history_result")
        assert [p["data"]["row"]["product_name"] for p in history["publications"]] == ["a", "b"]
        assert not client.named("call_error")


async def test_rpc_round_trip(live_server: LiveServer, sdk: Sdk) -> None:
    async def echo(ctx: RpcContext, data: Any) -> Any:
        return {"user": ctx.user, "echo": data}

    live_server.runtime.rpc.register("echo", echo)
    calls = [{"method": "echo", "data": {"x": 1}}, {"method": "nope", "data": None}]
    token = live_server.token("7")
    async with sdk(live_server, "rpc", token=token, RPC_CALLS=calls) as client:
        result = await client.expect_event("rpc_result")
        assert result["data"] == {"user": "7", "echo": {"x": 1}}
        error = await client.expect_event("rpc_error", method="nope")
        assert error["code"] == 108
        await client.expect_event("rpc_done")


async def test_an_expired_token_then_a_refresh(live_server: LiveServer, sdk: Sdk) -> None:
    expired = live_server.token("4", ttl=-10)
    tokens = [live_server.token("4", ttl=2), live_server.token("4", ttl=3600)]
    async with sdk(
        live_server, "refresh", token=expired, TOKENS=tokens, CHANNEL="orders"
    ) as client:
        refused = await client.expect_event("error", type="connect")
        assert refused["code"] == 109  # token expired: the SDK calls getToken
        await client.expect_event("connected")
        await client.expect_event("subscribed", channel="orders")
        # The 2 s token: the SDK asks for the next one and sends `refresh` over /emulation.
        await client.expect_event("get_token", n=2, timeout=5)
        await asyncio.sleep(2.5)  # past the first token's expiry: the session lives on
        await insert_order(live_server, "y")
        pub = await client.expect_event("publication")
        assert pub["data"]["row"]["product_name"] == "y"
        assert not client.named("disconnected")


@pytest.fixture
async def pinging_server(schema_url: str) -> AsyncIterator[LiveServer]:
    server = await start_live_server(schema_url, ping_interval=1, pong_timeout=1)
    try:
        yield server
    finally:
        await stop_live_server(server)


@pytest.mark.parametrize("transport", ["http_stream", "sse"])
async def test_pings_are_answered_over_emulation(
    pinging_server: LiveServer, transport: str
) -> None:
    """The server pings every second and wants the pong within a second; the SDK's pongs go
    as POSTs to /emulation, and the session outlives several deadlines."""
    token = pinging_server.token("1")
    async with node_client(pinging_server, "subscribe", token=token, transport=transport) as client:
        await client.expect_event("connected")
        await asyncio.sleep(5)
        assert not client.named("disconnected")
        assert not client.named("connecting")[1:]


async def test_a_client_publication_reaches_a_websocket_subscriber(
    schema_url: str, sdk: Sdk
) -> None:
    """Publish over /emulation; a WebSocket client of the same channel receives it."""
    namespaces = {"default": {"allow_publish": True}}
    server = await start_live_server(schema_url, namespaces=namespaces)
    try:
        async with (
            node_client(server, "subscribe", token=server.token("1"), CHANNEL="lobby") as reader,
            sdk(server, "subscribe", token=server.token("2")) as publisher,
        ):
            await reader.expect_event("subscribed", channel="lobby")
            await publisher.expect_event("connected")
            await publisher.send('publish lobby {"text": "over http"}')
            reply = await publisher.expect_event("publish_result", channel="lobby")
            assert reply["result"] == {}
            pub = await reader.expect_event("publication", channel="lobby")
            assert pub["data"] == {"text": "over http"}
            assert pub["info"]["user"] == "2"
    finally:
        await stop_live_server(server)
