"""Two Syncline nodes on one PostgreSQL and one Redis (two runtimes in this process, each with
its own ports and its own connections; only Redis and PostgreSQL join them): a client on one
node sees what the other does, through the ports alone (issue 13's seams)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import websockets
from cent import (
    AsyncClient,
    HistoryRemoveRequest,
    HistoryRequest,
    PublishRequest,
    RefreshRequest,
    SubscribeRequest,
)
from websockets.exceptions import ConnectionClosed

from syncline.nodes_redis import RedisNodeDirectory

from helpers.accounts import bearer, login_user, register_user
from helpers.live_server import LiveServer, start_live_server, stop_live_server

API_KEY = "k" * 40


@pytest.fixture
async def nodes(schema_url: str, redis_url: str) -> AsyncIterator[tuple[LiveServer, LiveServer]]:
    engine = f"{redis_url}?prefix=n{secrets.token_hex(4)}"
    slot = f"n_{secrets.token_hex(4)}"
    shared: dict[str, Any] = {
        "engine": engine,
        "slot_name": slot,
        "publication_name": slot,
        "api_key": API_KEY,
    }
    first = await start_live_server(schema_url, **shared)
    # The second stands by for capture (the first holds the leader lock) and serves clients.
    second = await start_live_server(schema_url, wait_for_capture=False, **shared)
    try:
        yield first, second
    finally:
        await stop_live_server(second)
        await stop_live_server(first)


class Raw:
    """A raw Centrifuge JSON client that keeps every push it receives."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.pushes: list[dict[str, Any]] = []
        self.replies: dict[int, dict[str, Any]] = {}
        self._next = 0
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                for line in str(frame).split("\n"):
                    message = json.loads(line)
                    if "id" in message:
                        self.replies[message["id"]] = message
                    elif "push" in message:
                        self.pushes.append(message["push"])
        except ConnectionClosed:
            pass

    async def command(self, body: dict[str, Any]) -> dict[str, Any]:
        self._next += 1
        command_id = self._next
        await self.ws.send(json.dumps({"id": command_id, **body}))
        await until(lambda: command_id in self.replies or self._reader.done(), "no reply")
        return self.replies.get(command_id, {})

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


async def until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def connect(node: LiveServer, token: str) -> Raw:
    raw = Raw(await websockets.connect(node.ws_url))
    reply = await raw.command({"connect": {"token": token}})
    assert "connect" in reply, reply
    return raw


async def global_room(node: LiveServer, pair: dict[str, Any]) -> int:
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        rooms = (await http.get("/api/rooms", headers=bearer(pair))).json()
    return int(next(r["id"] for r in rooms if r["kind"] == "global"))


