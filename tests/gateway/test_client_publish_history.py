"""Client publish into a namespace with history (`client_publish_history`), with the official
centrifuge-python SDK: client publications and captured changes share one offset sequence,
on the memory engine and on Redis (there with the publisher on a node that does not capture,
so the two writers are different processes' worth of connections meeting only in Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websockets
from centrifuge import (
    Client,
    ClientState,
    PublicationContext,
    SubscribedContext,
    SubscriptionEventHandler,
)
from centrifuge.exceptions import ReplyError

from helpers.live_server import LiveServer, start_live_server, stop_live_server
from helpers.node import JS_DIR, NodeProcess, node_binary
from helpers.redis_servers import RedisServer

JS_SCRIPT = JS_DIR / "sdk_client.js"

# The orders channel's namespace (the default one), with client publish into its history.
NAMESPACES = {
    "default": {
        "history_size": 1000,
        "history_ttl": 3600,
        "recover": True,
        "allow_history": True,
        "allow_publish": True,
        "client_publish_history": True,
    }
}
EACH = 15  # captured changes, and as many client publications, per round


@dataclass
class Seen(SubscriptionEventHandler):  # type: ignore[misc]
    """What a subscriber receives: (offset, label, publisher user or None) per publication."""

    pubs: list[tuple[int, str, str | None]] = field(default_factory=list)
    subscribed: list[SubscribedContext] = field(default_factory=list)

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.pubs.append((ctx.pub.offset, label(ctx.pub.data), user_of(ctx.pub.info)))

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.subscribed.append(ctx)


def label(data: Any) -> str:
    """A captured change by its product name, a client publication by its text."""
    return f"row {data['row']['product_name']}" if "op" in data else f"msg {data['text']}"


def user_of(info: Any) -> str | None:
    return None if info is None else str(info.user)


async def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


@dataclass
class Setup:
    """Where capture runs (and subscribers connect) and where the publisher connects."""

    capture: LiveServer
    publisher: LiveServer


@pytest.fixture(params=["memory", "redis"])
async def setup(request: pytest.FixtureRequest, schema_url: str) -> AsyncIterator[Setup]:
    if request.param == "memory":
        server = await start_live_server(schema_url, namespaces=NAMESPACES)
        try:
            yield Setup(server, server)
        finally:
            await stop_live_server(server)
        return
    redis_url = request.getfixturevalue("redis_url")
    slot = f"p_{secrets.token_hex(4)}"
    shared: dict[str, Any] = {
        "engine": f"{redis_url}?prefix=p{secrets.token_hex(4)}",
        "slot_name": slot,
        "publication_name": slot,
        "namespaces": NAMESPACES,
    }
    first = await start_live_server(schema_url, **shared)
    # The second stands by for capture (the first holds the leader lock) and serves clients.
    second = await start_live_server(schema_url, wait_for_capture=False, **shared)
    try:
        yield Setup(first, second)
    finally:
        await stop_live_server(second)
        await stop_live_server(first)


async def interleave(setup: Setup, publisher: Client, start: int) -> None:
    """EACH inserts (one transaction each) racing EACH client publications, both in order."""

    async def insert() -> None:
        for n in range(start, start + EACH):
            await setup.capture.sql(
                "INSERT INTO orders (customer_name, product_name) VALUES ('c', %s)", (f"p{n}",)
            )

    async def publish() -> None:
        for n in range(start, start + EACH):
            await publisher.publish("orders", {"text": f"m{n}"})
            await asyncio.sleep(0.004)  # spread them among the inserts

    await asyncio.gather(insert(), publish())


def expected(start: int, stop: int) -> tuple[list[str], list[str]]:
    return [f"row p{n}" for n in range(start, stop)], [f"msg m{n}" for n in range(start, stop)]


def check_one_sequence(pubs: list[tuple[int, str, str | None]], first: int, count: int) -> None:
    """Offsets first..first+count-1 without gap or repeat; each kind in its writer's order."""
    assert [offset for offset, _, _ in pubs] == list(range(first, first + count))
    rows = [text for _, text, user in pubs if user is None]
    msgs = [text for _, text, user in pubs if user is not None]
    assert all(text.startswith("row ") for text in rows)
    assert {user for _, text, user in pubs if text.startswith("msg ")} <= {"2"}
    start = (first - 1) // 2
    assert (rows, msgs) == expected(start, start + count // 2)


async def test_client_publications_take_offsets_between_captured_changes(setup: Setup) -> None:
    seen = Seen()
    reader = Client(setup.capture.ws_url, token=setup.capture.token("1"))
    sub = reader.new_subscription("orders", events=seen)
    publisher = Client(setup.publisher.ws_url, token=setup.publisher.token("2"))
    await reader.connect()
    await sub.subscribe()
    await eventually(lambda: bool(seen.subscribed))
    await publisher.connect()
    try:
        await interleave(setup, publisher, 0)
        await eventually(lambda: len(seen.pubs) >= 2 * EACH)
        await asyncio.sleep(0.2)  # nothing more, and nothing twice
        check_one_sequence(seen.pubs, 1, 2 * EACH)
        # The history is that same sequence, publisher info included.
        history = await sub.history(limit=-1)
        got = [(p.offset, label(p.data), user_of(p.info)) for p in history.publications]
        assert got == seen.pubs
        assert (history.offset, history.epoch) == (
            2 * EACH,
            seen.subscribed[0].stream_position.epoch,
        )
        client_pub = next(p for p in history.publications if p.info is not None)
        assert client_pub.info.client == publisher.client_id
        # On the wire the reply is Centrifugo's empty PublishResult, offset or not.
        async with websockets.connect(setup.publisher.ws_url) as ws:
            token = setup.publisher.token("2")
            await ws.send(json.dumps({"id": 1, "connect": {"token": token}}))
            await ws.send(
                json.dumps({"id": 2, "publish": {"channel": "orders", "data": {"text": "raw"}}})
            )
            replies: list[dict[str, Any]] = []
            async with asyncio.timeout(10):
                while not any(r.get("id") == 2 for r in replies):
                    replies += [json.loads(line) for line in str(await ws.recv()).split("\n")]
        assert {"id": 2, "publish": {}} in replies
        await eventually(lambda: len(seen.pubs) > 2 * EACH)
        assert seen.pubs[-1] == (2 * EACH + 1, "msg raw", "2")
    finally:
        await publisher.disconnect()
        await reader.disconnect()


async def test_a_reconnecting_client_recovers_both_kinds_in_order(setup: Setup) -> None:
    seen = Seen()
    reader = Client(setup.capture.ws_url, token=setup.capture.token("1"))
    sub = reader.new_subscription("orders", events=seen)
    publisher = Client(setup.publisher.ws_url, token=setup.publisher.token("2"))
    await reader.connect()
    await sub.subscribe()
    await eventually(lambda: bool(seen.subscribed))
    await publisher.connect()
    try:
        await interleave(setup, publisher, 0)
        await eventually(lambda: len(seen.pubs) >= 2 * EACH)
        await reader.disconnect()
        # Missed while away: both kinds, racing as before.
        await interleave(setup, publisher, EACH)
        await asyncio.sleep(0.3)  # let capture append the last rows
        await reader.connect()
        await eventually(lambda: len(seen.pubs) >= 4 * EACH)
        await asyncio.sleep(0.2)
        last = seen.subscribed[-1]
        assert last.was_recovering and last.recovered
        check_one_sequence(seen.pubs, 1, 4 * EACH)
        check_one_sequence(seen.pubs[2 * EACH :], 2 * EACH + 1, 2 * EACH)
    finally:
        await publisher.disconnect()
        await reader.disconnect()


async def test_on_durable_redis_client_publications_outlive_restarts_of_both(
    schema_url: str, tmp_path: Path
) -> None:
    """The trade-off's good side: on Redis with AOF and fsync always, client publications
    survive a Syncline restart and a Redis restart (same epoch, exact recovery); while Redis
    is unreachable a publish is refused with error 100 and the connection stays."""
    redis = RedisServer(tmp_path / "redis", appendonly=True, appendfsync="always").start()
    # No personal channel: the publisher then holds no subscription that Redis going away
    # would end (server-side subscriptions close with 3010 on a fan-out gap).
    options: dict[str, Any] = {
        "engine": f"{redis.url}?prefix=d{secrets.token_hex(4)}",
        "namespaces": NAMESPACES,
        "personal_channel": "",
    }
    try:
        server = await start_live_server(schema_url, **options)
        seen = Seen()
        reader = Client(server.ws_url, token=server.token("1"))
        sub = reader.new_subscription("orders", events=seen)
        publisher = Client(server.ws_url, token=server.token("2"))
        try:
            await reader.connect()
            await sub.subscribe()
            await eventually(lambda: bool(seen.subscribed))
            await publisher.connect()
            for n in range(3):
                await publisher.publish("orders", {"text": f"m{n}"})
            await eventually(lambda: len(seen.pubs) == 3)
        finally:
            await publisher.disconnect()
            await reader.disconnect()
            await stop_live_server(server)
        epoch = seen.subscribed[0].stream_position.epoch
        # Redis restarts (a clean stop: the AOF has every write); then a new Syncline.
        redis.stop()
        redis.start()
        server = await start_live_server(schema_url, **options)
        try:
            publisher = Client(server.ws_url, token=server.token("2"))
            await publisher.connect()
            await publisher.publish("orders", {"text": "m3"})
            # The reader comes back with its position, as the SDK does after a reconnect.
            reader = Client(server.ws_url, token=server.token("1"))
            again = reader.new_subscription("orders", events=seen)
            again._recover = True
            again._offset, again._epoch = sub._offset, sub._epoch
            await reader.connect()
            await again.subscribe()
            await eventually(lambda: len(seen.pubs) == 4)
            last = seen.subscribed[-1]
            assert last.was_recovering and last.recovered
            assert last.stream_position.epoch == epoch
            assert seen.pubs == [(n + 1, f"msg m{n}", "2") for n in range(4)]
            history = await again.history(limit=-1)
            assert [(p.offset, label(p.data)) for p in history.publications] == [
                (n + 1, f"msg m{n}") for n in range(4)
            ]
            redis.stop()
            with pytest.raises(ReplyError) as refused:
                await publisher.publish("orders", {"text": "lost?"})
            assert refused.value.code == 100
            assert publisher.state is ClientState.CONNECTED
            redis.start()
            await publisher.disconnect()
            await reader.disconnect()
        finally:
            if redis.proc is None:
                redis.start()
            await stop_live_server(server)
    finally:
        redis.stop()


@contextlib.asynccontextmanager
async def js_client(server: LiveServer, user: str, channel: str = "") -> AsyncIterator[NodeProcess]:
    """The official `centrifuge` JS SDK (tests/js/sdk_client.js), connected as ``user``."""
    node = node_binary(
        ["centrifuge", "ws"],
        no_node="node is not installed: run the README's test command (scripts/test.sh)",
        no_package="tests/js/node_modules/{package} is missing: run `npm install` in tests/js",
    )
    env = {"URL": server.ws_url, "TOKEN": server.token(user), "CHANNEL": channel}
    client = await NodeProcess.start(node, JS_SCRIPT, "subscribe", env=env, quit_line="quit")
    try:
        await client.expect_event("connected")
        yield client
    finally:
        await client.close()


async def test_the_js_sdk_publishes_into_history_and_recovers_both_kinds(
    schema_url: str,
) -> None:
    server = await start_live_server(schema_url, namespaces=NAMESPACES)
    try:
        async with (
            js_client(server, "1", "orders") as reader,
            js_client(server, "2") as publisher,
        ):
            await reader.expect_event("subscribed", channel="orders")
            expect: list[tuple[int, str, str | None]] = []

            async def round_of(start: int) -> None:
                for n in range(start, start + 3):
                    await publisher.send(f'publish orders {{"text": "js{n}"}}')
                    reply = await publisher.expect_event("publish_result", channel="orders")
                    assert reply["result"] == {}
                    expect.append((len(expect) + 1, f"msg js{n}", "2"))
                    await server.sql(
                        "INSERT INTO orders (customer_name, product_name) VALUES ('j', %s)",
                        (f"r{n}",),
                    )
                    await asyncio.sleep(0.1)  # captured before the next publish
                    expect.append((len(expect) + 1, f"row r{n}", None))

            def received(count: int) -> list[tuple[int, str, str | None]]:
                pubs = reader.named("publication")[:count]
                return [
                    (p["offset"], label(p["data"]), p["info"] and p["info"]["user"]) for p in pubs
                ]

            await round_of(0)
            await eventually(lambda: len(reader.named("publication")) >= 6)
            assert received(6) == expect
            await reader.send("disconnect")
            await reader.expect_event("disconnected")
            await round_of(3)
            await reader.send("connect")
            back = await reader.expect_event("subscribed", channel="orders")
            assert back["wasRecovering"] and back["recovered"]
            await eventually(lambda: len(reader.named("publication")) >= 12)
            await asyncio.sleep(0.2)
            assert received(100) == expect
            await reader.send('history orders {"limit": -1}')
            history = await reader.expect_event("history_result")
            got = [(p["offset"], label(p["data"]), p["user"]) for p in history["publications"]]
            assert got == expect
    finally:
        await stop_live_server(server)
