"""The HTTP transports' formats: emulation requests, http_stream and SSE framing, uni connects.

Centrifuge's bidirectional emulation (what centrifuge-js uses without WebSocket) streams the
server's replies and pushes down one long HTTP response and takes the client's commands as
separate POSTs to ``/emulation``, each naming the ``session`` and ``node`` the connect reply
gave. The unidirectional transports stream pushes only (no replies, no ``{"push":…}``
wrapper) after a connect request the client sends once. Everything here is plain data in,
bytes out; see docs/protocol.md ("Transports") and docs/topics/http-transports.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from google.protobuf.message import DecodeError

from syncline.core import protocol
from syncline.core.codes import DisconnectCode, ErrorCode
from syncline.core.pb_protocol import read_varint
from syncline.core.pb_wire import varint
from syncline.core.proto import client_pb2 as pb

# Centrifuge's default limit on an emulation POST, an http_stream connect body and an SSE
# connect (its HTTPStreamConfig, SSEConfig and EmulationConfig MaxRequestBodySize).
MAX_BODY = 64 * 1024
# A session id and a node name are short tokens (a UUID, a host name with -w<n>).
MAX_ID_LENGTH = 256

JSON_CONTENT_TYPE = "application/json"
PROTOBUF_CONTENT_TYPE = "application/octet-stream"


class BadRequest(ValueError):
    """An HTTP transport request that gets ``status`` and a one-line JSON error, nothing else."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> bytes:
        return error_body(self.message)


def error_body(message: str) -> bytes:
    """The JSON body of every 4xx these endpoints answer: ``{"error": "..."}``."""
    return orjson.dumps({"error": message})


def is_protobuf(content_type: str | None) -> bool:
    """Centrifuge's rule: exactly ``application/octet-stream`` is Protobuf, anything else JSON."""
    return (content_type or "").split(";", 1)[0].strip().lower() == PROTOBUF_CONTENT_TYPE


@dataclass(frozen=True, slots=True)
class EmulationRequest:
    """One POST to ``/emulation``: commands (``data``, a frame in the session's format) for the
    session ``session`` living on node ``node``."""

    node: str
    session: str
    data: bytes


