"""Presence: who is in a channel, across every Syncline process (memory or Redis)."""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from syncline.presence.base import DEFAULT_PRESENCE_TTL_S, PresenceStore, online_key
from syncline.presence.memory import MemoryPresenceStore

__all__ = [
    "DEFAULT_PRESENCE_TTL_S",
    "MemoryPresenceStore",
    "PresenceStore",
    "RedisTarget",
    "online_key",
    "open_presence",
    "redis_target",
]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# Query parameters only the engine reads (engine/factory.py): one Redis URL may serve the
# engine, presence and the control bus, so these are dropped here, not passed to redis-py.
_ENGINE_ONLY = {"durable", "meta_ttl"}


class RedisTarget(NamedTuple):
    """A Syncline Redis URL taken apart: redis-py's URL, cluster or not, the key prefix."""

    url: str
    cluster: bool
    prefix: str


def redis_target(url: str) -> RedisTarget:
    """Parse ``redis://…`` or ``rediss://…`` with the engine's own query parameters:
    ``cluster=true`` (the URL names any node of a Redis Cluster) and ``prefix=NAME``
    (default ``syncline``); the rest is redis-py's."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"not a redis:// or rediss:// URL: {url!r}")
    cluster, prefix = False, "syncline"
    rest: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "cluster":
            if value.lower() not in _TRUE | _FALSE:
                raise ValueError(f"URL parameter cluster must be true or false, not {value!r}")
            cluster = value.lower() in _TRUE
        elif name == "prefix":
            prefix = value
        elif name not in _ENGINE_ONLY:
            rest.append((name, value))
    return RedisTarget(urlunsplit(parts._replace(query=urlencode(rest))), cluster, prefix)


def open_presence(url: str = "memory") -> PresenceStore:
    """The store ``url`` names, connecting lazily (no I/O here).

    ``memory``: this process only. A Redis URL (the engine's syntax, see ``redis_target``):
    shared by every process using that Redis. redis-py is imported only for a Redis URL.
    """
    if url == "memory":
        return MemoryPresenceStore()
    try:
        target = redis_target(url)
    except ValueError as err:
        raise ValueError(f"presence must be 'memory' or a Redis URL: {err}") from None
    from syncline.presence.redis import RedisPresenceStore

    return RedisPresenceStore(target.url, cluster=target.cluster, prefix=target.prefix)
