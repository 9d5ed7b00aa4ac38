"""The Redis channel log engine: streams for history, Lua for atomic appends, pub/sub fan-out.

Follows Centrifugo's Redis engine. The data model and the scripts are in ``redis_scripts``,
the pub/sub side in ``redis_fanout``; docs/topics/engines.md explains both. Offsets, epochs
and history live in Redis, so every process that uses the same Redis sees one log, and a
Syncline restart changes nothing for clients: they recover exactly.

Commands are never retried by the client library: an append whose reply was lost may have
happened, and only the caller knows whether a repeat is safe (one with a commit position is
dropped as a duplicate). Reads that fail raise ``EngineUnavailableError`` like appends.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import (
    ClusterError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from syncline.core.changes import CommitPosition
from syncline.core.log import (
    DEFAULT_HISTORY_MAX_LIMIT,
    ERROR_BAD_REQUEST,
    ERROR_UNRECOVERABLE_POSITION,
    ClientInfo,
    HistoryResult,
    LogError,
    Publication,
    RecoveryResult,
    StreamPosition,
    new_epoch,
)
from syncline.engine.base import (
    AppendRequest,
    EngineClosedError,
    EngineUnavailableError,
    FanoutHandler,
    PresenceHandler,
)
from syncline.engine.redis_fanout import Fanout
from syncline.engine.redis_scripts import (
    APPEND,
    APPEND_SHA,
    READ,
    READ_SHA,
    channel_keys,
    decode_entry,
    encode_body,
    encode_message,
    encode_presence_message,
    position_text,
)
from syncline.redis_url import redis_client

logger = structlog.get_logger(__name__)

DEFAULT_PREFIX = "syncline"

# How long a channel's meta (epoch, top offset, last commit position) outlives its last use.
# The same day as the memory engine's idle stream TTL: a client back after longer gets
# ``recovered: false`` and reloads. It is never shorter than the channel's history TTL, so
# history cannot outlive the epoch it belongs to.
DEFAULT_META_TTL_S = 24 * 3600.0

# Items per append script: one script holds Redis for its whole run (~2 µs an item measured),
# so a huge batch is cut into scripts of this many, sent one after another in order.
MAX_ITEMS_PER_SCRIPT = 1000

# Key names computed per channel are cached; the cache is dropped whole when it reaches this,
# which costs a recomputation (a few hundred ns a channel), never correctness.
KEY_CACHE_SIZE = 10_000

_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ClusterError, ReadOnlyError, TryAgainError)

_NO_RETRY = Retry(NoBackoff(), 0)

_Keys = tuple[str, str, bytes]


class RedisEngine:
    """A ``ChannelLog`` in Redis, standalone or cluster; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        cluster: bool = False,
        prefix: str = DEFAULT_PREFIX,
        meta_ttl_s: float = DEFAULT_META_TTL_S,
        history_max_limit: int = DEFAULT_HISTORY_MAX_LIMIT,
        durable: bool | None = None,
        epoch_factory: Callable[[], str] = new_epoch,
    ) -> None:
        """Connect lazily to ``url`` (``redis://`` or ``rediss://``, redis-py's URL syntax).

        ``durable``: whether a restart of this Redis keeps every acknowledged write (AOF with
        ``appendfsync always``), so that epochs may survive it; None asks the server on the
        first append (``CONFIG GET``). A cluster is never taken as durable on its own, since a
        failover promotes a replica that may lack the last writes.
        """
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError("the key prefix must be non-empty and free of braces")
        self._prefix = prefix
        self._meta_ttl_ms = round(meta_ttl_s * 1000)
        self._history_max_limit = history_max_limit
        self._epoch_factory = epoch_factory
        self._cluster = cluster
        self._durable = durable if durable is not None else (False if cluster else None)
        self._client: Redis | RedisCluster
        router: _StandaloneRouter | _ClusterRouter
        self._client = redis_client(url, cluster=cluster, retry=_NO_RETRY)
        if isinstance(self._client, RedisCluster):
            router = _ClusterRouter(self._client)
        else:
            router = _StandaloneRouter(url)
        self._router = router
        self._fanout = Fanout(router)
        self._keys_cache: dict[str, _Keys] = {}
        self._closed = False

    # -- writing ---------------------------------------------------------------------------

    async def append(
        self,
        channel: str,
        data: bytes,
        *,
        info: ClientInfo | None = None,
        position: CommitPosition | None = None,
        history_size: int,
        history_ttl_s: float,
    ) -> Publication | None:
        item = AppendRequest(channel, data, history_size, history_ttl_s, info, position)
        return (await self.append_batch((item,)))[0]

    async def append_batch(self, items: Sequence[AppendRequest]) -> list[Publication | None]:
        self._check_open()
        if not items:
            return []
        if self._durable is None:
            self._durable = await self._detect_durable()
        if self._cluster:
            return await self._append_cluster(items)
        results: list[Publication | None] = []
        for start in range(0, len(items), MAX_ITEMS_PER_SCRIPT):
            chunk = items[start : start + MAX_ITEMS_PER_SCRIPT]
            keys, args = self._append_call(chunk)
            results.extend(self._publications(chunk, await self._eval(APPEND, keys, args)))
        return results

    def _append_call(self, items: Sequence[AppendRequest]) -> tuple[list[str], list[Any]]:
        """The KEYS and ARGV of one append script for ``items`` (see redis_scripts.APPEND)."""
        index: dict[str, int] = {}
        keys: list[str] = []
        topics: list[bytes] = []
        args: list[Any] = []
        for channel, data, size, ttl_s, info, position in items:
            if size < 0 or ttl_s < 0:
                raise ValueError("history bounds must not be negative")
            j = index.get(channel)
            if j is None:
                j = index[channel] = len(index) + 1
                stream, meta, topic = self._keys(channel)
                keys += (stream, meta)
                topics.append(topic)
            body = b"0 " + data if info is None else encode_body(data, info)
            args += (j, size, round(ttl_s * 1000), position_text(position), body)
        epoch = self._new_epoch()
        head = [epoch, self._meta_ttl_ms, int(self._cluster), int(bool(self._durable)), len(index)]
        return keys, [*head, *topics, *args]

    @staticmethod
    def _publications(items: Sequence[AppendRequest], reply: Any) -> list[Publication | None]:
        now_ms = int(reply[0])
        return [
            Publication(offset, item.data, item.info, now_ms) if offset else None
            for item, offset in zip(items, reply[1:], strict=True)
        ]

    async def _append_cluster(self, items: Sequence[AppendRequest]) -> list[Publication | None]:
        """One script per slot, all of them pipelined to their nodes at once."""
        groups: defaultdict[int, list[int]] = defaultdict(list)
        for i, item in enumerate(items):
            groups[key_slot(self._keys(item.channel)[0].encode())].append(i)
        calls: list[tuple[list[int], list[str], list[Any]]] = []
        for indexes in groups.values():
            for start in range(0, len(indexes), MAX_ITEMS_PER_SCRIPT):
                part = indexes[start : start + MAX_ITEMS_PER_SCRIPT]
                keys, args = self._append_call([items[i] for i in part])
                calls.append((part, keys, args))
        results: list[Publication | None] = [None] * len(items)
        pending = calls
        for attempt in range(2):
            assert isinstance(self._client, RedisCluster)
            try:
                async with self._client.pipeline() as pipe:
                    for _, keys, args in pending:
                        pipe.evalsha(APPEND_SHA, len(keys), *keys, *args)
                    replies = await pipe.execute(raise_on_error=False)
            except _UNAVAILABLE as err:
                raise EngineUnavailableError(str(err)) from err
            missing = []
            for call, reply in zip(pending, replies, strict=True):
                if isinstance(reply, NoScriptError) and attempt == 0:
                    missing.append(call)
                elif isinstance(reply, _UNAVAILABLE):
                    raise EngineUnavailableError(str(reply)) from reply
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    part = call[0]
                    for i, pub in zip(
                        part, self._publications([items[i] for i in part], reply), strict=True
                    ):
                        results[i] = pub
            if not missing:
                break
            await self._load_scripts()
            pending = missing
        return results

    async def publish_ephemeral(
        self, channel: str, data: bytes, info: ClientInfo | None = None
    ) -> Publication:
        self._check_open()
        now_ms = int(time.time() * 1000)
        topic = self._keys(channel)[2]
        message = encode_message(0, now_ms, "", encode_body(data, info))
        command = "SPUBLISH" if self._cluster else "PUBLISH"
        try:
            await self._client.execute_command(command, topic, message)
        except _UNAVAILABLE as err:
            raise EngineUnavailableError(str(err)) from err
        return Publication(0, data, info, now_ms)

    # -- reading ---------------------------------------------------------------------------

    async def position(self, channel: str) -> StreamPosition:
        self._check_open()
        epoch, top, _ = await self._read(channel)
        return StreamPosition(top, epoch)

    async def recover(self, channel: str, since: StreamPosition) -> RecoveryResult:
        self._check_open()
        epoch, top, entries = await self._read(
            channel, since.epoch, "f", str(since.offset + 1), "+", 0
        )
        position = StreamPosition(top, epoch)
        if since.epoch and since.epoch != epoch:
            return RecoveryResult(False, position, ())
        if since.offset == top:
            return RecoveryResult(True, position, ())
        if since.offset > top or not entries:
            return RecoveryResult(False, position, ())
        pubs = [decode_entry(entry) for entry in entries]
        if pubs[0].offset != since.offset + 1:
            return RecoveryResult(False, position, ())
        return RecoveryResult(True, position, pubs)

    async def history(
        self,
        channel: str,
        limit: int = 0,
        since: StreamPosition | None = None,
        reverse: bool = False,
    ) -> HistoryResult:
        """A history page with ``ChannelStream.history``'s semantics, read in one script."""
        self._check_open()
        if since is not None and reverse and since.offset == 0:
            raise LogError(ERROR_BAD_REQUEST, "bad request")
        max_limit = self._history_max_limit
        if max_limit > 0 and (limit < 0 or limit > max_limit):
            limit = max_limit
        expected = since.epoch if since is not None else ""
        if limit == 0:
            op, start, end = "", "", ""
        elif since is None:
            op, start, end = ("r", "+", "-") if reverse else ("f", "-", "+")
        elif reverse:
            op, start, end = "r", str(since.offset - 1), "-"
        else:
            op, start, end = "f", str(since.offset + 1), "+"
        epoch, top, entries = await self._read(channel, expected, op, start, end, max(limit, 0))
        if since is not None and since.epoch and since.epoch != epoch:
            raise LogError(ERROR_UNRECOVERABLE_POSITION, "unrecoverable position")
        if reverse and since is not None and since.offset - 1 > top:
            entries = []  # before an offset past the top: nothing, as in the memory engine
        return HistoryResult(StreamPosition(top, epoch), [decode_entry(e) for e in entries])

    async def remove_history(self, channel: str) -> None:
        """Delete the channel's stream, keep its meta hash (epoch, top, last commit position):
        the next append goes on from the same top (its XADD id is explicit), as Centrifuge's
        Redis broker does with a DEL of the history key only."""
        self._check_open()
        stream, _, _ = self._keys(channel)
        try:
            await self._client.delete(stream)
        except _UNAVAILABLE as err:
            raise EngineUnavailableError(str(err)) from err

    async def _read(
        self,
        channel: str,
        expected_epoch: str = "",
        op: str = "",
        start: str = "",
        end: str = "",
        count: int = 0,
    ) -> tuple[str, int, list[Any]]:
        stream, meta, _ = self._keys(channel)
        args = [self._new_epoch(), self._meta_ttl_ms, expected_epoch, op, start, end, count]
        epoch, top, entries = await self._eval(READ, [stream, meta], args)
        return epoch.decode(), int(top), entries

    # -- fan-out ---------------------------------------------------------------------------

    def subscribe_fanout(self, handler: FanoutHandler) -> Callable[[], None]:
        self._check_open()
        return self._fanout.subscribe(handler)

    def subscribe_presence(self, handler: PresenceHandler) -> Callable[[], None]:
        self._check_open()
        return self._fanout.subscribe_presence(handler)

    async def publish_presence(self, channel: str, info: ClientInfo, joined: bool) -> None:
        self._check_open()
        topic = self._keys(channel)[2]
        message = encode_presence_message(int(time.time() * 1000), info, joined)
        command = "SPUBLISH" if self._cluster else "PUBLISH"
        try:
            await self._client.execute_command(command, topic, message)
        except _UNAVAILABLE as err:
            raise EngineUnavailableError(str(err)) from err

    async def listen(self, channel: str) -> None:
        """Subscribe this process to the channel's topic; returns once Redis confirmed it."""
        self._check_open()
        try:
            if isinstance(self._router, _ClusterRouter):
                await self._router.ensure_initialized()
            await self._fanout.listen(channel, self._keys(channel)[2])
        except (*_UNAVAILABLE, RedisClusterException) as err:
            raise EngineUnavailableError(str(err)) from err

    async def unlisten(self, channel: str) -> None:
        self._check_open()
        await self._fanout.unlisten(channel)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._fanout.close()
        await self._client.aclose()
        await self._router.close()

    # -- plumbing --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosedError("the redis engine is closed")

    def _keys(self, channel: str) -> _Keys:
        keys = self._keys_cache.get(channel)
        if keys is None:
            if len(self._keys_cache) >= KEY_CACHE_SIZE:
                self._keys_cache.clear()
            stream, meta, topic = channel_keys(self._prefix, channel)
            keys = self._keys_cache[channel] = (stream, meta, topic.encode())
        return keys

    def _new_epoch(self) -> str:
        epoch = self._epoch_factory()
        if not epoch or " " in epoch:
            raise ValueError(f"an epoch must be non-empty and without spaces: {epoch!r}")
        return epoch

    async def _eval(self, source: str, keys: list[str], args: list[Any]) -> Any:
        sha = APPEND_SHA if source is APPEND else READ_SHA
        client = self._client
        try:
            try:
                return await client.evalsha(sha, len(keys), *keys, *args)
            except NoScriptError:
                # A restarted Redis (or a failover) has an empty script cache; NOSCRIPT means
                # the script did not run, so running it again is safe.
                await self._load_scripts()
                return await client.evalsha(sha, len(keys), *keys, *args)
        except _UNAVAILABLE as err:
            raise EngineUnavailableError(str(err)) from err
        except OutOfMemoryError as err:
            # Over maxmemory with noeviction: Redis refuses a writing script before it runs,
            # so this is "cannot append now", and nothing was appended.
            raise EngineUnavailableError(f"OOM {err}") from err

    async def _load_scripts(self) -> None:
        for source in (APPEND, READ):
            await self._client.script_load(source)  # a cluster loads it on every primary

    async def _detect_durable(self) -> bool:
        """Whether the server keeps every acknowledged write across a restart."""
        try:
            config: dict[Any, Any] = await self._client.config_get("append*")
        except ResponseError:
            return False  # CONFIG disabled (managed Redis): assume the worst
        except _UNAVAILABLE as err:
            raise EngineUnavailableError(str(err)) from err
        values = {_text(k): _text(v) for k, v in config.items()}
        durable = values.get("appendonly") == "yes" and values.get("appendfsync") == "always"
        logger.info("redis_engine_durability", durable=durable)
        return durable


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _StandaloneRouter:
    """Every topic on the one server."""

    sharded = False

    def __init__(self, url: str) -> None:
        # RESP2, so pub/sub messages come back as plain replies; no read timeout, since a
        # quiet subscription is normal (the fan-out's PING finds dead connections).
        self._pool = ConnectionPool.from_url(
            url, protocol=2, socket_timeout=None, socket_keepalive=True, retry=_NO_RETRY
        )

    def address(self, topic: bytes) -> str:
        return "redis"

    async def connect(self, address: str) -> AbstractConnection:
        conn: AbstractConnection = self._pool.make_connection()  # type: ignore[no-untyped-call]
        await conn.connect()  # type: ignore[no-untyped-call]
        return conn

    async def refresh(self) -> None:
        return None

    async def close(self) -> None:
        await self._pool.disconnect()


class _ClusterRouter:
    """A topic goes to the primary of its slot, over sharded pub/sub."""

    sharded = True

    def __init__(self, client: RedisCluster) -> None:
        self._client = client

    def address(self, topic: bytes) -> str:
        node = self._client.get_node_from_key(topic)  # type: ignore[arg-type]
        if node is None:
            raise EngineUnavailableError("no cluster node owns the topic's slot")
        return str(node.name)

    async def connect(self, address: str) -> AbstractConnection:
        await self.ensure_initialized()
        node = self._client.get_node(node_name=address)
        if node is None:
            raise RedisConnectionError(f"{address} is no longer a cluster node")
        kwargs = {**node.connection_kwargs, "protocol": 2, "socket_timeout": None}
        kwargs["retry"] = _NO_RETRY
        conn: AbstractConnection = node.connection_class(**kwargs)
        await conn.connect()  # type: ignore[no-untyped-call]
        return conn

    async def refresh(self) -> None:
        await self._client.nodes_manager.initialize()

    async def ensure_initialized(self) -> None:
        if not self._client.nodes_manager.slots_cache:
            await self._client.initialize()

    async def close(self) -> None:
        return None
