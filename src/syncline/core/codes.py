"""Numeric codes of the Centrifuge v2 client protocol: error replies, unsubscribe pushes, closes.

The values, messages and reasons are those of the Go reference server (centrifugal/centrifuge
``errors.go``, ``unsubscribe.go``, ``disconnect.go``), because the SDKs act on the numbers and
show the texts to applications. See centrifuge-protocol.md §4.
"""

from __future__ import annotations

import enum

import orjson

# RFC 6455 §5.5: a control frame payload is at most 125 bytes, two of which carry the code.
MAX_CLOSE_REASON_BYTES = 123

# Go's ranges: 400-1999 for application errors, 2100-2499 / 2600-2999 for application unsubscribe
# codes, 4000-4999 for application disconnect codes. Anything else is reserved by the protocol.
APP_ERROR_CODES = range(400, 2000)
APP_UNSUBSCRIBE_CODES = (range(2100, 2500), range(2600, 3000))
APP_DISCONNECT_CODES = range(4000, 5000)


class ErrorCode(enum.IntEnum):
    """Codes of ``{"id":N,"error":{"code":C,"message":M}}`` replies."""

    INTERNAL = 100
    UNAUTHORIZED = 101
    UNKNOWN_CHANNEL = 102
    PERMISSION_DENIED = 103
    METHOD_NOT_FOUND = 104
    ALREADY_SUBSCRIBED = 105
    LIMIT_EXCEEDED = 106
    BAD_REQUEST = 107
    NOT_AVAILABLE = 108
    # The SDKs fetch a fresh token and retry on this one, although it is not "temporary".
    TOKEN_EXPIRED = 109
    EXPIRED = 110
    TOO_MANY_REQUESTS = 111
    # Answer to a subscribe with flag bit 2 whose recovery failed, and to a history query
    # whose ``since`` is no longer in the stream.
    UNRECOVERABLE_POSITION = 112
    # Map-subscription paging only; listed so that nobody reuses the number.
    CONCURRENT_PAGINATION = 113

    @property
    def message(self) -> str:
        """The standard message; the SDKs require a message in every error reply."""
        return _ERROR_MESSAGES[self]

    @property
    def temporary(self) -> bool:
        """Whether the SDK retries: they read the reply's ``temporary`` flag, not the code."""
        return self in _TEMPORARY_ERRORS


_ERROR_MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.INTERNAL: "internal server error",
    ErrorCode.UNAUTHORIZED: "unauthorized",
    ErrorCode.UNKNOWN_CHANNEL: "unknown channel",
    ErrorCode.PERMISSION_DENIED: "permission denied",
    ErrorCode.METHOD_NOT_FOUND: "method not found",
    ErrorCode.ALREADY_SUBSCRIBED: "already subscribed",
    ErrorCode.LIMIT_EXCEEDED: "limit exceeded",
    ErrorCode.BAD_REQUEST: "bad request",
    ErrorCode.NOT_AVAILABLE: "not available",
    ErrorCode.TOKEN_EXPIRED: "token expired",
    ErrorCode.EXPIRED: "expired",
    ErrorCode.TOO_MANY_REQUESTS: "too many requests",
    ErrorCode.UNRECOVERABLE_POSITION: "unrecoverable position",
    ErrorCode.CONCURRENT_PAGINATION: "concurrent pagination",
}

_TEMPORARY_ERRORS = frozenset(
    {ErrorCode.INTERNAL, ErrorCode.TOO_MANY_REQUESTS, ErrorCode.CONCURRENT_PAGINATION}
)


class UnsubscribeCode(enum.IntEnum):
    """Codes of ``{"push":{"channel":C,"unsubscribe":{"code":N,"reason":R}}}``."""

    # 0 and 1 only label why a subscription ended inside the server (presence, hooks, logs);
    # the client already knows, so they are never sent.
    CLIENT = 0
    DISCONNECT = 1
    SERVER = 2000
    # From 2500 on the SDK resubscribes, with recovery from its last offset.
    INSUFFICIENT_STATE = 2500
    EXPIRED = 2501
    STATE_INVALIDATED = 2502

    @property
    def reason(self) -> str:
        """The standard reason; both SDKs require a non-empty one."""
        return _UNSUBSCRIBE_REASONS[self]

    @property
    def resubscribe(self) -> bool:
        """Whether the SDK subscribes again after this push."""
        return unsubscribe_resubscribes(self)

    @property
    def sendable(self) -> bool:
        """Whether this code may appear on the wire."""
        return self >= UnsubscribeCode.SERVER


_UNSUBSCRIBE_REASONS: dict[UnsubscribeCode, str] = {
    UnsubscribeCode.CLIENT: "client unsubscribed",
    UnsubscribeCode.DISCONNECT: "client disconnected",
    UnsubscribeCode.SERVER: "server unsubscribe",
    UnsubscribeCode.INSUFFICIENT_STATE: "insufficient state",
    UnsubscribeCode.EXPIRED: "subscription expired",
    UnsubscribeCode.STATE_INVALIDATED: "state invalidated",
}


