"""Encoding of Centrifuge v2 server output: replies, errors, pushes and results as JSON bytes.

Every function returns one JSON object with no raw newline in it, so that ``join_lines`` can
batch several into one frame: centrifuge-python splits a frame on "\\n" and stops for good on a
piece it cannot decode. The bytes are UTF-8 and must go out as WebSocket *text* frames.
Result builders write exactly what Go's encoder (centrifugal/protocol's easyjson code) writes:
zero values are left out except where its JSON tags have no ``omitempty``: ClientInfo
``user``/``client``, presence's ``presence``, presence_stats' ``num_clients``/``num_users``,
history's ``publications``/``epoch``/``offset``; the SDKs read those without a default (JS
``numClients === undefined`` otherwise). The keys the Python SDK indexes directly are always
there too (error message, connect client, ttl whenever expires, unsubscribe/disconnect code
and reason, join/leave info). Publication data that is already JSON is spliced in as-is:
a publication is encoded once per channel, not once per subscriber.
See centrifuge-protocol.md §1-§3.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from syncline.core.codes import DisconnectCode, ErrorCode, UnsubscribeCode, check_close_reason
from syncline.core.log import MAX_OFFSET, ClientInfo, Publication
from syncline.core.protocol import MAX_COMMAND_ID, JsonValue, Method

# A ping is an object with neither an id nor a push; the client answers with a pong if asked.
PING = b"{}"

# Dataclasses go through _default, which leaves out their empty fields.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS
_MAX_UINT32 = 2**32 - 1
_ERROR_CODES = frozenset(ErrorCode)
# Allow-lists of keys, mapped to exact str: orjson refuses str subclasses (a Method) as keys.
_REPLY_KEYS = {m.value: m.value for m in Method if m is not Method.SEND}
_PUSH_KINDS = (
    "pub",
    "join",
    "leave",
    "unsubscribe",
    "subscribe",
    "disconnect",
    "message",
    "refresh",
)
_PUSH_KEYS = {kind: kind for kind in _PUSH_KINDS}


@dataclass(frozen=True, slots=True)
class RawJson:
    """One JSON value, already encoded, that the encoders copy into their output unchanged.

    The bytes are trusted to be valid JSON (use ``RawJson.parse`` for text from elsewhere); a
    raw newline in them, legal JSON whitespace, is removed by re-encoding.
    """

    json: bytes

    def __post_init__(self) -> None:
        if not self.json:
            raise ValueError("RawJson needs a JSON value, not empty bytes")
        if b"\n" in self.json:
            object.__setattr__(self, "json", orjson.dumps(orjson.loads(self.json)))

    @classmethod
    def parse(cls, text: str | bytes) -> RawJson:
        """Validate JSON text from an untrusted source; raises ValueError if it is not JSON."""
        return cls(orjson.dumps(orjson.loads(text)))

    @classmethod
    def encode(cls, value: JsonValue) -> RawJson:
        """Encode a value once, to be embedded many times."""
        return cls(dumps(value))


def _client_info(info: ClientInfo) -> dict[str, Any]:
    # Go always writes user and client, even when empty (an anonymous user is "").
    wire: dict[str, Any] = {"user": info.user, "client": info.client}
    if info.conn_info:
        wire["conn_info"] = orjson.Fragment(RawJson(info.conn_info).json)
    if info.chan_info:
        wire["chan_info"] = orjson.Fragment(RawJson(info.chan_info).json)
    return wire


def _default(obj: Any) -> Any:
    if isinstance(obj, RawJson):
        return orjson.Fragment(obj.json)
    if isinstance(obj, Publication):
        return orjson.Fragment(_publication_json(obj.data, obj.offset, obj.info, None))
    if isinstance(obj, ClientInfo):
        return _client_info(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} as protocol JSON")


def dumps(value: JsonValue) -> bytes:
    """Encode a value the way every function here does (``RawJson`` spliced, no newlines)."""
    return orjson.dumps(value, default=_default, option=_OPTIONS)


def join_lines(objects: Sequence[bytes]) -> bytes:
    """Batch encoded objects into one frame; an empty piece would be a blank line, fatal to PY."""
    if not all(objects):
        raise ValueError("cannot batch an empty object into a frame")
    return b"\n".join(objects)


def _is_int(value: object) -> bool:
    # An IntEnum is fine, a bool is not (it is an int to Python, not to the SDKs).
    return isinstance(value, int) and not isinstance(value, bool)


_Code = TypeVar("_Code", ErrorCode, UnsubscribeCode, DisconnectCode)


def _standard_text(codes: type[_Code], code: int, what: str) -> _Code:
    try:
        return codes(code)
    except ValueError:
        raise ValueError(f"{what} code {code} has no standard text; give one") from None


# --- replies -------------------------------------------------------------------------------


def _command_id(command_id: int) -> int:
    # Id 0 would make the reply look like a ping to the SDKs.
    if type(command_id) is not int or not 0 < command_id <= MAX_COMMAND_ID:
        raise ValueError(f"a reply needs the command's id (1..2^32-1), got {command_id!r}")
    return command_id


def encode_reply(command_id: int, method: str, result: Mapping[str, Any] | None = None) -> bytes:
    """``{"id":N,"<method>":{result}}``; the result object is always present, ``{}`` if empty."""
    key = _REPLY_KEYS.get(method)
    if key is None:
        raise ValueError(f"no reply for method {method!r}")
    return dumps({"id": _command_id(command_id), key: {} if result is None else result})


def encode_error(
    command_id: int, code: int, message: str | None = None, temporary: bool | None = None
) -> bytes:
    """``{"id":N,"error":{"code":C,"message":M}}``, plus ``"temporary":true`` when retryable.

    ``message`` and ``temporary`` default to the standard ones for an ``ErrorCode``.
    """
    if not _is_int(code) or not 0 < code <= _MAX_UINT32:
        raise ValueError(f"an error code must be a positive uint32, got {code!r}")
    known = ErrorCode(code) if code in _ERROR_CODES else None
    if not message:
        message = _standard_text(ErrorCode, code, "error").message
    if temporary is None:
        temporary = known is not None and known.temporary
    error: dict[str, Any] = {"code": int(code), "message": message}
    if temporary:
        error["temporary"] = True
    return dumps({"id": _command_id(command_id), "error": error})


# --- pushes --------------------------------------------------------------------------------


def _check_push_body(kind: str, body: Mapping[str, Any]) -> None:
    if kind in ("unsubscribe", "disconnect"):
        code, reason = body.get("code"), body.get("reason")
        if not _is_int(code) or not code or not isinstance(reason, str) or not reason:
            raise ValueError(f"a {kind} push needs a code and a non-empty reason")
    elif kind in ("join", "leave") and body.get("info") is None:
        raise ValueError(f"a {kind} push needs info")


def encode_push(channel: str, kind: str, body: Mapping[str, Any] | RawJson) -> bytes:
    """``{"push":{"channel":C,"<kind>":{body}}}``; an empty channel is left out (disconnect,
    message)."""
    key = _PUSH_KEYS.get(kind)
    if key is None:
        raise ValueError(f"unknown push kind {kind!r}")
    if not isinstance(body, RawJson):
        _check_push_body(kind, body)
    push: dict[str, Any] = {"channel": channel, key: body} if channel else {key: body}
    return dumps({"push": push})


def _offset(offset: int) -> int:
    if type(offset) is not int or not 0 <= offset <= MAX_OFFSET:
        raise ValueError(f"an offset must be an integer in [0, 2^53-1], got {offset!r}")
    return offset


def json_text(data_json: bytes) -> RawJson:
    """Publication data for a delta subscriber: the JSON text itself as a JSON string."""
    return RawJson(orjson.dumps(data_json.decode("utf-8")))


def _publication_json(
    data_json: bytes | RawJson,
    offset: int,
    info: ClientInfo | None,
    tags: Mapping[str, str] | None,
    delta: bool = False,
) -> bytes:
    if isinstance(data_json, RawJson):
        data = data_json.json
    else:
        data = data_json
        if not data or b"\n" in data:
            data = RawJson(data).json
    out = b'{"data":' + data
    if offset:
        out += b',"offset":%d' % _offset(offset)
    if info is not None:
        out += b',"info":' + dumps(info)
    if tags:
        out += b',"tags":' + dumps(tags)
    if delta:
        out += b',"delta":true'
    return out + b"}"


def encode_publication(
    data_json: bytes | RawJson,
    offset: int = 0,
    info: ClientInfo | None = None,
    tags: Mapping[str, str] | None = None,
    *,
    delta: bool = False,
) -> RawJson:
    """A publication built around data that is already JSON, for subscribe/history results.

    ``delta``: the data is a fossil delta (a JSON string) against the previous publication.
    """
    return RawJson(_publication_json(data_json, offset, info, tags, delta))


def encode_pub_push(
    channel: str,
    data_json: bytes | RawJson,
    offset: int = 0,
    info: ClientInfo | None = None,
    tags: Mapping[str, str] | None = None,
    *,
    delta: bool = False,
) -> bytes:
    """The ``pub`` push for one publication, built once and sent to every subscriber.

    ``data_json`` is copied in unchanged, so it must be the output of a JSON encoder.
    """
    return (
        b'{"push":{"channel":'
        + orjson.dumps(channel)
        + b',"pub":'
        + _publication_json(data_json, offset, info, tags, delta)
        + b"}}"
    )


def encode_join_push(channel: str, info: ClientInfo) -> bytes:
    return encode_push(channel, "join", {"info": info})


def encode_leave_push(channel: str, info: ClientInfo) -> bytes:
    return encode_push(channel, "leave", {"info": info})


def unsubscribe_push_body(
    code: int = UnsubscribeCode.SERVER, reason: str | None = None
) -> dict[str, Any]:
    """The ``unsubscribe`` push's fields, in either format. Codes from 2500 make the SDK
    resubscribe (with recovery); below that it stays away."""
    if code < UnsubscribeCode.SERVER:
        raise ValueError(f"unsubscribe code {code} is internal and never sent")
    if not reason:
        reason = _standard_text(UnsubscribeCode, code, "unsubscribe").reason
    return {"code": int(code), "reason": reason}


def disconnect_push_body(code: int, reason: str | None = None) -> dict[str, Any]:
    """The ``disconnect`` push's fields, in either format: the SDKs handle it like a close
    frame with the same code, so the reason follows the close-frame rules."""
    if not reason:
        reason = _standard_text(DisconnectCode, code, "disconnect").reason
    check_close_reason(reason)
    return {"code": int(code), "reason": reason}


def encode_unsubscribe_push(
    channel: str, code: int = UnsubscribeCode.SERVER, reason: str | None = None
) -> bytes:
    return encode_push(channel, "unsubscribe", unsubscribe_push_body(code, reason))


def encode_disconnect_push(code: int, reason: str | None = None) -> bytes:
    return encode_push("", "disconnect", disconnect_push_body(code, reason))


def encode_message_push(data: JsonValue) -> bytes:
    """An async message to one client; centrifuge-python 0.7 ignores these."""
    return encode_push("", "message", {"data": data})


def encode_subscribe_push(channel: str, result: Mapping[str, Any]) -> bytes:
    """A server-side subscription added at runtime; ``result`` as from ``subscribe_result``."""
    return encode_push(channel, "subscribe", result)


# --- results -------------------------------------------------------------------------------


def _ttl(expires: bool, ttl: int, into: dict[str, Any]) -> None:
    if expires:
        # The SDK schedules a refresh after ttl seconds and needs the key (PY indexes it).
        if type(ttl) is not int or not 1 <= ttl <= _MAX_UINT32:
            raise ValueError(f"expires needs a ttl of at least 1 second, got {ttl!r}")
        into["expires"] = True
        into["ttl"] = ttl


def connect_result(
    client: str,
    *,
    version: str = "",
    data: JsonValue = None,
    expires: bool = False,
    ttl: int = 0,
    ping: int = 0,
    pong: bool = False,
    subs: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The connect result; ``ping`` is whole seconds (the SDKs add it to their own delay)."""
    if not client:
        raise ValueError("the connect result needs the client id")
    if type(ping) is not int or ping < 0:
        raise ValueError(f"ping must be whole seconds, got {ping!r}")
    result: dict[str, Any] = {"client": client}
    if version:
        result["version"] = version
    _ttl(expires, ttl, result)
    if ping:
        result["ping"] = ping
    if pong:
        result["pong"] = True
    if subs:
        result["subs"] = subs
    if data is not None:
        result["data"] = data
    return result


