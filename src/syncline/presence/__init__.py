"""Presence: who is in a channel, across every Syncline process (memory or Redis)."""

from __future__ import annotations

from syncline.presence.base import DEFAULT_PRESENCE_TTL_S, PresenceStore, online_key
from syncline.presence.memory import MemoryPresenceStore
from syncline.redis_url import parse_redis_url

__all__ = [
    "DEFAULT_PRESENCE_TTL_S",
    "MemoryPresenceStore",
    "PresenceStore",
    "online_key",
    "open_presence",
]


def open_presence(url: str = "memory") -> PresenceStore:
    """The store ``url`` names, connecting lazily (no I/O here).

    ``memory``: this process only. A Redis URL (``syncline.redis_url``'s syntax):
    shared by every process using that Redis. redis-py is imported only for a Redis URL.
    """
    if url == "memory":
        return MemoryPresenceStore()
    try:
        target = parse_redis_url(url)
    except ValueError as err:
        raise ValueError(f"presence must be 'memory' or a Redis URL: {err}") from None
    from syncline.presence.redis import RedisPresenceStore

    return RedisPresenceStore(target.url, cluster=target.cluster, prefix=target.prefix)
