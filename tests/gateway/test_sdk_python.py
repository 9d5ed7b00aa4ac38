"""The official centrifuge-python SDK against a running Syncline: the acceptance client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from centrifuge import (
    Client,
)
from centrifuge.exceptions import ReplyError

from syncline.rpc import RpcContext, RpcError

from helpers.live_server import LiveServer, start_live_server, stop_live_server
from helpers.sdk_events import ClientEvents, Events
from helpers.waiting import eventually


def client_for(server: LiveServer, user: str, **kwargs: Any) -> Client:
    return Client(server.ws_url, token=server.token(user), **kwargs)


async def test_changes_committed_with_sql_reach_a_subscriber(live_server: LiveServer) -> None:
    client = client_for(live_server, "1")
    events = Events()
    sub = client.new_subscription("orders", events=events)
    await client.connect()
    await sub.subscribe()
    await eventually(lambda: bool(events.subscribed))
    await live_server.sql("INSERT INTO orders (customer_name, product_name) VALUES ('ann', 'tea')")
    await eventually(lambda: len(events.pubs) == 1)
    pub = events.pubs[0]
    assert pub["op"] == "insert"
    assert pub["row"]["product_name"] == "tea"
    assert events.offsets == [1]
    await client.disconnect()


async def test_reconnect_recovers_exactly_the_missed_publications(live_server: LiveServer) -> None:
    client = client_for(live_server, "1")
    events = Events()
    sub = client.new_subscription("orders", events=events)
    await client.connect()
    await sub.subscribe()
    await live_server.sql("INSERT INTO orders (customer_name, product_name) VALUES ('a', 'p0')")
    await eventually(lambda: len(events.pubs) == 1)
    await client.disconnect()
    for n in range(1, 21):
        await live_server.sql(
            "INSERT INTO orders (customer_name, product_name) VALUES ('a', %s)", (f"p{n}",)
        )
    await asyncio.sleep(0.3)  # let capture append them while the client is away
    await client.connect()
    await eventually(lambda: len(events.pubs) == 21)
    await asyncio.sleep(0.2)
    assert [p["row"]["product_name"] for p in events.pubs] == [f"p{n}" for n in range(21)]
    assert events.offsets == list(range(1, 22))
    last = events.subscribed[-1]
    assert last.was_recovering
    assert last.recovered
    await client.disconnect()


async def test_epoch_change_answers_recovered_false(schema_url: str) -> None:
    server = await start_live_server(schema_url)
    client = Client(server.ws_url, token=server.token("1"), max_reconnect_delay=0.5)
    events = Events()
    sub = client.new_subscription("orders", events=events)
    try:
        await client.connect()
        await sub.subscribe()
        await server.sql("INSERT INTO orders (customer_name, product_name) VALUES ('a', 'b')")
        await eventually(lambda: len(events.pubs) == 1)
        await client.disconnect()
    finally:
        await stop_live_server(server)
    # A restarted memory engine has lost its history: a new epoch.
    restarted = await start_live_server(schema_url)
    try:
        client = Client(restarted.ws_url, token=restarted.token("1"))
        sub2 = client.new_subscription("orders", events=events)
        sub2._recover = True  # the SDK keeps this after a recoverable subscribe
        sub2._offset, sub2._epoch = sub._offset, sub._epoch
        await client.connect()
        await sub2.subscribe()
        await eventually(lambda: len(events.subscribed) == 2)
        ctx = events.subscribed[-1]
        assert ctx.was_recovering
        assert not ctx.recovered
        assert ctx.stream_position is not None
        assert ctx.stream_position.epoch != sub._epoch
        await client.disconnect()
    finally:
        await stop_live_server(restarted)


async def test_presence_counts_users_once_and_clients_each(live_server: LiveServer) -> None:
    for user in ("1", "2"):
        await live_server.sql(
            "INSERT INTO room_members (room_id, user_id) VALUES (5, %s)", (int(user),)
        )
    watchers = [Events(), Events(), Events()]
    clients = [client_for(live_server, u) for u in ("1", "1", "2")]
    subs = []
    for client, events in zip(clients, watchers, strict=True):
        sub = client.new_subscription("room:5", events=events, join_leave=True)
        await client.connect()
        await sub.subscribe()
        await eventually(events.has_subscribed)
        subs.append(sub)
    stats = await subs[0].presence_stats()
    assert (stats.num_clients, stats.num_users) == (3, 2)
    presence = await subs[2].presence()
    assert {c.user for c in presence.clients.values()} == {"1", "2"}
    # Every subscriber sees each join, its own included (as Centrifugo does).
    await eventually(lambda: len(watchers[0].joins) == 3, timeout=5)
    await clients[2].disconnect()
    await eventually(lambda: len(watchers[0].leaves) == 1)
    stats = await subs[0].presence_stats()
    assert (stats.num_clients, stats.num_users) == (2, 1)
    for client in clients[:2]:
        await client.disconnect()


async def test_rpc_round_trip_and_unknown_method(live_server: LiveServer) -> None:
    async def echo(ctx: RpcContext, data: Any) -> Any:
        if data == "fail":
            raise RpcError(400, "told to fail")
        return {"user": ctx.user, "echo": data}

    live_server.runtime.rpc.register("echo", echo)
    client = client_for(live_server, "7")
    await client.connect()
    result = await client.rpc("echo", {"x": 1})
    assert result.data == {"user": "7", "echo": {"x": 1}}
    with pytest.raises(ReplyError) as failed:
        await client.rpc("echo", "fail")
    assert failed.value.code == 400
    with pytest.raises(ReplyError) as unknown:
        await client.rpc("nope", None)
    assert unknown.value.code == 108
    await client.disconnect()


async def test_an_expiring_token_is_refreshed(live_server: LiveServer) -> None:
    issued: list[str] = []

    async def get_token() -> str:
        token = live_server.token("3", ttl=2)
        issued.append(token)
        return token

    client = Client(live_server.ws_url, get_token=get_token)
    events = Events()
    sub = client.new_subscription("orders", events=events)
    await client.connect()
    await sub.subscribe()
    await asyncio.sleep(3.5)  # past the first token's expiry: the SDK refreshed it
    assert len(issued) >= 2
    await live_server.sql("INSERT INTO orders (customer_name, product_name) VALUES ('x', 'y')")
    await eventually(lambda: len(events.pubs) == 1)
    await client.disconnect()


async def test_an_expired_token_at_connect_makes_the_sdk_fetch_a_new_one(
    live_server: LiveServer,
) -> None:
    expired, fresh = live_server.token("4", ttl=-10), live_server.token("4")
    handed_out: list[str] = []

    async def get_token() -> str:
        token = expired if not handed_out else fresh
        handed_out.append(token)
        return token

    client = Client(live_server.ws_url, get_token=get_token)
    await client.connect()
    await client.ready(timeout=5)
    # The expired token was refused (error 109, "token expired"): the SDK asked for another
    # one and connected with it, not with the first.
    assert handed_out == [expired, fresh]
    await client.disconnect()
    async with websockets.connect(live_server.ws_url) as ws:
        await ws.send(json.dumps({"id": 1, "connect": {"token": expired}}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert reply == {"id": 1, "error": {"code": 109, "message": "token expired"}}


async def test_a_channel_the_user_may_not_see_is_refused(live_server: LiveServer) -> None:
    client = client_for(live_server, "8")
    await client.connect()
    for channel in ("user:9", "room:77"):  # another user's channel; a room without membership
        events = Events()
        sub = client.new_subscription(channel, events=events)
        await sub.subscribe()
        await eventually(events.has_unsubscribed)
        assert events.unsubscribed[0].code == 103  # permission denied, terminal
        assert events.subscribed == []
    await client.disconnect()


async def test_every_connection_gets_its_personal_channel(live_server: LiveServer) -> None:
    handler = ClientEvents()
    client = Client(live_server.ws_url, token=live_server.token("12"), events=handler)
    await client.connect()
    await eventually(lambda: handler.server_subs == ["user:12"])
    await client.disconnect()


async def test_removing_a_member_unsubscribes_them(live_server: LiveServer) -> None:
    await live_server.sql("INSERT INTO room_members (room_id, user_id) VALUES (3, 1)")
    client = client_for(live_server, "1")
    events = Events()
    sub = client.new_subscription("room:3", events=events)
    await client.connect()
    await sub.subscribe()
    await eventually(lambda: bool(events.subscribed))
    await live_server.sql("DELETE FROM room_members WHERE room_id = 3 AND user_id = 1")
    await eventually(lambda: bool(events.unsubscribed))
    assert events.unsubscribed[0].code == 2000
    await client.disconnect()


async def test_empty_channel_results_carry_their_zero_values(live_server: LiveServer) -> None:
    """presence_stats, presence and history of a channel with nobody in it and nothing
    published: what Centrifugo sends (0, 0; an empty map; an empty list at offset 0), on the
    wire and in the SDK's typed results."""
    await live_server.sql("INSERT INTO room_members (room_id, user_id) VALUES (5, 1)")
    client = client_for(live_server, "1")
    await client.connect()
    stats = await client.presence_stats("room:5")
    assert (stats.num_clients, stats.num_users) == (0, 0)
    presence = await client.presence("room:5")
    assert presence.clients == {}
    history = await client.history("orders", limit=-1)
    assert history.publications == []
    assert history.offset == 0
    assert history.epoch  # the stream exists from the first read on: its epoch is set
    await client.disconnect()

    async with websockets.connect(live_server.ws_url) as ws:
        await ws.send(json.dumps({"id": 1, "connect": {"token": live_server.token("1")}}))
        await asyncio.wait_for(ws.recv(), 5)
        commands = [
            {"id": 2, "presence_stats": {"channel": "room:5"}},
            {"id": 3, "presence": {"channel": "room:5"}},
            {"id": 4, "history": {"channel": "orders", "limit": -1}},
        ]
        replies: dict[int, Any] = {}
        await ws.send("\n".join(json.dumps(c) for c in commands))
        while len(replies) < 3:
            for line in str(await asyncio.wait_for(ws.recv(), 5)).splitlines():
                reply = json.loads(line)
                replies[reply.get("id", 0)] = reply
    assert replies[2] == {"id": 2, "presence_stats": {"num_clients": 0, "num_users": 0}}
    assert replies[3] == {"id": 3, "presence": {"presence": {}}}
    assert replies[4] == {
        "id": 4,
        "history": {"publications": [], "epoch": history.epoch, "offset": 0},
    }
