"""Encoding of server output as Protobuf (syncline.core.pb_wire): the JSON codec's twin."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import orjson
import pytest
from centrifuge import Client, SubscriptionEventHandler, SubscriptionState
from centrifuge.codecs import _ProtobufCodec
from hypothesis import given
from hypothesis import strategies as st

from syncline.core import pb_wire, wire
from syncline.core.codes import DisconnectCode, ErrorCode, UnsubscribeCode
from syncline.core.log import MAX_OFFSET, ClientInfo, Publication, StreamPosition
from syncline.core.pb_protocol import read_varint
from syncline.core.proto import client_pb2 as pb
from syncline.core.protocol import (
    Command,
    HistoryCommand,
    PresenceCommand,
    PresenceStatsCommand,
    PublishCommand,
    RpcCommand,
)
from syncline.core.wire import (
    RawJson,
    connect_result,
    history_result,
    presence_result,
    presence_stats_result,
    refresh_result,
    rpc_result,
    subscribe_result,
)

U9 = ClientInfo("u9", "77aa01", conn_info=b'{"name":"Ann"}', chan_info=b"[1]")


def pub(offset: int, data: bytes, info: ClientInfo | None = None) -> Publication:
    return Publication(offset=offset, data=data, info=info, time_ms=0)


def sdk_decode(frame: bytes) -> list[dict[str, Any]]:
    """What centrifuge-python (use_protobuf=True) does with a binary frame."""
    replies: list[dict[str, Any]] = _ProtobufCodec.decode_replies(frame)
    return replies


_BYTES_FIELDS = {"data", "conn_info", "chan_info"}
_INT64_FIELDS = {"offset", "time", "id"}


def as_json(value: Any, key: str = "") -> Any:
    """A decoded Protobuf reply as the JSON format has it: payloads (base64 in protojson) are
    JSON again, 64-bit integers (strings in protojson) are numbers."""
    if isinstance(value, dict):
        return {k: as_json(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if key in _BYTES_FIELDS:
        return orjson.loads(base64.b64decode(value))
    if key in _INT64_FIELDS and isinstance(value, str):
        return int(value)
    return value


_MAP_FIELDS = {"presence", "subs", "tags"}


def without_zero_values(value: Any) -> Any:
    """JSON output less what proto3 cannot carry: zero scalars, empty lists and maps are not
    on the wire, and the SDK's decoder reads them as their defaults."""
    if isinstance(value, list):
        return [without_zero_values(v) for v in value]
    if not isinstance(value, dict):
        return value
    return {
        k: without_zero_values(v)
        for k, v in value.items()
        if v not in (0, "", []) and not (v == {} and k in _MAP_FIELDS)  # False == 0
    }


def same_as_json(pb_frame: bytes, json_frame: bytes) -> None:
    (decoded,) = sdk_decode(pb_frame)
    assert as_json(decoded) == without_zero_values(orjson.loads(json_frame))


# --- every reply and push says what its JSON twin says --------------------------------------

RESULTS: list[tuple[str, dict[str, Any] | None]] = [
    (
        "connect",
        connect_result(
            "c1",
            version="syncline/1",
            data={"hello": [1]},
            expires=True,
            ttl=60,
            ping=25,
            pong=True,
            subs={
                "user:1": subscribe_result(
                    recoverable=True,
                    positioned=True,
                    epoch="k3Xa",
                    offset=43,
                    recovered=True,
                    was_recovering=True,
                    publications=[pub(43, b'{"x":1}', U9)],
                )
            },
        ),
    ),
    ("connect", connect_result("c1")),
    (
        "subscribe",
        subscribe_result(
            recoverable=True,
            epoch="k3Xa",
            offset=MAX_OFFSET,
            publications=[pub(MAX_OFFSET - 1, b'"a"'), pub(MAX_OFFSET, b"[2]", U9)],
            expires=True,
            ttl=30,
            data={"d": None},
        ),
    ),
    ("subscribe", subscribe_result()),
    ("unsubscribe", None),
    ("publish", None),
    ("presence", presence_result({"77aa01": U9, "c2": ClientInfo("u2", "c2")})),
    ("presence", presence_result({})),
    ("presence_stats", presence_stats_result(3, 2)),
    ("history", history_result([pub(1, b"1"), pub(2, b"{}", U9)], epoch="E", offset=2)),
    ("history", history_result(epoch="E", offset=9)),
    ("rpc", rpc_result({"echo": [1, "two", None]})),
    ("rpc", rpc_result(RawJson(b'{"raw":true}'))),
    ("rpc", rpc_result()),
    ("refresh", refresh_result(expires=True, ttl=3600)),
    ("sub_refresh", refresh_result()),
]


