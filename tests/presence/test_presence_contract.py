"""The presence contract, for every store: clients and users per channel, refreshes, expiry."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from syncline.core.log import ClientInfo
from syncline.presence import (
    MemoryPresenceStore,
    PresenceStore,
    online_key,
    open_presence,
)

# Redis entries expire by Redis's clock in real time: short TTLs keep these tests quick, and
# the waits below are multiples of them that leave 0.4 TTL (200 ms) for a slow machine.
REDIS_TTL_S = 0.5


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Subject:
    store: PresenceStore
    ttl_s: float
    # Lets at least ``seconds`` pass for the store (a fake clock, or real time for Redis).
    advance: Callable[[float], Awaitable[None]]


@pytest.fixture(params=["memory", "redis"])
async def subject(request: pytest.FixtureRequest) -> AsyncIterator[Subject]:
    if request.param == "memory":
        clock = FakeClock()

        async def move(seconds: float) -> None:
            clock.now += seconds

        subject = Subject(MemoryPresenceStore(clock=clock), 10.0, move)
    else:
        url: str = request.getfixturevalue("redis_url")
        store = open_presence(f"{url}?prefix=t{secrets.token_hex(6)}")
        subject = Subject(store, REDIS_TTL_S, asyncio.sleep)
    try:
        yield subject
    finally:
        await subject.store.close()


def info(
    user: str, client: str, conn: bytes | None = None, chan: bytes | None = None
) -> ClientInfo:
    return ClientInfo(user, client, conn, chan)


async def test_an_empty_channel_has_no_clients(subject: Subject) -> None:
    assert await subject.store.clients("room:1") == {}
    assert await subject.store.stats("room:1") == (0, 0)


async def test_clients_are_added_and_removed(subject: Subject) -> None:
    store = subject.store
    a, b = info("1", "c1"), info("2", "c2")
    await store.add("room:1", a)
    await store.add("room:1", b)
    await store.add("room:2", a)
    assert await store.clients("room:1") == {"c1": a, "c2": b}
    assert await store.stats("room:1") == (2, 2)
    await store.remove("room:1", "c1")
    await store.remove("room:1", "c-unknown")
    await store.remove("room:9", "c1")
    assert await store.clients("room:1") == {"c2": b}
    assert await store.stats("room:1") == (1, 1)
    assert await store.clients("room:2") == {"c1": a}
    await store.remove("room:1", "c2")
    assert await store.stats("room:1") == (0, 0)
    assert await store.clients("room:1") == {}


async def test_a_user_counts_once_however_many_clients(subject: Subject) -> None:
    store = subject.store
    for client in ("tab1", "tab2", "phone"):
        await store.add("room:1", info("alice", client))
    await store.add("room:1", info("bob", "b1"))
    assert await store.stats("room:1") == (4, 2)
    await store.remove("room:1", "tab1")
    await store.remove("room:1", "tab2")
    assert await store.stats("room:1") == (2, 2)
    await store.remove("room:1", "phone")
    assert await store.stats("room:1") == (1, 1)


async def test_adding_again_is_idempotent_and_takes_the_new_info(subject: Subject) -> None:
    store = subject.store
    await store.add("room:1", info("1", "c1", b'{"v":1}'))
    await store.add("room:1", info("1", "c1", b'{"v":1}'))
    assert await store.stats("room:1") == (1, 1)
    await store.add("room:1", info("1", "c1", b'{"v":2}'))
    assert await store.clients("room:1") == {"c1": info("1", "c1", b'{"v":2}')}
    assert await store.stats("room:1") == (1, 1)


async def test_a_client_re_added_as_another_user_moves_its_count(subject: Subject) -> None:
    # Not something the gateway does (a client's user is fixed), but counts must not drift.
    store = subject.store
    await store.add("room:1", info("1", "c1"))
    await store.add("room:1", info("1", "c2"))
    await store.add("room:1", info("2", "c1"))
    assert await store.stats("room:1") == (2, 2)
    await store.remove("room:1", "c2")
    assert await store.stats("room:1") == (1, 1)
    await store.remove("room:1", "c1")
    assert await store.stats("room:1") == (0, 0)


async def test_an_entry_not_refreshed_expires(subject: Subject) -> None:
    store, ttl = subject.store, subject.ttl_s
    await store.add("room:1", info("1", "stale"), ttl)
    await store.add("room:1", info("2", "fresh"), ttl)
    await subject.advance(ttl * 0.6)
    await store.add("room:1", info("2", "fresh"), ttl)  # the refresh
    await subject.advance(ttl * 0.6)
    assert set(await store.clients("room:1")) == {"fresh"}
    assert await store.stats("room:1") == (1, 1)
    await subject.advance(ttl * 1.2)
    assert await store.stats("room:1") == (0, 0)
    assert await store.clients("room:1") == {}


async def test_expiry_uncounts_users_and_a_returning_client_counts_again(
    subject: Subject,
) -> None:
    store, ttl = subject.store, subject.ttl_s
    await store.add("room:1", info("alice", "a1"), ttl)
    await store.add("room:1", info("alice", "a2"), ttl * 10)
    await subject.advance(ttl * 1.5)
    assert await store.stats("room:1") == (1, 1)
    await store.add("room:1", info("alice", "a1"), ttl)
    await store.add("room:1", info("bob", "b1"), ttl)
    assert await store.stats("room:1") == (3, 2)
    await store.remove("room:1", "a2")
    assert await store.stats("room:1") == (2, 2)


async def test_add_many_adds_and_refreshes_across_channels(subject: Subject) -> None:
    store, ttl = subject.store, subject.ttl_s
    entries = [(f"room:{n % 3}", info(f"u{n % 5}", f"c{n}")) for n in range(30)]
    await store.add_many(entries, ttl)
    assert await store.stats("room:0") == (10, 5)
    assert set(await store.clients("room:1")) == {f"c{n}" for n in range(1, 30, 3)}
    await store.add_many([], ttl)
    # A refresh of all but one: that one expires, the others stay.
    await subject.advance(ttl * 0.6)
    await store.add_many(entries[1:], ttl)
    await subject.advance(ttl * 0.6)
    assert await store.stats("room:0") == (9, 5)
    assert "c0" not in await store.clients("room:0")


async def test_info_round_trips_byte_for_byte(subject: Subject) -> None:
    store = subject.store
    odd = [
        info("1", "a", b'{"name": "Ann",  "tags":[1, 2.50, "x\\"y"]}', b"null"),
        info("2", "b", None, b'{"role":"admin","chan_info":{"x":1}}'),
        info("3", "c", b'"just a string with ,\\"chan_info\\": inside"', None),
        info("4", "d", b"{}", b"[]"),
        info('us"er,"client":', 'cl"}{,"conn_len":1', b'{"conn_len":5}', b"1e400"),
        info("ünï", "ç🙂", '{"é":"ü"}'.encode(), None),
        info("", ""),
    ]
    for entry in odd:
        await store.add("room:1", entry)
    assert await store.clients("room:1") == {entry.client: entry for entry in odd}
    assert await store.stats("room:1") == (len(odd), len(odd))
    await store.remove("room:1", 'cl"}{,"conn_len":1')
    assert await store.stats("room:1") == (len(odd) - 1, len(odd) - 1)


@pytest.mark.parametrize(
    "channel",
    ["chat:room:1", "ünïcödé:🙂", "{braces}", "a{b}c", "}{", "a:{}:b", "", online_key("7")],
)
async def test_channel_names_are_kept_apart(subject: Subject, channel: str) -> None:
    store = subject.store
    await store.add(channel, info("1", "c1"))
    await store.add(channel + "x", info("2", "c2"))
    await store.add("{" + channel, info("3", "c3"))
    assert set(await store.clients(channel)) == {"c1"}
    assert await store.stats(channel) == (1, 1)
    await store.remove(channel, "c1")
    assert await store.stats(channel) == (0, 0)
    assert set(await store.clients(channel + "x")) == {"c2"}


async def test_a_closed_store_refuses_calls_and_closes_again(subject: Subject) -> None:
    store = subject.store
    await store.close()
    await store.close()
    with pytest.raises(RuntimeError):
        await store.add("room:1", info("1", "c1"))
    with pytest.raises(RuntimeError):
        await store.stats("room:1")


def test_open_presence_knows_memory_and_refuses_other_urls() -> None:
    assert isinstance(open_presence("memory"), MemoryPresenceStore)
    for url in ("postgresql://x", "redis://localhost/0?cluster=maybe", "memory:"):
        with pytest.raises(ValueError, match="memory"):
            open_presence(url)