def subscribe_result(
    *,
    recoverable: bool = False,
    positioned: bool = False,
    epoch: str = "",
    offset: int = 0,
    recovered: bool = False,
    was_recovering: bool = False,
    publications: Iterable[Publication | RawJson] = (),
    expires: bool = False,
    ttl: int = 0,
    data: JsonValue = None,
    delta: bool = False,
) -> dict[str, Any]:
    """The subscribe result (also a ``connect.subs`` entry and a ``subscribe`` push body).

    ``publications`` are delivered after the subscribed event, in order, offsets ascending.
    ``delta``: delta was negotiated, so every publication's data is a JSON string from now on.
    """
    if (recoverable or positioned) and not epoch:
        raise ValueError("a positioned or recoverable stream always has an epoch")
    result: dict[str, Any] = {}
    _ttl(expires, ttl, result)
    if recoverable:
        result["recoverable"] = True
    if positioned:
        result["positioned"] = True
    if epoch:
        result["epoch"] = epoch
    if offset:
        result["offset"] = _offset(offset)
    if was_recovering:
        result["was_recovering"] = True
    if recovered:
        result["recovered"] = True
    pubs = list(publications)
    if pubs:
        result["publications"] = pubs
    if data is not None:
        result["data"] = data
    if delta:
        result["delta"] = True
    return result


