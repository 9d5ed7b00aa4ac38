"""Control-bus commands between Syncline processes, and their one wire format.

A command is an instruction that every process with connections must carry out for its own
clients: a session was revoked, a user is to be disconnected, subscribed, unsubscribed or
refreshed; or that one process must carry out (``Emulate``: commands for an emulated HTTP
session it holds). The same bytes travel over the in-process bus and over Redis pub/sub, so a
command is encoded and decoded here only (sans-I/O, as Synapse's replication commands are).
Unknown kinds are refused on decode, never guessed at: a newer node's command is dropped with a
clear error by an older one.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

# Bounds on what one command may carry: a user has at most a few hundred live sessions, and a
# command that names more is a bug, not a revocation to carry out partly.
MAX_SESSIONS_PER_COMMAND = 1000
MAX_FIELD_LENGTH = 1024
# Channel info and subscribe data travel as JSON text; the HTTP request limit bounds them first.
MAX_JSON_LENGTH = 65536
# A re-check waits for the newest transactions that touched the channel; older ones are visible
# long before in practice, and the list only needs to bound what one command carries.
MAX_XIDS_PER_RECHECK = 32
# An emulation request's commands: the /emulation body limit (core/emulation.MAX_BODY).
MAX_EMULATION_DATA = 65536
# Offsets and Unix times: within what a JSON number carries exactly.
MAX_COUNT = 2**53


class ControlDecodeError(ValueError):
    """Bytes that are not a command this version understands."""


@dataclass(frozen=True, slots=True)
class SessionsRevoked:
    """Sessions of ``user`` were revoked (committed): refuse them, close their connections."""

    user: str
    sessions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DisconnectUser:
    """Close the connections of ``user`` (only ``client`` when set) with ``code``."""

    user: str
    code: int
    reason: str = ""
    client: str = ""


@dataclass(frozen=True, slots=True)
class UnsubscribeUser:
    """Unsubscribe the connections of ``user`` (only ``client`` when set) from ``channel``."""

    user: str
    channel: str
    client: str = ""


@dataclass(frozen=True, slots=True)
class SubscribeUser:
    """Subscribe the connections of ``user`` (only ``client`` when set) to ``channel``
    server-side (the server API's ``subscribe``): each gets a ``subscribe`` push.

    ``info`` and ``data`` are JSON text or empty: the subscription's channel info (in presence
    and publications) and the push's ``data``. ``expire_at`` (Unix seconds, 0: never) ends the
    subscription. With ``recover_epoch`` set, what was published after ``recover_offset`` of
    that epoch follows the push, as a client's own recovery would.
    """

    user: str
    channel: str
    client: str = ""
    info: str = ""
    data: str = ""
    expire_at: int = 0
    recover_offset: int = 0
    recover_epoch: str = ""


@dataclass(frozen=True, slots=True)
class RefreshUser:
    """Refresh the connections of ``user`` (only ``client`` when set), as Centrifugo's server
    API ``refresh``: ``expired`` closes them (3005); else ``expire_at`` (Unix seconds; 0: never)
    is their new expiry, and ``info`` (JSON text, when set) their new connection info."""

    user: str
    client: str = ""
    expired: bool = False
    expire_at: int = 0
    info: str = ""


@dataclass(frozen=True, slots=True)
class RecheckChannel:
    """A membership row of ``channel``'s namespace changed (committed): re-check its
    subscribers, and unsubscribe (2000) those no longer allowed.

    ``xids`` are the transactions that changed it: capture sees a commit a moment before new
    snapshots do, so the re-check first waits until they are visible (empty: unknown).
    """

    channel: str
    xids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Emulate:
    """Commands for the emulated HTTP session ``session`` of node ``node``: an /emulation POST
    that reached another process (a worker or node behind the same balancer). Only the named
    node acts; it hands ``data``, a command frame in the session's format, to the session."""

    node: str
    session: str
    data: bytes


ControlCommand = (
    SessionsRevoked
    | DisconnectUser
    | UnsubscribeUser
    | SubscribeUser
    | RefreshUser
    | RecheckChannel
    | Emulate
)

_KINDS: dict[type[Any], str] = {
    SessionsRevoked: "sessions_revoked",
    DisconnectUser: "disconnect",
    UnsubscribeUser: "unsubscribe",
    SubscribeUser: "subscribe",
    RefreshUser: "refresh",
    RecheckChannel: "recheck",
    Emulate: "emulate",
}


