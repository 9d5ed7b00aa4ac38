"""The presence port: who is subscribed to a channel (with presence on), across processes.

Entries are keyed by client id and carry the client's ``ClientInfo``. Each process adds its
own clients when they join and removes them when they leave; an entry also carries an expiry,
and each process re-adds (refreshes) its present clients every ``ttl_s / 3`` or so, so the
entries of a process that died without removing them disappear within ``ttl_s``: no ghost
users. ``num_users`` counts users once however many clients (tabs, devices, processes).

A user's online status uses the same primitive on a reserved per-user key
(``online_key(user)``): every connection of a user is present there while it is open.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from syncline.core.log import ClientInfo

# How long an entry lives without a refresh. Dead processes' clients are gone after at most this;
# a live process refreshes well within it (see PRESENCE_REFRESH_S in the gateway).
DEFAULT_PRESENCE_TTL_S = 60.0
# Reserved prefix of the per-user online keys; '$' cannot start a channel name clients use.
ONLINE_PREFIX = "$online:"


def online_key(user: str) -> str:
    """The presence key under which every open connection of ``user`` is present."""
    return ONLINE_PREFIX + user


class PresenceStore(Protocol):
    """Clients present per channel, shared by every process of a cluster."""

    async def add(
        self, channel: str, info: ClientInfo, ttl_s: float = DEFAULT_PRESENCE_TTL_S
    ) -> None:
        """Add (or refresh) ``info.client`` in ``channel``; it expires after ``ttl_s``."""
        ...

    async def add_many(
        self, entries: Sequence[tuple[str, ClientInfo]], ttl_s: float = DEFAULT_PRESENCE_TTL_S
    ) -> None:
        """``add`` for many (channel, info) pairs at once: the periodic refresh."""
        ...

    async def remove(self, channel: str, client: str) -> None:
        """Remove ``client`` from ``channel`` (nothing if it is not there)."""
        ...

    async def clients(self, channel: str) -> dict[str, ClientInfo]:
        """Client id → info of the unexpired entries of ``channel``."""
        ...

    async def stats(self, channel: str) -> tuple[int, int]:
        """(number of clients, number of distinct users) of ``channel``."""
        ...

    async def close(self) -> None:
        """Release connections; later calls raise RuntimeError. Idempotent."""
        ...
