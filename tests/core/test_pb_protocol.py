"""Parsing of Protobuf client frames (syncline.core.pb_protocol): same commands as JSON."""

from __future__ import annotations

import base64
import tracemalloc
from typing import Any

import orjson
import pytest
from centrifuge import Client
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from syncline.core import pb_protocol, protocol
from syncline.core.codes import DisconnectCode, ErrorCode
from syncline.core.log import MAX_OFFSET
from syncline.core.pb_protocol import parse_frame, read_varint
from syncline.core.pb_wire import varint
from syncline.core.proto import client_pb2 as pb
from syncline.core.protocol import (
    PONG,
    Command,
    ConnectCommand,
    Method,
    ProtocolError,
    RejectedCommand,
    SubscribeCommand,
)


def parse(data: bytes, max_commands: int = 100, max_size: int = 65536) -> list[Command]:
    return parse_frame(data, max_commands=max_commands, max_size=max_size)


def closes(data: bytes, **limits: int) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse(data, **limits)
    assert info.value.close
    assert info.value.code == DisconnectCode.BAD_REQUEST
    return info.value


def delimited(*messages: bytes) -> bytes:
    return b"".join(varint(len(m)) + m for m in messages)


def b64_data(command: dict[str, Any]) -> dict[str, Any]:
    """A JSON-format command as the SDK's ParseDict takes it: payloads as base64 JSON bytes."""
    out: dict[str, Any] = {}
    for key, value in command.items():
        if key == "data":
            out[key] = base64.b64encode(orjson.dumps(value)).decode()
        elif isinstance(value, dict):
            out[key] = b64_data(value)
        else:
            out[key] = value
    return out


def sdk_frame(*commands: dict[str, Any]) -> bytes:
    """A frame of these JSON-format commands as centrifuge-python (use_protobuf=True) builds
    one: ParseDict, then delimited; with Syncline's client.proto, which has newer fields."""
    return delimited(
        *(json_format.ParseDict(b64_data(c), pb.Command()).SerializeToString() for c in commands)
    )


# --- every command parses to what its JSON twin parses to -----------------------------------

JSON_TWINS: list[dict[str, Any]] = [
    {"id": 1, "connect": {}},
    {
        "id": 1,
        "connect": {
            "token": "t",
            "data": {"a": [1]},
            "name": "python",
            "version": "1.2",
            "subs": {"news": {"recover": True, "offset": 12, "epoch": "E"}, "js": {}},
            "headers": {"x": "y"},
            "flag": 1,
        },
    },
    {
        "id": 2,
        "subscribe": {
            "channel": "c",
            "token": "st",
            "data": [1],
            "positioned": True,
            "recoverable": True,
            "join_leave": True,
            "recover": True,
            "offset": 9,
            "epoch": "E",
            "delta": "fossil",
            "flag": 3,
            "type": 4,
        },
    },
    {"id": 3, "unsubscribe": {"channel": "c"}},
    {"id": 4, "publish": {"channel": "c", "data": {"text": "hi"}}},
    {"id": 4, "publish": {"channel": "c", "data": None}},
    {"id": 5, "presence": {"channel": "c"}},
    {"id": 6, "presence_stats": {"channel": "c"}},
    {"id": 7, "history": {"channel": "c"}},
    {"id": 7, "history": {"channel": "c", "limit": -1, "since": {"offset": 3}, "reverse": True}},
    {"id": 7, "history": {"channel": "c", "limit": 10, "since": {"offset": 3, "epoch": "E"}}},
    {"id": 8, "rpc": {"method": "m", "data": [1, 2]}},
    {"id": 8, "rpc": {}},
    {"send": {"data": {"typing": True}}},
    {"id": 5, "send": {}},
    {"id": 9, "refresh": {"token": "new"}},
    {"id": 10, "sub_refresh": {"channel": "c", "token": "new"}},
    {},
    {"ping": {}},
    {"history": {"channel": "c", "reverse": True, "since": {"offset": 0}}, "id": 11},
    {"sub_refresh": {"channel": "c"}, "id": 12},
]


