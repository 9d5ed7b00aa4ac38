"""What only the memory presence store promises: exact expiry by its clock, and no leftovers."""

from __future__ import annotations

import time

from syncline.core.log import ClientInfo
from syncline.presence import MemoryPresenceStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_entries_of_different_ttls_expire_each_at_its_own_time() -> None:
    clock = FakeClock()
    store = MemoryPresenceStore(clock)
    await store.add("room", ClientInfo("1", "long"), 100.0)
    await store.add("room", ClientInfo("2", "short"), 10.0)
    await store.add("room", ClientInfo("3", "middle"), 50.0)
    clock.now = 10.0  # expiry is inclusive: at expire-at the entry is gone
    assert set(await store.clients("room")) == {"long", "middle"}
    await store.add("room", ClientInfo("3", "middle"), 10.0)  # refreshed with another TTL
    clock.now = 20.0
    assert await store.stats("room") == (1, 1)
    clock.now = 100.0
    assert await store.stats("room") == (0, 0)


async def test_the_refresh_empties_channels_nobody_touches() -> None:
    clock = FakeClock()
    store = MemoryPresenceStore(clock)
    await store.add_many([(f"room:{n}", ClientInfo("1", f"c{n}")) for n in range(100)], 10.0)
    clock.now = 5.0
    await store.add_many([("room:0", ClientInfo("1", "c0"))], 10.0)
    clock.now = 12.0
    await store.add_many([("room:0", ClientInfo("1", "c0"))], 10.0)
    assert list(store._channels) == ["room:0"]
    await store.remove("room:0", "c0")
    assert store._channels == {}


async def test_a_hundred_thousand_adds_and_removes_in_one_channel_stay_fast() -> None:
    # Each add and remove is O(1): the loop is linear (a sanity check, not a timed assertion).
    store = MemoryPresenceStore()
    started = time.perf_counter()
    for n in range(100_000):
        await store.add("big", ClientInfo(f"u{n % 1000}", f"c{n}"))
    assert await store.stats("big") == (100_000, 1000)
    for n in range(100_000):
        await store.remove("big", f"c{n}")
    assert await store.stats("big") == (0, 0)
    print(f"100,000 adds and removes: {time.perf_counter() - started:.2f} s")
