"""Parsing of client frames (syncline.core.protocol), grouped by centrifuge-protocol.md section."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from centrifuge import Client
from centrifuge.codecs import _JsonCodec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncline.core import protocol, wire
from syncline.core.codes import DisconnectCode, ErrorCode
from syncline.core.log import ClientInfo, Publication, StreamPosition
from syncline.core.protocol import (
    PONG,
    Command,
    ConnectCommand,
    HistoryCommand,
    Method,
    Pong,
    PresenceCommand,
    PresenceStatsCommand,
    ProtocolError,
    PublishCommand,
    RefreshCommand,
    RejectedCommand,
    RpcCommand,
    SendCommand,
    SubRefreshCommand,
    SubscribeCommand,
    SubscribeRecovery,
    UnsubscribeCommand,
    parse_command,
    parse_frame,
)


def parse(data: str | bytes | bytearray, max_commands: int = 100) -> list[Command]:
    return parse_frame(data, max_commands=max_commands)


def closes(data: str | bytes, **limits: int) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_frame(data, max_commands=limits.get("max_commands", 100), **limits_size(limits))
    assert info.value.close
    assert info.value.code == DisconnectCode.BAD_REQUEST
    return info.value


def limits_size(limits: dict[str, int]) -> dict[str, int]:
    return {"max_size": limits["max_size"]} if "max_size" in limits else {}


# --- §1.2 frames carry newline-separated JSON objects ---------------------------------------

DOC_JS_FIRST_FRAME = (
    '{"connect":{"name":"js-A"},"id":12}\n'
    '{"subscribe":{"channel":"chat","flag":1,"recover":true,"offset":1,"epoch":"ep1"},"id":13}'
)


def test_js_batched_connect_and_subscribe_keep_order() -> None:
    assert parse(DOC_JS_FIRST_FRAME) == [
        ConnectCommand(id=12, name="js-A"),
        SubscribeCommand(id=13, channel="chat", flag=1, recover=True, offset=1, epoch="ep1"),
    ]


def test_many_subscribes_after_connect_keep_frame_order() -> None:
    lines = ['{"connect":{},"id":1}']
    lines += [f'{{"subscribe":{{"channel":"c{i}"}},"id":{i + 2}}}' for i in range(20)]
    commands = parse("\n".join(lines))
    assert [c.id for c in commands if isinstance(c, ConnectCommand | SubscribeCommand)] == list(
        range(1, 22)
    )
    assert [c.channel for c in commands if isinstance(c, SubscribeCommand)] == [
        f"c{i}" for i in range(20)
    ]


@pytest.mark.parametrize(
    "frame",
    [
        '\n{"connect":{},"id":1}\n\n{"publish":{"channel":"c","data":1},"id":2}\n',
        '{"connect":{},"id":1}\r\n{"publish":{"channel":"c","data":1},"id":2}\r\n',
        '  \n{"connect":{},"id":1}\n \t \n{"publish":{"channel":"c","data":1},"id":2}',
    ],
    ids=["blank-lines", "crlf", "whitespace-lines"],
)
def test_blank_lines_and_crlf_are_tolerated(frame: str) -> None:
    assert parse(frame) == [ConnectCommand(id=1), PublishCommand(id=2, channel="c", data=1)]


def test_bytes_and_str_frames_parse_alike() -> None:
    assert parse(DOC_JS_FIRST_FRAME) == parse(DOC_JS_FIRST_FRAME.encode())
    assert parse(bytearray(DOC_JS_FIRST_FRAME.encode())) == parse(DOC_JS_FIRST_FRAME)


def test_empty_frame_has_no_commands() -> None:
    assert parse("") == []
    assert parse(b"\n\n") == []


def test_command_count_limit_closes() -> None:
    frame = "\n".join(['{"id":1,"rpc":{}}'] * 4)
    assert len(parse(frame, max_commands=4)) == 4
    assert "more than 3" in str(closes(frame, max_commands=3))


def test_blank_lines_do_not_count_toward_command_limit() -> None:
    assert len(parse('\n\n\n{"id":1,"rpc":{}}\n\n', max_commands=1)) == 1


def test_frame_size_limit_closes_in_bytes_not_characters() -> None:
    frame = '{"id":1,"rpc":{"data":"' + "é" * 30 + '"}}'
    size = len(frame.encode())
    assert parse_frame(frame, max_commands=1, max_size=size)
    closes(frame, max_size=size - 1)
    closes(frame.encode(), max_size=size - 1)


def test_default_frame_size_is_go_websocket_read_limit() -> None:
    closes("{}" + " " * protocol.MAX_FRAME_SIZE)


@pytest.mark.parametrize(
    "frame",
    [
        b"{",
        b'{"id":1,"rpc":{}',
        b"{'id': 1}",
        b'{"id":1,"rpc":{}} trailing',
        b"\xff\xfe{}",
        b'{"id":1,"rpc":{"data":"\xc3\x28"}}',
        b'{"id":1,"rpc":{"data":NaN}}',
        b'{"id":1,"rpc":{"data":"\\ud800"}}',
    ],
    ids=[
        "open",
        "unclosed",
        "single-quotes",
        "trailing",
        "bad-utf8",
        "bad-utf8-in-str",
        "nan",
        "lone-surrogate",
    ],
)
def test_invalid_json_closes_with_bad_request(frame: bytes) -> None:
    closes(frame)


@pytest.mark.parametrize("line", ["[]", "1", '"connect"', "null", "true", '[{"id":1}]'])
def test_non_object_line_closes(line: str) -> None:
    closes(line)


def test_invalid_line_rejects_whole_frame() -> None:
    closes('{"connect":{},"id":1}\n{"subscribe":{"channel":7},"id":2}')


# --- §1.3 command, pong, send ------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    ["{}", '{"id":0}', '{"id":null}', '{"unknown":1}', '{"send":null}', '{"subscribe":{}}'],
)
def test_object_without_id_and_send_is_pong(line: str) -> None:
    assert parse(line) == [PONG]


@pytest.mark.parametrize(
    ("line", "data"),
    [
        ('{"send":{"data":{"x":1}}}', {"x": 1}),
        ('{"send":{}}', None),
        ('{"send":{"data":"hi"},"id":7}', "hi"),
    ],
)
def test_send_is_a_command_without_reply_whatever_its_id(line: str, data: Any) -> None:
    assert parse(line) == [SendCommand(data=data)]


@pytest.mark.parametrize(
    "line",
    ['{"id":1}', '{"id":1,"foo":{}}', '{"id":1,"ping":{}}', '{"id":1,"connect":null}'],
    ids=["no-method", "unknown-method", "ping", "null-method"],
)
def test_id_without_known_method_closes(line: str) -> None:
    assert closes(line).command_id == 1


def test_two_method_keys_close() -> None:
    closes('{"id":1,"publish":{"channel":"c","data":1},"rpc":{}}')
    closes('{"send":{},"rpc":{}}')


@pytest.mark.parametrize("value", ["-1", "1.0", "true", '"1"', "4294967296", "1e3", "[1]"])
def test_id_must_be_uint32(value: str) -> None:
    closes(f'{{"id":{value},"rpc":{{}}}}')


def test_largest_uint32_id_is_echoed() -> None:
    assert parse('{"id":4294967295,"rpc":{}}') == [RpcCommand(id=4294967295)]


def test_key_order_does_not_matter() -> None:
    js = '{"publish":{"data":{"x":1},"channel":"c"},"id":14}'
    py = '{"id": 14, "publish": {"channel": "c", "data": {"x": 1}}}'
    assert parse(js) == parse(py) == [PublishCommand(id=14, channel="c", data={"x": 1})]


def test_method_params_must_be_an_object() -> None:
    assert closes('{"id":3,"subscribe":"chat"}').method == "subscribe"
    closes('{"send":[1]}')


# --- §2 commands, table-driven -------------------------------------------------------------

VALID_COMMANDS: list[tuple[str, Command]] = [
    # §2.1 connect: JS leaves offset/epoch out of subs when zero, PY always sends them.
    ('{"id":1,"connect":{}}', ConnectCommand(id=1)),
    (
        '{"id":1,"connect":{"token":"t","data":{"a":[1]},"name":"python","version":"1.2",'
        '"subs":{"news":{"recover":true,"offset":12,"epoch":"E"},"js":{"recover":true}},'
        '"headers":{"x":"y"},"flag":1}}',
        ConnectCommand(
            id=1,
            token="t",
            data={"a": [1]},
            name="python",
            version="1.2",
            subs={
                "news": SubscribeRecovery(recover=True, offset=12, epoch="E"),
                "js": SubscribeRecovery(recover=True),
            },
        ),
    ),
    # §2.2 subscribe, with every field the SDKs send, including the ignored ones.
    (
        '{"subscribe":{"channel":"c","token":"st","data":null,"positioned":true,'
        '"recoverable":true,"join_leave":true,"recover":true,"offset":9,"epoch":"",'
        '"delta":"fossil","flag":3,"tf":{"op":1},"type":4},"id":2}',
        SubscribeCommand(
            id=2,
            channel="c",
            token="st",
            positioned=True,
            recoverable=True,
            join_leave=True,
            recover=True,
            offset=9,
            flag=3,
            delta="fossil",
        ),
    ),
    ('{"unsubscribe":{"channel":"c"},"id":3}', UnsubscribeCommand(id=3, channel="c")),
    (
        '{"publish":{"channel":"c","data":null},"id":4}',
        PublishCommand(id=4, channel="c", data=None),
    ),
    ('{"presence":{"channel":"c"},"id":5}', PresenceCommand(id=5, channel="c")),
    ('{"presence_stats":{"channel":"c"},"id":6}', PresenceStatsCommand(id=6, channel="c")),
    # §2.7 history: JS sends limit only if given, PY always sends limit and reverse.
    ('{"history":{"channel":"c"},"id":7}', HistoryCommand(id=7, channel="c")),
    (
        '{"id":7,"history":{"channel":"c","limit":0,"reverse":false,'
        '"since":{"offset":3,"epoch":"E"}}}',
        HistoryCommand(id=7, channel="c", since=StreamPosition(3, "E")),
    ),
    (
        '{"history":{"channel":"c","limit":-1,"since":{"offset":3},"reverse":true},"id":7}',
        HistoryCommand(id=7, channel="c", limit=-1, since=StreamPosition(3, ""), reverse=True),
    ),
    ('{"rpc":{"method":"m","data":[1,2]},"id":8}', RpcCommand(id=8, method="m", data=[1, 2])),
    ('{"rpc":{},"id":8}', RpcCommand(id=8)),
    ('{"refresh":{"token":"new"},"id":9}', RefreshCommand(id=9, token="new")),
    (
        '{"sub_refresh":{"channel":"c","token":"new","type":1},"id":10}',
        SubRefreshCommand(id=10, channel="c", token="new"),
    ),
]


@pytest.mark.parametrize(("line", "expected"), VALID_COMMANDS)
def test_command_fields_are_parsed(line: str, expected: Command) -> None:
    assert parse(line) == [expected]


def test_every_method_has_a_parser() -> None:
    parsed = {
        cmd.METHOD for _, cmd in VALID_COMMANDS if not isinstance(cmd, Pong | RejectedCommand)
    }
    assert parsed | {Method.SEND} == set(Method)


def test_js_omitted_recovery_fields_mean_zero() -> None:
    (cmd,) = parse('{"subscribe":{"channel":"c","flag":1},"id":2}')
    assert isinstance(cmd, SubscribeCommand)
    assert (cmd.recover, cmd.offset, cmd.epoch) == (False, 0, "")


def test_flag_bit_two_asks_to_reject_unrecovered() -> None:
    (plain, reject) = parse(
        '{"subscribe":{"channel":"a","flag":1},"id":1}\n{"subscribe":{"channel":"b","flag":3},"id":2}'
    )
    assert isinstance(plain, SubscribeCommand) and isinstance(reject, SubscribeCommand)
    assert not plain.reject_unrecovered
    assert reject.reject_unrecovered


def test_subscribe_delta_is_the_asked_type() -> None:
    (asked, plain) = parse(
        '{"subscribe":{"channel":"a","flag":1,"delta":"fossil"},"id":1}\n'
        '{"subscribe":{"channel":"b","flag":1},"id":2}'
    )
    assert isinstance(asked, SubscribeCommand) and isinstance(plain, SubscribeCommand)
    assert (asked.delta, plain.delta) == ("fossil", "")


@pytest.mark.parametrize("delta", ['"xdelta"', '"FOSSIL"', "1", "true"])
def test_an_unknown_delta_type_closes_like_go(delta: str) -> None:
    # Go: "unknown delta type in subscribe request" -> disconnect bad request (3501).
    error = closes('{"subscribe":{"channel":"a","delta":' + delta + '},"id":1}')
    assert error.code == DisconnectCode.BAD_REQUEST


def test_null_fields_count_as_absent() -> None:
    line = (
        '{"id":2,"subscribe":{"channel":"c","token":null,"recover":null,"offset":null,'
        '"epoch":null,"flag":null,"positioned":null}}'
    )
    assert parse(line) == [SubscribeCommand(id=2, channel="c")]


@pytest.mark.parametrize("offset", [0, 1, 2**53 - 1])
def test_offsets_up_to_js_safe_integers_are_accepted(offset: int) -> None:
    (cmd,) = parse(f'{{"subscribe":{{"channel":"c","offset":{offset}}},"id":1}}')
    assert isinstance(cmd, SubscribeCommand) and cmd.offset == offset


INVALID_FIELDS = [
    ('{"connect":{"token":5},"id":1}', "connect"),
    ('{"connect":{"name":["js"]},"id":1}', "connect"),
    ('{"connect":{"subs":[]},"id":1}', "connect"),
    ('{"connect":{"subs":{"c":1}},"id":1}', "connect"),
    ('{"connect":{"subs":{"c":{"offset":-1}}},"id":1}', "connect"),
    ('{"subscribe":{"channel":7},"id":1}', "subscribe"),
    ('{"subscribe":{"channel":"c","offset":-1},"id":1}', "subscribe"),
    ('{"subscribe":{"channel":"c","offset":9007199254740992},"id":1}', "subscribe"),
    ('{"subscribe":{"channel":"c","offset":1.5},"id":1}', "subscribe"),
    ('{"subscribe":{"channel":"c","offset":"41"},"id":1}', "subscribe"),
    ('{"subscribe":{"channel":"c","recover":1},"id":1}', "subscribe"),
    ('{"subscribe":{"channel":"c","epoch":5},"id":1}', "subscribe"),
    ('{"subscribe":{"channel":"c","flag":true},"id":1}', "subscribe"),
    ('{"history":{"channel":"c","limit":2147483648},"id":1}', "history"),
    ('{"history":{"channel":"c","limit":"2"},"id":1}', "history"),
    ('{"history":{"channel":"c","since":5},"id":1}', "history"),
    ('{"history":{"channel":"c","since":{"offset":"1"}},"id":1}', "history"),
    ('{"history":{"channel":"c","reverse":"yes"},"id":1}', "history"),
    ('{"rpc":{"method":1},"id":1}', "rpc"),
    ('{"refresh":{"token":1},"id":1}', "refresh"),
]


@pytest.mark.parametrize(("line", "method"), INVALID_FIELDS)
def test_wrong_field_type_closes(line: str, method: str) -> None:
    error = closes(line)
    assert error.method == method
    assert error.command_id == 1


# Go closes with 3501 ("bad request") for these rather than replying.
REQUIRED_FIELDS = [
    '{"subscribe":{},"id":1}',
    '{"subscribe":{"channel":""},"id":1}',
    '{"unsubscribe":{},"id":1}',
    '{"publish":{"channel":"c"},"id":1}',
    '{"publish":{"data":1},"id":1}',
    '{"presence":{"channel":""},"id":1}',
    '{"presence_stats":{},"id":1}',
    '{"history":{},"id":1}',
    '{"refresh":{},"id":1}',
    '{"refresh":{"token":""},"id":1}',
    '{"sub_refresh":{"token":"t"},"id":1}',
]


@pytest.mark.parametrize("line", REQUIRED_FIELDS)
def test_missing_required_field_closes_like_go(line: str) -> None:
    closes(line)


# Go answers these with error 107 and goes on with the connection.
@pytest.mark.parametrize(
    ("line", "method"),
    [
        ('{"history":{"channel":"c","since":{"offset":0},"reverse":true},"id":5}', "history"),
        ('{"sub_refresh":{"channel":"c"},"id":5}', "sub_refresh"),
    ],
)
def test_malformed_request_go_answers_with_107_is_rejected_in_place(line: str, method: str) -> None:
    frame = f'{{"rpc":{{}},"id":4}}\n{line}\n{{"rpc":{{}},"id":6}}'
    before, rejected, after = parse(frame)
    assert isinstance(rejected, RejectedCommand)
    assert rejected == RejectedCommand(
        id=5, method=Method(method), code=ErrorCode.BAD_REQUEST, detail=rejected.detail
    )
    assert (before, after) == (RpcCommand(id=4), RpcCommand(id=6))


def test_parse_command_raises_reply_errors_for_the_caller() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_command({"id": 5, "sub_refresh": {"channel": "c", "token": ""}})
    assert not info.value.close
    assert info.value.code == ErrorCode.BAD_REQUEST
    assert (info.value.command_id, info.value.method) == (5, "sub_refresh")


def test_command_types_name_their_reply_method() -> None:
    assert SubscribeCommand.METHOD == "subscribe"
    assert PresenceStatsCommand.METHOD == "presence_stats"


# --- §9 the constructed conversation, client side ------------------------------------------

DOC_CONVERSATION: list[tuple[str, list[Command]]] = [
    (
        '{"connect":{"token":"eyJhbGciOi...","name":"js"},"id":12}\n'
        '{"subscribe":{"channel":"room:7","flag":1,"recover":true,"offset":41,"epoch":"k3Xa"},"id":13}',
        [
            ConnectCommand(id=12, token="eyJhbGciOi...", name="js"),
            SubscribeCommand(
                id=13, channel="room:7", flag=1, recover=True, offset=41, epoch="k3Xa"
            ),
        ],
    ),
    ("{}", [PONG]),
    (
        '{"publish":{"channel":"admin:log","data":{"x":1}},"id":14}',
        [PublishCommand(id=14, channel="admin:log", data={"x": 1})],
    ),
    (
        '{"history":{"channel":"room:7","limit":2},"id":15}',
        [HistoryCommand(id=15, channel="room:7", limit=2)],
    ),
    (
        '{"subscribe":{"channel":"room:8","flag":1,"recover":true,"offset":5,"epoch":"old1"},"id":16}',
        [SubscribeCommand(id=16, channel="room:8", flag=1, recover=True, offset=5, epoch="old1")],
    ),
    (
        '{"subscribe":{"channel":"room:8","flag":1,"recover":true,"offset":2,"epoch":"n3w2"},"id":17}',
        [SubscribeCommand(id=17, channel="room:8", flag=1, recover=True, offset=2, epoch="n3w2")],
    ),
    ('{"refresh":{"token":"eyJhbGciOi...new"},"id":18}', [RefreshCommand(18, "eyJhbGciOi...new")]),
    (
        '{"connect":{"token":"eyJ...stale","name":"js"},"id":19}',
        [ConnectCommand(id=19, token="eyJ...stale", name="js")],
    ),
]


@pytest.mark.parametrize(("frame", "expected"), DOC_CONVERSATION)
def test_doc_conversation_client_frames(frame: str, expected: list[Command]) -> None:
    assert parse(frame) == expected


# --- cross-check: frames the real centrifuge-python SDK builds -----------------------------


async def test_sdk_connect_and_subscribe_commands_parse() -> None:
    client = Client(
        "ws://localhost/connection/websocket", token="jwt", name="python", data={"a": 1}
    )
    sub = client.new_subscription(
        "room:7", token="st", positioned=True, recoverable=True, join_leave=True, data=[1]
    )
    sub._recover, sub._offset, sub._epoch = True, 41, "k3Xa"
    frame = _JsonCodec.encode_commands(
        [client._construct_connect_command(12), client._construct_subscribe_command(sub, 13)]
    )
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


class FakeServer:
    """Answers the SDK's commands with this codec, in place of a socket."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.received: list[Command] = []

    async def ready(self, timeout: float | None = None) -> None:
        return None

    async def send_commands(self, commands: list[dict[str, Any]]) -> None:
        frame: str = _JsonCodec.encode_commands(commands)
        for command in parse(frame):
            self.received.append(command)
            reply = wire.join_lines([self.answer(command)]).decode()
            for decoded in _JsonCodec.decode_replies(reply):
                await self.client._future_success(decoded["id"], decoded)

    def answer(self, command: Command) -> bytes:
        info = ClientInfo("u1", "c1", conn_info=b'{"name":"Ann"}')
        pubs = [Publication(42, b'{"text":"missed"}', info, 0), Publication(43, b'"live"', None, 0)]
        match command:
            case PublishCommand(id=cid, channel="forbidden"):
                return wire.encode_error(cid, ErrorCode.PERMISSION_DENIED)
            case PublishCommand(id=cid):
                return wire.encode_reply(cid, command.METHOD)
            case HistoryCommand(id=cid):
                result = wire.history_result(pubs, epoch="k3Xa", offset=43)
                return wire.encode_reply(cid, command.METHOD, result)
            case PresenceCommand(id=cid):
                result = wire.presence_result({"c1": info, "c2": ClientInfo("", "c2")})
                return wire.encode_reply(cid, command.METHOD, result)
            case PresenceStatsCommand(id=cid):
                result = wire.presence_stats_result(num_clients=2, num_users=1)
                return wire.encode_reply(cid, command.METHOD, result)
            case RpcCommand(id=cid, method="missing"):
                return wire.encode_error(cid, ErrorCode.METHOD_NOT_FOUND)
            case RpcCommand(id=cid, data=data):
                return wire.encode_reply(cid, command.METHOD, wire.rpc_result({"echo": data}))
        raise AssertionError(command)


