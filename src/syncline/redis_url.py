"""What every part on Redis shares: the one URL syntax and the one hash-tag rule.

The engine, presence, the control bus and the rate limits all take the same ``engine`` URL:
``redis://[user:password@]host:port/db`` or ``rediss://…`` (TLS) with redis-py's own query
options, plus Syncline's: ``cluster=true`` (the URL names any node of a Redis Cluster),
``prefix=NAME`` (key prefix, default ``syncline``), ``durable=true|false`` (whether a Redis
restart keeps every acknowledged write, instead of asking the server) and ``meta_ttl=SECONDS``
(how long a channel's epoch outlives its last use). Syncline's options are removed before
the URL reaches redis-py, which would pass unknown ones on to its connections.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster

DEFAULT_PREFIX = "syncline"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class RedisUrl(NamedTuple):
    """A Syncline Redis URL taken apart."""

    url: str  # for redis-py: Syncline's options removed
    cluster: bool
    prefix: str
    durable: bool | None  # None: ask the server
    meta_ttl_s: float | None  # None: the engine's default
    scheme: str


def parse_redis_url(url: str) -> RedisUrl:
    """Take ``url`` apart; ValueError names what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"not a redis:// or rediss:// URL: {url!r}")
    cluster, durable, meta_ttl_s, prefix = False, None, None, DEFAULT_PREFIX
    rest: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "cluster":
            cluster = _flag(name, value)
        elif name == "durable":
            durable = _flag(name, value)
        elif name == "prefix":
            if not value or "{" in value or "}" in value:
                raise ValueError("URL parameter prefix must be non-empty, without braces")
            prefix = value
        elif name == "meta_ttl":
            try:
                meta_ttl_s = float(value)
            except ValueError:
                raise ValueError(f"URL parameter meta_ttl must be seconds, not {value!r}") from None
        else:
            rest.append((name, value))
    plain = urlunsplit(parts._replace(query=urlencode(rest)))
    return RedisUrl(plain, cluster, prefix, durable, meta_ttl_s, parts.scheme)


def _flag(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"URL parameter {name} must be true or false, not {value!r}")


def hash_tag(channel: str) -> str:
    """The part of a channel's key names that Redis Cluster hashes: the channel itself.

    A valid channel has no braces (core/namespaces.py); for any other name (or an empty one)
    a digest keeps every key of the channel in one slot, since Redis hashes only up to the
    first ``}``. It starts with '$', which no valid channel name holds ('#' may: a
    user-limited channel), so a digest is never the tag of a real channel.
    """
    if channel and "{" not in channel and "}" not in channel:
        return channel
    return "$" + hashlib.sha1(channel.encode(), usedforsecurity=False).hexdigest()


def script_sha(source: str) -> str:
    """The digest EVALSHA names a Lua script by."""
    return hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


# Commands in flight at once per process and server. redis-py's plain pool raises "Too many
# connections" past its limit (100): a burst of 1,000 subscribes failed. A blocking pool makes
# the rest wait for a connection (up to POOL_WAIT_S) and keeps the server's connection count
# bounded too.
POOL_SIZE = 64
POOL_WAIT_S = 10.0
# Redis Cluster has no blocking pool in redis-py: a larger bound per node instead.
CLUSTER_POOL_SIZE = 1024


def redis_client(url: str, *, cluster: bool, **options: Any) -> Redis | RedisCluster:
    """A redis-py client for ``url`` (Syncline's options already removed) with a bounded pool
    that waits instead of failing when every connection is busy."""
    if cluster:
        return RedisCluster.from_url(url, max_connections=CLUSTER_POOL_SIZE, **options)
    pool = BlockingConnectionPool.from_url(
        url, max_connections=POOL_SIZE, timeout=POOL_WAIT_S, **options
    )
    return Redis.from_pool(pool)