@pytest.mark.parametrize("command", JSON_TWINS, ids=lambda c: orjson.dumps(c).decode()[:60])
def test_command_parses_like_its_json_twin(command: dict[str, Any]) -> None:
    assert parse(sdk_frame(command)) == protocol.parse_frame(
        orjson.dumps(command), max_commands=100
    )


def test_every_method_is_covered() -> None:
    methods = {key for command in JSON_TWINS for key in command} - {"id", "ping"}
    assert methods == set(Method)


def test_null_publish_data_closes_in_both_formats() -> None:
    # JSON null is "absent" and so is empty bytes: Go closes for a publish without data.
    json_frame = b'{"id":4,"publish":{"channel":"c"}}'
    with pytest.raises(ProtocolError):
        protocol.parse_frame(json_frame, max_commands=1)
    closes(delimited(pb.Command(id=4, publish=pb.PublishRequest(channel="c")).SerializeToString()))


def test_go_107_cases_are_rejected_in_place() -> None:
    reverse = pb.Command(
        id=11,
        history=pb.HistoryRequest(channel="c", reverse=True, since=pb.StreamPosition(offset=0)),
    )
    no_token = pb.Command(id=12, sub_refresh=pb.SubRefreshRequest(channel="c"))
    frame = delimited(reverse.SerializeToString(), no_token.SerializeToString())
    bad = ErrorCode.BAD_REQUEST
    assert parse(frame) == [
        RejectedCommand(11, Method.HISTORY, bad, "history: reverse with since offset 0"),
        RejectedCommand(12, Method.SUB_REFRESH, bad, "sub_refresh: token required"),
    ]


# --- frames: varint-delimited commands, as the SDKs write them ------------------------------


async def test_sdk_connect_and_subscribe_in_one_frame_keep_order() -> None:
    client = Client(
        "ws://localhost/connection/websocket",
        token="jwt",
        name="python",
        data=b'{"a":1}',
        use_protobuf=True,
    )
    # With Protobuf the SDK takes payloads as bytes: Syncline's are JSON.
    sub = client.new_subscription(
        "room:7", token="st", positioned=True, recoverable=True, join_leave=True, data=b"[1]"
    )
    sub._recover, sub._offset, sub._epoch = True, 41, "k3Xa"
    connect = client._construct_connect_command(12)
    subscribe = client._construct_subscribe_command(sub, 13)
    frame = client._codec.encode_commands([connect, subscribe])
    assert parse(frame) == [
        ConnectCommand(id=12, token="jwt", data={"a": 1}, name="python"),
        SubscribeCommand(
            id=13,
            channel="room:7",
            token="st",
            data=[1],
            recover=True,
            offset=41,
            epoch="k3Xa",
            positioned=True,
            recoverable=True,
            join_leave=True,
            flag=1,
        ),
    ]


def test_many_commands_in_one_frame() -> None:
    commands = [{"id": i, "presence": {"channel": f"c{i}"}} for i in range(1, 101)]
    parsed = parse(sdk_frame(*commands))
    assert [c.channel for c in parsed if isinstance(c, protocol.PresenceCommand)] == [
        f"c{i}" for i in range(1, 101)
    ]


def test_empty_frame_has_no_commands_and_empty_message_is_a_pong() -> None:
    assert parse(b"") == []
    assert parse(b"\x00") == [PONG]
    assert parse(b"\x00\x00") == [PONG, PONG]


def test_commands_of_a_frame_may_come_from_a_memoryview_or_bytearray() -> None:
    frame = sdk_frame({"id": 3, "unsubscribe": {"channel": "c"}})
    assert parse(frame) == parse_frame(bytearray(frame), max_commands=1)
    assert parse(frame) == parse_frame(memoryview(frame), max_commands=1)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"),
     (2**64 - 1, b"\xff" * 9 + b"\x01")],
)  # fmt: skip
def test_varints_read_and_write(value: int, encoded: bytes) -> None:
    assert varint(value) == encoded
    assert read_varint(encoded + b"rest", 0) == (value, len(encoded))


# --- limits and malformed input: always ProtocolError, close 3501 --------------------------


