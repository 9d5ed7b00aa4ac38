"""Encoding of Centrifuge v2 server output as Protobuf: replies, errors and pushes, framed.

Every function returns one ``Reply`` message (client.proto) preceded by its length as a varint,
which is how the SDKs read a binary frame, so a frame of several is their concatenation
(``join``). The arguments are wire.py's: results are the dicts its builders return
(``connect_result``, ``subscribe_result``, …). The protocol's JSON keys are the proto field
names (Centrifuge's JSON is the same schema), so one mapping turns a result into its message.
Bytes fields (``data``, ``conn_info``, ``chan_info``) carry JSON bytes, as Syncline's payloads
are JSON in both formats; a publication in a result must be a ``Publication``, not JSON
already built for the JSON format. A publication's push is built once and sent to every
Protobuf subscriber, like the JSON one (docs/topics/protobuf.md measures how).
See docs/protocol.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from syncline.core.codes import ErrorCode, UnsubscribeCode
from syncline.core.log import ClientInfo, Publication
from syncline.core.proto import client_pb2 as pb
from syncline.core.protocol import JsonValue, Method
from syncline.core.wire import (
    RawJson,
    _check_push_body,
    _command_id,
    _is_int,
    _offset,
    _standard_text,
    disconnect_push_body,
    dumps,
    unsubscribe_push_body,
)

# A ping is an empty Reply: length 0, nothing after it.
PING = b"\x00"

_MAX_UINT32 = 2**32 - 1
_ERROR_CODES = frozenset(ErrorCode)
# Reply fields by method: the Command and Reply fields share the JSON method keys.
_REPLY_FIELDS = {m.value for m in Method if m is not Method.SEND}
_PUSH_KINDS = frozenset(
    ("pub", "join", "leave", "unsubscribe", "subscribe", "disconnect", "message", "refresh")
)
# One-byte varints, the length of nearly every small message, without a loop.
_SMALL_VARINTS = [bytes((n,)) for n in range(0x80)]


def varint(value: int) -> bytes:
    """``value`` (unsigned) as a Protobuf varint."""
    if value < 0x80:
        return _SMALL_VARINTS[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def join(parts: Sequence[bytes]) -> bytes:
    """Batch framed replies into one binary frame: each already carries its length."""
    return b"".join(parts)


def _framed(reply: pb.Reply) -> bytes:
    body = reply.SerializeToString()
    return varint(len(body)) + body


# --- from wire.py's values to messages -----------------------------------------------------


def _json_bytes(value: JsonValue) -> bytes:
    if isinstance(value, RawJson):
        return value.json
    return dumps(value)


def _client_info(msg: pb.ClientInfo, info: ClientInfo) -> None:
    msg.user = info.user
    msg.client = info.client
    if info.conn_info:
        msg.conn_info = info.conn_info
    if info.chan_info:
        msg.chan_info = info.chan_info


def _publication(
    msg: pb.Publication,
    data: bytes,
    offset: int,
    info: ClientInfo | None,
    tags: Mapping[str, str] | None,
) -> None:
    msg.data = data
    if offset:
        msg.offset = _offset(offset)
    if info is not None:
        _client_info(msg.info, info)
    if tags:
        msg.tags.update(tags)


def _fill_message(msg: Message, value: Any) -> None:
    if isinstance(value, Publication) and isinstance(msg, pb.Publication):
        _publication(msg, value.data, value.offset, value.info, None)
    elif isinstance(value, ClientInfo) and isinstance(msg, pb.ClientInfo):
        _client_info(msg, value)
    elif isinstance(value, RawJson):
        raise ValueError(
            f"a Protobuf {msg.DESCRIPTOR.name} cannot be built from JSON; pass the value itself"
        )
    elif isinstance(value, Mapping):
        msg.SetInParent()
        _fill(msg, value)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as a {msg.DESCRIPTOR.name}")


def _fill(msg: Message, values: Mapping[str, Any]) -> None:
    """Set ``msg``'s fields from a wire.py result or push body, key by key."""
    fields = msg.DESCRIPTOR.fields_by_name
    for key, value in values.items():
        field = fields.get(key)
        if field is None:
            raise ValueError(f"{msg.DESCRIPTOR.name} has no field {key!r}")
        if field.type == FieldDescriptor.TYPE_BYTES:
            setattr(msg, key, _json_bytes(value))
        elif value is None:
            continue
        elif field.message_type is None:
            # protobuf checks the type and range of a scalar (TypeError, ValueError).
            setattr(msg, key, value)
        elif field.message_type.GetOptions().map_entry:
            container = getattr(msg, key)
            if field.message_type.fields_by_name["value"].message_type is None:
                container.update(value)
            else:
                for map_key, item in value.items():
                    _fill_message(container[map_key], item)
        elif field.is_repeated:
            container = getattr(msg, key)
            for item in value:
                _fill_message(container.add(), item)
        else:
            _fill_message(getattr(msg, key), value)