def history_result(
    publications: Iterable[Publication | RawJson] = (), *, epoch: str = "", offset: int = 0
) -> dict[str, Any]:
    """Publications (each with its offset) and the stream's current top position.

    All three keys are always present, as Go sends them: ``[]``, ``""`` and ``0`` included.
    """
    return {"publications": list(publications), "epoch": epoch, "offset": _offset(offset)}


def presence_result(clients: Mapping[str, ClientInfo]) -> dict[str, Any]:
    """Keyed ``presence`` (not ``clients``), client id → ClientInfo; ``{}`` when nobody is in."""
    return {"presence": dict(clients)}


def _count(value: int, what: str) -> int:
    if not _is_int(value) or not 0 <= value <= _MAX_UINT32:
        raise ValueError(f"{what} must be a uint32, got {value!r}")
    return value


def presence_stats_result(num_clients: int, num_users: int) -> dict[str, Any]:
    """Both counts, always (0 included): Go's encoder sends them, the SDKs read them as is."""
    return {
        "num_clients": _count(num_clients, "num_clients"),
        "num_users": _count(num_users, "num_users"),
    }


def refresh_result(*, expires: bool = False, ttl: int = 0) -> dict[str, Any]:
    """Answer to ``refresh`` (connection token) and, identically, to ``sub_refresh``."""
    result: dict[str, Any] = {}
    _ttl(expires, ttl, result)
    return result


sub_refresh_result = refresh_result


def rpc_result(data: JsonValue = None) -> dict[str, Any]:
    return {} if data is None else {"data": data}
