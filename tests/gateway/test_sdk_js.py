"""The official `centrifuge` JS SDK (Node, tests/js/sdk_client.js) against a running Syncline.

The README's test command installs Node and the SDK (npm install in tests/js); without them
these tests fail rather than skip.
"""

from __future__ import annotations

import asyncio
from typing import Any

from cent import AsyncClient, PublishRequest, SubscribeRequest

from syncline.rpc import RpcContext, RpcError

from helpers.live_server import LiveServer, start_live_server, stop_live_server
from helpers.sdk_js import insert_order, node_client


async def test_changes_committed_with_sql_reach_a_subscriber(live_server: LiveServer) -> None:
    token = live_server.token("1")
    async with node_client(live_server, "subscribe", token=token, CHANNEL="orders") as client:
        await client.expect_event("connected")
        await client.expect_event("subscribed", channel="orders")
        await live_server.sql(
            "INSERT INTO orders (customer_name, product_name) VALUES ('ann', 'tea')"
        )
        pub = await client.expect_event("publication", channel="orders")
        assert pub["data"]["op"] == "insert"
        assert pub["data"]["row"]["product_name"] == "tea"
        assert pub["offset"] == 1


async def test_reconnect_recovers_exactly_the_missed_publications(
    live_server: LiveServer,
) -> None:
    token = live_server.token("1")
    async with node_client(live_server, "subscribe", token=token, CHANNEL="orders") as client:
        first = await client.expect_event("subscribed", channel="orders")
        assert first["recoverable"] is True
        assert first["wasRecovering"] is False
        await insert_order(live_server, "p0")
        pub = await client.expect_event("publication")
        assert (pub["offset"], pub["data"]["row"]["product_name"]) == (1, "p0")

        await client.send("disconnect")
        await client.expect_event("disconnected")
        for n in range(1, 21):
            await insert_order(live_server, f"p{n}")
        await asyncio.sleep(0.3)  # let capture append them while the client is away
        await client.send("connect")
        await client.expect_event("connected")
        again = await client.expect_event("subscribed", channel="orders")
        assert again["wasRecovering"] is True
        assert again["recovered"] is True
        recovered = [await client.expect_event("publication") for _ in range(20)]
        assert [p["data"]["row"]["product_name"] for p in recovered] == [
            f"p{n}" for n in range(1, 21)
        ]
        assert [p["offset"] for p in recovered] == list(range(2, 22))
        assert again["streamPosition"]["offset"] == 21
        await asyncio.sleep(0.2)  # nothing duplicated after the recovered ones
        assert len([e for e in client.events if e["event"] == "publication"]) == 21


async def test_rpc_round_trip_and_unknown_method(live_server: LiveServer) -> None:
    async def echo(ctx: RpcContext, data: Any) -> Any:
        if data == "fail":
            raise RpcError(400, "told to fail")
        return {"user": ctx.user, "echo": data}

    live_server.runtime.rpc.register("echo", echo)
    calls = [
        {"method": "echo", "data": {"x": 1}},
        {"method": "echo", "data": "fail"},
        {"method": "nope", "data": None},
    ]
    token = live_server.token("7")
    async with node_client(live_server, "rpc", token=token, RPC_CALLS=calls) as client:
        await client.expect_event("rpc_done")
        results = [e for e in client.events if e["event"] in ("rpc_result", "rpc_error")]
        assert results[0] == {
            "event": "rpc_result",
            "method": "echo",
            "data": {"user": "7", "echo": {"x": 1}},
        }
        assert (results[1]["event"], results[1]["code"]) == ("rpc_error", 400)
        assert (results[2]["event"], results[2]["method"]) == ("rpc_error", "nope")
        assert results[2]["code"] == 108
        # After an RPC error the connection is still usable.
        await client.send('rpc echo "again"')
        again = await client.expect_event("rpc_result")
        assert again["data"] == {"user": "7", "echo": "again"}


