"""Encoding of server output (syncline.core.wire), grouped by centrifuge-protocol.md section."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from centrifuge import Client, SubscriptionEventHandler, SubscriptionState
from centrifuge.codecs import _JsonCodec

from syncline.core import wire
from syncline.core.codes import DisconnectCode, ErrorCode, UnsubscribeCode
from syncline.core.log import ClientInfo, Publication
from syncline.core.wire import (
    PING,
    RawJson,
    connect_result,
    encode_disconnect_push,
    encode_error,
    encode_join_push,
    encode_leave_push,
    encode_message_push,
    encode_pub_push,
    encode_publication,
    encode_push,
    encode_reply,
    encode_subscribe_push,
    encode_unsubscribe_push,
    history_result,
    join_lines,
    presence_result,
    presence_stats_result,
    refresh_result,
    rpc_result,
    sub_refresh_result,
    subscribe_result,
)

U9 = ClientInfo("u9", "77aa01")


def sdk_decode(frame: bytes) -> list[dict[str, Any]]:
    """What centrifuge-python does with a text frame: strip, split on \\n, json.loads each."""
    replies: list[dict[str, Any]] = _JsonCodec.decode_replies(frame.decode())
    return replies


def pub(offset: int, data: bytes, info: ClientInfo | None = None) -> Publication:
    return Publication(offset=offset, data=data, info=info, time_ms=0)


# --- §1.2 output framing --------------------------------------------------------------------


def test_batched_frame_is_objects_joined_by_single_newlines() -> None:
    frame = join_lines([encode_reply(3, "publish"), PING, encode_reply(4, "unsubscribe")])
    assert frame == b'{"id":3,"publish":{}}\n{}\n{"id":4,"unsubscribe":{}}'
    assert sdk_decode(frame) == [{"id": 3, "publish": {}}, {}, {"id": 4, "unsubscribe": {}}]


def test_batch_refuses_an_empty_object_which_would_be_a_blank_line() -> None:
    with pytest.raises(ValueError, match="empty"):
        join_lines([PING, b""])


def test_newlines_in_data_are_escaped_not_raw() -> None:
    frame = encode_reply(1, "rpc", rpc_result({"text": "a\nb", "k\n": ["\r\n"]}))
    assert b"\n" not in frame
    assert sdk_decode(frame)[0]["rpc"]["data"] == {"text": "a\nb", "k\n": ["\r\n"]}


def test_raw_json_with_newline_whitespace_is_reencoded_without_it() -> None:
    # PostgreSQL's ``json`` type keeps the text as written, line breaks included.
    raw = b'{\n  "a": [1,\n 2]\n}'
    assert RawJson(raw).json == b'{"a":[1,2]}'
    frame = encode_pub_push("c", raw, 1)
    assert b"\n" not in frame
    assert sdk_decode(frame)[0]["push"]["pub"]["data"] == {"a": [1, 2]}


def test_raw_json_refuses_empty_bytes() -> None:
    with pytest.raises(ValueError, match="empty"):
        RawJson(b"")
    with pytest.raises(ValueError, match="empty"):
        encode_pub_push("c", b"", 1)


def test_raw_json_parse_validates_foreign_text() -> None:
    assert RawJson.parse('{"a": 1}').json == b'{"a":1}'
    with pytest.raises(orjson.JSONDecodeError):
        RawJson.parse("{not json")


def test_output_is_utf8_text() -> None:
    frame = encode_pub_push("ç", orjson.dumps({"t": "é✓"}), 1)
    assert sdk_decode(frame)[0]["push"]["channel"] == "ç"


# --- §1.3 replies and pings ---------------------------------------------------------------


@pytest.mark.parametrize("method", ["publish", "unsubscribe", "rpc", "presence", "history"])
def test_success_reply_always_has_the_result_object(method: str) -> None:
    (reply,) = sdk_decode(encode_reply(7, method))
    assert reply == {"id": 7, method: {}}


def test_reply_echoes_large_ids_unchanged() -> None:
    assert sdk_decode(encode_reply(4294967295, "rpc"))[0]["id"] == 4294967295


@pytest.mark.parametrize("command_id", [0, -1, 2**32, True])
def test_reply_refuses_ids_sdks_would_not_match(command_id: int) -> None:
    with pytest.raises(ValueError, match="id"):
        encode_reply(command_id, "rpc")
    with pytest.raises(ValueError, match="id"):
        encode_error(command_id, ErrorCode.INTERNAL)


@pytest.mark.parametrize("method", ["send", "ping", "pub", "clients"])
def test_reply_refuses_methods_without_replies(method: str) -> None:
    with pytest.raises(ValueError, match="reply"):
        encode_reply(1, method)


def test_ping_is_an_empty_object_the_sdk_treats_as_ping() -> None:
    (ping,) = sdk_decode(PING)
    assert ping.get("id", 0) == 0 and not ping.get("push")


# --- §4.1 error replies -------------------------------------------------------------------


@pytest.mark.parametrize("code", list(ErrorCode))
def test_error_reply_always_has_message(code: ErrorCode) -> None:
    (reply,) = sdk_decode(encode_error(9, code))
    assert reply["id"] == 9
    assert reply["error"]["code"] == code
    assert reply["error"]["message"] == code.message
    assert reply["error"].get("temporary", False) is code.temporary


@pytest.mark.parametrize("code", [ErrorCode.INTERNAL, ErrorCode.TOO_MANY_REQUESTS])
def test_retryable_errors_say_temporary(code: ErrorCode) -> None:
    assert b'"temporary":true' in encode_error(1, code)


def test_error_message_and_temporary_can_be_overridden() -> None:
    reply = sdk_decode(encode_error(1, ErrorCode.PERMISSION_DENIED, "not yours", temporary=True))
    assert reply[0]["error"] == {"code": 103, "message": "not yours", "temporary": True}


def test_app_error_needs_its_own_message() -> None:
    assert sdk_decode(encode_error(1, 404, "order not found"))[0]["error"] == {
        "code": 404,
        "message": "order not found",
    }
    with pytest.raises(ValueError, match="no standard text"):
        encode_error(1, 404)


@pytest.mark.parametrize("code", [0, -5, 2**32, True])
def test_error_code_must_be_positive_uint32(code: int) -> None:
    with pytest.raises(ValueError, match="code"):
        encode_error(1, code, "x")


def test_sdk_raises_reply_error_from_our_error() -> None:
    from centrifuge import ReplyError

    (reply,) = sdk_decode(encode_error(1, ErrorCode.INTERNAL))
    with pytest.raises(ReplyError) as info:
        Client._check_reply_error(reply)
    assert (info.value.code, info.value.message, info.value.temporary) == (
        100,
        "internal server error",
        True,
    )


# --- §1.4 / §2 result builders --------------------------------------------------------------


def test_connect_result_doc_example() -> None:
    result = connect_result("3f0c9a1e", version="syncline/0.1", ping=25, pong=True)
    assert encode_reply(1, "connect", result) == (
        b'{"id":1,"connect":{"client":"3f0c9a1e","version":"syncline/0.1","ping":25,"pong":true}}'
    )


def test_connect_result_omits_zero_values_but_keeps_client() -> None:
    assert connect_result("c1") == {"client": "c1"}


def test_connect_result_requires_client_id() -> None:
    with pytest.raises(ValueError, match="client"):
        connect_result("")


@pytest.mark.parametrize(
    "builder",
    [
        lambda ttl: connect_result("c", expires=True, ttl=ttl),
        lambda ttl: subscribe_result(expires=True, ttl=ttl),
        lambda ttl: refresh_result(expires=True, ttl=ttl),
        lambda ttl: sub_refresh_result(expires=True, ttl=ttl),
    ],
    ids=["connect", "subscribe", "refresh", "sub_refresh"],
)
def test_expires_always_carries_a_ttl_of_at_least_one_second(builder: Any) -> None:
    assert builder(1)["ttl"] == 1 and builder(1)["expires"] is True
    for bad in (0, -1, 1.5, None):
        with pytest.raises(ValueError, match="ttl"):
            builder(bad)


def test_ttl_is_left_out_when_nothing_expires() -> None:
    assert refresh_result(ttl=30) == {}
    assert connect_result("c", ttl=30) == {"client": "c"}


@pytest.mark.parametrize("ping", [1.5, -1, "25"])
def test_ping_must_be_whole_seconds(ping: Any) -> None:
    with pytest.raises(ValueError, match="ping"):
        connect_result("c", ping=ping)


def test_connect_result_carries_server_side_subs_and_data() -> None:
    subs = {"news": subscribe_result(recoverable=True, epoch="E", offset=12)}
    result = connect_result("c", subs=subs, data={"hello": 1})
    assert orjson.loads(encode_reply(1, "connect", result))["connect"] == {
        "client": "c",
        "subs": {"news": {"recoverable": True, "epoch": "E", "offset": 12}},
        "data": {"hello": 1},
    }


def test_subscribe_result_for_plain_channel_is_empty() -> None:
    assert encode_reply(2, "subscribe", subscribe_result()) == b'{"id":2,"subscribe":{}}'


def test_recoverable_subscribe_result_needs_an_epoch() -> None:
    with pytest.raises(ValueError, match="epoch"):
        subscribe_result(recoverable=True, offset=3)
    with pytest.raises(ValueError, match="epoch"):
        subscribe_result(positioned=True)


@pytest.mark.parametrize("offset", [-1, 2**53, 1.0])
def test_offsets_beyond_js_safe_integers_are_refused(offset: Any) -> None:
    with pytest.raises(ValueError, match="offset"):
        subscribe_result(recoverable=True, epoch="E", offset=offset)
    with pytest.raises(ValueError, match="offset"):
        encode_pub_push("c", b"1", offset)


def test_presence_result_key_is_presence_and_info_always_has_user_and_client() -> None:
    result = presence_result(
        {
            "c1": ClientInfo("u1", "c1", conn_info=b'{"name":"Ann"}', chan_info=b"[1]"),
            "c2": ClientInfo("", "c2"),
        }
    )
    assert orjson.loads(encode_reply(5, "presence", result)) == {
        "id": 5,
        "presence": {
            "presence": {
                "c1": {
                    "user": "u1",
                    "client": "c1",
                    "conn_info": {"name": "Ann"},
                    "chan_info": [1],
                },
                "c2": {"user": "", "client": "c2"},
            }
        },
    }


def test_empty_presence_is_an_empty_object_not_null_nor_missing() -> None:
    assert encode_reply(5, "presence", presence_result({})) == (
        b'{"id":5,"presence":{"presence":{}}}'
    )


def test_presence_stats_doc_example() -> None:
    result = presence_stats_result(num_clients=2, num_users=1)
    assert wire.dumps(result) == b'{"num_clients":2,"num_users":1}'


@pytest.mark.parametrize(("clients", "users"), [(-1, 0), (0, 2**32), (True, 0), (1.0, 1)])
def test_presence_stats_counts_are_uint32(clients: Any, users: Any) -> None:
    with pytest.raises(ValueError, match="uint32"):
        presence_stats_result(clients, users)


def test_rpc_result_holds_data_only_when_given() -> None:
    assert rpc_result() == {}
    assert rpc_result(0) == {"data": 0}
    assert wire.dumps(rpc_result(RawJson(b"[1, 2]"))) == b'{"data":[1, 2]}'


# --- §3 pushes ----------------------------------------------------------------------------


def test_pub_push_doc_example_with_tags() -> None:
    push = encode_pub_push("chat", b'{"t":"hi"}', 7, ClientInfo("u1", "c1"), {"k": "v"})
    assert push == (
        b'{"push":{"channel":"chat","pub":{"data":{"t":"hi"},"offset":7,'
        b'"info":{"user":"u1","client":"c1"},"tags":{"k":"v"}}}}'
    )


def test_pub_push_splices_data_bytes_without_reencoding() -> None:
    data = b'{"b": 2,  "a": 1.50}'  # orjson would rewrite spacing, key order is kept anyway
    push = encode_pub_push("c", data, 3)
    assert push == b'{"push":{"channel":"c","pub":{"data":' + data + b',"offset":3}}}'
    assert sdk_decode(push)[0]["push"]["pub"]["data"] == {"b": 2, "a": 1.5}


def test_pub_push_leaves_out_zero_offset_and_missing_info() -> None:
    assert encode_pub_push("c", b"null") == b'{"push":{"channel":"c","pub":{"data":null}}}'


def test_pub_push_escapes_the_channel() -> None:
    (push,) = sdk_decode(encode_pub_push('we"ird\\ch\n', b"1", 1))
    assert push["push"]["channel"] == 'we"ird\\ch\n'


def test_pub_push_accepts_raw_json() -> None:
    assert encode_pub_push("c", RawJson(b"[1]"), 2) == encode_pub_push("c", b"[1]", 2)


def test_join_and_leave_pushes_carry_info() -> None:
    ann = ClientInfo("u2", "c2", conn_info=b'{"name":"Ann"}')
    assert encode_join_push("chat", ann) == (
        b'{"push":{"channel":"chat","join":{"info":'
        b'{"user":"u2","client":"c2","conn_info":{"name":"Ann"}}}}}'
    )
    assert sdk_decode(encode_leave_push("chat", ann))[0]["push"]["leave"]["info"]["user"] == "u2"
    with pytest.raises(ValueError, match="info"):
        encode_push("chat", "join", {})


def test_unsubscribe_push_doc_example() -> None:
    assert encode_unsubscribe_push("chat") == (
        b'{"push":{"channel":"chat","unsubscribe":{"code":2000,"reason":"server unsubscribe"}}}'
    )


@pytest.mark.parametrize("code", [c for c in UnsubscribeCode if c.sendable])
def test_unsubscribe_push_always_has_code_and_reason(code: UnsubscribeCode) -> None:
    body = sdk_decode(encode_unsubscribe_push("c", code))[0]["push"]["unsubscribe"]
    assert body == {"code": int(code), "reason": code.reason}


def test_unsubscribe_push_refuses_internal_codes_and_reasonless_app_codes() -> None:
    with pytest.raises(ValueError, match="internal"):
        encode_unsubscribe_push("c", UnsubscribeCode.CLIENT)
    with pytest.raises(ValueError, match="text"):
        encode_unsubscribe_push("c", 2100)
    assert b'"reason":"moved"' in encode_unsubscribe_push("c", 2100, "moved")
    with pytest.raises(ValueError, match="reason"):
        encode_push("c", "unsubscribe", {"code": 2000, "reason": ""})


def test_disconnect_push_has_no_channel() -> None:
    assert encode_disconnect_push(DisconnectCode.SHUTDOWN) == (
        b'{"push":{"disconnect":{"code":3001,"reason":"shutdown"}}}'
    )


def test_disconnect_push_reason_follows_close_frame_rules() -> None:
    with pytest.raises(ValueError, match="JSON"):
        encode_disconnect_push(4000, "true")
    with pytest.raises(ValueError, match="text"):
        encode_disconnect_push(4000)


def test_message_push_has_no_channel() -> None:
    assert encode_message_push({"x": 1}) == b'{"push":{"message":{"data":{"x":1}}}}'


def test_subscribe_push_for_runtime_server_side_subscription() -> None:
    result = subscribe_result(recoverable=True, positioned=True, epoch="E", offset=12, data={})
    assert orjson.loads(encode_subscribe_push("news", result)) == {
        "push": {
            "channel": "news",
            "subscribe": {
                "recoverable": True,
                "positioned": True,
                "epoch": "E",
                "offset": 12,
                "data": {},
            },
        }
    }


@pytest.mark.parametrize("kind", ["connect", "publication", "ping", ""])
def test_unknown_push_kind_is_refused(kind: str) -> None:
    with pytest.raises(ValueError, match="kind"):
        encode_push("c", kind, {})


# --- zero values: exactly what Go's encoder writes ----------------------------------------
# centrifugal/protocol encodes JSON with easyjson code generated from client.pb.go: a field
# whose JSON tag has `omitempty` is left out when zero, the others are always written. The
# only ones without it: ClientInfo user/client, PresenceResult presence,
# PresenceStatsResult num_clients/num_users, HistoryResult publications/epoch/offset.
# Every reply and push below is built from zero values and must come out byte for byte as Go's.

NOBODY = ClientInfo("", "")

GO_ZERO_VALUES: list[tuple[str, bytes, bytes]] = [
    ("connect", encode_reply(1, "connect", connect_result("c")), b'{"client":"c"}'),
    ("subscribe", encode_reply(1, "subscribe", subscribe_result()), b"{}"),
    ("unsubscribe", encode_reply(1, "unsubscribe", {}), b"{}"),
    ("publish", encode_reply(1, "publish", {}), b"{}"),
    ("presence", encode_reply(1, "presence", presence_result({})), b'{"presence":{}}'),
    (
        "presence_stats",
        encode_reply(1, "presence_stats", presence_stats_result(0, 0)),
        b'{"num_clients":0,"num_users":0}',
    ),
    (
        "history",
        encode_reply(1, "history", history_result()),
        b'{"publications":[],"epoch":"","offset":0}',
    ),
    ("rpc", encode_reply(1, "rpc", rpc_result()), b"{}"),
    ("refresh", encode_reply(1, "refresh", refresh_result()), b"{}"),
    ("sub_refresh", encode_reply(1, "sub_refresh", sub_refresh_result()), b"{}"),
    ("pub", encode_pub_push("c", b"1"), b'{"data":1}'),
    ("join", encode_join_push("c", NOBODY), b'{"info":{"user":"","client":""}}'),
    ("leave", encode_leave_push("c", NOBODY), b'{"info":{"user":"","client":""}}'),
    (
        "unsubscribe",
        encode_unsubscribe_push("c"),
        b'{"code":2000,"reason":"server unsubscribe"}',
    ),
    ("subscribe", encode_subscribe_push("c", subscribe_result()), b"{}"),
    (
        "disconnect",
        encode_disconnect_push(DisconnectCode.SHUTDOWN),
        b'{"code":3001,"reason":"shutdown"}',
    ),
    ("message", encode_message_push(1), b'{"data":1}'),
]


@pytest.mark.parametrize(
    ("kind", "frame", "body"),
    GO_ZERO_VALUES,
    ids=[f"{kind}-{n}" for n, (kind, _, _) in enumerate(GO_ZERO_VALUES)],
)
def test_zero_values_are_written_as_go_writes_them(kind: str, frame: bytes, body: bytes) -> None:
    reply = orjson.loads(frame)
    inner = reply["push"][kind] if "push" in reply else reply[kind]
    assert wire.dumps(inner) == body


def test_a_history_with_publications_keeps_the_position_keys_even_when_zero() -> None:
    # An ephemeral stream (no epoch yet) still answers with all three keys.
    result = history_result([encode_publication(b'"x"')])
    assert wire.dumps(result) == b'{"publications":[{"data":"x"}],"epoch":"","offset":0}'


# --- §9 the constructed conversation, server side ------------------------------------------


def test_doc_conversation_server_frames() -> None:
    missed = pub(42, b'{"text":"missed"}', U9)
    assert join_lines(
        [
            encode_reply(
                12,
                "connect",
                connect_result(
                    "b1e0c7d2", version="syncline/0.1", expires=True, ttl=3600, ping=25, pong=True
                ),
            ),
            encode_reply(
                13,
                "subscribe",
                subscribe_result(
                    recoverable=True,
                    positioned=True,
                    epoch="k3Xa",
                    offset=41,
                    was_recovering=True,
                    recovered=True,
                    publications=[missed],
                ),
            ),
        ]
    ) == (
        b'{"id":12,"connect":{"client":"b1e0c7d2","version":"syncline/0.1","expires":true,'
        b'"ttl":3600,"ping":25,"pong":true}}\n'
        b'{"id":13,"subscribe":{"recoverable":true,"positioned":true,"epoch":"k3Xa","offset":41,'
        b'"was_recovering":true,"recovered":true,"publications":[{"data":{"text":"missed"},'
        b'"offset":42,"info":{"user":"u9","client":"77aa01"}}]}}'
    )
    assert encode_pub_push("room:7", b'{"text":"live"}', 43, U9) == (
        b'{"push":{"channel":"room:7","pub":{"data":{"text":"live"},"offset":43,'
        b'"info":{"user":"u9","client":"77aa01"}}}}'
    )
    assert PING == b"{}"
    assert encode_error(14, ErrorCode.PERMISSION_DENIED) == (
        b'{"id":14,"error":{"code":103,"message":"permission denied"}}'
    )
    history = history_result(
        [pub(42, b'{"text":"missed"}'), encode_publication(b'{"text":"live"}', 43)],
        epoch="k3Xa",
        offset=43,
    )
    assert encode_reply(15, "history", history) == (
        b'{"id":15,"history":{"publications":[{"data":{"text":"missed"},"offset":42},'
        b'{"data":{"text":"live"},"offset":43}],"epoch":"k3Xa","offset":43}}'
    )
    failed = subscribe_result(
        recoverable=True, positioned=True, epoch="n3w2", offset=2, was_recovering=True
    )
    assert encode_reply(16, "subscribe", failed) == (
        b'{"id":16,"subscribe":{"recoverable":true,"positioned":true,"epoch":"n3w2","offset":2,'
        b'"was_recovering":true}}'
    )
    assert encode_unsubscribe_push("room:8", UnsubscribeCode.INSUFFICIENT_STATE) == (
        b'{"push":{"channel":"room:8","unsubscribe":{"code":2500,"reason":"insufficient state"}}}'
    )
    assert encode_reply(18, "refresh", refresh_result(expires=True, ttl=3600)) == (
        b'{"id":18,"refresh":{"expires":true,"ttl":3600}}'
    )
    assert encode_error(19, ErrorCode.TOKEN_EXPIRED) == (
        b'{"id":19,"error":{"code":109,"message":"token expired"}}'
    )


# --- cross-check: the real centrifuge-python SDK decodes every kind of frame ----------------

EVERY_KIND: list[tuple[str, bytes]] = [
    ("connect", encode_reply(1, "connect", connect_result("c", expires=True, ttl=5, ping=25))),
    ("subscribe", encode_reply(2, "subscribe", subscribe_result(publications=[pub(0, b"1")]))),
    ("unsubscribe", encode_reply(3, "unsubscribe")),
    ("publish", encode_reply(4, "publish")),
    ("presence", encode_reply(5, "presence", presence_result({"c": U9}))),
    ("presence_stats", encode_reply(6, "presence_stats", presence_stats_result(1, 1))),
    ("history", encode_reply(7, "history", history_result([pub(1, b"{}")], epoch="E", offset=1))),
    ("rpc", encode_reply(8, "rpc", rpc_result([1]))),
    ("refresh", encode_reply(9, "refresh", refresh_result(expires=True, ttl=60))),
    ("sub_refresh", encode_reply(10, "sub_refresh", sub_refresh_result())),
    ("error", encode_error(11, ErrorCode.TOO_MANY_REQUESTS)),
    ("ping", PING),
    ("pub", encode_pub_push("c", b'"x"', 5, U9, {"k": "v"})),
    ("join", encode_join_push("c", U9)),
    ("leave", encode_leave_push("c", U9)),
    ("unsubscribe-push", encode_unsubscribe_push("c", UnsubscribeCode.EXPIRED)),
    ("subscribe-push", encode_subscribe_push("c", subscribe_result(recoverable=True, epoch="E"))),
    ("disconnect", encode_disconnect_push(DisconnectCode.FORCE_RECONNECT)),
    ("message", encode_message_push("hi")),
]


def test_sdk_decodes_every_kind_in_one_batched_frame() -> None:
    replies = sdk_decode(join_lines([frame for _, frame in EVERY_KIND]))
    assert len(replies) == len(EVERY_KIND)
    for (kind, frame), reply in zip(EVERY_KIND, replies, strict=True):
        assert reply == orjson.loads(frame), kind


@pytest.mark.parametrize(("kind", "frame"), EVERY_KIND, ids=[kind for kind, _ in EVERY_KIND])
def test_sdk_reads_the_keys_it_indexes(kind: str, frame: bytes) -> None:
    (reply,) = sdk_decode(frame)
    client = Client("ws://localhost/connection/websocket")
    if reply.get("id", 0) > 0:
        if "error" in reply:
            assert {"code", "message"} <= reply["error"].keys()
        else:
            assert isinstance(reply[kind], dict)
            if reply[kind].get("expires"):
                assert reply[kind]["ttl"] >= 1
        for p in reply.get("history", reply.get("subscribe", {})).get("publications", []):
            client._publication_from_proto(p)
        for info in reply.get("presence", {}).get("presence", {}).values():
            client._extract_client_info(info)
        return
    push = reply.get("push")
    if not push:
        assert kind == "ping"
        return
    if "pub" in push:
        publication = client._publication_from_proto(push["pub"])
        assert (publication.offset, publication.data, publication.tags) == (5, "x", {"k": "v"})
        assert (publication.info.user, publication.info.client) == ("u9", "77aa01")
    for key in ("join", "leave"):
        if key in push:
            assert client._extract_client_info(push[key]["info"]).client == "77aa01"
    for key in ("unsubscribe", "disconnect"):
        if key in push:
            assert push[key]["code"] and push[key]["reason"]
    if "disconnect" not in push and "message" not in push:
        assert push["channel"] == "c"


class Recorder(SubscriptionEventHandler):  # type: ignore[misc]
    def __init__(self) -> None:
        self.events: list[Any] = []

    async def on_subscribed(self, ctx: Any) -> None:
        self.events.append(("subscribed", ctx.recovered, ctx.was_recovering))

    async def on_publication(self, ctx: Any) -> None:
        self.events.append(("publication", ctx.pub.offset, ctx.pub.data))


async def test_sdk_applies_recovered_subscribe_result_then_live_pub() -> None:
    client = Client("ws://localhost/connection/websocket")
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
    (reply,) = sdk_decode(encode_reply(13, "subscribe", result))
    await sub._move_subscribed(reply["subscribe"])
    (push,) = sdk_decode(encode_pub_push("room:7", b'{"text":"live"}', 43, U9))
    await client._process_reply(push)

    assert sub.state == SubscriptionState.SUBSCRIBED
    assert recorder.events == [
        ("subscribed", True, True),
        ("publication", 42, {"text": "missed"}),
        ("publication", 43, {"text": "live"}),
    ]
    assert (sub._recover, sub._epoch, sub._offset) == (True, "k3Xa", 43)

    (unsubscribe,) = sdk_decode(encode_unsubscribe_push("room:7"))
    await client._process_reply(unsubscribe)
    assert sub.state == SubscriptionState.UNSUBSCRIBED


def test_generic_push_accepts_code_enums() -> None:
    body = {"code": UnsubscribeCode.SERVER, "reason": "gone"}
    assert encode_push("c", "unsubscribe", body) == (
        b'{"push":{"channel":"c","unsubscribe":{"code":2000,"reason":"gone"}}}'
    )
    with pytest.raises(ValueError, match="code"):
        encode_push("c", "unsubscribe", {"code": True, "reason": "gone"})


def test_results_accept_any_mapping() -> None:
    from types import MappingProxyType

    result = MappingProxyType({"data": MappingProxyType({"a": 1})})
    assert encode_reply(1, "rpc", result) == b'{"id":1,"rpc":{"data":{"a":1}}}'


def test_unencodable_values_are_refused() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        encode_reply(1, "rpc", rpc_result(object()))


def test_raw_json_encode_once_embed_many_times() -> None:
    info = RawJson.encode({"name": "Ann", "tags": ["a\nb"]})
    assert info.json == b'{"name":"Ann","tags":["a\\nb"]}'
    assert wire.dumps([info, info]) == b"[" + info.json + b"," + info.json + b"]"