# --- replies -------------------------------------------------------------------------------


def encode_reply(command_id: int, method: str, result: Mapping[str, Any] | None = None) -> bytes:
    """A reply whose result field is always present, empty if there is no result."""
    if method not in _REPLY_FIELDS:
        raise ValueError(f"no reply for method {method!r}")
    reply = pb.Reply(id=_command_id(command_id))
    target: Message = getattr(reply, method)
    target.SetInParent()
    if result:
        _fill(target, result)
    return _framed(reply)


def encode_error(
    command_id: int, code: int, message: str | None = None, temporary: bool | None = None
) -> bytes:
    """An error reply; ``message`` and ``temporary`` default to an ``ErrorCode``'s own."""
    if not _is_int(code) or not 0 < code <= _MAX_UINT32:
        raise ValueError(f"an error code must be a positive uint32, got {code!r}")
    if not message:
        message = _standard_text(ErrorCode, code, "error").message
    if temporary is None:
        temporary = code in _ERROR_CODES and ErrorCode(code).temporary
    error = pb.Error(code=int(code), message=message, temporary=temporary)
    return _framed(pb.Reply(id=_command_id(command_id), error=error))


# --- pushes --------------------------------------------------------------------------------


def encode_push(channel: str, kind: str, body: Mapping[str, Any]) -> bytes:
    """A push of ``kind`` with ``body`` (as wire.encode_push takes it) on ``channel``."""
    if kind not in _PUSH_KINDS:
        raise ValueError(f"unknown push kind {kind!r}")
    if not isinstance(body, Mapping):
        raise TypeError(f"a Protobuf push body is a mapping, not {type(body).__name__}")
    _check_push_body(kind, body)
    reply = pb.Reply()
    push = reply.push
    if channel:
        push.channel = channel
    target: Message = getattr(push, kind)
    target.SetInParent()
    _fill(target, body)
    return _framed(reply)


def encode_pub_push(
    channel: str,
    data_json: bytes | RawJson,
    offset: int = 0,
    info: ClientInfo | None = None,
    tags: Mapping[str, str] | None = None,
) -> bytes:
    """The ``pub`` push for one publication, built once and sent to every subscriber.

    ``data_json`` goes into ``Publication.data`` unchanged.
    """
    reply = pb.Reply()
    push = reply.push
    push.channel = channel
    data = data_json.json if isinstance(data_json, RawJson) else data_json
    _publication(push.pub, data, offset, info, tags)
    return _framed(reply)


def encode_join_push(channel: str, info: ClientInfo) -> bytes:
    return encode_push(channel, "join", {"info": info})


def encode_leave_push(channel: str, info: ClientInfo) -> bytes:
    return encode_push(channel, "leave", {"info": info})


def encode_unsubscribe_push(
    channel: str, code: int = UnsubscribeCode.SERVER, reason: str | None = None
) -> bytes:
    return encode_push(channel, "unsubscribe", unsubscribe_push_body(code, reason))


def encode_disconnect_push(code: int, reason: str | None = None) -> bytes:
    return encode_push("", "disconnect", disconnect_push_body(code, reason))


def encode_message_push(data: JsonValue) -> bytes:
    """An async message to one client."""
    return encode_push("", "message", {"data": data})


def encode_subscribe_push(channel: str, result: Mapping[str, Any]) -> bytes:
    """A server-side subscription added at runtime; the ``Subscribe`` push has fewer fields
    than a subscribe result (no publications, no ttl): ``result`` must fit it."""
    return encode_push(channel, "subscribe", result)
