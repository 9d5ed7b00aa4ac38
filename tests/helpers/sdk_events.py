"""Recorders of what centrifuge-python reports, shared by the SDK tests of both formats."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from centrifuge import (
    ClientEventHandler,
    JoinContext,
    LeaveContext,
    PublicationContext,
    ServerSubscribedContext,
    SubscribedContext,
    SubscriptionEventHandler,
    UnsubscribedContext,
)


@dataclass
class Events(SubscriptionEventHandler):  # type: ignore[misc]
    """What a subscription sees. With ``payload_bytes`` (Protobuf mode) publication data must
    arrive as JSON bytes, and is recorded decoded."""

    payload_bytes: bool = False
    pubs: list[Any] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    publishers: list[str | None] = field(default_factory=list)
    subscribed: list[SubscribedContext] = field(default_factory=list)
    unsubscribed: list[UnsubscribedContext] = field(default_factory=list)
    joins: list[str] = field(default_factory=list)
    leaves: list[str] = field(default_factory=list)

    def has_subscribed(self) -> bool:
        return bool(self.subscribed)

    def has_unsubscribed(self) -> bool:
        return bool(self.unsubscribed)

    async def on_publication(self, ctx: PublicationContext) -> None:
        data = ctx.pub.data
        if self.payload_bytes:
            assert isinstance(data, bytes)
            data = json.loads(data)
        self.pubs.append(data)
        self.offsets.append(ctx.pub.offset)
        self.publishers.append(None if ctx.pub.info is None else ctx.pub.info.user)

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.subscribed.append(ctx)

    async def on_unsubscribed(self, ctx: UnsubscribedContext) -> None:
        self.unsubscribed.append(ctx)

    async def on_join(self, ctx: JoinContext) -> None:
        self.joins.append(ctx.info.client)

    async def on_leave(self, ctx: LeaveContext) -> None:
        self.leaves.append(ctx.info.client)


@dataclass
class ClientEvents(ClientEventHandler):  # type: ignore[misc]
    """The server-side subscriptions a client is told of."""

    server_subs: list[str] = field(default_factory=list)

    async def on_subscribed(self, ctx: ServerSubscribedContext) -> None:
        self.server_subs.append(ctx.channel)
