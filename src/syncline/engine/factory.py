"""``open_engine``: the channel log engine named by a setting, ``memory`` or a Redis URL."""

from __future__ import annotations

from syncline.engine.base import ChannelLog
from syncline.redis_url import parse_redis_url


def open_engine(url: str = "memory") -> ChannelLog:
    """The engine for ``url``, connecting lazily (no I/O here).

    - ``memory``: the in-process engine (one process only).
    - ``redis://[user:password@]host:port/db`` or ``rediss://…`` (TLS): the Redis engine, with
      redis-py's URL options, plus the engine's own query parameters: ``cluster=true`` for a
      Redis Cluster (the URL names any one node), ``prefix=NAME`` for the key prefix
      (default ``syncline``), ``durable=true|false`` to say whether a Redis restart keeps every
      acknowledged write instead of asking the server, and ``meta_ttl=SECONDS``.

    redis-py is imported only for a Redis URL.
    """
    if url == "memory":
        from syncline.engine.memory import MemoryEngine

        return MemoryEngine()
    try:
        target = parse_redis_url(url)
    except ValueError as err:
        raise ValueError(f"engine must be 'memory' or a redis:// or rediss:// URL: {err}") from None
    from syncline.engine.redis import DEFAULT_META_TTL_S, RedisEngine

    return RedisEngine(
        target.url,
        cluster=target.cluster,
        prefix=target.prefix,
        meta_ttl_s=target.meta_ttl_s if target.meta_ttl_s is not None else DEFAULT_META_TTL_S,
        durable=target.durable,
    )
