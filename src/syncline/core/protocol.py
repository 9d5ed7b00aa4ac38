"""Parsing of Centrifuge v2 JSON client frames into typed commands (encoding is in wire.py).

A frame holds one JSON object per line. Every line becomes one command, in frame order: JS
sends ``connect`` and its ``subscribe`` commands in one frame, and the subscribes rely on the
connect before them. What the Go reference server closes the connection for (bad JSON, wrong
field types, an id without a known method, an empty channel, …) raises ``ProtocolError`` with
``close=True``, to be answered with close code 3501; the frame is then rejected as a whole. The
two malformed requests Go answers with error 107 instead come back in place as
``RejectedCommand``. Unknown fields are ignored (the SDKs send ``flag``, ``tf`` and ``type``),
and JSON ``null`` counts as an absent field, as it does in Go.
See centrifuge-protocol.md §1-§2.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias

import orjson

from syncline.core.codes import DisconnectCode, ErrorCode
from syncline.core.log import MAX_OFFSET, StreamPosition

# Command ids are uint32 on the wire; both SDKs count them per client instance.
MAX_COMMAND_ID = 2**32 - 1
# The default read limit of the Go server's WebSocket handler; a frame is a few commands.
MAX_FRAME_SIZE = 65536

# Any JSON value as orjson decodes it.
JsonValue: TypeAlias = Any

_INT32 = range(-(2**31), 2**31)
_INT64 = range(-(2**63), 2**63)


class Method(enum.StrEnum):
    """Command method keys a client may send."""

    CONNECT = "connect"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    PUBLISH = "publish"
    PRESENCE = "presence"
    PRESENCE_STATS = "presence_stats"
    HISTORY = "history"
    RPC = "rpc"
    SEND = "send"
    REFRESH = "refresh"
    SUB_REFRESH = "sub_refresh"


class ProtocolError(Exception):
    """A client command the server will not run.

    ``close``: the connection must be closed with ``code`` (a ``DisconnectCode``, 3501 unless
    said otherwise); otherwise ``code`` (an ``ErrorCode``, 107) goes back as an error reply to
    ``command_id``. The text is for logs only: clients get the standard reason or message.
    """

    def __init__(
        self,
        detail: str,
        *,
        close: bool = True,
        command_id: int = 0,
        method: str = "",
        code: DisconnectCode | ErrorCode | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.close = close
        self.command_id = command_id
        self.method = method
        if code is None:
            code = DisconnectCode.BAD_REQUEST if close else ErrorCode.BAD_REQUEST
        self.code: DisconnectCode | ErrorCode = code


@dataclass(frozen=True, slots=True)
class SubscribeRecovery:
    """A server-side subscription's position, as the client hands it back in ``connect.subs``."""

    recover: bool = False
    offset: int = 0
    epoch: str = ""


@dataclass(frozen=True, slots=True)
class ConnectCommand:
    METHOD: ClassVar[Method] = Method.CONNECT
    id: int
    token: str = ""
    data: JsonValue = None
    name: str = ""
    version: str = ""
    subs: Mapping[str, SubscribeRecovery] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SubscribeCommand:
    METHOD: ClassVar[Method] = Method.SUBSCRIBE
    id: int
    channel: str
    token: str = ""
    data: JsonValue = None
    recover: bool = False
    offset: int = 0
    # Empty means "any epoch" (centrifuge-python may send ""), not "no stream".
    epoch: str = ""
    positioned: bool = False
    recoverable: bool = False
    join_leave: bool = False
    flag: int = 0
    # The delta encoding asked for ("" or "fossil"); the namespace decides whether it is used.
    delta: str = ""

    # Set by SDKs that reload state themselves: a failed recovery must be answered with
    # error 112 rather than ``recovered: false``.
    FLAG_REJECT_UNRECOVERED: ClassVar[int] = 2

    @property
    def reject_unrecovered(self) -> bool:
        return bool(self.flag & self.FLAG_REJECT_UNRECOVERED)


