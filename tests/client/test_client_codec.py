"""The client codec without any I/O: command lines out, frames in."""

from __future__ import annotations

import orjson
import pytest

from syncline.client import codec
from syncline.client.codec import (
    PING,
    ClientInfo,
    CodecError,
    DisconnectPush,
    ErrorInfo,
    JoinPush,
    LeavePush,
    MessagePush,
    OtherPush,
    Publication,
    PubPush,
    Reply,
    SubscribePush,
    UnsubscribePush,
)


def test_commands_are_single_lines_with_id_and_method() -> None:
    line = codec.connect_command(7, token="t", name="py", subs={"user:1": (4, "E")})
    assert b"\n" not in line
    assert orjson.loads(line) == {
        "id": 7,
        "connect": {
            "token": "t",
            "name": "py",
            "subs": {"user:1": {"recover": True, "offset": 4, "epoch": "E"}},
        },
    }
    assert orjson.loads(codec.connect_command(1)) == {"id": 1, "connect": {}}


def test_subscribe_carries_recovery_only_when_recovering() -> None:
    first = orjson.loads(codec.subscribe_command(2, "orders", recoverable=True))
    assert first == {"id": 2, "subscribe": {"channel": "orders", "recoverable": True}}
    again = orjson.loads(
        codec.subscribe_command(3, "orders", recover=True, offset=0, epoch="", join_leave=True)
    )
    assert again["subscribe"] == {
        "channel": "orders",
        "join_leave": True,
        "recover": True,
        "offset": 0,
        "epoch": "",
    }


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (codec.unsubscribe_command(1, "c"), {"id": 1, "unsubscribe": {"channel": "c"}}),
        (
            codec.publish_command(1, "c", {"a": [1]}),
            {"id": 1, "publish": {"channel": "c", "data": {"a": [1]}}},
        ),
        (codec.presence_command(1, "c"), {"id": 1, "presence": {"channel": "c"}}),
        (codec.presence_stats_command(1, "c"), {"id": 1, "presence_stats": {"channel": "c"}}),
        (codec.history_command(1, "c"), {"id": 1, "history": {"channel": "c"}}),
        (
            codec.history_command(1, "c", limit=-1, since=(3, "E"), reverse=True),
            {
                "id": 1,
                "history": {
                    "channel": "c",
                    "limit": -1,
                    "since": {"offset": 3, "epoch": "E"},
                    "reverse": True,
                },
            },
        ),
        (codec.rpc_command(1, "m", 5), {"id": 1, "rpc": {"method": "m", "data": 5}}),
        (codec.rpc_command(1, "m"), {"id": 1, "rpc": {"method": "m"}}),
        (codec.refresh_command(1, "tok"), {"id": 1, "refresh": {"token": "tok"}}),
        (
            codec.sub_refresh_command(1, "c", "tok"),
            {"id": 1, "sub_refresh": {"channel": "c", "token": "tok"}},
        ),
    ],
)
def test_command_shapes(line: bytes, expected: object) -> None:
    assert orjson.loads(line) == expected


def test_command_ids_are_positive_uint32() -> None:
    with pytest.raises(ValueError, match="uint32"):
        codec.rpc_command(0, "m")
    with pytest.raises(ValueError, match="uint32"):
        codec.rpc_command(2**32, "m")
    assert codec.PONG == b"{}"


def test_a_frame_with_several_lines_decodes_in_order() -> None:
    frame = (
        b'{"id":1,"connect":{"client":"c1","ping":25,"pong":true}}\n'
        b'{"push":{"channel":"orders","pub":{"data":{"x":1},"offset":4}}}\n'
        b"{}\n"
        b'{"id":2,"publish":{}}'
    )
    first, pub, ping, published = codec.decode_frame(frame)
    assert isinstance(first, Reply)
    assert (first.id, first.method, first.error) == (1, "connect", None)
    result = codec.connect_result(first.result)
    assert (result.client, result.ping, result.pong, result.expires) == ("c1", 25, True, False)
    assert pub == PubPush("orders", Publication(4, {"x": 1}))
    assert ping is PING
    assert published == Reply(2, "publish", {})
    # str frames work too, and blank lines are skipped as centrifuge-js does.
    assert codec.decode_frame('{}\n\n{"id":3,"rpc":{"data":1}}\n') == [
        PING,
        Reply(3, "rpc", {"data": 1}),
    ]