def test_command_count_limit_closes() -> None:
    frame = sdk_frame(*[{"id": i, "presence": {"channel": "c"}} for i in range(1, 4)])
    assert len(parse(frame, max_commands=3)) == 3
    assert "more than 2 commands" in closes(frame, max_commands=2).detail


def test_frame_size_limit_closes_before_parsing() -> None:
    frame = sdk_frame({"id": 1, "rpc": {"data": "x" * 100}})
    assert parse(frame, max_size=len(frame))
    assert "larger than" in closes(frame, max_size=len(frame) - 1).detail


def test_a_declared_length_past_the_frame_allocates_nothing() -> None:
    # A 9-byte frame that claims a 2**62-byte command: refused from the prefix alone.
    frame = varint(2**62) + b"\x08"
    tracemalloc.start()
    try:
        error = closes(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "runs past the end" in error.detail
    assert peak < 64 * 1024


@pytest.mark.parametrize(
    ("frame", "detail"),
    [
        (b"\x80", "truncated varint"),
        (b"\x00\x80", "truncated varint"),
        (b"\xff" * 11, "longer than 10 bytes"),
        (b"\x05\x08\x01", "runs past the end"),
        # A length-delimited field (subscribe) whose length runs past the command.
        (b"\x03\x2a\x09\x0a", "invalid Protobuf"),
        # Field number 0 is never valid.
        (b"\x02\x00\x01", "invalid Protobuf"),
        # Wire type 7 does not exist.
        (b"\x02\x0f\x01", "invalid Protobuf"),
        # A string (subscribe.channel) that is not UTF-8.
        (b"\x05\x2a\x03\x0a\x01\xff", "invalid Protobuf"),
    ],
)
def test_malformed_frames_close(frame: bytes, detail: str) -> None:
    assert detail in closes(frame).detail


def command_with(field_bytes: bytes, sub_field: int | None = None) -> bytes:
    """A command with id 1 and raw bytes as field ``sub_field`` (a request) or at top level."""
    if sub_field is None:
        return delimited(b"\x08\x01" + field_bytes)
    return delimited(
        b"\x08\x01" + varint(sub_field << 3 | 2) + varint(len(field_bytes)) + field_bytes
    )


@pytest.mark.parametrize(
    ("frame", "names"),
    [
        # Command.id as a length-delimited field.
        (delimited(b"\x0a\x01x" + b"\x2a\x03\x0a\x01c"), "Command.id"),
        # Command.subscribe as a varint.
        (command_with(b"\x28\x01"), "Command.subscribe"),
        # SubscribeRequest.channel as a varint.
        (command_with(b"\x08\x07", sub_field=5), "SubscribeRequest.channel"),
        # SubscribeRequest.offset (uint64) as a length-delimited field.
        (command_with(b"\x0a\x01c\x3a\x01\x01", sub_field=5), "SubscribeRequest.offset"),
        # HistoryRequest.since.offset as a 64-bit field.
        (
            command_with(b"\x0a\x01c\x42\x09\x09" + b"\x00" * 8, sub_field=10),
            "StreamPosition.offset",
        ),
        # ConnectRequest.subs["c"].recover as a 32-bit field.
        (
            command_with(b"\x1a\x0c\x0a\x01c\x12\x07\x1d\x01\x00\x00\x00\x38\x01", sub_field=4),
            "SubscribeRequest.recover",
        ),
    ],
)
def test_wrong_wire_type_of_a_known_field_closes(frame: bytes, names: str) -> None:
    assert names in closes(frame).detail


def test_unknown_fields_are_ignored() -> None:
    # Field 99 (varint) in the command, field 50 (bytes) in the subscribe request, and the
    # reserved numbers, as a newer SDK might send them.
    request = b"\x0a\x01c" + varint(50 << 3 | 2) + b"\x02ab" + b"\x20\x01"
    frame = delimited(
        b"\x08\x01"
        + b"\x2a"
        + varint(len(request))
        + request
        + varint(99 << 3)
        + b"\x01"
        + b"\x10\x05"
    )
    assert parse(frame) == [SubscribeCommand(id=1, channel="c")]  # fmt: skip


@pytest.mark.parametrize(
    ("command", "detail"),
    [
        (pb.Command(id=1, rpc=pb.RPCRequest(method="m"), send=pb.SendRequest()), "two methods"),
        (pb.Command(id=1), "no known method"),
        (pb.Command(id=1, ping=pb.PingRequest()), "no known method"),
        (pb.Command(id=1, subscribe=pb.SubscribeRequest()), "channel required"),
        (pb.Command(id=1, refresh=pb.RefreshRequest()), "token required"),
        (pb.Command(id=1, rpc=pb.RPCRequest(data=b"{not json")), "data must be JSON"),
        (pb.Command(send=pb.SendRequest(data=b"\xff")), "data must be JSON"),
        (
            pb.Command(id=1, subscribe=pb.SubscribeRequest(channel="c", offset=MAX_OFFSET + 1)),
            "offset must be at most",
        ),
        (
            pb.Command(
                id=1, connect=pb.ConnectRequest(subs={"c": pb.SubscribeRequest(offset=2**63)})
            ),
            "offset must be at most",
        ),
    ],
)
def test_commands_go_closes_for_close(command: pb.Command, detail: str) -> None:
    assert detail in closes(delimited(command.SerializeToString())).detail


def test_a_bad_command_rejects_the_whole_frame() -> None:
    good = pb.Command(id=1, presence=pb.PresenceRequest(channel="c")).SerializeToString()
    closes(delimited(good, pb.Command(id=2).SerializeToString()))


def test_largest_offset_and_id_are_accepted() -> None:
    command = pb.Command(
        id=2**32 - 1, subscribe=pb.SubscribeRequest(channel="c", offset=MAX_OFFSET)
    )
    assert parse(delimited(command.SerializeToString())) == [
        SubscribeCommand(id=2**32 - 1, channel="c", offset=MAX_OFFSET)
    ]


# --- fuzz: only ProtocolError may escape ---------------------------------------------------


def assert_only_protocol_errors(data: bytes) -> None:
    error: ProtocolError | None = None
    try:
        commands = parse(data, max_commands=8, max_size=4096)
    except ProtocolError as exc:
        error, commands = exc, []
    assert error is None or error.close
    assert all(isinstance(cmd, Command) for cmd in commands)


@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    assert_only_protocol_errors(data)


@given(st.lists(st.binary(max_size=40), max_size=4))
def test_fuzz_random_delimited_messages(messages: list[bytes]) -> None:
    assert_only_protocol_errors(delimited(*messages))


uint64s = st.integers(0, 2**64 - 1)
names = st.text(max_size=3)
requests = st.one_of(
    st.builds(
        pb.SubscribeRequest,
        channel=names,
        offset=uint64s,
        epoch=names,
        recover=st.booleans(),
        flag=st.integers(-(2**63), 2**63 - 1),
        data=st.sampled_from([b"", b"1", b"{", b'{"a":1}']),
    ),
    st.builds(
        pb.HistoryRequest,
        channel=names,
        limit=st.integers(-(2**31), 2**31 - 1),
        reverse=st.booleans(),
        since=st.none() | st.builds(pb.StreamPosition, offset=uint64s),
    ),
    st.builds(pb.PublishRequest, channel=names, data=st.binary(max_size=4)),
    st.builds(pb.SubRefreshRequest, channel=names, token=names),
)
_REQUEST_FIELDS = {
    pb.SubscribeRequest: "subscribe",
    pb.HistoryRequest: "history",
    pb.PublishRequest: "publish",
    pb.SubRefreshRequest: "sub_refresh",
}


@settings(max_examples=300)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), requests), max_size=4))
def test_fuzz_well_formed_commands_parse_or_close(commands: list[tuple[int, Any]]) -> None:
    frame = delimited(
        *(
            pb.Command(id=command_id, **{_REQUEST_FIELDS[type(req)]: req}).SerializeToString()
            for command_id, req in commands
        )
    )
    assert_only_protocol_errors(frame)


def test_module_parses_with_the_json_parsers_method_set() -> None:
    assert set(pb_protocol._PARSERS) == set(protocol._PARSERS)
