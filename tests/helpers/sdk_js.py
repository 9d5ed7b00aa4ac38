"""The official JS SDK (`centrifuge` in tests/js) driven from tests through sdk_client.js."""

from __future__ import annotations

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
    **env: Any,
) -> AsyncIterator[NodeProcess]:
    """sdk_client.js (or another ``script`` of tests/js) running ``scenario`` against
    ``server`` (JSON, or the SDK's Protobuf build); ``env`` values that are not strings go as
    JSON."""
    node = node_binary(
        ["centrifuge", "ws"],
        no_node="node is not installed: run the README's test command (scripts/test.sh)",
        no_package="tests/js/node_modules/{package} is missing: run the README's test command"
        " (scripts/test.sh), or `npm install` in tests/js",
    )
    environment = {"URL": server.ws_url, "TOKEN": token or ""}
    if protobuf:
        environment["PROTOBUF"] = "1"
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