@pytest.fixture
async def sdk() -> Any:
    client = Client("ws://localhost/connection/websocket")
    server = FakeServer(client)
    client.ready = server.ready
    client._send_commands = server.send_commands
    client.server = server
    return client


async def test_sdk_public_calls_round_trip_through_the_codec(sdk: Any) -> None:
    from centrifuge import ReplyError
    from centrifuge import StreamPosition as SdkPosition

    await sdk.publish("chat", {"x": 1})
    history = await sdk.history("room:7", limit=2, since=SdkPosition(offset=41, epoch="k3Xa"))
    presence = await sdk.presence("room:7")
    stats = await sdk.presence_stats("room:7")
    rpc = await sdk.rpc("echo", [1, 2])
    with pytest.raises(ReplyError) as denied:
        await sdk.publish("forbidden", 1)
    with pytest.raises(ReplyError) as missing:
        await sdk.rpc("missing", None)

    assert sdk.server.received == [
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
        (42, {"text": "missed"}),
        (43, "live"),
    ]
    assert history.publications[0].info.conn_info == {"name": "Ann"}
    assert history.publications[1].info is None
    assert presence.clients["c1"].user == "u1"
    assert presence.clients["c2"].user == ""
    assert (stats.num_clients, stats.num_users) == (2, 1)
    assert rpc.data == {"echo": [1, 2]}
    assert (denied.value.code, denied.value.message, denied.value.temporary) == (
        103,
        "permission denied",
        False,
    )
    assert missing.value.code == 104
    await asyncio.sleep(0)


