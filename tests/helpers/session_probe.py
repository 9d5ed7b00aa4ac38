"""A sans-I/O Session whose hooks record what the runner would be asked to do, as plain data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from syncline.core import protocol as p
from syncline.core.codecs import JSON, Codec
from syncline.core.log import StreamPosition
from syncline.core.namespaces import Namespace
from syncline.core.session import Session, Subscription

# A namespace with history and recovery, and one with fossil delta too.
RECOVERABLE = Namespace(history_size=100, history_ttl=300, recover=True)
DELTA = Namespace(history_size=100, history_ttl=300, recover=True, allowed_delta_types=("fossil",))


@dataclass(frozen=True)
class Limits:
    """SessionLimits as plain values (the settings' defaults, small buffers)."""

    allow_anonymous: bool = False
    ping_interval: int = 25
    pong_timeout: int = 10
    connect_timeout: float = 10.0
    max_frame_size: int = 65536
    max_commands_per_frame: int = 128
    max_subscriptions: int = 4
    send_buffer: int = 4096


class Probe(Session):
    """Session with recording hooks: ``sent`` (batches), ``closed`` (code, reason), ``detached``
    (channels), ``wakes`` (flush requests), ``slow`` and ``malformed``."""

    __slots__ = ("closed", "detached", "malformed", "sent", "slow", "wakes")

    def __init__(self, limits: Limits | None = None, codec: Codec = JSON, now: float = 0.0):
        super().__init__(limits or Limits(), codec, now)
        self.sent: list[list[bytes]] = []
        self.closed: list[tuple[int, str]] = []
        self.detached: list[str] = []
        self.wakes = 0
        self.slow = 0
        self.malformed: list[str] = []

    def _on_output(self) -> None:
        self.wakes += 1

    def _on_send(self, messages: list[bytes]) -> None:
        assert not self.closed, "nothing is sent after the close"
        self.sent.append(messages)

    def _on_close(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))

    def _on_detach(self, sub: Subscription) -> None:
        self.detached.append(sub.channel)

    def _on_slow(self) -> None:
        self.slow += 1

    def _on_malformed(self, detail: str) -> None:
        self.malformed.append(detail)

    # -- reading what went out ---------------------------------------------------------------

    def out(self) -> list[dict[str, Any]]:
        """Everything sent and still queued, decoded (JSON codec), in order; then forgotten."""
        self.flush()
        messages = [orjson.loads(m) for batch in self.sent for m in batch]
        self.sent.clear()
        return messages

    @property
    def close_code(self) -> int | None:
        return self.closed[0][0] if self.closed else None


def connected(limits: Limits | None = None, *, user: str = "ann", now: float = 0.0) -> Probe:
    """A session past a successful connect (its reply read and forgotten)."""
    session = Probe(limits, now=now)
    assert session.accept(b'{"id":1,"connect":{"token":"t"}}')
    command = session.next_command()
    assert isinstance(command, p.ConnectCommand) and session.admit(command)
    session.authenticate(user, None, None, "")
    session.connected_as("client-1", now)
    session.connect_reply(command.id, version="test", ttl=0, subs={})
    session.out()
    return session


def subscribed(
    session: Probe,
    channel: str = "orders",
    *,
    namespace: Namespace | None = None,
    epoch: str = "e1",
    offset: int = 0,
    recoverable: bool = True,
    server_side: bool = False,
) -> Subscription:
    """A live subscription of ``session`` at ``offset`` of ``epoch`` (its reply forgotten)."""
    namespace = namespace or RECOVERABLE
    command = p.SubscribeCommand(id=99, channel=channel)
    if server_side:
        sub = Subscription(channel, namespace, server_side=True)
    else:
        assert session.may_subscribe(command)
        sub = session.new_subscription(command, namespace)
    session.attach(sub, recoverable=recoverable, positioned=False)
    result = session.positioned_at(
        sub, StreamPosition(offset, epoch), recoverable=recoverable, recovering=False
    )
    if server_side:
        assert session.server_subscribed(sub, result, "")
    else:
        assert session.subscribed(command, sub, result, ttl=0)
    session.out()
    return sub
