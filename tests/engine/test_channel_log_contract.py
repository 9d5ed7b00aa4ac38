"""The ChannelLog contract, run against every engine: the memory engine and Redis.

Fan-out is asserted through ``listen`` and waiting, since Redis delivers it asynchronously;
what only the memory engine promises (fan-out before append returns) is in
test_memory_engine.py, and what only Redis does in test_redis_engine.py.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from syncline.core.changes import CommitPosition
from syncline.core.log import ClientInfo, LogError, Publication, StreamPosition
from syncline.engine.base import AppendRequest, ChannelLog, EngineClosedError
from syncline.engine.memory import MemoryEngine
from syncline.engine.redis import RedisEngine

SIZE = 100
TTL_S = 60.0

MakeEngine = Callable[..., ChannelLog]


class Recorder:
    """A fan-out handler that keeps what it was given and can wait for more."""

    def __init__(self) -> None:
        self.pubs: list[tuple[str, str, Publication]] = []
        self.gaps: list[str | None] = []

    def on_publication(self, channel: str, epoch: str, pub: Publication, /) -> None:
        self.pubs.append((channel, epoch, pub))

    def on_gap(self, channel: str | None, /) -> None:
        self.gaps.append(channel)

    def offsets(self, channel: str) -> list[int]:
        return [p.offset for c, _, p in self.pubs if c == channel]

    async def wait(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.002)

    async def wait_count(self, channel: str, count: int) -> None:
        await self.wait(lambda: len(self.offsets(channel)) >= count)


class Failing(Recorder):
    def on_publication(self, channel: str, epoch: str, pub: Publication, /) -> None:
        raise RuntimeError("handler bug")


@pytest.fixture(params=["memory", "redis"])
async def make_engine(request: pytest.FixtureRequest) -> AsyncIterator[MakeEngine]:
    """Makes engines of one kind; Redis ones of one test share a fresh key prefix."""
    created: list[ChannelLog] = []
    url = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    prefix = f"t{secrets.token_hex(6)}"

    def make(**options: Any) -> ChannelLog:
        engine: ChannelLog
        if request.param == "memory":
            engine = MemoryEngine(**options)
        else:
            engine = RedisEngine(url, prefix=prefix, **options)
        created.append(engine)
        return engine

    yield make
    for engine in created:
        await engine.close()


@pytest.fixture
def engine(make_engine: MakeEngine) -> ChannelLog:
    return make_engine()


async def append(
    engine: ChannelLog,
    channel: str,
    data: bytes = b"{}",
    *,
    size: int = SIZE,
    ttl: float = TTL_S,
    position: CommitPosition | None = None,
) -> Publication:
    pub = await engine.append(
        channel, data, position=position, history_size=size, history_ttl_s=ttl
    )
    assert pub is not None
    return pub


def offsets(pubs: Any) -> list[int]:
    return [p.offset for p in pubs]


async def test_position_creates_a_stable_non_empty_epoch_and_offsets_start_at_one(
    engine: ChannelLog,
) -> None:
    first = await engine.position("a")
    assert first.offset == 0
    assert first.epoch
    assert await engine.position("a") == first
    assert (await engine.position("b")).offset == 0
    assert (await append(engine, "a")).offset == 1
    assert (await append(engine, "a")).offset == 2
    assert await engine.position("a") == StreamPosition(2, first.epoch)


async def test_append_returns_the_publication_as_given(engine: ChannelLog) -> None:
    info = ClientInfo("u 1", "c1", b'{"name":"a b"}', None)
    pub = await engine.append(
        "chat", b'{"t":"hi there"}', info=info, history_size=SIZE, history_ttl_s=TTL_S
    )
    assert pub is not None
    assert (pub.offset, pub.data, pub.info) == (1, b'{"t":"hi there"}', info)
    assert pub.time_ms > 1_600_000_000_000
    [kept] = (await engine.history("chat", limit=-1)).publications
    assert kept == pub


async def test_concurrent_appends_get_unique_consecutive_offsets_and_ordered_fanout(
    engine: ChannelLog,
) -> None:
    recorder = Recorder()
    engine.subscribe_fanout(recorder)
    channels = ["room:1", "room:2", "room:3"]
    for channel in channels:
        await engine.listen(channel)

    async def writer(task: int) -> list[tuple[str, int]]:
        got = []
        for i in range(30):
            channel = channels[(task + i) % 3]
            pub = await append(engine, channel, b'{"t":%d,"i":%d}' % (task, i))
            got.append((channel, pub.offset))
        return got

    results = await asyncio.gather(*(writer(t) for t in range(10)))
    by_channel: dict[str, list[int]] = defaultdict(list)
    for written in results:
        for channel, offset in written:
            by_channel[channel].append(offset)
    for channel, got in by_channel.items():
        assert sorted(got) == list(range(1, len(got) + 1))
        await recorder.wait_count(channel, len(got))
        # Each publication once, in offset order, all with the stream's epoch.
        assert recorder.offsets(channel) == list(range(1, len(got) + 1))
        epoch = (await engine.position(channel)).epoch
        assert {e for c, e, _ in recorder.pubs if c == channel} == {epoch}
    assert recorder.gaps == []


async def test_append_drops_a_change_already_appended_per_channel(engine: ChannelLog) -> None:
    recorder = Recorder()
    engine.subscribe_fanout(recorder)
    await engine.listen("a")

    async def change(channel: str, commit: int, seq: int = 0) -> Publication | None:
        return await engine.append(
            channel,
            b"{}",
            position=CommitPosition(commit, seq),
            history_size=SIZE,
            history_ttl_s=TTL_S,
        )

    assert await change("a", 100) is not None
    assert await change("a", 100) is None
    assert await change("a", 99, 5) is None
    assert await change("b", 100) is not None  # dedupe is per channel
    assert await change("a", 100, 1) is not None
    # Positions compare as numbers, not as text.
    assert await change("a", 1000) is not None
    assert await change("a", 999) is None
    assert await change("a", 2**62, 2**40) is not None
    assert await change("a", 2**62, 2**40 - 1) is None
    # No position: never dropped, and the next position is still compared with the last one.
    assert (await append(engine, "a")).offset == 5
    assert await change("a", 2**62, 2**40) is None
    await recorder.wait_count("a", 5)
    assert recorder.offsets("a") == [1, 2, 3, 4, 5]
    assert (await engine.position("a")).offset == 5


async def test_client_appends_interleave_with_captured_batches_in_one_sequence(
    engine: ChannelLog,
) -> None:
    """Client publications into a history namespace (no commit position, publisher info)
    racing capture batches: one gap-free sequence, and a capture re-read after a crash
    still drops exactly the changes already appended, client publications in between."""
    recorder = Recorder()
    engine.subscribe_fanout(recorder)
    await engine.listen("chat")
    info = ClientInfo("7", "c-7", b'{"name":"ann"}', None)
    batches = [
        [
            AppendRequest(
                "chat", b'{"c":%d}' % (b * 5 + i), SIZE, TTL_S, None, CommitPosition(b, i)
            )
            for i in range(5)
        ]
        for b in range(1, 9)
    ]

    async def capture() -> None:
        for batch in batches:
            await engine.append_batch(batch)
            await asyncio.sleep(0)

    async def client(writer: int) -> list[int]:
        """One connection: its publications one after another, as the gateway runs them."""
        got = []
        for n in range(5):
            pub = await engine.append(
                "chat",
                b'{"w":%d,"m":%d}' % (writer, n),
                info=info,
                history_size=SIZE,
                history_ttl_s=TTL_S,
            )
            assert pub is not None
            got.append(pub.offset)
        return got

    capturing = asyncio.create_task(capture())
    client_offsets = await asyncio.gather(*(client(w) for w in range(4)))
    await capturing
    page = await engine.history("chat", limit=-1)
    assert offsets(page.publications) == list(range(1, 61))
    assert page.position.offset == 60
    # Each writer's own order holds; client publications carry the publisher's info.
    captured = [p.data for p in page.publications if p.info is None]
    assert captured == [r.data for batch in batches for r in batch]
    published = {p.offset: p for p in page.publications if p.info is not None}
    assert {p.info for p in published.values()} == {info}
    for writer, got in enumerate(client_offsets):
        assert got == sorted(got)
        assert [published[o].data for o in got] == [
            b'{"w":%d,"m":%d}' % (writer, n) for n in range(5)
        ]
    # A capture restarted from an older acknowledged position: every change is a repeat.
    again = await engine.append_batch([r for batch in batches for r in batch])
    assert again == [None] * 40
    nxt = AppendRequest("chat", b'{"c":"next"}', SIZE, TTL_S, None, CommitPosition(9, 0))
    [appended] = await engine.append_batch([nxt])
    assert appended is not None and appended.offset == 61
    # Fan-out saw the same single sequence, and recovery from 0 replays all of it.
    await recorder.wait_count("chat", 61)
    assert recorder.offsets("chat") == list(range(1, 62))
    recovered = await engine.recover("chat", StreamPosition(0, page.position.epoch))
    assert recovered.recovered
    assert [p.data for p in recovered.publications][:60] == [p.data for p in page.publications]


async def test_append_batch_keeps_order_dedupes_within_the_batch(engine: ChannelLog) -> None:
    recorder = Recorder()
    engine.subscribe_fanout(recorder)
    for channel in ("a", "b"):
        await engine.listen(channel)
    items = [
        AppendRequest("a", b"a1", SIZE, TTL_S, position=CommitPosition(1, 0)),
        AppendRequest("b", b"b1", SIZE, TTL_S, position=CommitPosition(1, 0)),
        AppendRequest("a", b"a2", SIZE, TTL_S, position=CommitPosition(1, 1)),
        AppendRequest("a", b"dup", SIZE, TTL_S, position=CommitPosition(1, 1)),
        AppendRequest("b", b"b2", SIZE, TTL_S, info=ClientInfo("u", "c")),
    ]
    results = await engine.append_batch(items)
    assert [(p.data, p.offset, p.info) if p else None for p in results] == [
        (b"a1", 1, None),
        (b"b1", 1, None),
        (b"a2", 2, None),
        None,
        (b"b2", 2, ClientInfo("u", "c")),
    ]
    await recorder.wait(lambda: len(recorder.pubs) >= 4)
    assert [(c, p.data) for c, _, p in recorder.pubs if c == "a"] == [("a", b"a1"), ("a", b"a2")]
    assert [(c, p.data) for c, _, p in recorder.pubs if c == "b"] == [("b", b"b1"), ("b", b"b2")]
    assert await engine.append_batch([]) == []
    # A capture re-reading the same batch after a crash appends nothing.
    again = await engine.append_batch([i for i in items if i.position is not None])
    assert again == [None, None, None, None]


async def test_a_large_batch_across_many_channels(engine: ChannelLog) -> None:
    items = [
        AppendRequest(f"c{i % 37}", b'{"i":%d}' % i, SIZE, TTL_S, position=CommitPosition(i, 0))
        for i in range(2500)
    ]
    results = await engine.append_batch(items)
    per_channel: dict[str, list[int]] = defaultdict(list)
    for item, pub in zip(items, results, strict=True):
        assert pub is not None
        assert pub.data == item.data
        per_channel[item.channel].append(pub.offset)
    for got in per_channel.values():
        assert got == list(range(1, len(got) + 1))
    page = await engine.history("c5", limit=-1)
    assert [p.data for p in page.publications][-1] == b'{"i":2484}'


async def test_ephemeral_publications_take_no_offset_and_skip_history(
    engine: ChannelLog,
) -> None:
    recorder = Recorder()
    engine.subscribe_fanout(recorder)
    await engine.listen("room")
    await append(engine, "room")
    info = ClientInfo("u1", "c1", None, b'{"role":"x"}')
    pub = await engine.publish_ephemeral("room", b'{"typing":true}', info)
    assert (pub.offset, pub.data, pub.info) == (0, b'{"typing":true}', info)
    await append(engine, "room")
    await recorder.wait_count("room", 3)
    assert recorder.offsets("room") == [1, 0, 2]
    assert recorder.pubs[1] == ("room", "", pub)
    history = await engine.history("room", limit=-1)
    assert offsets(history.publications) == [1, 2]
    recovery = await engine.recover("room", StreamPosition(1, history.position.epoch))
    assert offsets(recovery.publications) == [2]


async def test_fanout_handlers_unsubscribe_and_failing_ones_get_a_gap(
    engine: ChannelLog,
) -> None:
    first, failing = Recorder(), Failing()
    engine.subscribe_fanout(failing)
    stop_first = engine.subscribe_fanout(first)
    await engine.listen("a")
    await append(engine, "a")
    await first.wait_count("a", 1)
    assert failing.gaps == ["a"]
    stop_first()
    stop_first()
    await append(engine, "a")
    await failing.wait(lambda: len(failing.gaps) == 2)
    assert first.offsets("a") == [1]


async def test_recovery_is_exact_or_refused(engine: ChannelLog) -> None:
    for _ in range(5):
        await append(engine, "a", size=3)
    epoch = (await engine.position("a")).epoch

    async def recover(offset: int, with_epoch: str = epoch) -> tuple[bool, list[int], int]:
        result = await engine.recover("a", StreamPosition(offset, with_epoch))
        assert result.position == StreamPosition(5, epoch)
        if not result.recovered:
            assert list(result.publications) == []
        return result.recovered, offsets(result.publications), result.position.offset

    assert await recover(2) == (True, [3, 4, 5], 5)
    assert await recover(4) == (True, [5], 5)
    assert await recover(5) == (True, [], 5)
    assert await recover(5, "") == (True, [], 5)  # an empty epoch means any
    assert await recover(3, "") == (True, [4, 5], 5)
    assert await recover(1) == (False, [], 5)  # offset 2 was trimmed by size
    assert await recover(0) == (False, [], 5)
    assert await recover(6) == (False, [], 5)  # ahead of the top
    assert await recover(5, "other") == (False, [], 5)
    # A channel nobody has appended to: a resume at 0 in its epoch is exact.
    fresh = await engine.position("fresh")
    assert (await engine.recover("fresh", fresh)).recovered
    assert not (await engine.recover("fresh", StreamPosition(0, "old"))).recovered


async def test_history_expires_by_ttl(engine: ChannelLog) -> None:
    # Margins of 0.35 s either way: a busy machine only makes things older, never younger.
    await append(engine, "a", ttl=0.8)
    await append(engine, "a", ttl=0.8)
    await asyncio.sleep(0.45)
    await append(engine, "a", ttl=0.8)
    epoch = (await engine.position("a")).epoch
    assert offsets((await engine.history("a", limit=-1)).publications) == [1, 2, 3]
    await asyncio.sleep(0.45)  # 1 and 2 are now 0.9 s old, 3 is 0.45 s
    assert offsets((await engine.history("a", limit=-1)).publications) == [3]
    assert not (await engine.recover("a", StreamPosition(1, epoch))).recovered
    result = await engine.recover("a", StreamPosition(2, epoch))
    assert (result.recovered, offsets(result.publications)) == (True, [3])
    page = await engine.history("a", limit=1, since=StreamPosition(0, epoch))
    assert offsets(page.publications) == [3]  # starts at the oldest kept, like Go
    await asyncio.sleep(0.45)
    assert list((await engine.history("a", limit=-1)).publications) == []
    assert (await engine.position("a")) == StreamPosition(3, epoch)
    # Everything expired: only a resume at the top is exact.
    assert (await engine.recover("a", StreamPosition(3, epoch))).recovered
    assert not (await engine.recover("a", StreamPosition(2, epoch))).recovered


async def test_history_pages_forward_and_backward(make_engine: MakeEngine) -> None:
    engine = make_engine(history_max_limit=3)
    for i in range(1, 8):
        await append(engine, "a", b'{"i":%d}' % i, size=5)  # keeps 3..7
    epoch = (await engine.position("a")).epoch

    async def page(
        limit: int, since: int | None = None, reverse: bool = False, with_epoch: str = epoch
    ) -> list[int]:
        position = None if since is None else StreamPosition(since, with_epoch)
        result = await engine.history("a", limit, position, reverse)
        assert result.position == StreamPosition(7, epoch)
        return offsets(result.publications)

    assert await page(0) == []
    assert await page(2) == [3, 4]
    assert await page(-1) == [3, 4, 5]  # "all" is capped by the max limit
    assert await page(100) == [3, 4, 5]
    assert await page(2, reverse=True) == [7, 6]
    assert await page(-1, reverse=True) == [7, 6, 5]
    assert await page(2, since=4) == [5, 6]
    assert await page(-1, since=4) == [5, 6, 7]
    assert await page(2, since=1) == [3, 4]  # trimmed start: from the oldest kept
    assert await page(2, since=7) == []
    assert await page(2, since=9) == []
    assert await page(2, since=6, reverse=True) == [5, 4]
    assert await page(-1, since=6, reverse=True) == [5, 4, 3]
    assert await page(2, since=8, reverse=True) == [7, 6]
    assert await page(2, since=9, reverse=True) == []
    assert await page(2, since=3, reverse=True) == []  # offset 2 is not kept
    assert await page(2, since=1, reverse=True) == []
    assert await page(2, since=4, with_epoch="") == [5, 6]
    with pytest.raises(LogError) as caught:
        await page(1, since=0, reverse=True)
    assert caught.value.code == 107
    with pytest.raises(LogError) as caught:
        await page(1, since=2, with_epoch="wrong")
    assert caught.value.code == 112
    with pytest.raises(LogError) as caught:
        await page(0, since=2, with_epoch="wrong")
    assert caught.value.code == 112


async def test_changed_history_bounds_apply_at_once(engine: ChannelLog) -> None:
    for _ in range(5):
        await append(engine, "a", size=5)
    await append(engine, "a", size=2)
    assert offsets((await engine.history("a", limit=-1)).publications) == [5, 6]
    await append(engine, "a", size=4)
    assert offsets((await engine.history("a", limit=-1)).publications) == [5, 6, 7]


async def test_without_history_offsets_still_count_and_only_a_resume_at_the_top_recovers(
    engine: ChannelLog,
) -> None:
    for _ in range(3):
        await append(engine, "a", size=10)
    await append(engine, "a", size=0)  # history turned off: the kept ones go
    await append(engine, "a", ttl=0.0)
    position = await engine.position("a")
    assert position.offset == 5
    assert list((await engine.history("a", limit=-1)).publications) == []
    assert (await engine.recover("a", position)).recovered
    assert not (await engine.recover("a", StreamPosition(4, position.epoch))).recovered
    await append(engine, "a", size=10)  # and on again: history starts over
    result = await engine.recover("a", position)
    assert (result.recovered, offsets(result.publications)) == (True, [6])
    assert offsets((await engine.history("a", limit=-1)).publications) == [6]


async def test_remove_history_empties_it_and_keeps_the_position(engine: ChannelLog) -> None:
    # Centrifuge's RemoveHistory: the stream's epoch and top offset stay, so a client at the
    # top goes on, one behind it reloads, and the next publication takes the next offset.
    for commit in (1, 2, 3, 10):
        await append(engine, "a", position=CommitPosition(commit, 0))
    before = await engine.position("a")
    assert before.offset == 4
    await engine.remove_history("a")
    assert await engine.position("a") == before
    page = await engine.history("a", limit=-1)
    assert (list(page.publications), page.position) == ([], before)
    assert (await engine.recover("a", before)).recovered
    behind = await engine.recover("a", StreamPosition(2, before.epoch))
    assert (behind.recovered, list(behind.publications)) == (False, [])
    # The commit position is kept too: a change read again after a crash is still dropped.
    dropped = await engine.append(
        "a", b"{}", position=CommitPosition(10, 0), history_size=SIZE, history_ttl_s=TTL_S
    )
    assert dropped is None
    pub = await append(engine, "a", b'{"n":5}')
    assert pub.offset == 5
    after = await engine.history("a", limit=-1)
    assert offsets(after.publications) == [5]
    assert after.position == StreamPosition(5, before.epoch)
    result = await engine.recover("a", before)
    assert (result.recovered, offsets(result.publications)) == (True, [5])


async def test_remove_history_of_an_unknown_channel_does_nothing(engine: ChannelLog) -> None:
    await engine.remove_history("never")
    page = await engine.history("never", limit=-1)
    assert list(page.publications) == [] and page.position.offset == 0


async def test_unlisten_undoes_one_listen(engine: ChannelLog) -> None:
    recorder = Recorder()
    engine.subscribe_fanout(recorder)
    await engine.listen("a")
    await engine.listen("a")
    await engine.unlisten("a")
    await append(engine, "a")
    await recorder.wait_count("a", 1)
    await engine.unlisten("a")
    await engine.unlisten("a")  # one too many is harmless
    await engine.listen("a")
    await append(engine, "a")
    await recorder.wait_count("a", 2)
    assert recorder.offsets("a") == [1, 2]


async def test_closed_engine_refuses_every_call(engine: ChannelLog) -> None:
    recorder = Recorder()
    engine.subscribe_fanout(recorder)
    await engine.listen("a")
    await engine.close()
    await engine.close()
    with pytest.raises(EngineClosedError):
        await append(engine, "a")
    with pytest.raises(EngineClosedError):
        await engine.append_batch([AppendRequest("a", b"{}", SIZE, TTL_S)])
    with pytest.raises(EngineClosedError):
        await engine.publish_ephemeral("a", b"{}")
    with pytest.raises(EngineClosedError):
        await engine.position("a")
    with pytest.raises(EngineClosedError):
        await engine.recover("a", StreamPosition(0, ""))
    with pytest.raises(EngineClosedError):
        await engine.history("a")
    with pytest.raises(EngineClosedError):
        await engine.listen("a")
    with pytest.raises(EngineClosedError):
        await engine.unlisten("a")
    with pytest.raises(EngineClosedError):
        await engine.remove_history("a")
    with pytest.raises(EngineClosedError):
        engine.subscribe_fanout(recorder)
    assert recorder.pubs == []


class PresenceEvents:
    def __init__(self) -> None:
        self.seen: list[tuple[str, ClientInfo, bool]] = []

    def on_presence(self, channel: str, info: ClientInfo, joined: bool, /) -> None:
        self.seen.append((channel, info, joined))


async def test_joins_and_leaves_reach_the_listeners_and_take_no_offset(
    make_engine: MakeEngine,
) -> None:
    """A join and a leave reach the presence handlers of the engines listening to the channel
    (for Redis, another engine, as another process would be), in order; nothing is appended."""
    publisher = make_engine()
    # Memory: one process, so its own handlers; Redis: a second engine, as another process.
    listener = publisher if isinstance(publisher, MemoryEngine) else make_engine()
    events = PresenceEvents()
    listener.subscribe_presence(events)
    await listener.listen("room:1")
    info = ClientInfo("7", "c-1", b'{"name":"Ann"}', b'{"role":"admin"}')
    await publisher.publish_presence("room:1", info, True)
    await publisher.publish_presence("room:1", info, False)
    deadline = asyncio.get_running_loop().time() + 5
    while len(events.seen) < 2 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    assert events.seen == [("room:1", info, True), ("room:1", info, False)]
    assert (await publisher.position("room:1")).offset == 0