# --- fuzz: only ProtocolError may escape ---------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "channel", "token", "data", "name", "version", "subs", "recover", "offset", "epoch",
        "positioned", "recoverable", "join_leave", "flag", "limit", "since", "reverse", "method",
    ]
)  # fmt: skip
method_names = st.sampled_from([*Method, "ping", "foo"]).map(str)
# Mostly the right types, so that the fuzzer also gets past the first field checked.
field_values = st.one_of(
    st.text(max_size=4),
    st.booleans(),
    st.integers(min_value=-3, max_value=3),
    st.sampled_from([2**31, 2**53, 2**63, 2**64, 2**70, -(2**63) - 1]),
    st.dictionaries(field_names, st.integers(-1, 3) | st.text(max_size=2), max_size=2),
    st.dictionaries(
        st.text(max_size=2),
        st.dictionaries(field_names, st.integers(-1, 3), max_size=3),
        max_size=2,
    ),
    st.none(),
)
valid_ids = st.integers(min_value=1, max_value=2**32 - 1)
params = st.dictionaries(field_names, field_values, max_size=6)
command_like = st.builds(
    lambda command_id, method, params, extra: {"id": command_id, method: params, **extra},
    st.booleans().flatmap(
        lambda odd: st.none() | st.integers(-2, 2**33) | json_values if odd else valid_ids
    ),
    method_names,
    st.booleans().flatmap(lambda odd: json_values if odd else params),
    st.booleans().flatmap(
        lambda odd: st.dictionaries(method_names, json_values, max_size=1) if odd else st.just({})
    ),
)


