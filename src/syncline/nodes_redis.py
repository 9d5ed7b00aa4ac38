"""The node directory on Redis: every node reports itself every few seconds; any node answers
the server API's `info` and `channels` for the whole cluster.

Keys (the engine's prefix): ``<prefix>:nodes`` a hash, node uid → the node's `info` entry as
JSON with an ``expires_at`` (Unix ms); ``<prefix>:node-channels:<uid>`` a hash, channel →
that node's clients in it, replaced whole at each report and expiring with the node. A node
that dies stops reporting: its entry is past ``expires_at`` within NODE_TTL_S and readers
drop it (and delete it), so `info` lists live nodes only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson
from redis.exceptions import RedisError

from syncline.logs import get_logger
from syncline.nodes import LocalStats, NodeIdentity, node_info
from syncline.redis_url import parse_redis_url, redis_client

log = get_logger(__name__)

# A node reports this often; it counts as gone NODE_TTL_S after its last report (three
# missed reports: one slow event-loop turn or Redis hiccup does not drop a node).
NODE_REPORT_S = 3.0
NODE_TTL_S = 10.0


class RedisNodeDirectory:
    """This node's reports to Redis, and the cluster's nodes read back from it."""

    def __init__(self, url: str, identity: NodeIdentity, stats: LocalStats) -> None:
        target = parse_redis_url(url)
        self.identity = identity
        self._stats = stats
        self._nodes_key = f"{target.prefix}:nodes"
        self._channels_prefix = f"{target.prefix}:node-channels:"
        self._client = redis_client(target.url, cluster=target.cluster)
        self._reporter: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._reporter = asyncio.create_task(self._report_loop(), name="node-directory")

    async def _report_loop(self) -> None:
        failing = False
        while True:
            try:
                await self.report()
                if failing:
                    log.info("node reports reach Redis again")
                failing = False
            except (RedisError, OSError) as err:
                if not failing:
                    log.warning("node report failed; retrying", error=str(err))
                failing = True
            await asyncio.sleep(NODE_REPORT_S)

    async def report(self) -> None:
        """Write this node's `info` entry and its channels (one round trip each)."""
        info = node_info(self.identity, self._stats.counts())
        entry = {**info, "expires_at": int((time.time() + NODE_TTL_S) * 1000)}
        await self._client.hset(self._nodes_key, self.identity.uid, orjson.dumps(entry))
        channels = self._stats.channel_clients()
        key = self._channels_prefix + self.identity.uid
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.delete(key)
            if channels:
                pipe.hset(key, mapping=channels)  # type: ignore[arg-type]
                pipe.pexpire(key, int(NODE_TTL_S * 1000))
            await pipe.execute()

    async def nodes(self) -> list[dict[str, object]]:
        now_ms = int(time.time() * 1000)
        raw = await self._client.hgetall(self._nodes_key)
        live: list[dict[str, object]] = []
        dead: list[bytes | str] = []
        for uid, blob in raw.items():
            entry: dict[str, Any] = orjson.loads(blob)
            if int(entry.pop("expires_at", 0)) > now_ms:
                live.append(entry)
            else:
                dead.append(uid)
        if dead:
            await self._client.hdel(self._nodes_key, *dead)
        return sorted(live, key=lambda e: str(e.get("name", "")))

    async def channels(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for node in await self.nodes():
            key = self._channels_prefix + str(node["uid"])
            counts = await self._client.hgetall(key)
            for channel, count in counts.items():
                name = channel.decode() if isinstance(channel, bytes) else channel
                totals[name] = totals.get(name, 0) + int(count)
        return totals

    async def close(self) -> None:
        """Stop reporting and leave the directory at once (a clean stop is not a death)."""
        if self._reporter is not None:
            self._reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reporter
            self._reporter = None
        with contextlib.suppress(RedisError, OSError):
            await self._client.hdel(self._nodes_key, self.identity.uid)
            await self._client.delete(self._channels_prefix + self.identity.uid)
        await self._client.aclose()
