"""The official JS SDK (`centrifuge` in tests/js) driven from tests through sdk_client.js."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from helpers.live_server import LiveServer
from helpers.node import JS_DIR, NodeProcess, node_binary

SCRIPT = JS_DIR / "sdk_client.js"


@contextlib.asynccontextmanager
async def node_client(
    server: LiveServer,
    scenario: str,
    *,
    token: str | None = None,
    protobuf: bool = False,
    script: Path = SCRIPT,
    transport: str | None = None,
    **env: Any,
) -> AsyncIterator[NodeProcess]:
    """sdk_client.js (or another ``script`` of tests/js) running ``scenario`` against
    ``server`` (JSON, or the SDK's Protobuf build; over WebSocket, or only ``transport``:
    "http_stream" or "sse"); ``env`` values that are not strings go as JSON."""
    node = node_binary(
        ["centrifuge", "ws"],
        no_node="node is not installed: run the README's test command (scripts/test.sh)",
        no_package="tests/js/node_modules/{package} is missing: run the README's test command"
        " (scripts/test.sh), or `npm install` in tests/js",
    )
    environment = {"URL": server.ws_url, "TOKEN": token or ""}
    if protobuf:
        environment["PROTOBUF"] = "1"
    if transport is not None:
        environment["TRANSPORT"] = transport
    for key, value in env.items():
        environment[key] = value if isinstance(value, str) else json.dumps(value)
    client = await NodeProcess.start(node, script, scenario, env=environment, quit_line="quit")
    try:
        yield client
    finally:
        await client.close()


async def insert_order(server: LiveServer, product: str) -> None:
    await server.sql(
        "INSERT INTO orders (customer_name, product_name) VALUES ('a', %s)", (product,)
    )


async def publications_and_recovery(server: LiveServer, client: NodeProcess) -> dict[str, Any]:
    """The SDK subscribed to orders as user 1 (``CHANNEL="orders"``): a live publication, then
    ten missed while disconnected and recovered exactly on reconnect. The `connected` event."""
    connected = await client.expect_event("connected")
    await client.expect_event("server_subscribed", channel="user:1")
    first = await client.expect_event("subscribed", channel="orders")
    assert (first["recoverable"], first["wasRecovering"]) == (True, False)
    await insert_order(server, "p0")
    pub = await client.expect_event("publication")
    assert (pub["offset"], pub["data"]["op"], pub["data"]["row"]["product_name"]) == (
        1,
        "insert",
        "p0",
    )

    await client.send("disconnect")
    await client.expect_event("disconnected")
    for n in range(1, 11):
        await insert_order(server, f"p{n}")
    await asyncio.sleep(0.3)  # let capture append them while the client is away
    await client.send("connect")
    await client.expect_event("connected")
    again = await client.expect_event("subscribed", channel="orders")
    assert (again["wasRecovering"], again["recovered"]) == (True, True)
    recovered = [await client.expect_event("publication") for _ in range(10)]
    assert [p["data"]["row"]["product_name"] for p in recovered] == [f"p{n}" for n in range(1, 11)]
    assert [p["offset"] for p in recovered] == list(range(2, 12))
    assert again["streamPosition"]["offset"] == 11
    await asyncio.sleep(0.2)  # nothing duplicated after the recovered ones
    assert len(client.named("publication")) == 11
    return connected
