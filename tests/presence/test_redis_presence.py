"""What only the Redis presence store promises: processes share it, dead ones leave no ghosts."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import cast

import orjson
import pytest
import redis.asyncio as redis_asyncio
from redis.crc import key_slot

from syncline.core.log import ClientInfo
from syncline.db.embedded import free_port
from syncline.presence import DEFAULT_PRESENCE_TTL_S, online_key, open_presence
from syncline.presence import redis as presence_redis
from syncline.presence.redis import (
    PresenceUnavailableError,
    RedisPresenceStore,
    decode_info,
    encode_info,
    presence_keys,
)

from helpers.redis_servers import RedisClusterServers, start_cluster

TTL_S = 0.5


@pytest.fixture
def prefix() -> str:
    return f"t{secrets.token_hex(6)}"


@pytest.fixture
async def stores(redis_url: str, prefix: str) -> AsyncIterator[Callable[[], RedisPresenceStore]]:
    """Stores on the session's redis-server sharing one fresh prefix, as processes would."""
    made: list[RedisPresenceStore] = []

    def make() -> RedisPresenceStore:
        store = RedisPresenceStore(redis_url, prefix=prefix)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[redis_asyncio.Redis]:
    client = redis_asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_two_processes_see_each_others_clients(
    stores: Callable[[], RedisPresenceStore],
) -> None:
    one, two = stores(), stores()
    await one.add("room:1", ClientInfo("alice", "a-on-1"))
    await two.add("room:1", ClientInfo("alice", "a-on-2"))
    await two.add("room:1", ClientInfo("bob", "b-on-2"))
    for store in (one, two):
        assert set(await store.clients("room:1")) == {"a-on-1", "a-on-2", "b-on-2"}
        assert await store.stats("room:1") == (3, 2)
    await one.remove("room:1", "a-on-2")  # any process may remove any client
    assert await two.stats("room:1") == (2, 2)


async def test_a_dead_process_leaves_no_ghosts(
    stores: Callable[[], RedisPresenceStore], raw: redis_asyncio.Redis, prefix: str
) -> None:
    alive, dying = stores(), stores()
    added = time.monotonic()
    await dying.add_many([("room:1", ClientInfo(f"u{n}", f"dead{n}")) for n in range(50)], TTL_S)
    await alive.add("room:1", ClientInfo("u0", "alive"), TTL_S)
    await dying.close()  # without removing anything: as if killed
    assert await alive.stats("room:1") == (51, 50)
    # The alive process refreshes its entry periodically; the dead one's go after their TTL.
    # Checked right after a refresh: a busy machine's pause between refreshes must not count.
    while True:
        await alive.add("room:1", ClientInfo("u0", "alive"), TTL_S)
        left = set(await alive.clients("room:1"))
        if left == {"alive"}:
            break
        assert "alive" in left
        assert time.monotonic() - added < TTL_S * 10, f"{len(left) - 1} ghosts stay"
        await asyncio.sleep(TTL_S / 5)
    assert time.monotonic() - added >= TTL_S * 0.9, "the dead ones went before their TTL"
    assert await alive.stats("room:1") == (1, 1)
    # The alive process dies too: nobody reads the channel again, and its keys still go.
    await alive.close()
    keys = presence_keys(prefix, "room:1")
    assert await raw.exists(*keys) == 3
    await asyncio.sleep(TTL_S * presence_redis.KEY_TTL_FACTOR + 0.1)
    assert await raw.exists(*keys) == 0


