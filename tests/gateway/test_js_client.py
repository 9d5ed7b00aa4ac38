"""Syncline's own browser client (src/syncline/web/syncline-client.js) against a real server.

Node runs tests/js/client_driver.mjs, which drives the client from JSON commands on stdin and
prints its events as JSON lines. Node and `ws` (npm install in tests/js) are required: without
them these tests fail rather than skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from syncline.rpc import RpcContext

from helpers.live_server import LiveServer
from helpers.node import JS_DIR, NodeProcess, node_binary

DRIVER = JS_DIR / "client_driver.mjs"


class Driver(NodeProcess):
    """One `node client_driver.mjs`: JSON commands to its stdin, JSON events from its stdout."""

    async def command(self, cmd: str, **fields: Any) -> None:
        await self.send(json.dumps({"cmd": cmd, **fields}))


@contextlib.asynccontextmanager
async def js_client(server: LiveServer, token: str) -> AsyncIterator[Driver]:
    node = node_binary(
        ["ws"],
        no_node="node (>= 20) is not installed: it runs the JS client tests",
        no_package="tests/js/node_modules/{package} is missing: run `npm install` in tests/js",
    )
    driver = await Driver.start(
        node,
        DRIVER,
        env={"URL": server.ws_url, "TOKEN": token},
        quit_line=json.dumps({"cmd": "quit"}),
    )
    try:
        await driver.expect_event("ready")
        yield driver
    finally:
        await driver.close()


async def insert_order(server: LiveServer, product: str) -> None:
    await server.sql(
        "INSERT INTO orders (customer_name, product_name) VALUES ('a', %s)", (product,)
    )


def close_all(server: LiveServer, code: int) -> int:
    gateway = server.runtime.gateway
    assert gateway is not None
    connections = list(gateway.connections)
    for conn in connections:
        conn.close(code)
    return len(connections)


def states(driver: Driver) -> list[str]:
    return [e["state"] for e in driver.named("state")]


async def test_a_row_inserted_by_sql_reaches_a_subscriber(live_server: LiveServer) -> None:
    async with js_client(live_server, live_server.token("1")) as client:
        await client.command("connect")
        await client.command("subscribe", channel="orders")
        await client.expect_event("state", state="connected")
        subscribed = await client.expect_event("subscribed", channel="orders")
        assert subscribed["recoverable"] is True
        assert subscribed["wasRecovering"] is False
        await insert_order(live_server, "tea")
        pub = await client.expect_event("publication", channel="orders")
        assert pub["data"]["op"] == "insert"
        assert pub["data"]["row"]["product_name"] == "tea"
        assert pub["offset"] == 1


async def test_a_forced_reconnect_recovers_exactly_the_missed_rows(
    live_server: LiveServer,
) -> None:
    async with js_client(live_server, live_server.token("1")) as client:
        await client.command("connect")
        await client.command("subscribe", channel="orders")
        await client.expect_event("subscribed", channel="orders")
        await insert_order(live_server, "p0")
        assert (await client.expect_event("publication"))["offset"] == 1

        assert close_all(live_server, 3011) == 1  # force reconnect
        for n in range(1, 21):
            await insert_order(live_server, f"p{n}")
        again = await client.expect_event("subscribed", channel="orders")
        assert again["wasRecovering"] is True
        assert again["recovered"] is True
        rows = [await client.expect_event("publication") for _ in range(20)]
        assert [p["data"]["row"]["product_name"] for p in rows] == [f"p{n}" for n in range(1, 21)]
        assert [p["offset"] for p in rows] == list(range(2, 22))
        await asyncio.sleep(0.3)  # nothing duplicated after them
        assert len(client.named("publication")) == 21
        assert states(client) == ["connecting", "connected", "connecting", "connected"]
        assert client.named("state")[2]["code"] == 3011


async def test_rpc_round_trip_and_unknown_method(live_server: LiveServer) -> None:
    async def echo(ctx: RpcContext, data: Any) -> Any:
        return {"user": ctx.user, "echo": data}

    live_server.runtime.rpc.register("echo", echo)
    async with js_client(live_server, live_server.token("7")) as client:
        await client.command("connect")
        await client.command("rpc", ref=1, method="echo", data={"x": 1})
        result = await client.expect_event("rpc_result", ref=1)
        assert result["data"] == {"user": "7", "echo": {"x": 1}}
        await client.command("rpc", ref=2, method="nope", data=None)
        refused = await client.expect_event("rpc_error", ref=2)
        assert refused["code"] == 108
        assert refused["message"]
        await client.command("rpc", ref=3, method="echo", data="again")  # still usable
        assert (await client.expect_event("rpc_result", ref=3))["data"]["echo"] == "again"


async def test_a_terminal_close_stops_the_client(live_server: LiveServer) -> None:
    async with js_client(live_server, live_server.token("1")) as client:
        await client.command("connect")
        await client.expect_event("state", state="connected")
        assert close_all(live_server, 3503) == 1  # force disconnect
        disconnected = await client.expect_event("state", state="disconnected")
        assert disconnected["code"] == 3503
        await asyncio.sleep(0.6)  # several reconnect delays: it stays down
        assert states(client) == ["connecting", "connected", "disconnected"]
        gateway = live_server.runtime.gateway
        assert gateway is not None
        assert not gateway.connections


async def test_an_expired_token_at_connect_is_replaced_via_get_token(
    live_server: LiveServer,
) -> None:
    async with js_client(live_server, live_server.token("4", ttl=-10)) as client:
        await client.command("connect")
        refused = await client.expect_event("error", type="connect")
        assert refused["code"] == 109
        await client.expect_event("get_token")
        await client.command("token", token=live_server.token("4"))
        await client.expect_event("state", state="connected")
        assert "disconnected" not in states(client)
