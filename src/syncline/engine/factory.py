"""``open_engine``: the channel log engine named by a setting, ``memory`` or a Redis URL."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from syncline.engine.base import ChannelLog

# Query parameters of an engine URL that are the engine's own, removed before the URL goes
# to redis-py (which would pass unknown ones on to its connections).
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


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
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"engine must be 'memory' or a redis:// or rediss:// URL, not {url!r}")
    from syncline.engine.redis import DEFAULT_META_TTL_S, DEFAULT_PREFIX, RedisEngine

    cluster, durable = False, None
    prefix, meta_ttl_s = DEFAULT_PREFIX, DEFAULT_META_TTL_S
    rest: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "cluster":
            cluster = _flag(name, value)
        elif name == "durable":
            durable = _flag(name, value)
        elif name == "prefix":
            prefix = value
        elif name == "meta_ttl":
            meta_ttl_s = float(value)
        else:
            rest.append((name, value))
    redis_url = urlunsplit(parts._replace(query=urlencode(rest)))
    return RedisEngine(
        redis_url, cluster=cluster, prefix=prefix, meta_ttl_s=meta_ttl_s, durable=durable
    )


def _flag(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"engine URL parameter {name} must be true or false, not {value!r}")
