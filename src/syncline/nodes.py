"""The nodes port: what the server API tells of the running processes (`info`, `channels`).

A process's gateway reports its own counts (`LocalStats`); a `NodeDirectory` answers for the
whole cluster. The local directory knows only this process; a shared one (Redis) collects
every node's report, so the server API on any node answers for all of them.
"""

from __future__ import annotations

import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from syncline import __version__


@dataclass(frozen=True, slots=True)
class NodeCounts:
    """One process's connections right now."""

    num_clients: int
    num_users: int
    num_channels: int
    num_subs: int


class LocalStats(Protocol):
    """What a gateway reports of itself."""

    def counts(self) -> NodeCounts:
        """Connected clients, distinct users, channels with subscribers, subscriptions."""
        ...

    def channel_clients(self) -> dict[str, int]:
        """Channel → number of this process's clients subscribed to it."""
        ...


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """Who this process is, as `info` names it."""

    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    name: str = field(default_factory=socket.gethostname)
    started_at: float = field(default_factory=time.time)


def node_info(identity: NodeIdentity, counts: NodeCounts) -> dict[str, object]:
    """One node as Centrifugo's `info` reply shows it."""
    return {
        "uid": identity.uid,
        "name": identity.name,
        "version": __version__,
        "num_clients": counts.num_clients,
        "num_users": counts.num_users,
        "num_channels": counts.num_channels,
        "num_subs": counts.num_subs,
        "uptime": int(time.time() - identity.started_at),
    }


class NodeDirectory(Protocol):
    """Every node's report, for the server API."""

    async def nodes(self) -> list[dict[str, object]]:
        """One `info` entry per live node."""
        ...

    async def channels(self) -> dict[str, int]:
        """Channel → clients subscribed, summed over the nodes."""
        ...


class LocalNodeDirectory:
    """The directory of a single process: its own gateway's report."""

    def __init__(self, identity: NodeIdentity, stats: LocalStats) -> None:
        self.identity = identity
        self._stats = stats

    async def nodes(self) -> list[dict[str, object]]:
        return [node_info(self.identity, self._stats.counts())]

    async def channels(self) -> dict[str, int]:
        return self._stats.channel_clients()
