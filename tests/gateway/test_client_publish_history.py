"""Client publish into a namespace with history (`client_publish_history`), with the official
centrifuge-python SDK: client publications and captured changes share one offset sequence,
on the memory engine and on Redis (there with the publisher on a node that does not capture,
so the two writers are different processes' worth of connections meeting only in Redis)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import websockets
from centrifuge import (
    Client,
    PublicationContext,
    SubscribedContext,
    SubscriptionEventHandler,
)

from helpers.live_server import LiveServer, start_live_server, stop_live_server

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