def unsubscribe_resubscribes(code: int) -> bool:
    """What both SDKs do with an unsubscribe push code: below 2500 is terminal."""
    return code >= UnsubscribeCode.INSUFFICIENT_STATE


class DisconnectCode(enum.IntEnum):
    """WebSocket close codes (and ``disconnect`` push codes) the server closes with."""

    # Marks a close the client started; Go never sends it.
    CONNECTION_CLOSED = 3000
    SHUTDOWN = 3001
    INTERNAL = 3004
    # The connection token was not refreshed in time.
    EXPIRED = 3005
    # A server-side subscription's token was not refreshed in time.
    SUB_EXPIRED = 3006
    # The client reads too slowly; queued frames are dropped, not flushed, before closing.
    SLOW = 3008
    WRITE_ERROR = 3009
    # A server-side subscription lost continuity; the SDK reconnects and recovers.
    INSUFFICIENT_STATE = 3010
    FORCE_RECONNECT = 3011
    NO_PONG = 3012
    TOO_MANY_REQUESTS = 3013
    # The SDK drops its token and every recovery position before reconnecting.
    STATE_INVALIDATED = 3014
    # Codes from 3500 on are terminal: the SDK goes "disconnected" and stays there.
    INVALID_TOKEN = 3500
    BAD_REQUEST = 3501
    # No connect command arrived in time after the upgrade.
    STALE = 3502
    FORCE_DISCONNECT = 3503
    CONNECTION_LIMIT = 3504
    CHANNEL_LIMIT = 3505
    INAPPROPRIATE_PROTOCOL = 3506
    PERMISSION_DENIED = 3507
    NOT_AVAILABLE = 3508
    TOO_MANY_ERRORS = 3509

    @property
    def reason(self) -> str:
        """Short plain text for the close frame; never JSON (JS would parse it as v1 advice)."""
        return _DISCONNECT_REASONS[self]

    @property
    def reconnect(self) -> bool:
        """Whether the SDKs reconnect after a close with this code."""
        return disconnect_reconnects(self)


_DISCONNECT_REASONS: dict[DisconnectCode, str] = {
    DisconnectCode.CONNECTION_CLOSED: "connection closed",
    DisconnectCode.SHUTDOWN: "shutdown",
    DisconnectCode.INTERNAL: "internal server error",
    DisconnectCode.EXPIRED: "connection expired",
    DisconnectCode.SUB_EXPIRED: "subscription expired",
    DisconnectCode.SLOW: "slow",
    DisconnectCode.WRITE_ERROR: "write error",
    DisconnectCode.INSUFFICIENT_STATE: "insufficient state",
    DisconnectCode.FORCE_RECONNECT: "force reconnect",
    DisconnectCode.NO_PONG: "no pong",
    DisconnectCode.TOO_MANY_REQUESTS: "too many requests",
    DisconnectCode.STATE_INVALIDATED: "state invalidated",
    DisconnectCode.INVALID_TOKEN: "invalid token",
    DisconnectCode.BAD_REQUEST: "bad request",
    DisconnectCode.STALE: "stale",
    DisconnectCode.FORCE_DISCONNECT: "force disconnect",
    DisconnectCode.CONNECTION_LIMIT: "connection limit",
    DisconnectCode.CHANNEL_LIMIT: "channel limit",
    DisconnectCode.INAPPROPRIATE_PROTOCOL: "inappropriate protocol",
    DisconnectCode.PERMISSION_DENIED: "permission denied",
    DisconnectCode.NOT_AVAILABLE: "not available",
    DisconnectCode.TOO_MANY_ERRORS: "too many errors",
}


def disconnect_reconnects(code: int) -> bool:
    """What both SDKs do after a close with ``code``: 3500-3999 and 4500-4999 are terminal.

    Codes below 3000 count as a transport failure and reconnect too, except 1009 (message too
    big), after which centrifuge-js stops while centrifuge-python still reconnects.
    """
    return not (3500 <= code < 4000 or 4500 <= code < 5000)


def check_close_reason(reason: str) -> str:
    """Return ``reason`` if it is safe for a close frame or disconnect push, else raise ValueError.

    centrifuge-js first tries ``JSON.parse(reason)`` for the protocol v1 advice object, so a
    reason such as ``"1"`` or ``"true"`` would silently change whether it reconnects.
    """
    if not reason:
        raise ValueError("a close reason must not be empty")
    if len(reason.encode()) > MAX_CLOSE_REASON_BYTES:
        raise ValueError(f"a close reason must fit in {MAX_CLOSE_REASON_BYTES} bytes of UTF-8")
    try:
        orjson.loads(reason)
    except orjson.JSONDecodeError:
        return reason
    raise ValueError(f"a close reason must not be valid JSON: {reason!r}")