def assert_only_protocol_errors(data: str | bytes) -> None:
    error: ProtocolError | None = None
    try:
        commands = parse_frame(data, max_commands=8, max_size=4096)
    except ProtocolError as exc:
        error, commands = exc, []
    assert error is None or error.close
    assert all(isinstance(cmd, Command) for cmd in commands)


@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    assert_only_protocol_errors(data)


@given(st.text(max_size=300))
def test_fuzz_random_text(data: str) -> None:
    assert_only_protocol_errors(data)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_values, max_size=4))
def test_fuzz_random_json_lines(values: list[Any]) -> None:
    # The stdlib encoder, unlike orjson, writes integers beyond 64 bits and lone surrogates.
    assert_only_protocol_errors("\n".join(json.dumps(v) for v in values))


@settings(max_examples=300)
@given(st.lists(command_like, min_size=1, max_size=4))
def test_fuzz_command_shaped_objects(objects: list[dict[str, Any]]) -> None:
    assert_only_protocol_errors("\n".join(json.dumps(o) for o in objects))


short_text = st.text(max_size=4)
well_typed_params = st.fixed_dictionaries(
    {"channel": st.text(min_size=1, max_size=4), "token": st.text(min_size=1, max_size=4)},
    optional={
        "data": json_values,
        "name": short_text,
        "version": short_text,
        "recover": st.booleans(),
        "offset": st.integers(min_value=0, max_value=2**53 - 1),
        "epoch": short_text,
        "positioned": st.booleans(),
        "recoverable": st.booleans(),
        "join_leave": st.booleans(),
        "flag": st.integers(min_value=0, max_value=3),
        "limit": st.integers(min_value=-1, max_value=1000),
        "reverse": st.booleans(),
        "method": short_text,
        "since": st.fixed_dictionaries(
            {"offset": st.integers(min_value=0, max_value=99)}, optional={"epoch": short_text}
        ),
        "subs": st.dictionaries(
            short_text,
            st.fixed_dictionaries(
                {},
                optional={
                    "recover": st.booleans(),
                    "offset": st.integers(min_value=0, max_value=99),
                    "epoch": short_text,
                },
            ),
            max_size=2,
        ),
        "tf": json_values,
        "delta": st.sampled_from(["", "fossil"]),
    },
)


@given(
    st.sampled_from(list(Method)),
    st.integers(min_value=1, max_value=2**32 - 1),
    well_typed_params,
)
def test_fuzz_well_typed_commands_never_close(
    method: Method, command_id: int, params: dict[str, Any]
) -> None:
    if method is Method.PUBLISH:
        params.setdefault("data", None)
    (command,) = parse(json.dumps({method.value: params, "id": command_id}))
    if isinstance(command, RejectedCommand):
        assert method is Method.HISTORY and params["reverse"] and params["since"]["offset"] == 0
        return
    assert not isinstance(command, Pong)
    assert command.METHOD is method
    assert isinstance(command, SendCommand) or getattr(command, "id", None) == command_id


def test_connect_sub_without_position_means_no_recovery() -> None:
    (cmd,) = parse('{"connect":{"subs":{"news":null,"chat":{}}},"id":1}')
    assert isinstance(cmd, ConnectCommand)
    assert cmd.subs == {"news": SubscribeRecovery(), "chat": SubscribeRecovery()}
