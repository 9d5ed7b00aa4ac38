"""What the client hands to applications: events, results and errors (no I/O here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who published, joined or left: ``user`` may be "" (anonymous), ``client`` is a conn id."""

    user: str
    client: str
    conn_info: Any = None
    chan_info: Any = None


@dataclass(slots=True)  # not frozen: the hot path, and frozen init costs a setattr per field
class Publication:
    """One publication; ``offset`` is 0 on a channel without a stream; ``tags`` None if none."""

    offset: int
    data: Any
    info: ClientInfo | None = None
    tags: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    code: int
    message: str
    temporary: bool = False


@dataclass(frozen=True, slots=True)
class SubscribeResult:
    recoverable: bool = False
    positioned: bool = False
    epoch: str = ""
    offset: int = 0
    recovered: bool = False
    was_recovering: bool = False
    publications: tuple[Publication, ...] = ()
    expires: bool = False
    ttl: int = 0
    data: Any = None


@dataclass(frozen=True, slots=True)
class ConnectResult:
    client: str
    version: str = ""
    expires: bool = False
    ttl: int = 0
    ping: int = 0
    pong: bool = False
    subs: Mapping[str, SubscribeResult] = field(default_factory=dict)
    data: Any = None


@dataclass(frozen=True, slots=True)
class RefreshResult:
    expires: bool = False
    ttl: int = 0


@dataclass(frozen=True, slots=True)
class HistoryResult:
    publications: tuple[Publication, ...]
    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class PresenceStats:
    num_clients: int
    num_users: int


# Codes of client-made Unsubscribed events (server codes are 2000 and up, or an error code).
UNSUBSCRIBE_CALLED = 0
CLIENT_CLOSED = 1
QUEUE_OVERFLOW = 2


class ClientError(Exception):
    """Base of everything this client raises on its own."""


class ReplyError(ClientError):
    """The server answered a command with an error."""

    def __init__(self, code: int, message: str, temporary: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.temporary = temporary


class ConnectionLost(ClientError):
    """The connection went away while the command was in flight; it may have been applied."""


class Disconnected(ClientError):
    """The client stopped for good: a terminal close code, a refused connect, or ``close()``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"disconnected ({code}: {reason})")
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The subscription is live; publications after this one are in order from ``offset``."""

    recovered: bool
    was_recovering: bool
    epoch: str
    offset: int
    data: Any = None


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    """The last event of a subscription; ``events()`` ends after it."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Join:
    info: ClientInfo


@dataclass(frozen=True, slots=True)
class Leave:
    info: ClientInfo


Event: TypeAlias = Publication | Subscribed | Unsubscribed | Join | Leave
