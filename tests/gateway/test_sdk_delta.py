"""Fossil delta subscriptions (`delta: "fossil"`) through the gateway, with both official SDKs
applying the deltas: what they rebuild must be exactly what a plain subscriber gets."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import websockets
from centrifuge import (
    Client,
    DeltaType,
    PublicationContext,
    SubscribedContext,
    SubscriptionEventHandler,
)

from helpers.live_server import LiveServer, start_live_server, stop_live_server
from helpers.node import JS_DIR, NodeProcess, node_binary
from helpers.waiting import eventually

# The orders dashboard's namespace, as the app registers it, with delta allowed; and one
# without it, where asking for delta gets a plain subscription (Centrifugo's answer).
NAMESPACES = {
    "default": {
        "history_size": 1000,
        "history_ttl": 3600,
        "recover": True,
        "allow_history": True,
        "allowed_delta_types": ["fossil"],
    },
    "plain": {"history_size": 100, "history_ttl": 600, "recover": True},
}
# Row updates of the live orders dashboard: (status, product) after each.
UPDATES = [
    ("shipped", "Green tea"),
    ("delivered", "Green tea"),
    ("pending", "Black tea"),
    ("shipped", "Black tea"),
    ("delivered", "Black tea"),
    ("pending", "Oolong"),
]


@pytest.fixture(params=["memory", "redis"])
async def server(request: pytest.FixtureRequest, schema_url: str) -> AsyncIterator[LiveServer]:
    options: dict[str, Any] = {"namespaces": NAMESPACES}
    if request.param == "redis":
        redis_url = request.getfixturevalue("redis_url")
        options["engine"] = f"{redis_url}?prefix=d{secrets.token_hex(4)}"
    live = await start_live_server(schema_url, **options)
    try:
        yield live
    finally:
        await stop_live_server(live)


@dataclass
class Seen(SubscriptionEventHandler):  # type: ignore[misc]
    """What a centrifuge-python subscription hands the app."""

    data: list[Any] = field(default_factory=list)
    deltas: list[bool] = field(default_factory=list)
    subscribed: list[SubscribedContext] = field(default_factory=list)

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.data.append(ctx.pub.data)
        self.deltas.append(ctx.pub.delta)

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.subscribed.append(ctx)


async def new_order(server: LiveServer) -> None:
    await server.sql(
        "INSERT INTO orders (customer_name, product_name) VALUES ('Ann Example', 'Green tea')"
    )


async def update_order(server: LiveServer, n: int) -> None:
    await server.sql(
        "UPDATE orders SET status = %s, product_name = %s, updated_at = now() WHERE id = 1",
        UPDATES[n],
    )


async def plain_subscriber(server: LiveServer) -> tuple[Client, Seen]:
    client = Client(server.ws_url, token=server.token("2"))
    seen = Seen()
    sub = client.new_subscription("orders", events=seen)
    await client.connect()
    await sub.subscribe()
    await eventually(lambda: bool(seen.subscribed))
    return client, seen


async def test_python_sdk_rebuilds_every_publication_from_the_deltas(server: LiveServer) -> None:
    reference, plain = await plain_subscriber(server)
    client = Client(server.ws_url, token=server.token("1"))
    seen = Seen()
    sub = client.new_subscription("orders", events=seen, delta=DeltaType.FOSSIL)
    await client.connect()
    await sub.subscribe()
    await eventually(lambda: bool(seen.subscribed))
    assert sub._delta_negotiated  # the reply said delta: true
    await new_order(server)
    for n in range(5):
        await update_order(server, n)
    await eventually(lambda: len(seen.data) == 6)
    await eventually(lambda: len(plain.data) == len(seen.data))
    assert seen.data == plain.data
    assert [d["row"]["status"] for d in seen.data] == ["pending"] + [u[0] for u in UPDATES[:5]]
    # The first one came whole, every update as a delta against the one before.
    assert seen.deltas == [False] + [True] * 5
    await client.disconnect()
    await reference.disconnect()


async def test_js_sdk_rebuilds_live_and_recovered_publications(server: LiveServer) -> None:
    reference, plain = await plain_subscriber(server)
    node = node_binary(
        ["centrifuge", "ws"],
        no_node="node is not installed: run the README's test command (scripts/test.sh)",
        no_package="tests/js/node_modules/{package} is missing: run the README's test command",
    )
    env = {"URL": server.ws_url, "TOKEN": server.token("1"), "CHANNEL": "orders", "DELTA": "fossil"}
    js = await NodeProcess.start(
        node, JS_DIR / "sdk_client.js", "subscribe", env=env, quit_line="quit"
    )
    try:
        await js.expect_event("subscribed", channel="orders")
        await new_order(server)
        for n in range(3):
            await update_order(server, n)
        live = [await js.expect_event("publication") for _ in range(4)]
        await js.send("delta_stats")
        stats = await js.expect_event("delta_stats")
        assert (stats["numFullPayloads"], stats["numDeltaPayloads"]) == (1, 3)
        assert stats["bytesReceived"] < stats["bytesDecoded"]

        # Away while the order changes twice: recovery replays a delta chain of its own.
        await js.send("disconnect")
        await js.expect_event("disconnected")
        for n in (3, 4):
            await update_order(server, n)
        await eventually(lambda: len(plain.data) == 6)
        await js.send("connect")
        again = await js.expect_event("subscribed", channel="orders")
        assert (again["wasRecovering"], again["recovered"]) == (True, True)
        recovered = [await js.expect_event("publication") for _ in range(2)]
        await update_order(server, 5)  # live again, after the recovered ones
        last = await js.expect_event("publication")
        await eventually(lambda: len(plain.data) == 7)

        got = live + recovered + [last]
        assert [p["data"] for p in got] == plain.data
        assert [p["offset"] for p in got] == list(range(1, 8))
        await js.send("delta_stats")
        stats = await js.expect_event("delta_stats")
        # Whole: the first one, and the first recovered one; the rest were deltas.
        assert (stats["numFullPayloads"], stats["numDeltaPayloads"]) == (2, 5)
    finally:
        await js.close()
        await reference.disconnect()


async def subscribe_raw(
    server: LiveServer, channel: str, delta: str
) -> tuple[websockets.ClientConnection, dict[str, Any]]:
    ws = await websockets.connect(server.ws_url)
    await ws.send(json.dumps({"id": 1, "connect": {"token": server.token("1")}}))
    await asyncio.wait_for(ws.recv(), 5)
    await ws.send(json.dumps({"id": 2, "subscribe": {"channel": channel, "delta": delta}}))
    reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return ws, reply


async def next_pub(ws: websockets.ClientConnection) -> dict[str, Any]:
    while True:
        for line in str(await asyncio.wait_for(ws.recv(), 5)).splitlines():
            message = json.loads(line)
            if "push" in message:
                pub: dict[str, Any] = message["push"]["pub"]
                return pub


async def test_on_the_wire_data_is_a_json_string_and_deltas_are_flagged(
    server: LiveServer,
) -> None:
    ws, reply = await subscribe_raw(server, "orders", "fossil")
    async with ws:
        assert reply["subscribe"]["delta"] is True
        await new_order(server)
        first = await next_pub(ws)
        assert "delta" not in first and isinstance(first["data"], str)
        assert json.loads(first["data"])["row"]["status"] == "pending"
        await update_order(server, 0)
        second = await next_pub(ws)
        assert second["delta"] is True and isinstance(second["data"], str)
        assert len(second["data"]) < len(first["data"]) / 2


async def test_delta_in_a_namespace_that_does_not_allow_it_is_a_plain_subscription(
    server: LiveServer,
) -> None:
    ws, reply = await subscribe_raw(server, "plain:1", "fossil")
    async with ws:
        assert "delta" not in reply["subscribe"]
        assert reply["subscribe"]["recoverable"] is True
        await server.sql("""SELECT syncline.publish('plain:1', '{"n": 1}')""")
        pub = await next_pub(ws)
        assert pub == {"data": {"n": 1}, "offset": 1}


async def test_an_unknown_delta_type_closes_the_connection(server: LiveServer) -> None:
    async with websockets.connect(server.ws_url) as ws:
        await ws.send(json.dumps({"id": 1, "connect": {"token": server.token("1")}}))
        await asyncio.wait_for(ws.recv(), 5)
        await ws.send(json.dumps({"id": 2, "subscribe": {"channel": "orders", "delta": "zstd"}}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 3501  # bad request
