"""Parsing of Centrifuge v2 Protobuf client frames into the commands protocol.py defines.

A binary frame holds one or more ``Command`` messages (client.proto), each preceded by its
length as a varint, which is how centrifuge-js (protobufjs ``encodeDelimited``) and
centrifuge-python frame them. The commands are the same objects the JSON parser returns, with
the same rules (pong, two methods, channel required, …), so the gateway runs both formats
alike. Payloads (``data``) are bytes in Protobuf; Syncline's are JSON in both formats, so they
are decoded here and a payload that is not JSON closes the connection like bad JSON does.

Every malformed frame raises ``ProtocolError`` (close 3501), never another exception: a
truncated or over-long varint, a length past the frame's end, bytes protobuf cannot parse
(including bad UTF-8 in a string), and a known field sent with the wrong wire type, which the
Go server (vtprotobuf) also rejects. Unknown field numbers are ignored, as newer SDKs send
fields this server does not know. Sizes are checked before anything is copied.
See docs/protocol.md and docs/topics/protobuf.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import orjson
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from syncline.core.codes import ErrorCode
from syncline.core.log import MAX_OFFSET, StreamPosition
from syncline.core.proto import client_pb2 as pb
from syncline.core.protocol import (
    MAX_FRAME_SIZE,
    PONG,
    Command,
    ConnectCommand,
    HistoryCommand,
    JsonValue,
    Method,
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
    check_delta,
)

# A varint of a 64-bit value takes at most 10 bytes (7 bits each).
_MAX_VARINT_BYTES = 10


def read_varint(data: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """The unsigned varint at ``pos`` and the position after it; ProtocolError if malformed."""
    result = 0
    shift = 0
    end = min(pos + _MAX_VARINT_BYTES, len(data))
    while pos < end:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
    if pos == len(data):
        raise ProtocolError("truncated varint")
    raise ProtocolError(f"varint longer than {_MAX_VARINT_BYTES} bytes")


def parse_frame(
    data: bytes | bytearray | memoryview, *, max_commands: int, max_size: int = MAX_FRAME_SIZE
) -> list[Command]:
    """Decode one binary WebSocket frame into its commands, in order.

    Raises ``ProtocolError`` (always ``close=True``) for a frame larger than ``max_size`` bytes,
    with more than ``max_commands`` commands, or with anything the Go server would close for.
    An empty message is a pong (an empty JSON object is one too).
    """
    size = len(data)
    if size > max_size:
        raise ProtocolError(f"frame larger than {max_size} bytes")
    view = memoryview(data)
    commands: list[Command] = []
    pos = 0
    while pos < size:
        if len(commands) >= max_commands:
            raise ProtocolError(f"frame has more than {max_commands} commands")
        length, pos = read_varint(view, pos)
        if length > size - pos:
            raise ProtocolError(f"command of {length} bytes runs past the end of the frame")
        try:
            # protobuf parses any buffer (its stubs say bytes): no copy of the command.
            message = pb.Command.FromString(cast(bytes, view[pos : pos + length]))
        except DecodeError as exc:
            raise ProtocolError(f"invalid Protobuf command: {exc}") from None
        pos += length
        try:
            commands.append(parse_command(message))
        except ProtocolError as exc:
            if exc.close:
                raise
            commands.append(
                RejectedCommand(exc.command_id, Method(exc.method), ErrorCode(exc.code), exc.detail)
            )
    return commands


def parse_command(message: pb.Command) -> Command:
    """Turn one decoded ``Command`` into a command; raises ``ProtocolError`` of either kind."""
    _check_wire_types(message, 0, "")
    command_id = message.id
    method = ""
    params: Message | None = None
    # ListFields: the fields set, by field number; the method's request message is present
    # even when empty (``send {}``), as message fields have presence in proto3.
    for field, value in message.ListFields():
        name = field.name
        if name in _PARSERS:
            if method:
                raise ProtocolError(
                    f"two methods in one command: {method}, {name}", command_id=command_id
                )
            method, params = name, value
    if method != Method.SEND:
        if command_id == 0:
            # Go's rule: a command with no id that is not a send is a pong, whatever else it holds.
            return PONG
        if not method:
            raise ProtocolError("command has an id but no known method", command_id=command_id)
    assert params is not None
    _check_wire_types(params, command_id, method)
    return _PARSERS[method](command_id, params)


def _check_wire_types(message: Message, command_id: int, method: str) -> None:
    # protobuf keeps a known field with the wrong wire type as an unknown field; a field
    # number the message does not declare is a newer SDK's and is fine.
    known = message.DESCRIPTOR.fields_by_number
    unknown = UnknownFieldSet(message)
    for i in range(len(unknown)):
        field = unknown[i]
        if field.field_number in known:
            name = known[field.field_number].name
            raise ProtocolError(
                f"{message.DESCRIPTOR.name}.{name}: wire type {field.wire_type} is not its type's",
                command_id=command_id,
                method=method,
            )


def _fail(command_id: int, method: str, detail: str) -> ProtocolError:
    return ProtocolError(f"{method}: {detail}", command_id=command_id, method=method)


def _json(data: bytes, command_id: int, method: str) -> JsonValue:
    # Empty bytes are an absent payload, as JSON null is in the JSON format.
    if not data:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise _fail(command_id, method, "data must be JSON") from None


def _channel(channel: str, command_id: int, method: str) -> str:
    if not channel:
        raise _fail(command_id, method, "channel required")
    return channel


def _offset(offset: int, command_id: int, method: str) -> int:
    # uint64 on the wire, but the SDKs keep offsets in JavaScript numbers.
    if offset > MAX_OFFSET:
        raise _fail(command_id, method, f"offset must be at most {MAX_OFFSET}")
    return offset


def _parse_connect(command_id: int, req: pb.ConnectRequest) -> ConnectCommand:
    method = Method.CONNECT
    subs: dict[str, SubscribeRecovery] = {}
    for channel, sub in req.subs.items():
        _check_wire_types(sub, command_id, method)
        subs[channel] = SubscribeRecovery(
            recover=sub.recover,
            offset=_offset(sub.offset, command_id, method),
            epoch=sub.epoch,
        )
    return ConnectCommand(
        id=command_id,
        token=req.token,
        data=_json(req.data, command_id, method),
        name=req.name,
        version=req.version,
        subs=subs,
    )


def _parse_subscribe(command_id: int, req: pb.SubscribeRequest) -> SubscribeCommand:
    method = Method.SUBSCRIBE
    return SubscribeCommand(
        id=command_id,
        channel=_channel(req.channel, command_id, method),
        token=req.token,
        data=_json(req.data, command_id, method),
        recover=req.recover,
        offset=_offset(req.offset, command_id, method),
        epoch=req.epoch,
        positioned=req.positioned,
        recoverable=req.recoverable,
        join_leave=req.join_leave,
        flag=req.flag,
        delta=check_delta(req.delta, command_id),
    )


def _parse_unsubscribe(command_id: int, req: pb.UnsubscribeRequest) -> UnsubscribeCommand:
    return UnsubscribeCommand(command_id, _channel(req.channel, command_id, Method.UNSUBSCRIBE))


def _parse_publish(command_id: int, req: pb.PublishRequest) -> PublishCommand:
    method = Method.PUBLISH
    channel = _channel(req.channel, command_id, method)
    if not req.data:
        # Go closes for a publish without data too.
        raise _fail(command_id, method, "data required")
    return PublishCommand(command_id, channel, _json(req.data, command_id, method))


def _parse_presence(command_id: int, req: pb.PresenceRequest) -> PresenceCommand:
    return PresenceCommand(command_id, _channel(req.channel, command_id, Method.PRESENCE))


def _parse_presence_stats(command_id: int, req: pb.PresenceStatsRequest) -> PresenceStatsCommand:
    return PresenceStatsCommand(
        command_id, _channel(req.channel, command_id, Method.PRESENCE_STATS)
    )


def _parse_history(command_id: int, req: pb.HistoryRequest) -> HistoryCommand:
    method = Method.HISTORY
    channel = _channel(req.channel, command_id, method)
    since = None
    if req.HasField("since"):
        _check_wire_types(req.since, command_id, method)
        since = StreamPosition(_offset(req.since.offset, command_id, method), req.since.epoch)
        if req.reverse and since.offset == 0:
            # Nothing precedes offset 0; Go answers 107 rather than closing.
            raise ProtocolError(
                "history: reverse with since offset 0",
                close=False,
                command_id=command_id,
                method=method,
            )
    return HistoryCommand(command_id, channel, req.limit, since, req.reverse)


def _parse_rpc(command_id: int, req: pb.RPCRequest) -> RpcCommand:
    return RpcCommand(command_id, req.method, _json(req.data, command_id, Method.RPC))


def _parse_send(command_id: int, req: pb.SendRequest) -> SendCommand:
    return SendCommand(_json(req.data, command_id, Method.SEND))


def _parse_refresh(command_id: int, req: pb.RefreshRequest) -> RefreshCommand:
    if not req.token:
        raise _fail(command_id, Method.REFRESH, "token required")
    return RefreshCommand(command_id, req.token)


def _parse_sub_refresh(command_id: int, req: pb.SubRefreshRequest) -> SubRefreshCommand:
    method = Method.SUB_REFRESH
    channel = _channel(req.channel, command_id, method)
    if not req.token:
        # Go closes for a missing channel but answers 107 for a missing token.
        raise ProtocolError(
            "sub_refresh: token required", close=False, command_id=command_id, method=method
        )
    return SubRefreshCommand(command_id, channel, req.token)


# Keyed by the Command field names, which are the JSON method keys.
_PARSERS: dict[str, Callable[[int, Any], Command]] = {
    Method.CONNECT: _parse_connect,
    Method.SUBSCRIBE: _parse_subscribe,
    Method.UNSUBSCRIBE: _parse_unsubscribe,
    Method.PUBLISH: _parse_publish,
    Method.PRESENCE: _parse_presence,
    Method.PRESENCE_STATS: _parse_presence_stats,
    Method.HISTORY: _parse_history,
    Method.RPC: _parse_rpc,
    Method.SEND: _parse_send,
    Method.REFRESH: _parse_refresh,
    Method.SUB_REFRESH: _parse_sub_refresh,
}
