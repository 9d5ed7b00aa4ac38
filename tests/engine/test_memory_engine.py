"""The memory engine: atomic offsets under concurrency, ordered fan-out, batches, ephemerals."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import defaultdict

import pytest

from syncline.core.changes import CommitPosition
from syncline.core.log import ClientInfo, LogError, Publication, StreamPosition
from syncline.engine.base import AppendRequest, ChannelLog, EngineClosedError
from syncline.engine.memory import SWEEP_INTERVAL_S, MemoryEngine

SIZE = 100
TTL_S = 60.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A fan-out handler that keeps what it was given."""

    def __init__(self) -> None:
        self.pubs: list[tuple[str, str, Publication]] = []
        self.gaps: list[str | None] = []

    def on_publication(self, channel: str, epoch: str, pub: Publication, /) -> None:
        self.pubs.append((channel, epoch, pub))

    def on_gap(self, channel: str | None, /) -> None:
        self.gaps.append(channel)

    def offsets(self, channel: str) -> list[int]:
        return [p.offset for c, _, p in self.pubs if c == channel]


class Failing(Recorder):
    def on_publication(self, channel: str, epoch: str, pub: Publication, /) -> None:
        raise RuntimeError("handler bug")


def make_engine(
    clock: Clock | None = None,
    *,
    history_max_limit: int = 1000,
    idle_stream_ttl_s: float = 3600.0,
    max_streams: int = 1000,
) -> MemoryEngine:
    """An engine with a hand-moved clock and epochs e1, e2, … in order of stream creation."""
    counter = itertools.count(1)
    return MemoryEngine(
        clock=clock or Clock(),
        epoch_factory=lambda: f"e{next(counter)}",
        history_max_limit=history_max_limit,
        idle_stream_ttl_s=idle_stream_ttl_s,
        max_streams=max_streams,
    )


async def append(engine: ChannelLog, channel: str, data: bytes = b"{}") -> Publication:
    pub = await engine.append(channel, data, history_size=SIZE, history_ttl_s=TTL_S)
    assert pub is not None
    return pub


def test_memory_engine_is_a_channel_log() -> None:
    engine: ChannelLog = make_engine()
    assert isinstance(engine, MemoryEngine)


async def test_concurrent_appends_from_many_tasks_keep_offsets_gap_free() -> None:
    engine = make_engine()
    recorder = Recorder()
    engine.subscribe_fanout(recorder)
    channels = ["room:1", "room:2", "room:3"]
    rng = random.Random(7)

    async def writer(task: int) -> list[tuple[str, int]]:
        got = []
        for i in range(100):
            channel = rng.choice(channels)
            pub = await append(engine, channel, b'{"t":%d,"i":%d}' % (task, i))
            got.append((channel, pub.offset))
            await asyncio.sleep(0)
        return got

    results = await asyncio.gather(*(writer(t) for t in range(50)))
    by_channel: dict[str, list[int]] = defaultdict(list)
    for channel, offset in itertools.chain.from_iterable(results):
        by_channel[channel].append(offset)
    assert sum(len(v) for v in by_channel.values()) == 5000
    for channel, got in by_channel.items():
        assert sorted(got) == list(range(1, len(got) + 1))
        # The handler saw each publication once, in offset order.
        assert recorder.offsets(channel) == list(range(1, len(got) + 1))
        epoch = next(e for c, e, _ in recorder.pubs if c == channel)
        assert await engine.position(channel) == StreamPosition(len(got), epoch)


async def test_fanout_runs_before_append_returns_with_the_stream_epoch() -> None:
    engine = make_engine()
    recorder = Recorder()
    engine.subscribe_fanout(recorder)
    info = ClientInfo("u1", "c1")
    pub = await engine.append(
        "chat", b'{"t":"hi"}', info=info, history_size=SIZE, history_ttl_s=TTL_S
    )
    epoch = (await engine.position("chat")).epoch
    assert recorder.pubs == [("chat", epoch, pub)]
    assert pub is not None
    assert (pub.offset, pub.data, pub.info) == (1, b'{"t":"hi"}', info)


async def test_every_handler_sees_every_publication_and_can_unsubscribe() -> None:
    engine = make_engine()
    first, second = Recorder(), Recorder()
    engine.subscribe_fanout(first)
    stop_second = engine.subscribe_fanout(second)
    await append(engine, "a")
    stop_second()
    stop_second()
    await append(engine, "a")
    assert first.offsets("a") == [1, 2]
    assert second.offsets("a") == [1]