@dataclass(frozen=True, slots=True)
class UnsubscribeCommand:
    METHOD: ClassVar[Method] = Method.UNSUBSCRIBE
    id: int
    channel: str


@dataclass(frozen=True, slots=True)
class PublishCommand:
    METHOD: ClassVar[Method] = Method.PUBLISH
    id: int
    channel: str
    data: JsonValue


@dataclass(frozen=True, slots=True)
class PresenceCommand:
    METHOD: ClassVar[Method] = Method.PRESENCE
    id: int
    channel: str


@dataclass(frozen=True, slots=True)
class PresenceStatsCommand:
    METHOD: ClassVar[Method] = Method.PRESENCE_STATS
    id: int
    channel: str


@dataclass(frozen=True, slots=True)
class HistoryCommand:
    METHOD: ClassVar[Method] = Method.HISTORY
    id: int
    channel: str
    # 0 asks for the current position only (the SDK default); -1 asks for everything.
    limit: int = 0
    since: StreamPosition | None = None
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class RpcCommand:
    METHOD: ClassVar[Method] = Method.RPC
    id: int
    method: str = ""
    data: JsonValue = None


@dataclass(frozen=True, slots=True)
class SendCommand:
    """A one-way message (JS ``client.send``): no reply, whatever its id."""

    METHOD: ClassVar[Method] = Method.SEND
    data: JsonValue = None


@dataclass(frozen=True, slots=True)
class RefreshCommand:
    METHOD: ClassVar[Method] = Method.REFRESH
    id: int
    token: str


@dataclass(frozen=True, slots=True)
class SubRefreshCommand:
    METHOD: ClassVar[Method] = Method.SUB_REFRESH
    id: int
    channel: str
    token: str


@dataclass(frozen=True, slots=True)
class Pong:
    """The client's answer to a ping: any object without an id and without ``send``."""


@dataclass(frozen=True, slots=True)
class RejectedCommand:
    """A command to answer with error ``code`` instead of running it; ``detail`` is for logs."""

    id: int
    method: Method
    code: ErrorCode
    detail: str


# The commands that name a method (``METHOD``), i.e. everything but a pong or a rejection.
MethodCommand: TypeAlias = (
    ConnectCommand
    | SubscribeCommand
    | UnsubscribeCommand
    | PublishCommand
    | PresenceCommand
    | PresenceStatsCommand
    | HistoryCommand
    | RpcCommand
    | SendCommand
    | RefreshCommand
    | SubRefreshCommand
)
Command: TypeAlias = MethodCommand | Pong | RejectedCommand

PONG = Pong()


def parse_frame(
    data: str | bytes | bytearray, *, max_commands: int, max_size: int = MAX_FRAME_SIZE
) -> list[Command]:
    """Decode one WebSocket frame into its commands, in order; blank lines are skipped.

    Raises ``ProtocolError`` (always ``close=True``) for a frame larger than ``max_size`` bytes,
    with more than ``max_commands`` commands, or with any line the Go server would close for.
    """
    if isinstance(data, str):
        # Only measure the UTF-8 size when the character count leaves any doubt.
        if len(data) > max_size or (
            len(data) * 4 > max_size and len(data.encode("utf-8", "surrogatepass")) > max_size
        ):
            raise ProtocolError(f"frame larger than {max_size} bytes")
        lines: list[str] | list[bytes] | list[bytearray] = data.split("\n")
    else:
        if len(data) > max_size:
            raise ProtocolError(f"frame larger than {max_size} bytes")
        lines = data.split(b"\n")
    commands: list[Command] = []
    for line in lines:
        if not line or line.isspace():
            continue
        if len(commands) >= max_commands:
            raise ProtocolError(f"frame has more than {max_commands} commands")
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"invalid JSON: {exc}") from None
        try:
            commands.append(parse_command(obj))
        except ProtocolError as exc:
            if exc.close:
                raise
            commands.append(
                RejectedCommand(exc.command_id, Method(exc.method), ErrorCode(exc.code), exc.detail)
            )
    return commands