async def server_api(node: LiveServer, method: str, body: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        response = await http.post(
            f"/api/server/{method}", json=body, headers={"X-API-Key": API_KEY}
        )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


async def test_a_client_on_one_node_sees_everything_done_through_the_other(
    nodes: tuple[LiveServer, LiveServer],
) -> None:
    a, b = nodes
    ann = await register_user(a.http_url, f"ann{secrets.token_hex(3)}")
    ben = await register_user(a.http_url, f"ben{secrets.token_hex(3)}")
    room = await global_room(a, ann)
    channel = f"room:{room}"
    on_b = await connect(b, ann["access_token"])
    on_a = await connect(a, ben["access_token"])
    try:
        assert "subscribe" in await on_b.command({"subscribe": {"channel": channel}})
        # Ben joins on A: Ann, on B, gets the join push through the engine.
        assert "subscribe" in await on_a.command({"subscribe": {"channel": channel}})
        await until(
            lambda: any(
                p.get("join", {}).get("info", {}).get("user") == str(ben["user"]["id"])
                for p in on_b.pushes
            ),
            "no join pushed across nodes",
        )
        # Presence from either node counts both nodes' clients, each user once.
        for node in (a, b):
            stats = await server_api(node, "presence_stats", {"channel": channel})
            assert stats == {"num_clients": 2, "num_users": 2}
        # A message sent through node A's REST (captured by A) reaches Ann on node B.
        async with httpx.AsyncClient(base_url=a.http_url) as http:
            sent = await http.post(
                f"/api/rooms/{room}/messages", json={"body": "over redis"}, headers=bearer(ben)
            )
        assert sent.status_code == 201, sent.text
        await until(
            lambda: any(
                p.get("pub", {}).get("data", {}).get("row", {}).get("body") == "over redis"
                for p in on_b.pushes
            ),
            "the message never reached the other node",
        )
        # Ann is online (connected to B) as node A's API sees it.
        async with httpx.AsyncClient(base_url=a.http_url) as http:
            profile = await http.get(f"/api/users/{ann['user']['id']}", headers=bearer(ben))
        assert profile.json()["online"] is True
        # `info` and `channels` on either node answer for both nodes (from their reports).
        for node in (a, b):
            assert isinstance(node.runtime.nodes, RedisNodeDirectory)
            await node.runtime.nodes.report()
        info = await server_api(b, "info", {})
        assert len(info["nodes"]) == 2
        assert sum(n["num_clients"] for n in info["nodes"]) == 2
        channels = (await server_api(a, "channels", {"pattern": channel}))["channels"]
        assert channels == {channel: {"num_clients": 2}}
        # Ben leaves on A: Ann on B sees the leave.
        await on_a.command({"unsubscribe": {"channel": channel}})
        await until(lambda: any("leave" in p for p in on_b.pushes), "no leave pushed across nodes")
    finally:
        await on_a.close()
        await on_b.close()


async def test_revocations_and_disconnects_on_one_node_reach_connections_on_the_other(
    nodes: tuple[LiveServer, LiveServer],
) -> None:
    a, b = nodes
    name = f"cid{secrets.token_hex(3)}"
    first = await register_user(a.http_url, name)
    second = await login_user(a.http_url, name)
    bystander = await register_user(a.http_url, f"by{secrets.token_hex(3)}")
    revoked = await connect(b, first["access_token"])
    kicked = await connect(b, bystander["access_token"])
    try:
        # Sign-out through node A closes the session's connection on node B at once.
        async with httpx.AsyncClient(base_url=a.http_url) as http:
            out = await http.post("/api/auth/logout", headers=bearer(first))
        assert out.status_code == 204
        await until(lambda: revoked.ws.close_code is not None, "the revoked session stayed")
        assert (revoked.ws.close_code, revoked.ws.close_reason) == (3500, "session revoked")
        # The other session of the same user, connected to B, is untouched.
        kept = await connect(b, second["access_token"])
        await kept.close()
        # The server API's disconnect, called on A, closes the user's connection on B.
        await server_api(a, "disconnect", {"user": str(bystander["user"]["id"])})
        await until(lambda: kicked.ws.close_code is not None, "not disconnected across nodes")
        assert kicked.ws.close_code == 3503
    finally:
        await revoked.close()
        await kicked.close()


async def test_a_member_removed_through_one_node_is_unsubscribed_on_the_other(
    nodes: tuple[LiveServer, LiveServer],
) -> None:
    a, b = nodes
    owner = await register_user(a.http_url, f"own{secrets.token_hex(3)}")
    guest = await register_user(a.http_url, f"gst{secrets.token_hex(3)}")
    async with httpx.AsyncClient(base_url=a.http_url) as http:
        made = await http.post("/api/rooms", json={"name": "two nodes"}, headers=bearer(owner))
        assert made.status_code == 201, made.text
        room = made.json()["id"]
        added = await http.post(
            f"/api/rooms/{room}/members",
            json={"user_id": guest["user"]["id"]},
            headers=bearer(owner),
        )
        assert added.status_code < 300, added.text
    on_b = await connect(b, guest["access_token"])
    try:
        assert "subscribe" in await on_b.command({"subscribe": {"channel": f"room:{room}"}})
        # The guest leaves (a membership row deleted, captured by node A): node B re-checks
        # its subscribers when the bus says so, and unsubscribes the guest (2000).
        async with httpx.AsyncClient(base_url=a.http_url) as http:
            left = await http.delete(f"/api/rooms/{room}/members/me", headers=bearer(guest))
        assert left.status_code < 300, left.text
        await until(
            lambda: any(p.get("unsubscribe", {}).get("code") == 2000 for p in on_b.pushes),
            "the removed member stayed subscribed on the other node",
        )
    finally:
        await on_b.close()


def subscribed(raw: Raw, channel: str) -> bool:
    return any(p.get("channel") == channel and "subscribe" in p for p in raw.pushes)


async def test_centrifugo_server_api_on_one_node_acts_on_connections_of_the_other(
    nodes: tuple[LiveServer, LiveServer],
) -> None:
    # cent, Centrifugo's own client, against node A; the connections live on node B.
    a, b = nodes
    on_b = await connect(b, b.token("7"))
    other_tab = await connect(b, b.token("7"))
    try:
        async with AsyncClient(f"{a.http_url}/api", API_KEY) as cent:
            await cent.subscribe(SubscribeRequest(user="7", channel="news", data={"hi": 1}))
            await until(
                lambda: subscribed(on_b, "news") and subscribed(other_tab, "news"),
                "no subscribe push across nodes",
            )
            push = next(p for p in on_b.pushes if p.get("channel") == "news")
            assert push["subscribe"]["data"] == {"hi": 1}
            await cent.publish(PublishRequest(channel="news", data={"n": 1}))
            await until(
                lambda: any(p.get("pub", {}).get("data") == {"n": 1} for p in on_b.pushes),
                "the publication never reached the server-side subscriber",
            )
            # history_remove through A, read through B: empty, same position.
            before = await cent.history(HistoryRequest(channel="news", limit=-1))
            assert [p.data for p in before.publications] == [{"n": 1}]
            await cent.history_remove(HistoryRemoveRequest(channel="news"))
            async with AsyncClient(f"{b.http_url}/api", API_KEY) as via_b:
                after = await via_b.history(HistoryRequest(channel="news", limit=-1))
            assert (after.publications, after.offset, after.epoch) == ([], 1, before.epoch)
            # refresh expired through A closes both connections on B with 3005.
            await cent.refresh(RefreshRequest(user="7", expired=True))
            await until(
                lambda: on_b.ws.close_code is not None and other_tab.ws.close_code is not None,
                "refresh did not reach the other node",
            )
            assert (on_b.ws.close_code, other_tab.ws.close_code) == (3005, 3005)
    finally:
        await on_b.close()
        await other_tab.close()