async def test_a_handler_may_unsubscribe_during_fanout() -> None:
    engine = make_engine()
    later = Recorder()

    class OneShot(Recorder):
        def on_publication(self, channel: str, epoch: str, pub: Publication, /) -> None:
            super().on_publication(channel, epoch, pub)
            stop()

    once = OneShot()
    stop = engine.subscribe_fanout(once)
    engine.subscribe_fanout(later)
    await append(engine, "a")
    await append(engine, "a")
    assert once.offsets("a") == [1]
    assert later.offsets("a") == [1, 2]


async def test_a_failing_handler_gets_a_gap_and_does_not_stop_the_others() -> None:
    engine = make_engine()
    failing, healthy = Failing(), Recorder()
    engine.subscribe_fanout(failing)
    engine.subscribe_fanout(healthy)
    pub = await append(engine, "a")
    assert pub.offset == 1
    assert failing.gaps == ["a"]
    assert healthy.offsets("a") == [1]
    assert (await engine.history("a", limit=-1)).publications == [pub]


async def test_append_drops_a_change_already_appended() -> None:
    engine = make_engine()
    recorder = Recorder()
    engine.subscribe_fanout(recorder)

    async def append_change(channel: str, commit: int) -> Publication | None:
        return await engine.append(
            channel,
            b"{}",
            position=CommitPosition(commit, 0),
            history_size=SIZE,
            history_ttl_s=TTL_S,
        )

    assert await append_change("a", 100) is not None
    assert await append_change("a", 100) is None
    assert await append_change("a", 99) is None
    # Dedupe is per channel: the same change may publish to another channel.
    assert await append_change("b", 100) is not None
    assert recorder.offsets("a") == [1]
    assert (await engine.position("a")).offset == 1


async def test_append_batch_keeps_order_across_channels() -> None:
    engine = make_engine()
    recorder = Recorder()
    engine.subscribe_fanout(recorder)
    items = [
        AppendRequest("a", b"a1", SIZE, TTL_S, position=CommitPosition(1, 0)),
        AppendRequest("b", b"b1", SIZE, TTL_S, position=CommitPosition(1, 0)),
        AppendRequest("a", b"a2", SIZE, TTL_S, position=CommitPosition(1, 1)),
        AppendRequest("a", b"dup", SIZE, TTL_S, position=CommitPosition(1, 1)),
        AppendRequest("b", b"b2", SIZE, TTL_S, info=ClientInfo("u", "c")),
    ]
    results = await engine.append_batch(items)
    assert [(p.data, p.offset) if p else None for p in results] == [
        (b"a1", 1),
        (b"b1", 1),
        (b"a2", 2),
        None,
        (b"b2", 2),
    ]
    assert [(c, p.data) for c, _, p in recorder.pubs] == [
        ("a", b"a1"),
        ("b", b"b1"),
        ("a", b"a2"),
        ("b", b"b2"),
    ]
    assert await engine.append_batch([]) == []


async def test_ephemeral_publications_take_no_offset_and_skip_history() -> None:
    engine = make_engine()
    recorder = Recorder()
    engine.subscribe_fanout(recorder)
    await append(engine, "room")
    info = ClientInfo("u1", "c1")
    pub = await engine.publish_ephemeral("room", b'{"typing":true}', info)
    assert (pub.offset, pub.data, pub.info) == (0, b'{"typing":true}', info)
    assert recorder.pubs[-1] == ("room", "", pub)
    await append(engine, "room")
    assert recorder.offsets("room") == [1, 0, 2]
    history = await engine.history("room", limit=-1)
    assert [p.offset for p in history.publications] == [1, 2]
    recovery = await engine.recover("room", StreamPosition(1, history.position.epoch))
    assert [p.offset for p in recovery.publications] == [2]


async def test_ephemeral_publication_to_an_unknown_channel_creates_no_stream() -> None:
    engine = make_engine()
    await engine.publish_ephemeral("typing:1", b"{}")
    assert len(engine) == 0


async def test_position_creates_the_stream_with_a_stable_non_empty_epoch() -> None:
    engine = make_engine()
    first = await engine.position("a")
    assert first == StreamPosition(0, "e1")
    assert await engine.position("a") == first
    assert await engine.position("b") == StreamPosition(0, "e2")
    await append(engine, "a")
    assert await engine.position("a") == StreamPosition(1, "e1")


async def test_default_epochs_are_random() -> None:
    one, two = MemoryEngine(), MemoryEngine()
    assert (await one.position("a")).epoch != (await two.position("a")).epoch