def parse_command(obj: JsonValue) -> Command:
    """Turn one decoded JSON object into a command; raises ``ProtocolError`` of either kind."""
    if type(obj) is not dict:
        raise ProtocolError("a command must be a JSON object")
    command_id = obj.get("id")
    if command_id is None:
        command_id = 0
    elif type(command_id) is not int or not 0 <= command_id <= MAX_COMMAND_ID:
        raise ProtocolError("id must be a uint32")
    method = ""
    params: JsonValue = None
    for key, value in obj.items():
        if value is not None and key in _PARSERS:
            if method:
                raise ProtocolError(
                    f"two methods in one command: {method}, {key}", command_id=command_id
                )
            method, params = key, value
    if method != Method.SEND:
        if command_id == 0:
            # Go's rule: a command with no id that is not a send is a pong, whatever else it holds.
            return PONG
        if not method:
            raise ProtocolError("command has an id but no known method", command_id=command_id)
    if type(params) is not dict:
        raise ProtocolError(f"{method} must be an object", command_id=command_id, method=method)
    return _PARSERS[method](command_id, params)


def _fail(command_id: int, method: str, detail: str) -> ProtocolError:
    return ProtocolError(f"{method}: {detail}", command_id=command_id, method=method)


def _str(params: dict[str, Any], key: str, command_id: int, method: str) -> str:
    value = params.get(key)
    if value is None:
        return ""
    if type(value) is not str:
        raise _fail(command_id, method, f"{key} must be a string")
    return value


def _channel(params: dict[str, Any], command_id: int, method: str) -> str:
    channel = _str(params, "channel", command_id, method)
    if not channel:
        raise _fail(command_id, method, "channel required")
    return channel


def _bool(params: dict[str, Any], key: str, command_id: int, method: str) -> bool:
    value = params.get(key)
    if value is None:
        return False
    if type(value) is not bool:
        raise _fail(command_id, method, f"{key} must be a boolean")
    return value


def _int(params: dict[str, Any], key: str, allowed: range, command_id: int, method: str) -> int:
    value = params.get(key)
    if value is None:
        return 0
    if type(value) is not int or value not in allowed:
        raise _fail(
            command_id, method, f"{key} must be an integer in [{allowed[0]}, {allowed[-1]}]"
        )
    return value


_OFFSETS = range(MAX_OFFSET + 1)


def _parse_connect(command_id: int, params: dict[str, Any]) -> ConnectCommand:
    method = Method.CONNECT
    subs: dict[str, SubscribeRecovery] = {}
    raw_subs = params.get("subs")
    if raw_subs is not None:
        if type(raw_subs) is not dict:
            raise _fail(command_id, method, "subs must be an object")
        for channel, sub in raw_subs.items():
            if sub is None:
                subs[channel] = SubscribeRecovery()
                continue
            if type(sub) is not dict:
                raise _fail(command_id, method, "subs values must be objects")
            subs[channel] = SubscribeRecovery(
                recover=_bool(sub, "recover", command_id, method),
                offset=_int(sub, "offset", _OFFSETS, command_id, method),
                epoch=_str(sub, "epoch", command_id, method),
            )
    return ConnectCommand(
        id=command_id,
        token=_str(params, "token", command_id, method),
        data=params.get("data"),
        name=_str(params, "name", command_id, method),
        version=_str(params, "version", command_id, method),
        subs=subs,
    )


def _parse_subscribe(command_id: int, params: dict[str, Any]) -> SubscribeCommand:
    method = Method.SUBSCRIBE
    return SubscribeCommand(
        id=command_id,
        channel=_channel(params, command_id, method),
        token=_str(params, "token", command_id, method),
        data=params.get("data"),
        recover=_bool(params, "recover", command_id, method),
        offset=_int(params, "offset", _OFFSETS, command_id, method),
        epoch=_str(params, "epoch", command_id, method),
        positioned=_bool(params, "positioned", command_id, method),
        recoverable=_bool(params, "recoverable", command_id, method),
        join_leave=_bool(params, "join_leave", command_id, method),
        flag=_int(params, "flag", _INT64, command_id, method),
        delta=_delta(params, command_id),
    )


