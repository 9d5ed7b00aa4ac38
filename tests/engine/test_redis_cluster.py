"""The Redis engine on a real three-master Redis Cluster: one slot per channel, sharded pub/sub."""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis_asyncio

from syncline.core.changes import CommitPosition
from syncline.core.log import Publication, StreamPosition
from syncline.engine import open_engine
from syncline.engine.base import AppendRequest
from syncline.engine.redis import RedisEngine

from helpers.redis_servers import RedisClusterServers, start_cluster

SIZE = 100
TTL_S = 60.0
CHANNELS = [f"room:{i}" for i in range(30)]


class Recorder:
    def __init__(self) -> None:
        self.pubs: list[tuple[str, str, Publication]] = []
        self.gaps: list[str | None] = []

    def on_publication(self, channel: str, epoch: str, pub: Publication, /) -> None:
        self.pubs.append((channel, epoch, pub))

    def on_gap(self, channel: str | None, /) -> None:
        self.gaps.append(channel)

    def offsets(self, channel: str) -> list[int]:
        return [p.offset for c, _, p in self.pubs if c == channel]


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    servers = start_cluster(Path(tmp_path_factory.mktemp("cluster")))
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
async def engines(cluster: RedisClusterServers) -> AsyncIterator[Callable[[], RedisEngine]]:
    prefix = f"t{secrets.token_hex(6)}"
    made: list[RedisEngine] = []

    def make() -> RedisEngine:
        engine = open_engine(f"{cluster.url}&prefix={prefix}")
        assert isinstance(engine, RedisEngine)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await engine.close()


async def test_the_channels_spread_over_all_three_masters(cluster: RedisClusterServers) -> None:
    client = redis_asyncio.RedisCluster.from_url(cluster.url.replace("?cluster=true", ""))
    try:
        await client.initialize()
        owners = {client.get_node_from_key(f"x:s:{{{c}}}").name for c in CHANNELS}  # type: ignore[union-attr]
        assert len(owners) == 3
        # The stream, the meta hash and the topic of a channel are in one slot.
        slots = {client.keyslot(f"x:{kind}:{{room:7}}") for kind in "smp"}
        assert len(slots) == 1
    finally:
        await client.aclose()


async def test_appends_recovery_and_history_across_the_cluster(
    engines: Callable[[], RedisEngine],
) -> None:
    engine = engines()
    items = [
        AppendRequest(CHANNELS[i % 30], b'{"i":%d}' % i, SIZE, TTL_S, None, CommitPosition(i, 0))
        for i in range(600)
    ]
    results = await engine.append_batch(items)
    per_channel: dict[str, list[int]] = defaultdict(list)
    for item, pub in zip(items, results, strict=True):
        assert pub is not None and pub.data == item.data
        per_channel[item.channel].append(pub.offset)
    assert all(got == list(range(1, 21)) for got in per_channel.values())
    # The same batch again (a capture re-reading after a crash): nothing twice.
    assert await engine.append_batch(items) == [None] * 600
    for channel in CHANNELS:
        position = await engine.position(channel)
        assert position.offset == 20
        result = await engine.recover(channel, StreamPosition(15, position.epoch))
        assert [p.offset for p in result.publications] == [16, 17, 18, 19, 20]
        page = await engine.history(channel, limit=2, reverse=True)
        assert [p.offset for p in page.publications] == [20, 19]


async def test_sharded_fanout_from_every_master(engines: Callable[[], RedisEngine]) -> None:
    writer, reader = engines(), engines()
    recorder = Recorder()
    reader.subscribe_fanout(recorder)
    for channel in CHANNELS:
        await reader.listen(channel)
    await writer.append_batch([AppendRequest(c, b"{}", SIZE, TTL_S) for c in CHANNELS * 3])
    ephemeral = await writer.publish_ephemeral(CHANNELS[0], b'{"typing":true}')
    await until(lambda: len(recorder.pubs) == 91)
    for channel in CHANNELS:
        expected = [1, 2, 3, 0] if channel == CHANNELS[0] else [1, 2, 3]
        assert recorder.offsets(channel) == expected
        epoch = (await writer.position(channel)).epoch
        assert {e for c, e, p in recorder.pubs if c == channel and p.offset} == {epoch}
    assert ("room:0", "", ephemeral) in recorder.pubs
    assert recorder.gaps == []
    for channel in CHANNELS:
        await reader.unlisten(channel)
    await writer.append("room:1", b"{}", history_size=SIZE, history_ttl_s=TTL_S)
    await asyncio.sleep(0.1)
    assert len(recorder.pubs) == 91


