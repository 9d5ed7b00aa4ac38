"""The official `centrifuge` JS SDK's protobuf build (Node, tests/js/sdk_client.js with
PROTOBUF=1) against a running Syncline: binary frames, payloads as JSON bytes.

The README's test command installs Node and the SDK; without them these tests fail.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from syncline.rpc import RpcContext

from helpers.live_server import LiveServer
from helpers.sdk_js import insert_order, publications_and_recovery
from helpers.sdk_js import node_client as sdk_node_client

node_client = functools.partial(sdk_node_client, protobuf=True)


async def test_subscribe_publications_and_recovery(live_server: LiveServer) -> None:
    token = live_server.token("1")
    async with node_client(live_server, "subscribe", token=token, CHANNEL="orders") as client:
        await publications_and_recovery(live_server, client)


async def test_presence_and_history(live_server: LiveServer) -> None:
    await live_server.sql("INSERT INTO room_members (room_id, user_id) VALUES (5, 1)")
    for product in ("a", "b"):
        await insert_order(live_server, product)
    token = live_server.token("1")
    async with node_client(live_server, "subscribe", token=token, CHANNEL="room:5") as client:
        await client.expect_event("subscribed", channel="room:5")
        await client.send("presence_stats room:5")
        stats = await client.expect_event("presence_stats_result")
        assert (stats["numClients"], stats["numUsers"]) == (1, 1)
        await client.send("presence room:5")
        presence = await client.expect_event("presence_result")
        assert [c["user"] for c in presence["clients"].values()] == ["1"]
        for _ in range(100):  # capture appends asynchronously
            await client.send('history orders {"limit": -1}')
            history = await client.expect_event("history_result")
            if len(history["publications"]) == 2:
                break
            await asyncio.sleep(0.05)
        assert [p["data"]["row"]["product_name"] for p in history["publications"]] == ["a", "b"]
        assert [p["offset"] for p in history["publications"]] == [1, 2]
        assert history["offset"] == 2
        assert not client.named("call_error")


async def test_rpc_round_trip(live_server: LiveServer) -> None:
    async def echo(ctx: RpcContext, data: Any) -> Any:
        return {"user": ctx.user, "echo": data}

    live_server.runtime.rpc.register("echo", echo)
    calls = [{"method": "echo", "data": {"x": [1, 2]}}, {"method": "nope", "data": None}]
    token = live_server.token("7")
    async with node_client(live_server, "rpc", token=token, RPC_CALLS=calls) as client:
        await client.expect_event("rpc_done")
        results = [e for e in client.events if e["event"] in ("rpc_result", "rpc_error")]
        assert results[0] == {
            "event": "rpc_result",
            "method": "echo",
            "data": {"user": "7", "echo": {"x": [1, 2]}},
        }
        assert (results[1]["event"], results[1]["code"]) == ("rpc_error", 108)


async def test_an_expiring_token_is_refreshed(live_server: LiveServer) -> None:
    # 3 s, not less: the SDK refreshes a second before expiry (ttl is whole seconds, rounded
    # down), which a loaded machine can miss with a shorter token.
    tokens = [live_server.token("3", ttl=3), live_server.token("3", ttl=3600)]
    async with node_client(live_server, "refresh", TOKENS=tokens, CHANNEL="orders") as client:
        await client.expect_event("connected")
        await client.expect_event("subscribed", channel="orders")
        await client.expect_event("get_token", n=2, timeout=6)
        await asyncio.sleep(3)  # past the first token's expiry
        await insert_order(live_server, "y")
        pub = await client.expect_event("publication")
        assert pub["data"]["row"]["product_name"] == "y"
        assert not [e for e in client.events if e["event"] in ("disconnected", "connecting")][1:], (
            client.describe()
        )