# Delta encodings a client may ask for; Go closes the connection (3501) for any other.
DELTA_TYPES = frozenset({"fossil"})


def check_delta(delta: str, command_id: int) -> str:
    """The subscribe's delta type; ProtocolError (close 3501) for one Go does not know."""
    if delta and delta not in DELTA_TYPES:
        raise _fail(command_id, Method.SUBSCRIBE, f"unknown delta type {delta!r}")
    return delta


def _delta(params: dict[str, Any], command_id: int) -> str:
    return check_delta(_str(params, "delta", command_id, Method.SUBSCRIBE), command_id)


def _parse_unsubscribe(command_id: int, params: dict[str, Any]) -> UnsubscribeCommand:
    return UnsubscribeCommand(command_id, _channel(params, command_id, Method.UNSUBSCRIBE))


def _parse_publish(command_id: int, params: dict[str, Any]) -> PublishCommand:
    channel = _channel(params, command_id, Method.PUBLISH)
    if "data" not in params:
        raise _fail(command_id, Method.PUBLISH, "data required")
    return PublishCommand(command_id, channel, params["data"])


def _parse_presence(command_id: int, params: dict[str, Any]) -> PresenceCommand:
    return PresenceCommand(command_id, _channel(params, command_id, Method.PRESENCE))


def _parse_presence_stats(command_id: int, params: dict[str, Any]) -> PresenceStatsCommand:
    return PresenceStatsCommand(command_id, _channel(params, command_id, Method.PRESENCE_STATS))


def _parse_history(command_id: int, params: dict[str, Any]) -> HistoryCommand:
    method = Method.HISTORY
    channel = _channel(params, command_id, method)
    limit = _int(params, "limit", _INT32, command_id, method)
    reverse = _bool(params, "reverse", command_id, method)
    since = None
    raw_since = params.get("since")
    if raw_since is not None:
        if type(raw_since) is not dict:
            raise _fail(command_id, method, "since must be an object")
        since = StreamPosition(
            offset=_int(raw_since, "offset", _OFFSETS, command_id, method),
            epoch=_str(raw_since, "epoch", command_id, method),
        )
        if reverse and since.offset == 0:
            # Nothing precedes offset 0; Go answers 107 rather than closing.
            raise ProtocolError(
                "history: reverse with since offset 0",
                close=False,
                command_id=command_id,
                method=method,
            )
    return HistoryCommand(command_id, channel, limit, since, reverse)


def _parse_rpc(command_id: int, params: dict[str, Any]) -> RpcCommand:
    return RpcCommand(
        command_id, _str(params, "method", command_id, Method.RPC), params.get("data")
    )


def _parse_send(command_id: int, params: dict[str, Any]) -> SendCommand:
    return SendCommand(params.get("data"))


def _parse_refresh(command_id: int, params: dict[str, Any]) -> RefreshCommand:
    token = _str(params, "token", command_id, Method.REFRESH)
    if not token:
        raise _fail(command_id, Method.REFRESH, "token required")
    return RefreshCommand(command_id, token)


def _parse_sub_refresh(command_id: int, params: dict[str, Any]) -> SubRefreshCommand:
    method = Method.SUB_REFRESH
    channel = _channel(params, command_id, method)
    token = _str(params, "token", command_id, method)
    if not token:
        # Go closes for a missing channel but answers 107 for a missing token.
        raise ProtocolError(
            "sub_refresh: token required", close=False, command_id=command_id, method=method
        )
    return SubRefreshCommand(command_id, channel, token)


_PARSERS: dict[str, Callable[[int, dict[str, Any]], Command]] = {
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