async def test_recover_and_history_follow_the_clock() -> None:
    clock = Clock()
    engine = make_engine(clock)
    for _ in range(3):
        await engine.append("a", b"{}", history_size=10, history_ttl_s=5.0)
        clock.now += 1.0
    epoch = (await engine.position("a")).epoch
    result = await engine.recover("a", StreamPosition(0, epoch))
    assert [p.offset for p in result.publications] == [1, 2, 3]
    clock.now += 2.5  # the first publication is now 5.5 s old, the second 4.5 s
    result = await engine.recover("a", StreamPosition(0, epoch))
    assert not result.recovered
    assert list(result.publications) == []
    result = await engine.recover("a", StreamPosition(1, epoch))
    assert [p.offset for p in result.publications] == [2, 3]
    assert not (await engine.recover("a", StreamPosition(1, "other"))).recovered


async def test_history_is_capped_by_the_engine_max_limit_and_raises_log_errors() -> None:
    engine = make_engine(history_max_limit=2)
    for _ in range(5):
        await append(engine, "a")
    page = await engine.history("a", limit=-1, reverse=True)
    assert [p.offset for p in page.publications] == [5, 4]
    assert page.position.offset == 5
    assert list((await engine.history("a")).publications) == []
    with pytest.raises(LogError) as caught:
        await engine.history("a", limit=1, since=StreamPosition(0, ""), reverse=True)
    assert caught.value.code == 107
    with pytest.raises(LogError) as caught:
        await engine.history("a", limit=1, since=StreamPosition(2, "wrong"))
    assert caught.value.code == 112


async def test_append_applies_changed_history_bounds() -> None:
    engine = make_engine()
    for _ in range(5):
        await engine.append("a", b"{}", history_size=5, history_ttl_s=TTL_S)
    await engine.append("a", b"{}", history_size=2, history_ttl_s=TTL_S)
    page = await engine.history("a", limit=-1)
    assert [p.offset for p in page.publications] == [5, 6]


async def test_idle_streams_without_history_or_listeners_are_dropped() -> None:
    clock = Clock()
    engine = make_engine(clock, idle_stream_ttl_s=100.0)
    await engine.append("gone", b"{}", history_size=0, history_ttl_s=0.0)
    await engine.append("kept", b"{}", history_size=10, history_ttl_s=500.0)
    await engine.listen("listened")
    await engine.position("listened")
    clock.now += 150.0
    await engine.position("fresh")
    assert len(engine) == 3
    # "gone" starts over with a new epoch; the others keep theirs.
    assert await engine.position("gone") == StreamPosition(0, "e5")
    assert await engine.position("kept") == StreamPosition(1, "e2")
    assert await engine.position("listened") == StreamPosition(0, "e3")
    await engine.unlisten("listened")
    # Past the history TTL of "kept" and the idle TTL of all: only the stream just used is left.
    clock.now += 400.0 + SWEEP_INTERVAL_S
    await engine.position("fresh")
    assert len(engine) == 1


async def test_a_full_engine_evicts_the_least_recently_used_unlistened_stream() -> None:
    engine = make_engine(max_streams=3)
    await engine.listen("l")
    await engine.position("l")
    await append(engine, "old")
    await append(engine, "new")
    await append(engine, "old")
    await append(engine, "newest")
    assert len(engine) == 3
    assert (await engine.position("old")).offset == 2
    assert (await engine.position("l")).offset == 0
    # "new" was the least recently used without a listener: it lost its stream and epoch.
    assert await engine.position("new") == StreamPosition(0, "e5")


async def test_a_full_engine_of_listened_streams_grows_rather_than_evict() -> None:
    engine = make_engine(max_streams=2)
    for channel in ("a", "b", "c"):
        await engine.listen(channel)
        await engine.listen(channel)
        await engine.position(channel)
    await engine.unlisten("a")
    assert len(engine) == 3
    await engine.position("d")
    assert len(engine) == 4
    await engine.unlisten("a")
    await engine.unlisten("a")
    await engine.position("e")
    assert len(engine) == 4


async def test_closed_engine_refuses_every_call() -> None:
    engine = make_engine()
    recorder = Recorder()
    engine.subscribe_fanout(recorder)
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
        engine.subscribe_fanout(recorder)
    assert recorder.pubs == []


def test_engine_rejects_a_zero_stream_bound() -> None:
    with pytest.raises(ValueError, match="max_streams"):
        MemoryEngine(max_streams=0)