@pytest.mark.parametrize(("method", "result"), RESULTS)
def test_reply_decodes_like_its_json_twin(method: str, result: dict[str, Any] | None) -> None:
    same_as_json(pb_wire.encode_reply(7, method, result), wire.encode_reply(7, method, result))


@pytest.mark.parametrize(
    ("code", "message", "temporary"),
    [(ErrorCode.PERMISSION_DENIED, None, None), (ErrorCode.TOKEN_EXPIRED, None, None),
     (ErrorCode.INTERNAL, None, None), (4000, "app error", True)],
)  # fmt: skip
def test_error_decodes_like_its_json_twin(
    code: int, message: str | None, temporary: bool | None
) -> None:
    same_as_json(
        pb_wire.encode_error(2**32 - 1, code, message, temporary),
        wire.encode_error(2**32 - 1, code, message, temporary),
    )


PUSHES: list[tuple[Any, tuple[Any, ...]]] = [
    ("encode_pub_push", ("room:7", b'{"text":"hi"}', 43, U9, {"k": "v"})),
    ("encode_pub_push", ("room:7", RawJson(b"[1]"))),
    ("encode_join_push", ("room:7", U9)),
    ("encode_leave_push", ("room:7", ClientInfo("u2", "c2"))),
    ("encode_unsubscribe_push", ("room:7",)),
    ("encode_unsubscribe_push", ("room:7", UnsubscribeCode.INSUFFICIENT_STATE)),
    ("encode_unsubscribe_push", ("room:7", 2600, "app reason")),
    ("encode_disconnect_push", (DisconnectCode.SLOW,)),
    ("encode_disconnect_push", (4000, "custom")),
    ("encode_message_push", ({"note": "hi"},)),
    ("encode_subscribe_push", ("user:1", {"recoverable": True, "epoch": "E", "offset": 4})),
]


@pytest.mark.parametrize(("name", "args"), PUSHES, ids=[f"{n}{a[:2]}" for n, a in PUSHES])
def test_push_decodes_like_its_json_twin(name: str, args: tuple[Any, ...]) -> None:
    same_as_json(getattr(pb_wire, name)(*args), getattr(wire, name)(*args))


def test_ping_is_an_empty_reply() -> None:
    assert pb_wire.PING == b"\x00"
    assert sdk_decode(pb_wire.PING) == [{}]


def test_replies_batch_by_concatenation() -> None:
    parts = [pb_wire.encode_reply(3, "publish"), pb_wire.PING, pb_wire.encode_reply(4, "rpc")]
    assert sdk_decode(pb_wire.join(parts)) == [
        {"id": 3, "publish": {}},
        {},
        {"id": 4, "rpc": {}},
    ]


@pytest.mark.parametrize("size", [0, 1, 127, 128, 16_383, 16_384, 70_000])
def test_lengths_of_any_size_are_framed(size: int) -> None:
    data = orjson.dumps("x" * size)
    frame = pb_wire.encode_pub_push("c", data, 5)
    length, start = read_varint(frame, 0)
    assert start + length == len(frame)
    reply = pb.Reply.FromString(frame[start:])
    assert (reply.push.channel, reply.push.pub.data, reply.push.pub.offset) == ("c", data, 5)


