"""History, client publish, subscription tokens and ping/pong, through the official Python SDK
and a raw socket where the SDK would hide what the server does."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import jwt
import pytest
import websockets
from centrifuge import Client, PublicationContext, SubscribedContext, SubscriptionEventHandler
from centrifuge.exceptions import ReplyError

from helpers.live_server import TEST_SECRET, LiveServer, start_live_server, stop_live_server


class Pubs(SubscriptionEventHandler):  # type: ignore[misc]
    def __init__(self) -> None:
        self.items: list[tuple[int, Any]] = []
        self.subscribed: list[SubscribedContext] = []

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.items.append((ctx.pub.offset, ctx.pub.data))

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.subscribed.append(ctx)


async def until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def sub_token(user: str, channel: str, ttl: float = 3600) -> str:
    claims = {"sub": user, "channel": channel, "exp": int(time.time() + ttl)}
    return jwt.encode(claims, TEST_SECRET, algorithm="HS256")


async def test_history_pages_the_channel_log(live_server: LiveServer) -> None:
    for n in range(5):
        await live_server.sql(
            "INSERT INTO orders (customer_name, product_name) VALUES ('h', %s)", (f"p{n}",)
        )
    client = Client(live_server.ws_url, token=live_server.token("1"))
    sub = client.new_subscription("orders")
    await client.connect()
    await sub.subscribe()
    await until(lambda: sub.state.value == "subscribed")

    async def names(**kwargs: Any) -> tuple[list[str], Any]:
        result = await sub.history(**kwargs)
        return [p.data["row"]["product_name"] for p in result.publications], result

    everything, result = await names(limit=-1)
    for _ in range(50):
        if len(everything) == 5:
            break
        await asyncio.sleep(0.05)
        everything, result = await names(limit=-1)
    assert everything == ["p0", "p1", "p2", "p3", "p4"]
    assert result.offset == 5
    newest, _ = await names(limit=2, reverse=True)
    assert newest == ["p4", "p3"]
    position_only, top = await names(limit=0)
    assert position_only == []
    assert top.offset == 5
    await client.disconnect()


async def test_clients_publish_typing_without_offsets_and_not_into_orders(
    live_server: LiveServer,
) -> None:
    for user in (1, 2):
        await live_server.sql("INSERT INTO room_members (room_id, user_id) VALUES (4, %s)", (user,))
    alice = Client(live_server.ws_url, token=live_server.token("1"))
    bob = Client(live_server.ws_url, token=live_server.token("2"))
    seen = Pubs()
    typing_alice = alice.new_subscription("typing:4")
    typing_bob = bob.new_subscription("typing:4", events=seen)
    orders = alice.new_subscription("orders")
    for client in (alice, bob):
        await client.connect()
    for sub in (typing_alice, typing_bob, orders):
        await sub.subscribe()
    await until(lambda: typing_bob.state.value == "subscribed")
    await until(lambda: typing_alice.state.value == "subscribed")
    await typing_alice.publish({"typing": True})
    await until(lambda: len(seen.items) == 1)
    assert seen.items[0] == (0, {"typing": True})  # ephemeral: no offset, no history
    with pytest.raises(ReplyError) as refused:
        await orders.publish({"forged": True})
    assert refused.value.code == 103
    for client in (alice, bob):
        await client.disconnect()


async def test_subscription_tokens_authorize_a_channel(live_server: LiveServer) -> None:
    async def subscribe(token: str) -> dict[str, Any]:
        async with websockets.connect(live_server.ws_url) as ws:
            connect = {"id": 1, "connect": {"token": live_server.token("1")}}
            subscribe = {"id": 2, "subscribe": {"channel": "user:9", "token": token}}
            await ws.send(json.dumps(connect) + "\n" + json.dumps(subscribe))
            replies: dict[int, Any] = {}
            while 2 not in replies:
                frame = await asyncio.wait_for(ws.recv(), 5)
                for line in str(frame).split("\n"):
                    obj = json.loads(line)
                    if obj.get("id"):
                        replies[obj["id"]] = obj
            reply: dict[str, Any] = replies[2]
            return reply

    granted = await subscribe(sub_token("1", "user:9"))
    assert "subscribe" in granted
    assert granted["subscribe"]["expires"] is True
    forged = jwt.encode({"sub": "1", "channel": "user:9"}, "not-the-key" * 4, algorithm="HS256")
    assert (await subscribe(forged))["error"]["code"] == 103
    assert (await subscribe(sub_token("1", "user:9", ttl=-5)))["error"]["code"] == 109


async def test_a_client_that_never_pongs_is_closed(schema_url: str) -> None:
    server = await start_live_server(schema_url, ping_interval=1, pong_timeout=1)
    try:
        async with websockets.connect(server.ws_url) as ws:
            await ws.send(json.dumps({"id": 1, "connect": {"token": server.token("1")}}))
            first = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert first["connect"]["ping"] == 1
            assert first["connect"]["pong"] is True
            frames: list[str] = []

            async def read_until_closed() -> None:
                while True:
                    frames.append(str(await asyncio.wait_for(ws.recv(), 10)))

            with pytest.raises(websockets.ConnectionClosed) as closed:
                await read_until_closed()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 3012
            assert "{}" in frames  # it was pinged, did not answer, and was closed
    finally:
        await stop_live_server(server)


async def test_anonymous_connections_only_when_allowed(schema_url: str) -> None:
    async def connect_without_token(url: str) -> dict[str, Any]:
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"id": 1, "connect": {}}))
            reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
            return reply

    closed = await start_live_server(schema_url)
    try:
        assert (await connect_without_token(closed.ws_url))["error"]["code"] == 101
    finally:
        await stop_live_server(closed)
    opened = await start_live_server(schema_url, allow_anonymous=True)
    try:
        reply = await connect_without_token(opened.ws_url)
        assert reply["connect"]["client"]
        assert "subs" not in reply["connect"]  # no personal channel without a user
    finally:
        await stop_live_server(opened)


async def test_a_detected_gap_makes_the_sdk_resubscribe_and_recover(
    live_server: LiveServer,
) -> None:
    client = Client(live_server.ws_url, token=live_server.token("1"))
    pubs = Pubs()
    sub = client.new_subscription("orders", events=pubs)
    await client.connect()
    await sub.subscribe()
    await until(lambda: sub.state.value == "subscribed")
    await live_server.sql("INSERT INTO orders (customer_name, product_name) VALUES ('g', 'a')")
    await until(lambda: len(pubs.items) == 1)
    gateway = live_server.runtime.gateway
    assert gateway is not None
    # The engine reports lost continuity (e.g. a broker message missed): never skip silently.
    gateway.hub.on_gap("orders")
    await live_server.sql("INSERT INTO orders (customer_name, product_name) VALUES ('g', 'b')")
    await until(lambda: len(pubs.items) == 2)
    await asyncio.sleep(0.2)
    assert [offset for offset, _ in pubs.items] == [1, 2]
    assert [data["row"]["product_name"] for _, data in pubs.items] == ["a", "b"]
    # The server unsubscribed it with 2500; the SDK came back recovering from offset 1.
    assert len(pubs.subscribed) == 2
    assert pubs.subscribed[1].was_recovering
    assert pubs.subscribed[1].recovered
    await client.disconnect()