async def test_add_many_of_a_thousand_clients_takes_a_few_round_trips(
    stores: Callable[[], RedisPresenceStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = stores()
    round_trips = 0
    pipeline = RedisPresenceStore._pipeline

    async def counted(self: RedisPresenceStore, calls: list[object]) -> None:
        nonlocal round_trips
        round_trips += 1
        await pipeline(self, calls)  # type: ignore[arg-type]

    monkeypatch.setattr(RedisPresenceStore, "_pipeline", counted)
    conn = b'{"name":"someone with a name","avatar":"https://example.test/a.png"}'
    one_channel = [("big", ClientInfo(f"u{n % 700}", f"c{n}", conn)) for n in range(1000)]
    own_channels = [(f"$online:u{n}", ClientInfo(f"u{n}", f"c{n}", conn)) for n in range(1000)]
    for entries in (one_channel, own_channels):
        round_trips = 0
        started = time.perf_counter()
        await store.add_many(entries)
        elapsed = time.perf_counter() - started
        assert round_trips == 1  # two scripts of 500 clients, pipelined
        print(f"add_many of 1,000 clients: {elapsed * 1000:.1f} ms, {round_trips} round trips")
    started = time.perf_counter()
    assert await store.stats("big") == (1000, 700)
    print(f"stats of 1,000 clients: {(time.perf_counter() - started) * 1000:.2f} ms")
    assert len(await store.clients("big")) == 1000
    await store.add_many(one_channel)  # the refresh: no change
    assert await store.stats("big") == (1000, 700)
    assert await store.stats("$online:u999") == (1, 1)


async def test_a_flushed_script_cache_is_loaded_again(
    stores: Callable[[], RedisPresenceStore], raw: redis_asyncio.Redis
) -> None:
    store = stores()
    await store.add("room:1", ClientInfo("1", "c1"))
    await raw.script_flush()
    await store.add("room:1", ClientInfo("2", "c2"))
    await raw.script_flush()
    await store.add_many([("room:1", ClientInfo("3", "c3")), ("room:2", ClientInfo("3", "c3"))])
    await raw.script_flush()
    assert await store.stats("room:1") == (3, 3)


async def test_the_keys_of_a_channel_share_a_slot_and_hold_json(
    stores: Callable[[], RedisPresenceStore], raw: redis_asyncio.Redis, prefix: str
) -> None:
    for channel in ("room:1", "{x}y", "a}b{c", "", "ünï:🙂"):
        slots = {key_slot(key.encode()) for key in presence_keys(prefix, channel)}
        assert len(slots) == 1, channel
    store = stores()
    entry = ClientInfo("alice", "c1", b'{"name": "Ann"}', b'{"role":"admin"}')
    await store.add("room:1", entry)
    clients_key, expiry_key, users_key = presence_keys(prefix, "room:1")
    stored = await raw.hget(clients_key, "c1")
    assert isinstance(stored, bytes)
    assert orjson.loads(stored) == {
        "user": "alice",
        "client": "c1",
        "conn_len": len(b'{"name": "Ann"}'),
        "conn_info": {"name": "Ann"},
        "chan_info": {"role": "admin"},
    }
    assert decode_info(stored) == entry
    assert await raw.hgetall(users_key) == {b'"alice"': b"1"}
    expiries = cast(list[tuple[bytes, float]], await raw.zrange(expiry_key, 0, -1, withscores=True))
    assert [member for member, _ in expiries] == [b"c1"]
    seconds, micros = await raw.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    ttl_ms = DEFAULT_PRESENCE_TTL_S * 1000
    assert 0 < expiries[0][1] - now_ms <= ttl_ms
    assert 0 < await raw.pttl(clients_key) <= ttl_ms * presence_redis.KEY_TTL_FACTOR


async def test_the_keys_always_outlive_the_entries_they_hold(
    stores: Callable[[], RedisPresenceStore], raw: redis_asyncio.Redis, prefix: str
) -> None:
    store = stores()
    keys = presence_keys(prefix, "room:1")
    # The only user's client becomes another user's: the count hash is emptied, deleted and
    # made again within the script, and must get its expiry back.
    await store.add("room:1", ClientInfo("alice", "c1"), TTL_S)
    await store.add("room:1", ClientInfo("bob", "c1"), TTL_S)
    assert [await raw.pttl(key) > 0 for key in keys] == [True, True, True]
    # Refreshes mostly leave the key expiry alone: over several TTLs it never runs out first.
    deadline = time.monotonic() + TTL_S * 3
    while time.monotonic() < deadline:
        await store.add_many([("room:1", ClientInfo("bob", "c1"))], TTL_S)
        for key in keys:
            assert await raw.pttl(key) > TTL_S * 1000 * 0.5
        assert await store.stats("room:1") == (1, 1)
        await asyncio.sleep(TTL_S / 4)


def test_a_stored_entry_that_is_not_ours_is_refused() -> None:
    _, value = encode_info(ClientInfo("u", "c", b"[1]", b"{}"))
    for bad in (b"", b"{}", b'{"user":"u"}', value + b"x", value.replace(b'_len":3', b'_len":99')):
        with pytest.raises(ValueError, match="presence entry"):
            decode_info(bad)


async def test_an_unreachable_redis_raises_a_connection_error() -> None:
    store = RedisPresenceStore(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(PresenceUnavailableError) as caught:
            await store.stats("room:1")
        assert isinstance(caught.value, ConnectionError)
    finally:
        await store.close()


# -- Redis Cluster ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    servers = start_cluster(Path(tmp_path_factory.mktemp("cluster")))
    try:
        yield servers
    finally:
        servers.stop()


async def test_on_a_cluster_every_channel_works_from_its_own_slot(
    cluster: RedisClusterServers, prefix: str
) -> None:
    one = open_presence(f"{cluster.url}&prefix={prefix}")
    two = open_presence(f"{cluster.url}&prefix={prefix}")
    try:
        channels = [f"room:{n}" for n in range(200)] + ["{x}", "ünï:🙂", online_key("7")]
        # Channels of every slot in one call: a script that mixed slots would fail CROSSSLOT.
        entries = [(ch, ClientInfo(f"u{n % 2}", f"c{n}")) for ch in channels for n in range(3)]
        await one.add_many(entries)
        await one.add("room:0", ClientInfo("u9", "late"))
        for channel in channels[1:]:
            assert await two.stats(channel) == (3, 2)
        assert await two.stats("room:0") == (4, 3)
        await two.remove("room:0", "late")
        assert set(await one.clients("room:0")) == {"c0", "c1", "c2"}
        await one.add("room:expiring", ClientInfo("u1", "c1"), TTL_S)
        await asyncio.sleep(TTL_S * 1.2)
        assert await two.stats("room:expiring") == (0, 0)
    finally:
        await one.close()
        await two.close()
