"""Sans-I/O client codec for Centrifuge v2 JSON: command lines out, replies and pushes in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

import orjson

from syncline.client.events import ClientInfo as ClientInfo
from syncline.client.events import ConnectResult as ConnectResult
from syncline.client.events import ErrorInfo as ErrorInfo
from syncline.client.events import HistoryResult as HistoryResult
from syncline.client.events import PresenceStats as PresenceStats
from syncline.client.events import Publication as Publication
from syncline.client.events import RefreshResult as RefreshResult
from syncline.client.events import SubscribeResult as SubscribeResult

# The answer to a server ping, and what a ping looks like: an object with no id and no push.
PONG: Final = b"{}"


class CodecError(ValueError):
    """The server sent something that is not Centrifuge v2 JSON; the connection is unusable."""


# --- decoded server messages ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to command ``id``: ``result`` (under key ``method``) or ``error``."""

    id: int
    method: str = ""
    result: Mapping[str, Any] = field(default_factory=dict)
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    """``{}`` from the server; answer with ``PONG`` when the connect result says ``pong``."""


@dataclass(slots=True)
class PubPush:
    channel: str
    pub: Publication


@dataclass(frozen=True, slots=True)
class JoinPush:
    channel: str
    info: ClientInfo


@dataclass(frozen=True, slots=True)
class LeavePush:
    channel: str
    info: ClientInfo


@dataclass(frozen=True, slots=True)
class UnsubscribePush:
    """Code < 2500: the subscription is over; from 2500 on: subscribe again, with recovery."""

    channel: str
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class SubscribePush:
    channel: str
    result: SubscribeResult


@dataclass(frozen=True, slots=True)
class DisconnectPush:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class MessagePush:
    data: Any


@dataclass(frozen=True, slots=True)
class OtherPush:
    """A push kind this client does not act on (kept for forward compatibility)."""

    channel: str
    kind: str


Push: TypeAlias = (
    PubPush
    | JoinPush
    | LeavePush
    | UnsubscribePush
    | SubscribePush
    | DisconnectPush
    | MessagePush
    | OtherPush
)
ServerMessage: TypeAlias = Reply | Push | Ping

PING: Final = Ping()


# --- encoding commands -----------------------------------------------------------------------


def command(command_id: int, method: str, params: Mapping[str, Any]) -> bytes:
    """One command line ``{"id":N,"<method>":{params}}``; orjson never writes a raw newline."""
    if not 0 < command_id < 2**32:
        raise ValueError(f"a command id is a uint32 above 0, got {command_id}")
    return orjson.dumps({"id": command_id, method: params})


def connect_command(
    command_id: int,
    *,
    token: str = "",
    name: str = "",
    data: Any = None,
    subs: Mapping[str, tuple[int, str]] | None = None,
) -> bytes:
    """``subs`` are the positions (offset, epoch) of server-side subscriptions to recover."""
    params: dict[str, Any] = {}
    if token:
        params["token"] = token
    if name:
        params["name"] = name
    if data is not None:
        params["data"] = data
    if subs:
        params["subs"] = {
            ch: {"recover": True, "offset": off, "epoch": ep} for ch, (off, ep) in subs.items()
        }
    return command(command_id, "connect", params)


def subscribe_command(
    command_id: int,
    channel: str,
    *,
    recoverable: bool = False,
    positioned: bool = False,
    join_leave: bool = False,
    recover: bool = False,
    offset: int = 0,
    epoch: str = "",
    token: str = "",
    data: Any = None,
) -> bytes:
    params: dict[str, Any] = {"channel": channel}
    if token:
        params["token"] = token
    if data is not None:
        params["data"] = data
    if recoverable:
        params["recoverable"] = True
    if positioned:
        params["positioned"] = True
    if join_leave:
        params["join_leave"] = True
    if recover:
        params.update(recover=True, offset=offset, epoch=epoch)
    return command(command_id, "subscribe", params)


def unsubscribe_command(command_id: int, channel: str) -> bytes:
    return command(command_id, "unsubscribe", {"channel": channel})


def publish_command(command_id: int, channel: str, data: Any) -> bytes:
    return command(command_id, "publish", {"channel": channel, "data": data})


def presence_command(command_id: int, channel: str) -> bytes:
    return command(command_id, "presence", {"channel": channel})


def presence_stats_command(command_id: int, channel: str) -> bytes:
    return command(command_id, "presence_stats", {"channel": channel})


def history_command(
    command_id: int,
    channel: str,
    *,
    limit: int = 0,
    since: tuple[int, str] | None = None,
    reverse: bool = False,
) -> bytes:
    """``limit`` 0: only the current position, -1: everything; ``since`` is (offset, epoch)."""
    params: dict[str, Any] = {"channel": channel}
    if limit:
        params["limit"] = limit
    if since is not None:
        params["since"] = {"offset": since[0], "epoch": since[1]}
    if reverse:
        params["reverse"] = True
    return command(command_id, "history", params)


def rpc_command(command_id: int, method: str, data: Any = None) -> bytes:
    params: dict[str, Any] = {"method": method}
    if data is not None:
        params["data"] = data
    return command(command_id, "rpc", params)


def refresh_command(command_id: int, token: str) -> bytes:
    return command(command_id, "refresh", {"token": token})


def sub_refresh_command(command_id: int, channel: str, token: str) -> bytes:
    return command(command_id, "sub_refresh", {"channel": channel, "token": token})


# --- decoding server output ------------------------------------------------------------------


