"""The HTTP transports' formats (syncline.core.emulation), with plain data: emulation
requests as centrifuge-js sends them, stream framing, SSE events, unidirectional output."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncline.core import emulation, pb_wire, wire
from syncline.core.codes import DisconnectCode, ErrorCode
from syncline.core.emulation import BadRequest, EmulationRequest
from syncline.core.pb_protocol import read_varint
from syncline.core.proto import client_pb2 as pb
from syncline.core.protocol import ConnectCommand, SubscribeRecovery

# What centrifuge-js's JsonCodec.encodeCommands makes of a subscribe and a pong.
_COMMANDS = '{"id":2,"subscribe":{"channel":"chat"}}\n{}'


def test_a_json_emulation_request_as_centrifuge_js_sends_it() -> None:
    body = orjson.dumps({"session": "s1", "node": "n1", "data": _COMMANDS})
    request = emulation.decode_emulation(body, protobuf=False)
    assert request == EmulationRequest("n1", "s1", _COMMANDS.encode())


def test_a_protobuf_emulation_request() -> None:
    data = b"\x05\x08\x02\x1a\x01x"
    body = pb.EmulationRequest(node="n1", session="s1", data=data).SerializeToString()
    assert emulation.decode_emulation(body, protobuf=True) == EmulationRequest("n1", "s1", data)


@pytest.mark.parametrize("protobuf", [False, True])
def test_encoding_and_decoding_agree(protobuf: bool) -> None:
    request = EmulationRequest("node-w1", "abc", b'{"id":1,"rpc":{}}')
    body = emulation.encode_emulation(request, protobuf=protobuf)
    assert emulation.decode_emulation(body, protobuf=protobuf) == request


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "emulation request is not JSON"),
        (b"[1]", "emulation request must be a JSON object"),
        (b'{"session":"s","node":"n","data":{"id":1}}', "data must be a string of commands"),
        (b'{"session":"s","node":"n","data":""}', "data must hold at least one command"),
        (b'{"session":1,"node":"n","data":"{}"}', "session must be a string"),
        (b'{"session":"s","data":"{}"}', "node must be a string"),
        (b'{"session":"","node":"n","data":"{}"}', "session must be 1 to 256 characters"),
    ],
)
def test_malformed_json_emulation_requests_are_400(body: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        emulation.decode_emulation(body, protobuf=False)
    assert (caught.value.status, caught.value.message) == (400, message)
    assert orjson.loads(caught.value.body()) == {"error": message}


def test_malformed_protobuf_emulation_request_is_400() -> None:
    with pytest.raises(BadRequest) as caught:
        emulation.decode_emulation(b"\xff\xff\xff", protobuf=True)
    assert caught.value.status == 400


def test_an_oversized_emulation_request_is_413() -> None:
    body = orjson.dumps({"session": "s", "node": "n", "data": "x" * emulation.MAX_BODY})
    with pytest.raises(BadRequest) as caught:
        emulation.decode_emulation(body, protobuf=False)
    assert caught.value.status == 413


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_are_a_bad_request(body: bytes) -> None:
    for protobuf in (False, True):
        status = 0
        try:
            request = emulation.decode_emulation(body, protobuf=protobuf)
        except BadRequest as err:
            status = err.status
        else:
            assert request.data and request.node and request.session
        assert status in (0, 400)


@pytest.mark.parametrize(
    ("content_type", "protobuf"),
    [
        ("application/octet-stream", True),
        ("Application/Octet-Stream; charset=binary", True),
        ("application/json", False),
        (None, False),
        ("text/plain", False),
    ],
)
def test_the_format_follows_the_content_type(content_type: str | None, protobuf: bool) -> None:
    assert emulation.is_protobuf(content_type) is protobuf


def test_http_stream_json_is_one_message_a_line() -> None:
    chunk = emulation.stream_chunk([b'{"id":1}', b"{}"], protobuf=False)
    assert chunk == b'{"id":1}\n{}\n'


def test_http_stream_protobuf_is_varint_delimited_replies_back_to_back() -> None:
    first, second = pb_wire.encode_reply(1, "connect", {"client": "c"}), pb_wire.PING
    chunk = emulation.stream_chunk([first, second], protobuf=True)
    length, pos = read_varint(chunk, 0)
    assert pb.Reply.FromString(chunk[pos : pos + length]).connect.client == "c"
    assert chunk[pos + length :] == second


def test_sse_events_are_data_lines_and_a_blank_line() -> None:
    assert emulation.sse_events([b'{"a":1}', b"{}"]) == b'data: {"a":1}\n\ndata: {}\n\n'
    # EventSource joins the data lines of one event with newlines again.
    assert emulation.sse_events([b"x\ny"]) == b"data: x\ndata: y\n\n"


def test_chunked_encoding() -> None:
    assert emulation.chunked(b"hello world!") == b"c\r\nhello world!\r\n"
    assert emulation.LAST_CHUNK == b"0\r\n\r\n"


def test_uni_connect_requests() -> None:
    command = emulation.parse_uni_connect(
        b'{"token":"t","subs":{"#1":{"recover":true,"offset":3,"epoch":"e"}}}'
    )
    assert command == ConnectCommand(
        id=1, token="t", subs={"#1": SubscribeRecovery(recover=True, offset=3, epoch="e")}
    )
    assert emulation.parse_uni_connect(b"") == ConnectCommand(id=1)
    assert orjson.loads(emulation.uni_connect_frame(b'{"token":"t"}')) == {
        "id": 1,
        "connect": {"token": "t"},
    }
    assert orjson.loads(emulation.uni_connect_frame("")) == {"id": 1, "connect": {}}


@pytest.mark.parametrize(
    "raw", [b"{", b"[]", b'{"token":5}', b'{"subs":[1]}', b"x" * (emulation.MAX_BODY + 1)]
)
def test_bad_uni_connect_requests(raw: bytes) -> None:
    with pytest.raises(BadRequest) as caught:
        emulation.uni_connect_frame(raw)
    assert caught.value.status in (400, 413)


def test_uni_output_unwraps_pushes_and_turns_the_connect_reply_into_a_push() -> None:
    push = wire.encode_message_push({"text": "hi"})
    assert orjson.loads(emulation.uni_message(push) or b"") == {"message": {"data": {"text": "hi"}}}
    reply = wire.encode_reply(1, "connect", {"client": "c", "ping": 25})
    assert orjson.loads(emulation.uni_message(reply) or b"") == {
        "connect": {"client": "c", "ping": 25}
    }
    assert emulation.uni_message(wire.PING) == b"{}"
    assert emulation.uni_message(wire.encode_reply(2, "presence", {})) is None


def test_a_failed_uni_connect_becomes_a_disconnect() -> None:
    expired = wire.encode_error(1, ErrorCode.TOKEN_EXPIRED)
    assert emulation.uni_connect_error(expired) == DisconnectCode.EXPIRED
    unauthorized = wire.encode_error(1, ErrorCode.UNAUTHORIZED)
    assert emulation.uni_connect_error(unauthorized) == DisconnectCode.INVALID_TOKEN
    internal = wire.encode_error(1, ErrorCode.INTERNAL)
    assert emulation.uni_connect_error(internal) == DisconnectCode.BAD_REQUEST
    assert emulation.uni_connect_error(wire.PING) is None


def test_the_connect_reply_gets_the_session_and_node_json() -> None:
    reply = wire.encode_reply(1, "connect", {"client": "c"})
    out = emulation.with_session(reply, "s1", "n1", protobuf=False)
    assert orjson.loads(out or b"") == {
        "id": 1,
        "connect": {"session": "s1", "node": "n1", "client": "c"},
    }
    empty = emulation.with_session(wire.encode_reply(7, "connect"), "s", "n", protobuf=False)
    assert orjson.loads(empty or b"") == {"id": 7, "connect": {"session": "s", "node": "n"}}
    assert emulation.with_session(wire.PING, "s", "n", protobuf=False) is None
    assert emulation.with_session(wire.encode_reply(2, "rpc"), "s", "n", protobuf=False) is None


def test_the_connect_reply_gets_the_session_and_node_protobuf() -> None:
    reply = pb_wire.encode_reply(1, "connect", {"client": "c"})
    out = emulation.with_session(reply, "s1", "n1", protobuf=True) or b""
    length, pos = read_varint(out, 0)
    assert pos + length == len(out)
    connect = pb.Reply.FromString(out[pos:]).connect
    assert (connect.client, connect.session, connect.node) == ("c", "s1", "n1")
    assert emulation.with_session(pb_wire.PING, "s", "n", protobuf=True) is None
    assert emulation.with_session(b"\xff", "s", "n", protobuf=True) is None
