"""The server API in Centrifugo's layout, driven by Centrifugo's own client `cent`, unchanged.

`cent` (PyPI, 5.x) talks to a running Syncline at `<http>/api` exactly as to Centrifugo; the
effects are watched with the official SDK (centrifuge-python) and raw sockets. The bodies are
also checked byte for byte against what Centrifugo's Go encoder writes (zero values included).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
import websockets
from cent import (
    AsyncClient,
    BatchRequest,
    BroadcastRequest,
    ChannelsRequest,
    Client,
    DisconnectRequest,
    HistoryRemoveRequest,
    HistoryRequest,
    InfoRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    RefreshRequest,
    SubscribeRequest,
    UnsubscribeRequest,
)
from cent.dto import StreamPosition
from cent.exceptions import CentApiResponseError, CentTransportError, CentUnauthorizedError
from centrifuge import Client as SdkClient
from centrifuge import (
    ClientEventHandler,
    ConnectingContext,
    PublicationContext,
    ServerPublicationContext,
    ServerSubscribedContext,
    ServerUnsubscribedContext,
    SubscribedContext,
    SubscriptionEventHandler,
)

from helpers.live_server import LiveServer, start_live_server, stop_live_server
from helpers.waiting import eventually

API_KEY = "centrifugo-layout-key-for-tests-" + "k" * 16


@pytest.fixture
async def server(schema_url: str) -> AsyncIterator[LiveServer]:
    live = await start_live_server(schema_url, api_key=API_KEY)
    try:
        yield live
    finally:
        await stop_live_server(live)


@pytest.fixture
async def cent(server: LiveServer) -> AsyncIterator[AsyncClient]:
    client = AsyncClient(f"{server.http_url}/api", API_KEY)
    try:
        yield client
    finally:
        await client.close()


@dataclass
class ClientEvents(ClientEventHandler):  # type: ignore[misc]
    """What the SDK reports at client level: server-side subscriptions and their pushes."""

    subscribed: list[ServerSubscribedContext] = field(default_factory=list)
    unsubscribed: list[str] = field(default_factory=list)
    pubs: list[tuple[str, Any, int]] = field(default_factory=list)
    connecting: list[int] = field(default_factory=list)

    async def on_subscribed(self, ctx: ServerSubscribedContext) -> None:
        if not ctx.channel.startswith("user:"):  # each connection's personal channel
            self.subscribed.append(ctx)

    async def on_unsubscribed(self, ctx: ServerUnsubscribedContext) -> None:
        self.unsubscribed.append(ctx.channel)

    async def on_publication(self, ctx: ServerPublicationContext) -> None:
        self.pubs.append((ctx.channel, ctx.pub.data, ctx.pub.offset))

    async def on_connecting(self, ctx: ConnectingContext) -> None:
        self.connecting.append(ctx.code)


@dataclass
class SubEvents(SubscriptionEventHandler):  # type: ignore[misc]
    pubs: list[tuple[Any, int]] = field(default_factory=list)
    subscribed: list[SubscribedContext] = field(default_factory=list)

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.pubs.append((ctx.pub.data, ctx.pub.offset))

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.subscribed.append(ctx)


async def sdk_client(server: LiveServer, user: str, events: ClientEvents) -> SdkClient:
    client = SdkClient(server.ws_url, token=server.token(user), events=events)
    await client.connect()
    return client


async def raw(
    server: LiveServer, method: str, body: bytes | None, **headers: str
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        return await http.post(
            f"/api/{method}",
            content=body,
            headers={"X-API-Key": API_KEY, "Content-Type": "application/json", **headers},
        )


# -- the layout: paths, keys, errors ---------------------------------------------------------


async def test_keys_as_centrifugo_reads_them(server: LiveServer) -> None:
    wrong = AsyncClient(f"{server.http_url}/api", "w" * 40)
    with pytest.raises(CentUnauthorizedError):
        await wrong.info(InfoRequest())
    await wrong.close()
    assert (await raw(server, "info", b"{}", **{"X-API-Key": ""})).status_code == 401
    by_header = await raw(
        server, "info", b"{}", **{"X-API-Key": "", "Authorization": "apikey " + API_KEY}
    )
    assert by_header.status_code == 200 and by_header.json()["result"]["nodes"]
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        by_query = await http.post("/api/info", params={"api_key": API_KEY}, json={})
        missing = await http.post("/api/info", json={})
        # GET /api/info is the chat's, POST /api/info the server API's: one path, two methods.
        chat = await http.get("/api/info")
        not_post = await http.get("/api/publish")
    assert by_query.status_code == 200
    assert missing.status_code == 401 and "X-API-Key" in missing.json()["error"]["message"]
    assert chat.status_code == 200 and set(chat.json()) == {"version", "websocket_url"}
    assert not_post.status_code == 405


async def test_without_a_key_configured_every_method_is_401(schema_url: str) -> None:
    live = await start_live_server(schema_url)
    try:
        reply = await raw(live, "publish", b'{"channel": "orders", "data": 1}')
        assert reply.status_code == 401
        assert "SYNCLINE_API_KEY" in reply.json()["error"]["message"]
    finally:
        await stop_live_server(live)


async def test_zero_values_and_error_bodies_are_centrifugos(server: LiveServer) -> None:
    async def body(method: str, payload: bytes) -> Any:
        reply = await raw(server, method, payload)
        assert reply.status_code == 200, reply.text
        return reply.json()

    assert await body("presence_stats", b'{"channel": "room:1"}') == {
        "result": {"num_clients": 0, "num_users": 0}
    }
    assert await body("presence", b'{"channel": "room:1"}') == {"result": {"presence": {}}}
    empty = await body("history", b'{"channel": "orders"}')
    assert empty["result"]["publications"] == [] and empty["result"]["offset"] == 0
    assert empty["result"]["epoch"]
    assert await body("channels", b"{}") == {"result": {"channels": {}}}
    for method in ("publish", "history", "presence", "history_remove", "subscribe"):
        assert await body(method, b'{"channel": "nope:1", "user": "7", "data": 1}') == {
            "error": {"code": 102, "message": "unknown channel"}
        }
    # No presence in the default namespace, no history in typing:*: "not available".
    assert (await body("presence", b'{"channel": "orders"}'))["error"]["code"] == 108
    assert (await body("history", b'{"channel": "typing:1"}'))["error"]["code"] == 108
    assert (await body("history_remove", b'{"channel": "typing:1"}'))["error"]["code"] == 108
    missing = await body("publish", b'{"data": 1}')
    assert missing["error"]["code"] == 107 and "channel" in missing["error"]["message"]
    wrong_epoch = b'{"channel": "orders", "limit": 1, "since": {"offset": 1, "epoch": "old"}}'
    assert (await body("history", wrong_epoch))["error"]["code"] == 112
    unsupported = await body("publish", b'{"channel": "orders", "data": 1, "tags": {"a": "b"}}')
    assert unsupported["error"] == {
        "code": 107,
        "message": "bad request: tags is not supported by Syncline",
    }
    # Fields Centrifugo knows and Syncline does not: ignored, as Go's decoder ignores them.
    assert await body("info", b'{"future_field": 1}') != {}


@pytest.mark.parametrize(
    ("method", "payload", "status"),
    [
        ("publish", b"{not json", 400),
        ("publish", b"[1, 2]", 400),
        ("publish", b'{"channel": 5, "data": 1}', 400),
        ("history", b'{"channel": "orders", "limit": "many"}', 400),
        ("broadcast", b'{"channels": "orders", "data": 1}', 400),
        ("batch", b'{"commands": {"publish": {}}}', 400),
        ("publish", b'{"channel": "has space", "data": 1}', 200),
        ("publish", b'{"channel": "orders", "data": "\\u0000"}', 200),
        ("broadcast", b'{"channels": [], "data": 1}', 200),
        ("subscribe", b'{"user": "7", "channel": ""}', 200),
        ("subscribe", b'{"user": "7", "channel": "a", "recover_since": {"offset": 1}}', 200),
        ("disconnect", b'{"user": "7", "disconnect": {"code": 1000, "reason": "x"}}', 200),
        (
            "disconnect",
            b'{"user": "7", "disconnect": {"code": 4000, "reason": "' + b"r" * 200 + b'"}}',
            200,
        ),
        ("refresh", b'{"user": "7", "expire_at": -5}', 200),
        ("history", b'{"channel": "orders", "limit": 5, "reverse": true, "since": {}}', 200),
        ("publish", b'{"channel": "orders", "data": "' + b"x" * 70_000 + b'"}', 413),
    ],
)
async def test_bad_input_is_a_400_or_an_error_reply_never_a_500(
    server: LiveServer, method: str, payload: bytes, status: int
) -> None:
    reply = await raw(server, method, payload)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["message"]
    if status == 200:
        assert error["code"] == 107


async def test_an_unknown_method_is_404(server: LiveServer) -> None:
    reply = await raw(server, "map_publish", b"{}")
    assert reply.status_code == 404


# -- the methods Syncline had, through cent --------------------------------------------------


async def test_publish_broadcast_history_presence_channels_info(
    server: LiveServer, cent: AsyncClient
) -> None:
    await server.sql("INSERT INTO room_members (room_id, user_id) VALUES (5, 7)")
    events = ClientEvents()
    sdk = await sdk_client(server, "7", events)
    room = SubEvents()
    sub = sdk.new_subscription("room:5", events=room)
    await sub.subscribe()
    await eventually(lambda: bool(room.subscribed))
    assert await cent.publish(PublishRequest(channel="room:5", data={"n": 1})) is not None
    reply = await cent.broadcast(BroadcastRequest(channels=["room:5", "nope:1"], data={"n": 2}))
    assert reply.responses[0].error is None and reply.responses[0].result is not None
    assert reply.responses[1].error is not None and reply.responses[1].error.code == 102
    # Offset 1 of room:5 is the membership row inserted above (captured like any change).
    await eventually(lambda: len(room.pubs) == 2)
    assert room.pubs == [({"n": 1}, 2), ({"n": 2}, 3)]
    page = await cent.history(HistoryRequest(channel="room:5", limit=10))
    assert [p.data for p in page.publications][1:] == [{"n": 1}, {"n": 2}]
    assert [p.offset for p in page.publications] == [1, 2, 3]
    assert page.offset == 3 and page.epoch
    later = await cent.history(
        HistoryRequest(channel="room:5", limit=10, since=StreamPosition(offset=2, epoch=page.epoch))
    )
    assert [p.offset for p in later.publications] == [3]
    present = await cent.presence(PresenceRequest(channel="room:5"))
    assert [(info.user, cid == info.client) for cid, info in present.presence.items()] == [
        ("7", True)
    ]
    stats = await cent.presence_stats(PresenceStatsRequest(channel="room:5"))
    assert (stats.num_clients, stats.num_users) == (1, 1)
    found = await cent.channels(ChannelsRequest(pattern="room:*"))
    assert {name: c.num_clients for name, c in found.channels.items()} == {"room:5": 1}
    nodes = (await cent.info(InfoRequest())).nodes
    assert len(nodes) == 1 and nodes[0].num_clients == 1 and nodes[0].num_users == 1
    assert nodes[0].uid and nodes[0].version
    await sdk.disconnect()


async def test_the_sync_client_works_too(server: LiveServer) -> None:
    # cent's Client is blocking (requests): run it off the loop that serves Syncline.
    def calls() -> tuple[Any, Any, Any]:
        with Client(f"{server.http_url}/api", API_KEY) as client:
            client.publish(PublishRequest(channel="orders", data={"sync": True}))
            page = client.history(HistoryRequest(channel="orders", limit=-1))
            stats = client.presence_stats(PresenceStatsRequest(channel="room:9"))
            try:
                client.history(HistoryRequest(channel="nope:1"))
            except CentApiResponseError as err:
                return page, stats, err.code
        raise AssertionError("history of an unknown channel succeeded")

    async def published() -> Any:
        page, stats, code = await asyncio.to_thread(calls)
        return page, stats, code

    page, stats, code = await published()
    # publish returns when the transaction commits; capture appends it a moment later.
    assert (stats.num_clients, stats.num_users, code) == (0, 0, 102)
    async with AsyncClient(f"{server.http_url}/api", API_KEY) as cent:
        for _ in range(200):
            page = await cent.history(HistoryRequest(channel="orders", limit=-1))
            if page.publications:
                break
            await asyncio.sleep(0.02)
    assert [p.data for p in page.publications] == [{"sync": True}]


async def test_unsubscribe_and_disconnect(server: LiveServer, cent: AsyncClient) -> None:
    events = ClientEvents()
    sdk = await sdk_client(server, "7", events)
    orders = SubEvents()
    sub = sdk.new_subscription("orders", events=orders)
    await sub.subscribe()
    await eventually(lambda: bool(orders.subscribed))
    await cent.unsubscribe(UnsubscribeRequest(user="7", channel="orders"))
    await eventually(lambda: sub.state.value == "unsubscribed")
    await cent.disconnect(DisconnectRequest(user="7"))
    await eventually(lambda: sdk.state.value == "disconnected")


# -- subscribe: a server-side subscription pushed to live connections -------------------------


async def test_subscribe_pushes_a_server_side_subscription_to_every_connection_of_the_user(
    server: LiveServer, cent: AsyncClient
) -> None:
    first, second, other = ClientEvents(), ClientEvents(), ClientEvents()
    clients = [
        await sdk_client(server, "7", first),
        await sdk_client(server, "7", second),
        await sdk_client(server, "8", other),
    ]
    await cent.publish(PublishRequest(channel="news", data={"before": True}))
    await asyncio.sleep(0.3)  # captured before the subscription: not delivered, in history
    await cent.subscribe(SubscribeRequest(user="7", channel="news", data={"welcome": 1}))
    await eventually(lambda: bool(first.subscribed) and bool(second.subscribed))
    ctx = first.subscribed[0]
    assert (ctx.channel, ctx.data, ctx.recoverable, ctx.positioned) == (
        "news",
        {"welcome": 1},
        True,
        True,
    )
    assert ctx.stream_position is not None and ctx.stream_position.offset == 1
    await cent.publish(PublishRequest(channel="news", data={"after": True}))
    await eventually(lambda: bool(first.pubs) and bool(second.pubs))
    assert first.pubs == second.pubs == [("news", {"after": True}, 2)]
    assert other.subscribed == [] and other.pubs == []
    stats = await cent.channels(ChannelsRequest(pattern="news"))
    assert stats.channels["news"].num_clients == 2
    # Again: already subscribed, nothing new.
    await cent.subscribe(SubscribeRequest(user="7", channel="news"))
    await asyncio.sleep(0.2)
    assert len(first.subscribed) == 1
    # The server API's unsubscribe removes a server-side subscription too.
    await cent.unsubscribe(UnsubscribeRequest(user="7", channel="news"))
    await eventually(lambda: first.unsubscribed == ["news"] and second.unsubscribed == ["news"])
    for client in clients:
        await client.disconnect()


async def test_subscribe_one_client_with_recovery_and_channel_info(
    server: LiveServer, cent: AsyncClient
) -> None:
    events = ClientEvents()
    sdk = await sdk_client(server, "7", events)
    bystander = ClientEvents()
    other_tab = await sdk_client(server, "7", bystander)
    for n in (1, 2, 3):
        await cent.publish(PublishRequest(channel="feed", data={"n": n}))
    page: Any = None
    for _ in range(200):
        page = await cent.history(HistoryRequest(channel="feed", limit=0))
        if page.offset == 3:
            break
        await asyncio.sleep(0.02)
    client_id = sdk.client_id
    await cent.subscribe(
        SubscribeRequest(
            user="7",
            channel="feed",
            client=client_id,
            info={"role": "reader"},
            recover_since=StreamPosition(offset=1, epoch=page.epoch),
        )
    )
    await eventually(lambda: len(events.pubs) == 2)
    assert events.pubs == [("feed", {"n": 2}, 2), ("feed", {"n": 3}, 3)]
    assert bystander.subscribed == []
    await cent.publish(PublishRequest(channel="feed", data={"n": 4}))
    await eventually(lambda: len(events.pubs) == 3)
    assert events.pubs[-1] == ("feed", {"n": 4}, 4)
    await sdk.disconnect()
    await other_tab.disconnect()


# -- refresh ---------------------------------------------------------------------------------


async def test_refresh_expired_closes_with_3005_and_the_sdk_reconnects(
    server: LiveServer, cent: AsyncClient
) -> None:
    events = ClientEvents()
    sdk = await sdk_client(server, "7", events)
    await cent.refresh(RefreshRequest(user="7", expired=True))
    await eventually(lambda: 3005 in events.connecting)
    await eventually(lambda: sdk.state.value == "connected")
    await sdk.disconnect()


async def test_refresh_moves_the_expiry_of_a_connection(
    server: LiveServer, cent: AsyncClient
) -> None:
    origin = server.http_url
    async with websockets.connect(server.ws_url, origin=origin) as ws:  # type: ignore[arg-type]
        await ws.send(orjson.dumps({"id": 1, "connect": {"token": server.token("7", ttl=2)}}))
        reply = orjson.loads(await ws.recv())
        assert reply["connect"]["expires"] is True and reply["connect"]["ttl"] <= 2
        await cent.refresh(RefreshRequest(user="7", expire_at=int(time.time()) + 3600))
        push = orjson.loads(await asyncio.wait_for(ws.recv(), 10))["push"]
        assert push["refresh"]["expires"] is True
        assert 3590 <= push["refresh"]["ttl"] <= 3600
        await asyncio.sleep(3.5)  # past the token's own expiry: still connected
        await ws.send(orjson.dumps({"id": 2, "subscribe": {"channel": "orders"}}))
        while "id" not in (message := orjson.loads(await asyncio.wait_for(ws.recv(), 10))):
            pass
        assert message["id"] == 2 and "subscribe" in message
        # Far in the future: capped at a year, as centrifuge caps it.
        await cent.refresh(RefreshRequest(user="7", expire_at=2**40))
        push = orjson.loads(await asyncio.wait_for(ws.recv(), 10))["push"]
        assert 365 * 24 * 3600 - 10 <= push["refresh"]["ttl"] <= 365 * 24 * 3600
        # expire_at 0: never expires ({"expires": false} is Go's omitted zero value).
        await cent.refresh(RefreshRequest(user="7", expire_at=0))
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 10)) == {"push": {"refresh": {}}}
        # A time already past: closed at once, as expired.
        await cent.refresh(RefreshRequest(user="7", expire_at=int(time.time()) - 1))
        assert await closed_with(ws) == 3005


async def closed_with(ws: websockets.ClientConnection) -> int:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else -1


# -- history_remove --------------------------------------------------------------------------


async def test_history_remove_empties_history_and_keeps_the_position(
    server: LiveServer, cent: AsyncClient
) -> None:
    events = ClientEvents()
    sdk = await sdk_client(server, "7", events)
    orders = SubEvents()
    sub = sdk.new_subscription("orders", events=orders)
    await sub.subscribe()
    await eventually(lambda: bool(orders.subscribed))
    for n in (1, 2):
        await cent.publish(PublishRequest(channel="orders", data={"n": n}))
    await eventually(lambda: len(orders.pubs) == 2)
    before = await cent.history(HistoryRequest(channel="orders", limit=-1))
    assert [p.offset for p in before.publications] == [1, 2]
    assert await cent.history_remove(HistoryRemoveRequest(channel="orders")) is not None
    after = await cent.history(HistoryRequest(channel="orders", limit=-1))
    assert (after.publications, after.offset, after.epoch) == ([], 2, before.epoch)
    # The SDK sees the same: an empty history at the same position.
    seen = await sub.history(limit=-1)
    assert (seen.publications, seen.offset, seen.epoch) == ([], 2, before.epoch)
    # And the stream goes on from the same top: the subscriber misses nothing.
    await cent.publish(PublishRequest(channel="orders", data={"n": 3}))
    await eventually(lambda: len(orders.pubs) == 3)
    assert orders.pubs[-1] == ({"n": 3}, 3)
    await sdk.disconnect()


# -- batch -----------------------------------------------------------------------------------


async def test_batch_runs_commands_in_order_and_answers_in_order(
    server: LiveServer, cent: AsyncClient
) -> None:
    reply = await cent.batch(
        BatchRequest(
            requests=[
                PublishRequest(channel="orders", data={"n": 1}),
                PresenceStatsRequest(channel="room:1"),
                InfoRequest(),
                HistoryRequest(channel="orders", limit=0),
            ]
        )
    )
    assert [type(r).__name__ for r in reply.replies] == [
        "PublishResult",
        "PresenceStatsResult",
        "InfoResult",
        "HistoryResult",
    ]
    parallel = await cent.batch(
        BatchRequest(
            requests=[PresenceStatsRequest(channel=f"room:{n}") for n in range(5)], parallel=True
        )
    )
    assert len(parallel.replies) == 5
    # Errors in their place, as Centrifugo's Reply: {"error": …} instead of the method's key.
    body = (
        b'{"commands": [{"presence_stats": {"channel": "room:1"}}, {"history": {"channel":'
        b' "nope:1"}}, {"map_publish": {}}, null, {"publish": {"channel": 1}},'
        b' {"channels": {}}], "parallel": false}'
    )
    replies = (await raw(server, "batch", body)).json()
    assert replies == {
        "replies": [
            {"presence_stats": {"num_clients": 0, "num_users": 0}},
            {"error": {"code": 102, "message": "unknown channel"}},
            {"error": {"code": 104, "message": "not found"}},
            {"error": {"code": 107, "message": "bad request: a command is an object"}},
            {"error": {"code": 107, "message": replies["replies"][4]["error"]["message"]}},
            {"channels": {"channels": {}}},
        ]
    }
    assert "channel" in replies["replies"][4]["error"]["message"]
    # In order: a publish then the unsubscribe of the publisher's channel, then history sees it.
    ordered = (
        b'{"commands": [{"publish": {"channel": "orders", "data": {"n": 2}}},'
        b' {"history": {"channel": "orders", "limit": 0}}]}'
    )
    assert (await raw(server, "batch", ordered)).status_code == 200


# -- another prefix --------------------------------------------------------------------------


async def test_a_configured_prefix_moves_the_layout(schema_url: str) -> None:
    live = await start_live_server(schema_url, api_key=API_KEY, server_api_prefix="/centrifugo")
    try:
        async with AsyncClient(f"{live.http_url}/centrifugo", API_KEY) as cent:
            stats = await cent.presence_stats(PresenceStatsRequest(channel="room:1"))
            assert (stats.num_clients, stats.num_users) == (0, 0)
        async with httpx.AsyncClient(base_url=live.http_url) as http:
            moved = await http.post("/api/presence_stats", json={"channel": "room:1"})
        assert moved.status_code == 404
        with pytest.raises(CentTransportError):
            async with AsyncClient(f"{live.http_url}/api", API_KEY) as cent:
                await cent.info(InfoRequest())
    finally:
        await stop_live_server(live)


# -- the single-endpoint API of Centrifugo before v5 (POST /api) ----------------------------


async def test_the_old_single_endpoint_api_at_the_bare_prefix(server: LiveServer) -> None:
    async def call(body: bytes) -> httpx.Response:
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            return await http.post("/api", content=body, headers={"X-API-Key": API_KEY})

    body = (
        b'{"method": "publish", "params": {"channel": "orders", "data": {"old": true}}}\n'
        b'{"id": 7, "method": 5, "params": {"channel": "room:1"}}\n'
        b'{"id": 8, "method": "PRESENCE", "params": {"channel": "nope:1"}}\n'
        b'{"id": 9, "method": "rpc", "params": {}}\n'
        b'{"id": 10, "method": 99}\n'
        b'{"id": 11, "method": "info"}\n'
        b'{"id": 12, "method": "history", "params": {"channel": 5}}\n'
    )
    reply = await call(body)
    assert reply.status_code == 200, reply.text
    lines = [orjson.loads(line) for line in reply.content.split(b"\n")]
    assert lines[:5] == [
        {"result": {}},
        {"id": 7, "result": {"num_clients": 0, "num_users": 0}},
        {"id": 8, "error": {"code": 102, "message": "unknown channel"}},
        {"id": 9, "error": {"code": 104, "message": "not found"}},
        {"id": 10, "error": {"code": 104, "message": "not found"}},
    ]
    assert lines[5]["id"] == 11 and lines[5]["result"]["nodes"]
    assert lines[6]["id"] == 12 and lines[6]["error"]["code"] == 107
    async with AsyncClient(f"{server.http_url}/api", API_KEY) as cent:
        for _ in range(200):
            page = await cent.history(HistoryRequest(channel="orders", limit=-1))
            if page.publications:
                break
            await asyncio.sleep(0.02)
    assert [p.data for p in page.publications] == [{"old": True}]
    for bad in (b"", b"{not json", b"[1]", b'{"method": "bogus"}', b'{"method": true}'):
        refused = await call(bad)
        assert refused.status_code == 400, bad
        assert refused.json()["error"]["message"]
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        assert (await http.post("/api", content=b"{}")).status_code == 401