async def test_an_expired_token_at_connect_makes_the_sdk_fetch_a_new_one(
    live_server: LiveServer,
) -> None:
    expired = live_server.token("4", ttl=-10)
    async with node_client(live_server, "refresh", token=expired) as client:
        refused = await client.expect_event("error", type="connect")
        assert refused["code"] == 109  # token expired: the SDK then calls getToken
        await client.expect_event("get_token")
        await client.send(f"token {live_server.token('4')}")
        connected = await client.expect_event("connected")
        assert connected["client"]
        assert not [e for e in client.events if e["event"] == "disconnected"]


async def test_an_expiring_token_is_refreshed(live_server: LiveServer) -> None:
    tokens = [live_server.token("3", ttl=2), live_server.token("3", ttl=3600)]
    async with node_client(live_server, "refresh", TOKENS=tokens, CHANNEL="orders") as client:
        await client.expect_event("connected")
        await client.expect_event("subscribed", channel="orders")
        # The first token lives 2 s: the SDK asks for the next one and sends `refresh`.
        await client.expect_event("get_token", n=2, timeout=5)
        await asyncio.sleep(2)  # past the first token's expiry
        await insert_order(live_server, "y")
        pub = await client.expect_event("publication")
        assert pub["data"]["row"]["product_name"] == "y"
        assert not [e for e in client.events if e["event"] in ("disconnected", "connecting")][1:]


async def test_a_channel_the_user_may_not_see_is_refused(live_server: LiveServer) -> None:
    token = live_server.token("1")
    async with node_client(live_server, "subscribe", token=token, CHANNEL="user:999") as client:
        await client.expect_event("connected")
        unsubscribed = await client.expect_event("unsubscribed", channel="user:999")
        assert unsubscribed["code"] == 103  # permission denied, terminal
        assert not [e for e in client.events if e["event"] == "subscribed"]
        await asyncio.sleep(0.3)  # and the SDK does not retry
        assert not [e for e in client.events if e["event"] in ("subscribing", "subscribed")][1:]


async def test_empty_channel_results_carry_their_zero_values(live_server: LiveServer) -> None:
    """The JS SDK hands the reply's fields over as they are: numClients is undefined unless
    the server sends 0, as Centrifugo does."""
    await live_server.sql("INSERT INTO room_members (room_id, user_id) VALUES (5, 1)")
    token = live_server.token("1")
    async with node_client(live_server, "subscribe", token=token) as client:
        await client.expect_event("connected")
        await client.send("presence_stats room:5")
        stats = await client.expect_event("presence_stats_result")
        assert (stats["numClients"], stats["numUsers"]) == (0, 0)
        await client.send("presence room:5")
        presence = await client.expect_event("presence_result")
        assert presence["clients"] == {}
        await client.send('history orders {"limit": -1}')
        history = await client.expect_event("history_result")
        assert history["publications"] == []
        assert history["offset"] == 0
        assert history["epoch"] not in ("", "<undefined>")
        assert not client.named("call_error")


async def test_a_server_api_subscribe_reaches_the_sdk_as_a_server_side_subscription(
    schema_url: str,
) -> None:
    # Centrifugo's own server-API client, unchanged, against /api; the JS SDK sees the
    # subscribe push as a server-side subscription, then that channel's publications.
    api_key = "js-sdk-server-api-key-" + "k" * 20
    server = await start_live_server(schema_url, api_key=api_key)
    try:
        token = server.token("7")
        async with (
            node_client(server, "subscribe", token=token, CHANNEL="orders") as client,
            AsyncClient(f"{server.http_url}/api", api_key) as cent,
        ):
            await client.expect_event("subscribed", channel="orders")
            await cent.subscribe(SubscribeRequest(user="7", channel="news"))
            await client.expect_event("server_subscribed", channel="news")
            await cent.publish(PublishRequest(channel="news", data={"js": True}))
            pub = await client.expect_event("server_publication", channel="news")
            assert (pub["data"], pub["offset"]) == ({"js": True}, 1)
    finally:
        await stop_live_server(server)