async def test_concurrent_batches_get_consecutive_offsets(
    engines: Callable[[], RedisEngine],
) -> None:
    writers = [engines() for _ in range(3)]

    async def write(engine: RedisEngine, name: str) -> list[tuple[str, int]]:
        got = []
        for batch in range(10):
            items = [
                AppendRequest(CHANNELS[(batch + i) % 7], name.encode(), SIZE, TTL_S)
                for i in range(20)
            ]
            for item, pub in zip(items, await engine.append_batch(items), strict=True):
                assert pub is not None
                got.append((item.channel, pub.offset))
        return got

    results = await asyncio.gather(*(write(e, f"w{i}") for i, e in enumerate(writers)))
    per_channel: dict[str, list[int]] = defaultdict(list)
    for got in results:
        for channel, offset in got:
            per_channel[channel].append(offset)
    assert sum(len(v) for v in per_channel.values()) == 600
    for offsets in per_channel.values():
        assert sorted(offsets) == list(range(1, len(offsets) + 1))


async def test_a_lost_shard_connection_resubscribes_and_reports_gaps(
    cluster: RedisClusterServers, engines: Callable[[], RedisEngine]
) -> None:
    writer, reader = engines(), engines()
    recorder = Recorder()
    reader.subscribe_fanout(recorder)
    for channel in CHANNELS:
        await reader.listen(channel)
    killed = cluster.nodes[1]
    killed.cli("CLIENT", "KILL", "TYPE", "pubsub")
    owner = redis_asyncio.RedisCluster.from_url(cluster.url.replace("?cluster=true", ""))
    await owner.initialize()
    on_killed = {
        c
        for c in CHANNELS
        if owner.get_node_from_key(f"x:s:{{{c}}}").port == killed.port  # type: ignore[union-attr]
    }
    await owner.aclose()
    assert on_killed
    # Only the channels of that node may have lost anything.
    await until(lambda: set(recorder.gaps) == on_killed)
    await writer.append_batch([AppendRequest(c, b"{}", SIZE, TTL_S) for c in CHANNELS])
    await until(lambda: len(recorder.pubs) == len(CHANNELS))


async def test_a_migrated_slot_moves_its_subscription_with_a_gap(
    cluster: RedisClusterServers, engines: Callable[[], RedisEngine]
) -> None:
    writer, reader = engines(), engines()
    recorder = Recorder()
    reader.subscribe_fanout(recorder)
    channel = "room:migrating"
    await reader.listen(channel)
    await reader.listen("room:1")
    await writer.append(channel, b"{}", history_size=SIZE, history_ttl_s=TTL_S)
    await until(lambda: recorder.offsets(channel) == [1])
    stream_key = writer._keys(channel)[0]
    slot = int(cluster.nodes[0].cli("CLUSTER", "KEYSLOT", stream_key))
    ids = {node.port: node.cli("CLUSTER", "MYID").strip() for node in cluster.nodes}
    source = next(
        n for n in cluster.nodes if n.cli("CLUSTER", "COUNTKEYSINSLOT", str(slot)) != "0\n"
    )
    target = next(n for n in cluster.nodes if n is not source)
    target.cli("CLUSTER", "SETSLOT", str(slot), "IMPORTING", ids[source.port])
    source.cli("CLUSTER", "SETSLOT", str(slot), "MIGRATING", ids[target.port])
    keys = source.cli("CLUSTER", "GETKEYSINSLOT", str(slot), "100").split()
    source.cli("MIGRATE", "127.0.0.1", str(target.port), "", "0", "5000", "KEYS", *keys)
    for node in cluster.nodes:
        node.cli("CLUSTER", "SETSLOT", str(slot), "NODE", ids[target.port])
    # The old owner drops the shard subscription; the engine follows the slot and says so.
    await until(lambda: recorder.gaps == [channel])
    pub = await writer.append(channel, b"{}", history_size=SIZE, history_ttl_s=TTL_S)
    assert pub is not None
    await until(lambda: len(recorder.offsets(channel)) == 2)
    assert recorder.offsets(channel)[-1] == pub.offset
    # A cluster is not durable, so the data's new server means a new epoch (offset 1 again).
    assert pub.offset == 1
    assert recorder.pubs[0][1] != recorder.pubs[-1][1]