def _get(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = obj.get(key)
    if value is None:
        return default
    # bool is an int to Python but not to the protocol.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CodecError(f"{key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _obj(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise CodecError(f"{what} must be a JSON object, got {value!r}")
    return value


def client_info(value: Any) -> ClientInfo:
    obj = _obj(value, "client info")
    return ClientInfo(
        _get(obj, "user", str, ""),
        _get(obj, "client", str, ""),
        obj.get("conn_info"),
        obj.get("chan_info"),
    )


def publication(value: Any) -> Publication:
    obj = _obj(value, "a publication")
    offset = obj.get("offset", 0)
    if type(offset) is not int:  # inlined _get: this runs once per publication
        offset = _get(obj, "offset", int, 0)
    info = obj.get("info")
    tags = obj.get("tags")
    return Publication(
        offset,
        obj.get("data"),
        None if info is None else client_info(info),
        None if tags is None else _get(obj, "tags", dict, None),
    )


def _publications(obj: Mapping[str, Any]) -> tuple[Publication, ...]:
    return tuple(publication(p) for p in _get(obj, "publications", list, ()))


def subscribe_result(value: Any) -> SubscribeResult:
    obj = _obj(value, "a subscribe result")
    return SubscribeResult(
        recoverable=_get(obj, "recoverable", bool, False),
        positioned=_get(obj, "positioned", bool, False),
        epoch=_get(obj, "epoch", str, ""),
        offset=_get(obj, "offset", int, 0),
        recovered=_get(obj, "recovered", bool, False),
        was_recovering=_get(obj, "was_recovering", bool, False),
        publications=_publications(obj),
        expires=_get(obj, "expires", bool, False),
        ttl=_get(obj, "ttl", int, 0),
        data=obj.get("data"),
    )


def connect_result(value: Any) -> ConnectResult:
    obj = _obj(value, "a connect result")
    client = _get(obj, "client", str, "")
    if not client:
        raise CodecError("a connect result needs the client id")
    subs = _get(obj, "subs", dict, {})
    return ConnectResult(
        client=client,
        version=_get(obj, "version", str, ""),
        expires=_get(obj, "expires", bool, False),
        ttl=_get(obj, "ttl", int, 0),
        ping=_get(obj, "ping", int, 0),
        pong=_get(obj, "pong", bool, False),
        subs={ch: subscribe_result(r) for ch, r in subs.items()},
        data=obj.get("data"),
    )


def refresh_result(value: Any) -> RefreshResult:
    obj = _obj(value, "a refresh result")
    return RefreshResult(_get(obj, "expires", bool, False), _get(obj, "ttl", int, 0))


def history_result(value: Any) -> HistoryResult:
    obj = _obj(value, "a history result")
    return HistoryResult(
        _publications(obj), _get(obj, "epoch", str, ""), _get(obj, "offset", int, 0)
    )


def presence_result(value: Any) -> dict[str, ClientInfo]:
    """Client id → ClientInfo (the wire key is ``presence``)."""
    presence = _get(_obj(value, "a presence result"), "presence", dict, {})
    return {cid: client_info(info) for cid, info in presence.items()}


def presence_stats_result(value: Any) -> PresenceStats:
    obj = _obj(value, "a presence_stats result")
    return PresenceStats(_get(obj, "num_clients", int, 0), _get(obj, "num_users", int, 0))


def _push(value: Any) -> Push:
    obj = _obj(value, "a push")
    channel = obj.get("channel", "")
    if type(channel) is not str:
        channel = _get(obj, "channel", str, "")
    body = obj.get("pub")
    if body is not None:  # the hot path
        return PubPush(channel, publication(body))
    for kind, body in obj.items():
        if kind in ("channel", "id") or body is None:
            continue
        if kind in ("join", "leave"):
            info = _obj(body, f"a {kind} push").get("info")
            if info is None:
                raise CodecError(f"a {kind} push needs info")
            return (JoinPush if kind == "join" else LeavePush)(channel, client_info(info))
        if kind in ("unsubscribe", "disconnect"):
            b = _obj(body, f"an {kind} push")
            code, reason = _get(b, "code", int, 0), _get(b, "reason", str, "")
            if kind == "unsubscribe":
                return UnsubscribePush(channel, code, reason)
            return DisconnectPush(code, reason)
        if kind == "subscribe":
            return SubscribePush(channel, subscribe_result(body))
        if kind == "message":
            return MessagePush(_obj(body, "a message push").get("data"))
        return OtherPush(channel, kind)
    raise CodecError(f"a push without a body: {obj!r}")


def decode_message(value: Any) -> ServerMessage:
    """One decoded JSON object → a Reply, a push, or the ping."""
    obj = _obj(value, "a server message")
    push = obj.get("push")
    if push is not None:
        return _push(push)
    command_id = _get(obj, "id", int, 0)
    if not command_id:
        return PING
    error = obj.get("error")
    if error is not None:
        err = _obj(error, "an error")
        code = _get(err, "code", int, 0)
        if not code:
            raise CodecError(f"an error reply without a code: {obj!r}")
        return Reply(
            command_id,
            error=ErrorInfo(
                code, _get(err, "message", str, ""), _get(err, "temporary", bool, False)
            ),
        )
    for key, result in obj.items():
        if key != "id":
            return Reply(command_id, key, _obj({} if result is None else result, f"a {key} result"))
    return Reply(command_id)


def decode_frame(frame: bytes | str) -> list[ServerMessage]:
    """A text frame of newline-separated JSON objects, in order; blank lines are skipped."""
    if isinstance(frame, str):
        frame = frame.encode()
    out: list[ServerMessage] = []
    for line in frame.split(b"\n"):
        if not line or line.isspace():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as err:
            raise CodecError(f"a frame line is not JSON: {line[:80]!r}") from err
        out.append(decode_message(value))
    return out