def test_errors_with_and_without_temporary() -> None:
    [plain, temp] = codec.decode_frame(
        b'{"id":5,"error":{"code":103,"message":"permission denied"}}\n'
        b'{"error":{"code":100,"message":"internal server error","temporary":true},"id":6}'
    )
    assert plain == Reply(5, error=ErrorInfo(103, "permission denied", False))
    assert temp == Reply(6, error=ErrorInfo(100, "internal server error", True))
    [no_message] = codec.decode_frame(b'{"id":7,"error":{"code":400}}')
    assert no_message == Reply(7, error=ErrorInfo(400, "", False))


def test_every_push_kind() -> None:
    info = {"user": "u1", "client": "c1", "conn_info": {"n": 1}}
    lines = [
        {"push": {"channel": "a", "pub": {"data": "d", "info": info, "tags": {"k": "v"}}}},
        {"push": {"channel": "a", "join": {"info": info}}},
        {"push": {"channel": "a", "leave": {"info": {"user": "", "client": "c2"}}}},
        {"push": {"channel": "a", "unsubscribe": {"code": 2500, "reason": "insufficient state"}}},
        {"push": {"disconnect": {"code": 3001, "reason": "shutdown"}}},
        {
            "push": {
                "channel": "user:1",
                "subscribe": {"recoverable": True, "epoch": "E", "offset": 2},
            }
        },
        {"push": {"message": {"data": [1, 2]}}},
        {"push": {"channel": "a", "refresh": {"expires": True, "ttl": 5}}},
    ]
    frame = b"\n".join(orjson.dumps(line) for line in lines)
    decoded = codec.decode_frame(frame)
    who = ClientInfo("u1", "c1", {"n": 1})
    assert decoded[0] == PubPush("a", Publication(0, "d", who, {"k": "v"}))
    assert decoded[1] == JoinPush("a", who)
    assert decoded[2] == LeavePush("a", ClientInfo("", "c2"))
    assert decoded[3] == UnsubscribePush("a", 2500, "insufficient state")
    assert decoded[4] == DisconnectPush(3001, "shutdown")
    assert isinstance(decoded[5], SubscribePush)
    assert decoded[5].channel == "user:1"
    assert (decoded[5].result.recoverable, decoded[5].result.epoch) == (True, "E")
    assert decoded[5].result.offset == 2
    assert decoded[6] == MessagePush([1, 2])
    assert decoded[7] == OtherPush("a", "refresh")


def test_results_decode_into_typed_values() -> None:
    sub = codec.subscribe_result(
        {
            "recoverable": True,
            "positioned": True,
            "epoch": "E",
            "offset": 1,
            "recovered": True,
            "was_recovering": True,
            "publications": [{"data": 1, "offset": 2}, {"data": 2, "offset": 3}],
        }
    )
    assert [p.offset for p in sub.publications] == [2, 3]
    assert sub.recovered and sub.was_recovering
    history = codec.history_result({"epoch": "E", "offset": 9})
    assert (history.publications, history.epoch, history.offset) == ((), "E", 9)
    presence = codec.presence_result({"presence": {"c1": {"user": "u", "client": "c1"}}})
    assert presence == {"c1": ClientInfo("u", "c1")}
    assert codec.presence_result({}) == {}
    stats = codec.presence_stats_result({"num_clients": 3})
    assert (stats.num_clients, stats.num_users) == (3, 0)
    refreshed = codec.refresh_result({"expires": True, "ttl": 60})
    assert (refreshed.expires, refreshed.ttl) == (True, 60)


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        (b"{not json", "not JSON"),
        (b"[1,2]", "JSON object"),
        (b'{"id":1,"error":{"message":"no code"}}', "without a code"),
        (b'{"id":"1","rpc":{}}', "'id' must be int"),
        (b'{"id":true,"rpc":{}}', "'id' must be int"),
        (b'{"id":1,"rpc":[1]}', "JSON object"),
        (b'{"push":{"channel":"a","pub":{"data":1,"offset":"4"}}}', "'offset' must be int"),
        (b'{"push":{"channel":"a","join":{}}}', "needs info"),
        (b'{"push":{"channel":"a"}}', "without a body"),
        (b'{"push":"pub"}', "JSON object"),
        (b'{"id":1,"connect":{"version":"1"}}\n', None),
    ],
)
def test_malformed_server_data_raises_codec_error(frame: bytes, why: str | None) -> None:
    if why is None:  # well-formed JSON; the result decoder refuses it
        [reply] = codec.decode_frame(frame)
        assert isinstance(reply, Reply)
        with pytest.raises(CodecError, match="client id"):
            codec.connect_result(reply.result)
        return
    with pytest.raises(CodecError, match=why):
        codec.decode_frame(frame)
    assert issubclass(CodecError, ValueError)
