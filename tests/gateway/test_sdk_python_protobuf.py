"""centrifuge-python in Protobuf mode (use_protobuf=True) against a running Syncline: the JSON
acceptance scenarios again, over binary frames; payloads are JSON bytes."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import pytest
import websockets
from centrifuge import (
    Client,
    PublicationContext,
    SubscriptionEventHandler,
)
from centrifuge.exceptions import ReplyError

from syncline.core.pb_protocol import read_varint
from syncline.core.pb_wire import varint
from syncline.core.proto import client_pb2 as pb
from syncline.rpc import RpcContext, RpcError

from helpers.live_server import LiveServer, start_live_server, stop_live_server
from helpers.sdk_events import ClientEvents
from helpers.sdk_events import Events as SdkEvents
from helpers.waiting import eventually


@dataclass
class Events(SdkEvents):
    """Protobuf mode: publication data arrives as JSON bytes."""

    payload_bytes: bool = True


def pb_client(server: LiveServer, user: str, **kwargs: Any) -> Client:
    return Client(server.ws_url, token=server.token(user), use_protobuf=True, **kwargs)


def as_json(value: Any) -> bytes:
    return json.dumps(value).encode()


async def insert_order(server: LiveServer, product: str) -> None:
    await server.sql(
        "INSERT INTO orders (customer_name, product_name) VALUES ('ann', %s)", (product,)
    )


async def test_subscribe_and_receive_captured_rows_as_json_bytes(live_server: LiveServer) -> None:
    handler = ClientEvents()
    client = pb_client(live_server, "1", events=handler)
    events = Events()
    sub = client.new_subscription("orders", events=events)
    await client.connect()
    await sub.subscribe()
    await eventually(events.has_subscribed)
    await insert_order(live_server, "tea")
    await eventually(lambda: len(events.pubs) == 1)
    (row,) = events.pubs
    assert (row["table"], row["op"], row["row"]["product_name"]) == ("orders", "insert", "tea")
    assert events.offsets == [1]
    # The server-side personal channel came in the connect reply's subs map.
    await eventually(lambda: handler.server_subs == ["user:1"])
    await client.disconnect()


async def test_json_and_protobuf_subscribers_get_the_same_publication(
    live_server: LiveServer,
) -> None:
    json_client = Client(live_server.ws_url, token=live_server.token("2"))
    proto_client = pb_client(live_server, "3")
    seen: list[Any] = []

    class JsonEvents(SubscriptionEventHandler):  # type: ignore[misc]
        async def on_publication(self, ctx: PublicationContext) -> None:
            seen.append((ctx.pub.offset, ctx.pub.data))

    proto_events = Events()
    subs = [
        json_client.new_subscription("orders", events=JsonEvents()),
        proto_client.new_subscription("orders", events=proto_events),
    ]
    for client, sub in zip((json_client, proto_client), subs, strict=True):
        await client.connect()
        await sub.subscribe()
    await eventually(proto_events.has_subscribed)
    await insert_order(live_server, "both")
    await eventually(lambda: len(seen) == 1 and len(proto_events.pubs) == 1)
    assert seen == list(zip(proto_events.offsets, proto_events.pubs, strict=True))
    for client in (json_client, proto_client):
        await client.disconnect()


async def test_reconnect_recovers_exactly_the_missed_publications(live_server: LiveServer) -> None:
    client = pb_client(live_server, "1")
    events = Events()
    sub = client.new_subscription("orders", events=events)
    await client.connect()
    await sub.subscribe()
    await insert_order(live_server, "p0")
    await eventually(lambda: len(events.pubs) == 1)
    await client.disconnect()
    for n in range(1, 11):
        await insert_order(live_server, f"p{n}")
    await asyncio.sleep(0.3)  # let capture append them while the client is away
    await client.connect()
    await eventually(lambda: len(events.pubs) == 11)
    await asyncio.sleep(0.2)
    assert [p["row"]["product_name"] for p in events.pubs] == [f"p{n}" for n in range(11)]
    assert events.offsets == list(range(1, 12))
    last = events.subscribed[-1]
    assert last.was_recovering
    assert last.recovered
    await client.disconnect()


async def test_history_of_a_channel(live_server: LiveServer) -> None:
    for product in ("a", "b", "c"):
        await insert_order(live_server, product)
    client = pb_client(live_server, "1")
    await client.connect()
    history = None
    for _ in range(100):  # capture appends asynchronously
        history = await client.history("orders", limit=-1)
        if len(history.publications) == 3:
            break
        await asyncio.sleep(0.05)
    assert history is not None
    assert [json.loads(p.data)["row"]["product_name"] for p in history.publications] == [
        "a",
        "b",
        "c",
    ]
    assert [p.offset for p in history.publications] == [1, 2, 3]
    assert history.offset == 3
    assert history.epoch
    await client.disconnect()


async def test_presence_join_leave_and_publish(live_server: LiveServer) -> None:
    for user in ("1", "2"):
        await live_server.sql(
            "INSERT INTO room_members (room_id, user_id) VALUES (5, %s)", (int(user),)
        )
    watchers = [Events(), Events()]
    clients = [pb_client(live_server, u) for u in ("1", "2")]
    subs = []
    typing = Events()
    for client, events in zip(clients, watchers, strict=True):
        sub = client.new_subscription("room:5", events=events, join_leave=True)
        await client.connect()
        await sub.subscribe()
        await eventually(events.has_subscribed)
        subs.append(sub)
    stats = await subs[0].presence_stats()
    assert (stats.num_clients, stats.num_users) == (2, 2)
    presence = await subs[1].presence()
    assert {c.user for c in presence.clients.values()} == {"1", "2"}
    await eventually(lambda: len(watchers[0].joins) == 2, timeout=5)

    # Client publish (typing:{room} allows it): JSON bytes in, the same JSON out, with info.
    typing_sub = clients[0].new_subscription("typing:5", events=typing)
    await typing_sub.subscribe()
    await eventually(typing.has_subscribed)
    await clients[1].publish("typing:5", as_json({"typing": True}))
    await eventually(lambda: len(typing.pubs) == 1)
    assert (typing.pubs, typing.publishers) == ([{"typing": True}], ["2"])
    with pytest.raises(ReplyError) as refused:
        await clients[1].publish("orders", as_json({"x": 1}))
    assert refused.value.code == 103

    await clients[1].disconnect()
    await eventually(lambda: len(watchers[0].leaves) == 1)
    stats = await subs[0].presence_stats()
    assert (stats.num_clients, stats.num_users) == (1, 1)
    await clients[0].disconnect()


async def test_rpc_round_trip_and_errors(live_server: LiveServer) -> None:
    async def echo(ctx: RpcContext, data: Any) -> Any:
        if data == "fail":
            raise RpcError(400, "told to fail")
        return {"user": ctx.user, "echo": data}

    live_server.runtime.rpc.register("echo", echo)
    client = pb_client(live_server, "7")
    await client.connect()
    result = await client.rpc("echo", as_json({"x": 1}))
    assert json.loads(result.data) == {"user": "7", "echo": {"x": 1}}
    with pytest.raises(ReplyError) as failed:
        await client.rpc("echo", as_json("fail"))
    assert failed.value.code == 400
    with pytest.raises(ReplyError) as unknown:
        await client.rpc("nope", b"null")
    assert unknown.value.code == 108
    await client.disconnect()


async def test_an_expiring_token_is_refreshed(live_server: LiveServer) -> None:
    issued: list[str] = []

    async def get_token() -> str:
        token = live_server.token("3", ttl=3)  # a loaded machine can miss a shorter one
        issued.append(token)
        return token

    client = Client(live_server.ws_url, get_token=get_token, use_protobuf=True)
    events = Events()
    sub = client.new_subscription("orders", events=events)
    await client.connect()
    await sub.subscribe()
    await asyncio.sleep(4.5)  # past the first token's expiry: the SDK refreshed it
    assert len(issued) >= 2
    await insert_order(live_server, "y")
    await eventually(lambda: len(events.pubs) == 1)
    await client.disconnect()


# --- the handshake and bad frames, without the SDK ------------------------------------------


def frame(*commands: pb.Command) -> bytes:
    return b"".join(varint(c.ByteSize()) + c.SerializeToString() for c in commands)


def replies(data: bytes | str) -> list[pb.Reply]:
    assert isinstance(data, bytes), "Protobuf replies come in binary frames"
    out, pos = [], 0
    while pos < len(data):
        length, pos = read_varint(data, pos)
        out.append(pb.Reply.FromString(data[pos : pos + length]))
        pos += length
    return out


async def test_the_101_names_the_protobuf_subprotocol(live_server: LiveServer) -> None:
    async with websockets.connect(
        live_server.ws_url,
        subprotocols=[websockets.Subprotocol("centrifuge-protobuf")],
    ) as ws:
        assert ws.subprotocol == "centrifuge-protobuf"
        connect = pb.ConnectRequest(token=live_server.token("1"))
        await ws.send(frame(pb.Command(id=1, connect=connect)))
        (reply,) = replies(await asyncio.wait_for(ws.recv(), 5))
    assert reply.id == 1
    assert reply.connect.client and reply.connect.pong
    assert "user:1" in reply.connect.subs


async def test_format_query_parameter_selects_protobuf(live_server: LiveServer) -> None:
    async with websockets.connect(f"{live_server.ws_url}?format=protobuf") as ws:
        assert ws.subprotocol is None
        connect = pb.ConnectRequest(token=live_server.token("1"))
        presence = pb.PresenceStatsRequest(channel="orders")
        await ws.send(
            frame(pb.Command(id=1, connect=connect), pb.Command(id=2, presence_stats=presence))
        )
        got: list[pb.Reply] = []
        while len(got) < 2:
            got += replies(await asyncio.wait_for(ws.recv(), 5))
    assert [r.id for r in got] == [1, 2]
    assert got[1].HasField("error")  # orders has no presence: an error reply, not a close


async def test_an_unknown_format_is_refused_at_the_upgrade(live_server: LiveServer) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(f"{live_server.ws_url}?format=xml"):
            pass
    assert refused.value.response.status_code == 400
    assert b"format" in refused.value.response.body


@pytest.mark.parametrize(
    "data",
    [
        b"\x80",  # truncated varint
        varint(2**40) + b"\x08",  # a length past the frame
        b"\x03\x2a\x09\x0a",  # a message protobuf cannot parse
        b"\x04\x08\x01\x28\x01",  # subscribe sent as a varint: wrong wire type
    ],
)
async def test_malformed_binary_frames_close_3501(live_server: LiveServer, data: bytes) -> None:
    async with websockets.connect(f"{live_server.ws_url}?format=protobuf") as ws:
        connect = pb.ConnectRequest(token=live_server.token("1"))
        await ws.send(frame(pb.Command(id=1, connect=connect)))
        await asyncio.wait_for(ws.recv(), 5)
        await ws.send(data)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (3501, "bad request")


async def test_delta_asked_over_protobuf_gets_a_plain_subscription(schema_url: str) -> None:
    """Fossil delta is encoded for JSON clients only: a Protobuf one asking for it on a channel
    that allows it is answered as Centrifugo answers a delta type it does not allow."""
    namespaces = {
        "default": {
            "history_size": 100,
            "history_ttl": 600,
            "recover": True,
            "allowed_delta_types": ["fossil"],
        }
    }
    server = await start_live_server(schema_url, namespaces=namespaces)
    try:
        async with websockets.connect(f"{server.ws_url}?format=protobuf") as ws:
            connect = pb.ConnectRequest(token=server.token("1"))
            subscribe = pb.SubscribeRequest(channel="orders", delta="fossil")
            await ws.send(
                frame(pb.Command(id=1, connect=connect), pb.Command(id=2, subscribe=subscribe))
            )
            got: list[pb.Reply] = []
            while not any(r.id == 2 for r in got):
                got += replies(await asyncio.wait_for(ws.recv(), 5))
            (reply,) = [r for r in got if r.id == 2]
            assert reply.HasField("subscribe") and not reply.subscribe.delta
            for product in ("tea", "tea and cake"):
                await insert_order(server, product)
            pubs: list[pb.Publication] = []
            while len(pubs) < 2:
                pubs += [r.push.pub for r in replies(await asyncio.wait_for(ws.recv(), 5))]
        assert [json.loads(p.data)["row"]["product_name"] for p in pubs] == ["tea", "tea and cake"]
        assert not any(p.delta for p in pubs)
    finally:
        await stop_live_server(server)