def _id(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(400, f"{what} must be a string")
    if not value or len(value) > MAX_ID_LENGTH:
        raise BadRequest(400, f"{what} must be 1 to {MAX_ID_LENGTH} characters")
    return value


def decode_emulation(body: bytes, *, protobuf: bool) -> EmulationRequest:
    """An emulation request's fields; BadRequest (400 or 413) for anything malformed.

    JSON: ``{"session":S,"node":N,"data":D}`` where D is the command frame as a JSON string
    (centrifuge-js sends ``JSON.stringify({session, node, data})`` with the newline-delimited
    commands as ``data``). Protobuf: client.proto's ``EmulationRequest``, ``data`` raw bytes.
    """
    if len(body) > MAX_BODY:
        raise BadRequest(413, f"request body over {MAX_BODY} bytes")
    if protobuf:
        message = pb.EmulationRequest()
        try:
            message.ParseFromString(body)
        except (DecodeError, RuntimeError, ValueError):
            raise BadRequest(400, "malformed Protobuf emulation request") from None
        node, session, data = message.node, message.session, bytes(message.data)
    else:
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadRequest(400, "emulation request is not JSON") from None
        if type(obj) is not dict:
            raise BadRequest(400, "emulation request must be a JSON object")
        text = obj.get("data")
        if not isinstance(text, str):
            raise BadRequest(400, "data must be a string of commands")
        return _request(obj.get("node"), obj.get("session"), text.encode())
    return _request(node, session, data)


def _request(node: object, session: object, data: bytes) -> EmulationRequest:
    if not data:
        raise BadRequest(400, "data must hold at least one command")
    return EmulationRequest(_id(node, "node"), _id(session, "session"), data)


def encode_emulation(request: EmulationRequest, *, protobuf: bool) -> bytes:
    """The body centrifuge-js would POST for ``request`` (for tests and the bench's clients)."""
    if protobuf:
        message = pb.EmulationRequest(node=request.node, session=request.session, data=request.data)
        return message.SerializeToString()
    return orjson.dumps(
        {"session": request.session, "node": request.node, "data": request.data.decode()}
    )


# --- the stream's framing ------------------------------------------------------------------


def stream_chunk(messages: Sequence[bytes], *, protobuf: bool) -> bytes:
    """Messages as the http_stream transport sends them: each JSON message followed by a
    newline (centrifuge-js splits on it), Protobuf ones back to back (each already carries its
    varint length, which the SDK's ``decodeReply`` reads)."""
    if protobuf:
        return b"".join(messages)
    return b"".join(message + b"\n" for message in messages)


def sse_events(messages: Sequence[bytes]) -> bytes:
    """Messages as SSE events: ``data: <message>`` and a blank line each (EventSource hands
    the text after ``data: `` to ``onmessage``). A message spanning lines (never from this
    server's encoders, whose JSON has no raw newline) gets a ``data:`` line per line, which
    EventSource joins back with newlines."""
    out = bytearray()
    for message in messages:
        for line in message.split(b"\n"):
            out += b"data: " + line + b"\n"
        out += b"\n"
    return bytes(out)


# The first bytes of an SSE stream: Centrifuge writes a blank line at once, so proxies and the
# browser see the response start before the first event.
SSE_PREAMBLE = b"\r\n"
# What unidirectional SSE sends as a ping: an event of type ``ping`` (EventSource ignores it
# unless listened for), as Centrifugo's older uni_sse did; the newer sends an empty push.
SSE_PING_EVENT = b"event: ping\ndata:\n\n"


def chunked(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk (Transfer-Encoding: chunked); empty data ends the body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


# --- the unidirectional transports ---------------------------------------------------------


def parse_uni_connect(raw: bytes | str) -> protocol.ConnectCommand:
    """A unidirectional connect request (``{"token":…,"data":…,"subs":…}``, Centrifugo's
    ConnectRequest as JSON) as the connect command a session runs; empty input is an
    anonymous connect, as Centrifugo takes a missing ``cf_connect``. BadRequest (400) if
    malformed."""
    if len(raw) > MAX_BODY:
        raise BadRequest(413, f"connect request over {MAX_BODY} bytes")
    if not raw or (isinstance(raw, bytes | str) and not raw.strip()):
        return protocol.ConnectCommand(id=1)
    try:
        params = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest(400, "connect request is not JSON") from None
    if type(params) is not dict:
        raise BadRequest(400, "connect request must be a JSON object")
    try:
        command = protocol.parse_command({"id": 1, "connect": params})
    except protocol.ProtocolError as err:
        raise BadRequest(400, f"bad connect request: {err.detail}") from None
    if not isinstance(command, protocol.ConnectCommand):  # pragma: no cover - parse_command's
        raise BadRequest(400, "bad connect request")
    return command


def uni_connect_frame(raw: bytes | str) -> bytes:
    """The connect command frame a session runs for a unidirectional connect request (checked
    as ``parse_uni_connect`` checks it)."""
    parse_uni_connect(raw)
    params = orjson.loads(raw) if raw and raw.strip() else {}
    return orjson.dumps({"id": 1, "connect": params})


_PUSH_PREFIX = b'{"push":'
_CONNECT_REPLY_PREFIX = b'{"id":1,"connect":'
_ERROR_REPLY_PREFIX = b'{"id":1,"error":'

# A connect that fails on a unidirectional transport has no reply to carry the error: the
# session ends with a disconnect instead (Centrifuge maps connect errors the same way).
_CONNECT_ERROR_DISCONNECTS: dict[int, DisconnectCode] = {
    ErrorCode.UNAUTHORIZED: DisconnectCode.INVALID_TOKEN,
    ErrorCode.TOKEN_EXPIRED: DisconnectCode.EXPIRED,
}


def uni_message(message: bytes) -> bytes | None:
    """A bidirectional JSON message as the unidirectional transports send it, or None to drop.

    Pushes lose their ``{"push":…}`` wrapper (``{"channel":C,"pub":…}``), the connect reply
    becomes a ``connect`` push, a ping (``{}``) stays a ping. Replies to other commands cannot
    occur (the client sends none); anything else is dropped.
    """
    if message.startswith(_PUSH_PREFIX):
        return message[len(_PUSH_PREFIX) : -1]
    if message == b"{}":
        return message
    if message.startswith(_CONNECT_REPLY_PREFIX):
        return b'{"connect":' + message[len(_CONNECT_REPLY_PREFIX) :]
    return None


def uni_connect_error(message: bytes) -> int | None:
    """The disconnect code for an error reply to a unidirectional connect, else None."""
    if not message.startswith(_ERROR_REPLY_PREFIX):
        return None
    try:
        code = orjson.loads(message)["error"]["code"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return int(DisconnectCode.BAD_REQUEST)
    known = _CONNECT_ERROR_DISCONNECTS.get(code) if isinstance(code, int) else None
    return int(known if known is not None else DisconnectCode.BAD_REQUEST)


# --- the emulation session's identity in the connect reply -------------------------------

_JSON_CONNECT_REPLY = re.compile(rb'^\{"id":\d+,"connect":\{')


def with_session(message: bytes, session: str, node: str, *, protobuf: bool) -> bytes | None:
    """``message`` with ``session`` and ``node`` added to its connect result if it is a
    connect reply (centrifuge-js sends both back with every emulation request), else None.

    ``message`` is one encoded reply: a JSON object, or a varint-delimited Protobuf Reply.
    """
    if not protobuf:
        match = _JSON_CONNECT_REPLY.match(message)
        if match is None:
            return None
        fields = orjson.dumps({"session": session, "node": node})[1:-1]
        end = match.end()
        tail = message[end:]
        return message[:end] + fields + (b"," if not tail.startswith(b"}") else b"") + tail
    try:
        length, start = read_varint(message, 0)
    except protocol.ProtocolError:
        return None
    reply = pb.Reply()
    try:
        reply.ParseFromString(message[start : start + length])
    except DecodeError:
        return None
    if not reply.HasField("connect"):
        return None
    reply.connect.session = session
    reply.connect.node = node
    body = reply.SerializeToString()
    return varint(len(body)) + body