def encode(command: ControlCommand) -> bytes:
    """One command as compact JSON: ``{"kind": …, …fields}``."""
    if isinstance(command, SessionsRevoked):
        body: dict[str, Any] = {"user": command.user, "sessions": list(command.sessions)}
    elif isinstance(command, DisconnectUser):
        body = {
            "user": command.user,
            "code": command.code,
            "reason": command.reason,
            "client": command.client,
        }
    elif isinstance(command, UnsubscribeUser):
        body = {"user": command.user, "channel": command.channel, "client": command.client}
    elif isinstance(command, SubscribeUser):
        body = {
            "user": command.user,
            "channel": command.channel,
            "client": command.client,
            "info": command.info,
            "data": command.data,
            "expire_at": command.expire_at,
            "recover_offset": command.recover_offset,
            "recover_epoch": command.recover_epoch,
        }
    elif isinstance(command, RefreshUser):
        body = {
            "user": command.user,
            "client": command.client,
            "expired": command.expired,
            "expire_at": command.expire_at,
            "info": command.info,
        }
    elif isinstance(command, Emulate):
        data = base64.b64encode(command.data).decode()
        body = {"node": command.node, "session": command.session, "data": data}
    else:
        body = {"channel": command.channel, "xids": list(command.xids)}
    return orjson.dumps({"kind": _KINDS[type(command)], **body})


def _text(body: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = body.get(key, None if required else "")
    if not isinstance(value, str) or len(value) > MAX_FIELD_LENGTH:
        raise ControlDecodeError(f"{key} must be a string of at most {MAX_FIELD_LENGTH} chars")
    return value


def _json_text(body: dict[str, Any], key: str) -> str:
    # Channel info and subscribe data: JSON text of up to the bounds the server API enforces.
    value = body.get(key, "")
    if not isinstance(value, str) or len(value) > MAX_JSON_LENGTH:
        raise ControlDecodeError(f"{key} must be a string of at most {MAX_JSON_LENGTH} chars")
    return value


def _count(body: dict[str, Any], key: str) -> int:
    value = body.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COUNT:
        raise ControlDecodeError(f"{key} must be an integer in 0-{MAX_COUNT}")
    return value


def _emulation_data(body: dict[str, Any]) -> bytes:
    value = body.get("data")
    if not isinstance(value, str) or len(value) > MAX_EMULATION_DATA * 4 // 3 + 4:
        raise ControlDecodeError(f"data must be base64 of at most {MAX_EMULATION_DATA} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ControlDecodeError("data must be base64") from None


def decode(data: bytes) -> ControlCommand:
    """The command ``data`` encodes; raises ControlDecodeError for anything else."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise ControlDecodeError(f"not JSON: {err}") from None
    if not isinstance(body, dict):
        raise ControlDecodeError("a command is a JSON object")
    kind = body.get("kind")
    if kind == "sessions_revoked":
        sessions = body.get("sessions")
        if (
            not isinstance(sessions, list)
            or len(sessions) > MAX_SESSIONS_PER_COMMAND
            or not all(isinstance(s, str) and len(s) <= MAX_FIELD_LENGTH for s in sessions)
        ):
            raise ControlDecodeError("sessions must be a list of strings")
        return SessionsRevoked(_text(body, "user"), tuple(sessions))
    if kind == "disconnect":
        code = body.get("code")
        if not isinstance(code, int) or isinstance(code, bool) or not 3000 <= code < 5000:
            raise ControlDecodeError("code must be an integer in 3000-4999")
        return DisconnectUser(
            _text(body, "user"),
            code,
            _text(body, "reason", required=False),
            _text(body, "client", required=False),
        )
    if kind == "unsubscribe":
        return UnsubscribeUser(
            _text(body, "user"), _text(body, "channel"), _text(body, "client", required=False)
        )
    if kind == "subscribe":
        return SubscribeUser(
            _text(body, "user"),
            _text(body, "channel"),
            _text(body, "client", required=False),
            _json_text(body, "info"),
            _json_text(body, "data"),
            _count(body, "expire_at"),
            _count(body, "recover_offset"),
            _text(body, "recover_epoch", required=False),
        )
    if kind == "refresh":
        expired = body.get("expired", False)
        if not isinstance(expired, bool):
            raise ControlDecodeError("expired must be a boolean")
        return RefreshUser(
            _text(body, "user"),
            _text(body, "client", required=False),
            expired,
            _count(body, "expire_at"),
            _json_text(body, "info"),
        )
    if kind == "recheck":
        xids = body.get("xids", [])
        if (
            not isinstance(xids, list)
            or len(xids) > MAX_XIDS_PER_RECHECK
            or not all(
                isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= MAX_COUNT for x in xids
            )
        ):
            raise ControlDecodeError(f"xids must be a list of at most {MAX_XIDS_PER_RECHECK} ids")
        return RecheckChannel(_text(body, "channel"), tuple(xids))
    if kind == "emulate":
        return Emulate(_text(body, "node"), _text(body, "session"), _emulation_data(body))
    raise ControlDecodeError(f"unknown command kind {kind!r}")
