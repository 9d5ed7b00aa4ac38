"""A configuration written for Centrifugo, met by the official centrifuge-python SDK: short
development keys, anonymous tokens, user-limited channels and Centrifugo's option names."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable
from typing import Any

import jwt
from centrifuge import Client, ClientEventHandler, ServerSubscribedContext
from jwt.warnings import InsecureKeyLengthWarning

from helpers.live_server import start_live_server, stop_live_server

# The key of Centrifugo's examples and of many a test setup written for it.
CENTRIFUGO_EXAMPLE_KEY = "secret"


class ServerSubs(ClientEventHandler):  # type: ignore[misc]
    """Records the channels the server subscribed the connection to."""

    def __init__(self) -> None:
        self.channels: list[str] = []

    async def on_subscribed(self, ctx: ServerSubscribedContext) -> None:
        self.channels.append(ctx.channel)


def short_key_token(claims: dict[str, Any]) -> str:
    """A token signed with the 6-byte example key (PyJWT rightly warns about it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, CENTRIFUGO_EXAMPLE_KEY, algorithm="HS256")


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_a_token_signed_with_a_short_key_connects_in_development(schema_url: str) -> None:
    server = await start_live_server(
        schema_url, jwt_secret=CENTRIFUGO_EXAMPLE_KEY, insecure_short_keys=True
    )
    try:
        handler = ServerSubs()
        client = Client(server.ws_url, token=short_key_token({"sub": "42"}), events=handler)
        await client.connect()
        await client.ready(timeout=5)
        # Connected as user 42: the server subscribed it to that user's personal channel.
        await eventually(lambda: handler.channels == ["user:42"])
        await client.disconnect()
    finally:
        await stop_live_server(server)