@given(
    channel=st.text(min_size=1, max_size=20),
    data=st.binary(min_size=1, max_size=300),
    offset=st.integers(0, MAX_OFFSET),
    tags=st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=3),
)
def test_pub_push_is_the_message_protobuf_would_build(
    channel: str, data: bytes, offset: int, tags: dict[str, str]
) -> None:
    frame = pb_wire.encode_pub_push(channel, data, offset, U9, tags)
    expected = pb.Reply(
        push=pb.Push(
            channel=channel,
            pub=pb.Publication(
                data=data,
                offset=offset,
                tags=tags,
                info=pb.ClientInfo(
                    user="u9", client="77aa01", conn_info=U9.conn_info, chan_info=U9.chan_info
                ),
            ),
        )
    )
    length, start = read_varint(frame, 0)
    assert pb.Reply.FromString(frame[start:]) == expected
    assert length == expected.ByteSize()


# --- what the JSON builders give that Protobuf cannot carry is refused ----------------------


def test_publications_must_be_values_not_json() -> None:
    result = history_result([wire.encode_publication(b"1", 1)], epoch="E", offset=1)
    with pytest.raises(ValueError, match="cannot be built from JSON"):
        pb_wire.encode_reply(1, "history", result)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: pb_wire.encode_reply(0, "publish"), "command's id"),
        (lambda: pb_wire.encode_reply(1, "send"), "no reply for method"),
        (lambda: pb_wire.encode_reply(1, "rpc", {"nope": 1}), "has no field 'nope'"),
        (lambda: pb_wire.encode_error(1, 0), "positive uint32"),
        (lambda: pb_wire.encode_error(1, 4000), "no standard text"),
        (lambda: pb_wire.encode_push("c", "pong", {}), "unknown push kind"),
        (lambda: pb_wire.encode_push("c", "unsubscribe", {"code": 2000}), "non-empty reason"),
        (lambda: pb_wire.encode_unsubscribe_push("c", 1), "internal and never sent"),
        (lambda: pb_wire.encode_pub_push("c", b"1", -1), "an offset must be"),
        (lambda: pb_wire.encode_subscribe_push("c", {"publications": []}), "no field"),
    ],
)
def test_invalid_output_is_refused(call: Any, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        call()


def test_a_scalar_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(TypeError):
        pb_wire.encode_reply(1, "presence_stats", {"num_clients": "3"})


# --- the real SDK, in Protobuf mode, reads what this codec writes --------------------------


class Recorder(SubscriptionEventHandler):  # type: ignore[misc]
    def __init__(self) -> None:
        self.events: list[Any] = []

    async def on_subscribed(self, ctx: Any) -> None:
        self.events.append(("subscribed", ctx.recovered, ctx.was_recovering))

    async def on_publication(self, ctx: Any) -> None:
        self.events.append(("publication", ctx.pub.offset, ctx.pub.data, ctx.pub.info))


async def test_sdk_applies_recovered_subscribe_result_then_live_pub() -> None:
    client = Client("ws://localhost/connection/websocket", use_protobuf=True)
    recorder = Recorder()
    sub = client.new_subscription("room:7", events=recorder)
    sub.state = SubscriptionState.SUBSCRIBING
    result = subscribe_result(
        recoverable=True,
        positioned=True,
        epoch="k3Xa",
        offset=41,
        was_recovering=True,
        recovered=True,
        publications=[pub(42, b'{"text":"missed"}', U9)],
    )
    (reply,) = sdk_decode(pb_wire.encode_reply(13, "subscribe", result))
    await sub._move_subscribed(reply["subscribe"])
    (push,) = sdk_decode(pb_wire.encode_pub_push("room:7", b'{"text":"live"}', 43))
    await client._process_reply(push)

    assert sub.state == SubscriptionState.SUBSCRIBED
    assert [event[:3] for event in recorder.events] == [
        ("subscribed", True, True),
        ("publication", 42, b'{"text":"missed"}'),
        ("publication", 43, b'{"text":"live"}'),
    ]
    info = recorder.events[1][3]
    assert (info.user, info.client, info.conn_info, info.chan_info) == (
        "u9",
        "77aa01",
        b'{"name":"Ann"}',
        b"[1]",
    )
    assert (sub._recover, sub._epoch, sub._offset) == (True, "k3Xa", 43)

    (unsubscribe,) = sdk_decode(pb_wire.encode_unsubscribe_push("room:7"))
    await client._process_reply(unsubscribe)
    assert sub.state == SubscriptionState.UNSUBSCRIBED


class FakeServer:
    """Parses the SDK's Protobuf commands and answers with this codec, in place of a socket."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.received: list[Command] = []

    async def ready(self, timeout: float | None = None) -> None:
        return None

    async def send_commands(self, commands: list[dict[str, Any]]) -> None:
        from syncline.core.pb_protocol import parse_frame

        frame: bytes = self.client._codec.encode_commands(commands)
        for command in parse_frame(frame, max_commands=10):
            self.received.append(command)
            for decoded in sdk_decode(pb_wire.join([self.answer(command)])):
                await self.client._future_success(decoded["id"], decoded)

    def answer(self, command: Command) -> bytes:
        pubs = [pub(42, b'{"text":"missed"}', U9), pub(43, b'"live"')]
        match command:
            case PublishCommand(id=cid, channel="forbidden"):
                return pb_wire.encode_error(cid, ErrorCode.PERMISSION_DENIED)
            case PublishCommand(id=cid):
                return pb_wire.encode_reply(cid, command.METHOD)
            case HistoryCommand(id=cid):
                result = history_result(pubs, epoch="k3Xa", offset=43)
                return pb_wire.encode_reply(cid, command.METHOD, result)
            case PresenceCommand(id=cid):
                result = presence_result({"77aa01": U9, "c2": ClientInfo("", "c2")})
                return pb_wire.encode_reply(cid, command.METHOD, result)
            case PresenceStatsCommand(id=cid):
                result = presence_stats_result(num_clients=2, num_users=1)
                return pb_wire.encode_reply(cid, command.METHOD, result)
            case RpcCommand(id=cid, method="missing"):
                return pb_wire.encode_error(cid, ErrorCode.METHOD_NOT_FOUND)
            case RpcCommand(id=cid, data=data):
                return pb_wire.encode_reply(cid, command.METHOD, rpc_result({"echo": data}))
        raise AssertionError(command)


async def test_sdk_public_calls_round_trip_through_the_codec() -> None:
    from centrifuge import ReplyError
    from centrifuge import StreamPosition as SdkPosition

    sdk = Client("ws://localhost/connection/websocket", use_protobuf=True)
    server = FakeServer(sdk)
    sdk.ready = server.ready
    sdk._send_commands = server.send_commands

    await sdk.publish("chat", b'{"x":1}')
    history = await sdk.history("room:7", limit=2, since=SdkPosition(offset=41, epoch="k3Xa"))
    presence = await sdk.presence("room:7")
    stats = await sdk.presence_stats("room:7")
    rpc = await sdk.rpc("echo", b"[1,2]")
    with pytest.raises(ReplyError) as denied:
        await sdk.publish("forbidden", b"1")
    with pytest.raises(ReplyError) as missing:
        await sdk.rpc("missing", b"")

    assert server.received == [
        PublishCommand(id=1, channel="chat", data={"x": 1}),
        HistoryCommand(id=2, channel="room:7", limit=2, since=StreamPosition(41, "k3Xa")),
        PresenceCommand(id=3, channel="room:7"),
        PresenceStatsCommand(id=4, channel="room:7"),
        RpcCommand(id=5, method="echo", data=[1, 2]),
        PublishCommand(id=6, channel="forbidden", data=1),
        RpcCommand(id=7, method="missing"),
    ]
    assert (history.epoch, history.offset) == ("k3Xa", 43)
    assert [(p.offset, p.data) for p in history.publications] == [
        (42, b'{"text":"missed"}'),
        (43, b'"live"'),
    ]
    assert history.publications[0].info.conn_info == b'{"name":"Ann"}'
    assert history.publications[1].info is None
    assert presence.clients["77aa01"].user == "u9"
    assert presence.clients["c2"].user == ""
    assert (stats.num_clients, stats.num_users) == (2, 1)
    assert rpc.data == b'{"echo":[1,2]}'
    assert (denied.value.code, denied.value.message, denied.value.temporary) == (
        103,
        "permission denied",
        False,
    )
    assert missing.value.code == 104
    await asyncio.sleep(0)
