"""What only the Redis engine promises: state that outlives processes and Redis restarts,
appends from several processes, and fan-out that reports every possible loss."""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis_asyncio
from redis.asyncio import Redis

from syncline.core.changes import CommitPosition
from syncline.core.log import Publication, StreamPosition
from syncline.engine import open_engine, redis_fanout
from syncline.engine.base import AppendRequest, ChannelLog, EngineUnavailableError
from syncline.engine.memory import MemoryEngine
from syncline.engine.redis import RedisEngine
from syncline.redis_url import POOL_SIZE

from helpers.redis_servers import RedisServer

CHILD = Path(__file__).parent.parent / "helpers" / "redis_child.py"
SIZE = 10_000
TTL_S = 600.0


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


@pytest.fixture
def prefix() -> str:
    return f"t{secrets.token_hex(6)}"


@pytest.fixture
async def engines(redis_url: str, prefix: str) -> AsyncIterator[Callable[..., RedisEngine]]:
    """Redis engines on the session's redis-server, sharing one fresh key prefix."""
    made: list[RedisEngine] = []

    def make(url: str = redis_url, **options: object) -> RedisEngine:
        engine = RedisEngine(url, prefix=prefix, **options)  # type: ignore[arg-type]
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await engine.close()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """redis-servers of the test's own, to kill and restart; stopped afterwards."""
    started: list[RedisServer] = []

    def start(**options: object) -> RedisServer:
        server = RedisServer(tmp_path / f"redis{len(started)}", **options)  # type: ignore[arg-type]
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


def run_children(url: str, prefix: str, names: list[str], *args: str) -> list[str]:
    procs = [
        subprocess.Popen(
            [sys.executable, str(CHILD), url, prefix, name, *args],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        outputs.append(out)
    return outputs


# -- the URL -----------------------------------------------------------------------------------


async def test_open_engine_chooses_by_url(redis_url: str) -> None:
    assert isinstance(open_engine(), MemoryEngine)
    assert isinstance(open_engine("memory"), MemoryEngine)
    engine = open_engine(redis_url + "?prefix=urltest&durable=false&meta_ttl=60")
    assert isinstance(engine, RedisEngine)
    try:
        assert (await engine.append("a", b"{}", history_size=1, history_ttl_s=1.0)) is not None
        client = redis_asyncio.Redis.from_url(redis_url)
        assert await client.exists("urltest:m:{a}") == 1
        assert 0 < await client.pttl("urltest:m:{a}") <= 60_000
        await client.aclose()
    finally:
        await engine.close()
    for bad in ("postgres://x", "redis://h?cluster=maybe", ""):
        with pytest.raises(ValueError, match="engine"):
            open_engine(bad)


# -- state outlives processes ----------------------------------------------------------------


async def test_appends_from_several_processes_get_unique_consecutive_offsets(
    redis_url: str, prefix: str, engines: Callable[..., RedisEngine]
) -> None:
    names = [f"p{i}" for i in range(4)]
    outputs = run_children(redis_url, prefix, names, "10", "30", "5")
    by_channel: dict[str, list[int]] = defaultdict(list)
    for name, out in zip(names, outputs, strict=True):
        mine: dict[str, list[int]] = defaultdict(list)
        for line in out.splitlines():
            channel, offset, _ = line.split()
            by_channel[channel].append(int(offset))
            mine[channel].append(int(offset))
        # A process's own appends to a channel keep their order.
        for got in mine.values():
            assert got == sorted(got), name
    assert sum(len(v) for v in by_channel.values()) == 4 * 10 * 30
    engine = engines()
    for channel, got in by_channel.items():
        assert sorted(got) == list(range(1, len(got) + 1))
        history = await engine.history(channel, limit=-1)
        assert [p.offset for p in history.publications] == list(range(1, len(got) + 1))


async def test_a_killed_appender_leaves_a_log_a_new_process_recovers_exactly(
    redis_url: str, prefix: str, engines: Callable[..., RedisEngine]
) -> None:
    """Syncline kill -9 and restart with Redis up: clients get recovered: true."""
    engine = engines()
    before = await engine.position("c0")
    with subprocess.Popen(
        [sys.executable, str(CHILD), redis_url, prefix, "pos", "1000", "10", "1", "0.002"],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        acknowledged = [proc.stdout.readline() for _ in range(50)]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    # A client that saw the first 20 resumes on a new process (this engine).
    seen = int(acknowledged[19].split()[1])
    result = await engine.recover("c0", StreamPosition(seen, before.epoch))
    assert result.recovered
    assert result.position.epoch == before.epoch
    offsets = [p.offset for p in result.publications]
    assert offsets == list(range(seen + 1, result.position.offset + 1))
    assert [p.data.decode() for p in result.publications] == [
        f"pos:{i}" for i in range(20, result.position.offset)
    ]
    assert result.position.offset >= 50  # what was acknowledged is there, maybe more
    # The capture re-reads from its last acknowledged position: nothing is appended twice.
    replay = [
        AppendRequest("c0", f"pos:{i}".encode(), SIZE, TTL_S, None, CommitPosition(i, 0))
        for i in range(40, result.position.offset)
    ]
    assert await engine.append_batch(replay) == [None] * len(replay)


# -- Redis restarts ----------------------------------------------------------------------------


async def test_a_durable_redis_restart_keeps_epochs_and_history(
    servers: Callable[..., RedisServer], engines: Callable[..., RedisEngine]
) -> None:
    server = servers(appendonly=True, appendfsync="always")
    engine = engines(server.url)
    for _ in range(5):
        await engine.append("a", b"{}", history_size=SIZE, history_ttl_s=TTL_S)
    position = await engine.position("a")
    server.kill()
    with pytest.raises(EngineUnavailableError):
        await engine.position("a")
    server.start()
    assert await engine.position("a") == position
    result = await engine.recover("a", StreamPosition(2, position.epoch))
    assert (result.recovered, [p.offset for p in result.publications]) == (True, [3, 4, 5])
    pub = await engine.append("a", b"{}", history_size=SIZE, history_ttl_s=TTL_S)
    assert pub is not None and pub.offset == 6
    assert (await engine.position("a")).epoch == position.epoch


async def test_a_redis_that_lost_its_data_gives_new_epochs_and_refuses_recovery(
    servers: Callable[..., RedisServer], engines: Callable[..., RedisEngine]
) -> None:
    server = servers()
    engine = engines(server.url)
    for _ in range(3):
        await engine.append("a", b"{}", history_size=SIZE, history_ttl_s=TTL_S)
    old = await engine.position("a")
    server.kill()
    server.start()
    with pytest.raises(EngineUnavailableError):  # the pooled connection died with the server
        await engine.position("a")
    new = await engine.position("a")
    assert new.epoch != old.epoch and new.offset == 0
    result = await engine.recover("a", old)
    assert (result.recovered, list(result.publications)) == (False, [])


async def test_a_restart_that_may_have_lost_acknowledged_appends_starts_a_new_epoch(
    servers: Callable[..., RedisServer], engines: Callable[..., RedisEngine]
) -> None:
    """AOF with fsync every second: a crash may lose the last writes, which clients saw."""
    server = servers(appendonly=True, appendfsync="everysec")
    engine = engines(server.url)
    for _ in range(3):
        await engine.append("a", b"{}", history_size=SIZE, history_ttl_s=TTL_S)
    old = await engine.position("a")
    # A killed process loses nothing it wrote to the file (only a machine crash or a delayed
    # write does), so the restored top is the old one; the epoch changes all the same.
    server.kill()
    server.start()
    with pytest.raises(EngineUnavailableError):
        await engine.position("a")
    assert await engine.position("a") == old  # reads tell the truth about what is there
    pub = await engine.append("a", b"{}", history_size=SIZE, history_ttl_s=TTL_S)
    assert pub is not None and pub.offset == 1  # but offsets are not reused under `old`
    assert (await engine.position("a")).epoch != old.epoch
    assert not (await engine.recover("a", old)).recovered


async def test_a_full_redis_refuses_appends_as_unavailable(
    servers: Callable[..., RedisServer], engines: Callable[..., RedisEngine]
) -> None:
    server = servers(extra=("--maxmemory-policy", "noeviction"))
    engine = engines(server.url)
    assert await engine.append("a", b"{}", history_size=SIZE, history_ttl_s=TTL_S) is not None
    server.cli("CONFIG", "SET", "maxmemory", "1")  # far below what it uses
    with pytest.raises(EngineUnavailableError, match="OOM"):
        await engine.append("a", b"{}", history_size=SIZE, history_ttl_s=TTL_S)
    server.cli("CONFIG", "SET", "maxmemory", "0")
    pub = await engine.append("a", b"{}", history_size=SIZE, history_ttl_s=TTL_S)
    assert pub is not None and pub.offset == 2  # the refused append took nothing


class SimClient:
    """One subscriber as the gateway keeps it: in order, and recovering on any doubt.

    Data values are the appender's sequence numbers; within one run of exact delivery (until a
    ``recovered: false`` makes the client reload) each must follow the one before.
    """

    def __init__(self, engine: ChannelLog, channel: str) -> None:
        self.engine = engine
        self.channel = channel
        self.position = StreamPosition(0, "")
        self.last: int | None = None
        self.stale = False
        self.pending: list[tuple[str, Publication]] | None = None
        self.reloads = 0
        self.recoveries = 0
        self.errors: list[str] = []

    async def start(self) -> None:
        self.engine.subscribe_fanout(self)
        await self.engine.listen(self.channel)
        self.position = await self.engine.position(self.channel)

    def on_publication(self, channel: str, epoch: str, pub: Publication, /) -> None:
        if channel != self.channel:
            return
        if self.pending is not None:
            self.pending.append((epoch, pub))
            return
        if self.stale:
            return
        position = self.position
        if epoch == position.epoch and pub.offset <= position.offset:
            return  # had it from a recovery
        if epoch != position.epoch or pub.offset != position.offset + 1:
            self.stale = True
            return
        self.accept(pub)
        self.position = StreamPosition(pub.offset, epoch)

    def on_gap(self, channel: str | None, /) -> None:
        if channel in (None, self.channel):
            self.stale = True

    def accept(self, pub: Publication) -> None:
        value = int(pub.data)
        if self.last is not None and value != self.last + 1:
            self.errors.append(f"after {self.last} got {value} at {pub.offset}")
        self.last = value

    async def run(self, done: asyncio.Event) -> None:
        while not done.is_set() or self.stale:
            if self.stale:
                self.pending = []
                try:
                    result = await self.engine.recover(self.channel, self.position)
                except EngineUnavailableError:
                    self.pending = None
                    await asyncio.sleep(0.05)
                    continue
                if result.recovered:
                    self.recoveries += 1
                    for pub in result.publications:
                        self.accept(pub)
                else:
                    self.reloads += 1
                    self.last = None  # reloaded from the database: a new run starts
                self.position = result.position
                self.stale = False
                pending, self.pending = self.pending, None
                for epoch, pub in pending:
                    self.on_publication(self.channel, epoch, pub)
            await asyncio.sleep(0.005)


async def append_forever(engine: ChannelLog, count: int, stop_after: asyncio.Event) -> int:
    """Append 0..count-1 to "a" in order, each retried until it is in (dedupe by position)."""
    i = 0
    while i < count:
        try:
            await engine.append(
                "a",
                b"%d" % i,
                position=CommitPosition(i, 0),
                history_size=SIZE,
                history_ttl_s=TTL_S,
            )
        except EngineUnavailableError:
            await asyncio.sleep(0.02)
            continue
        i += 1
        await asyncio.sleep(0.002)
    stop_after.set()
    return i


@pytest.mark.parametrize(
    ("appendonly", "appendfsync"),
    [(True, "always"), (True, "everysec"), (False, "everysec")],
    ids=["aof-always", "aof-everysec", "none"],
)
async def test_subscribers_stay_exact_through_a_redis_kill_during_appends(
    servers: Callable[..., RedisServer],
    engines: Callable[..., RedisEngine],
    appendonly: bool,
    appendfsync: str,
) -> None:
    server = servers(appendonly=appendonly, appendfsync=appendfsync)
    writer = engines(server.url)
    clients = [SimClient(engines(server.url), "a") for _ in range(2)]
    for client in clients:
        await client.start()
    done = asyncio.Event()
    runs = [asyncio.create_task(client.run(done)) for client in clients]
    appending = asyncio.create_task(append_forever(writer, 300, asyncio.Event()))
    await until(lambda: all((c.last or 0) >= 100 for c in clients))
    server.kill()
    await asyncio.sleep(0.3)
    server.start()
    assert await appending == 300
    done.set()
    await asyncio.gather(*runs)
    top = await writer.position("a")
    for client in clients:
        assert client.errors == []
        await until(lambda c=client: c.position == top and not c.stale)  # type: ignore[misc]
        assert client.last == 299
        if appendfsync == "always":
            # Nothing acknowledged was lost, so nothing needed a reload.
            assert (client.reloads, client.recoveries >= 1) == (0, True)
        else:
            # Maybe lost (everysec) or surely lost (no persistence): a new epoch, one reload.
            assert client.reloads >= 1


# -- fan-out ---------------------------------------------------------------------------------


async def test_a_full_fanout_buffer_drops_and_reports_a_gap(
    engines: Callable[..., RedisEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_fanout, "FANOUT_BUFFER_SIZE", 5)
    engine = engines()
    recorder = Recorder()
    engine.subscribe_fanout(recorder)
    await engine.listen("a")
    await engine.listen("b")
    items = [AppendRequest("a", b"{}", SIZE, TTL_S) for _ in range(50)]
    await engine.append_batch([*items, AppendRequest("b", b"{}", SIZE, TTL_S)])
    await until(lambda: "a" in recorder.gaps and "b" in recorder.gaps)
    got = recorder.offsets("a")
    assert 0 < len(got) < 50
    assert got == list(range(1, len(got) + 1))  # what was delivered is in order, no hole
    # The gap is reported after what was delivered and before anything later.
    await engine.append("a", b"{}", history_size=SIZE, history_ttl_s=TTL_S)
    await until(lambda: 51 in recorder.offsets("a"))
    assert recorder.offsets("a")[-1] == 51


async def test_a_lost_pubsub_connection_resubscribes_and_reports_a_gap(
    redis_url: str, engines: Callable[..., RedisEngine]
) -> None:
    engine = engines()
    recorder = Recorder()
    engine.subscribe_fanout(recorder)
    await engine.listen("a")
    await engine.append("a", b"{}", history_size=SIZE, history_ttl_s=TTL_S)
    await until(lambda: recorder.offsets("a") == [1])
    admin = redis_asyncio.Redis.from_url(redis_url)
    assert await admin.client_kill_filter(_type="pubsub") >= 1
    await until(lambda: recorder.gaps == ["a"])
    # Subscribed again: publications flow.
    await engine.listen("a")  # returns once the new subscription is confirmed
    await engine.append("a", b"{}", history_size=SIZE, history_ttl_s=TTL_S)
    await until(lambda: recorder.offsets("a") == [1, 2])
    await admin.aclose()


async def test_fanout_reaches_listeners_of_every_process(
    engines: Callable[..., RedisEngine],
) -> None:
    writer, reader_one, reader_two = engines(), engines(), engines()
    one, two, silent = Recorder(), Recorder(), Recorder()
    reader_one.subscribe_fanout(one)
    reader_two.subscribe_fanout(two)
    writer.subscribe_fanout(silent)
    await reader_one.listen("a")
    await reader_two.listen("a")
    await reader_two.listen("b")
    results = await writer.append_batch(
        [AppendRequest(c, b"{}", SIZE, TTL_S) for c in ("a", "b", "a")]
    )
    epoch = (await writer.position("a")).epoch
    await until(lambda: len(one.pubs) == 2 and len(two.pubs) == 3)
    assert one.pubs == [("a", epoch, results[0]), ("a", epoch, results[2])]
    assert two.offsets("b") == [1]
    assert silent.pubs == []  # a process gets only the channels it listens to


async def test_meta_outlives_history_and_its_expiry_means_a_new_epoch(
    engines: Callable[..., RedisEngine],
) -> None:
    engine = engines(meta_ttl_s=0.3)
    await engine.append("long", b"{}", history_size=SIZE, history_ttl_s=1.0)
    await engine.append("short", b"{}", history_size=SIZE, history_ttl_s=0.1)
    long_before, short_before = await engine.position("long"), await engine.position("short")
    await asyncio.sleep(0.5)
    # The meta TTL is stretched to the history TTL: the epoch still holds its history.
    assert await engine.position("long") == long_before
    assert (await engine.recover("long", StreamPosition(0, long_before.epoch))).recovered
    # Past its meta TTL a channel starts over, and the old epoch is refused, not replayed.
    short_after = await engine.position("short")
    assert short_after.epoch != short_before.epoch and short_after.offset == 0
    assert not (await engine.recover("short", StreamPosition(0, short_before.epoch))).recovered


async def test_keys_of_a_channel_share_a_hash_tag(redis_url: str, prefix: str) -> None:
    engine = RedisEngine(redis_url, prefix=prefix)
    try:
        await engine.append("room:1", b"{}", history_size=5, history_ttl_s=60.0)
        await engine.append("odd}{name", b"{}", history_size=5, history_ttl_s=60.0)
        # A user-limited channel: '#' and ',' are plain characters of a key and its tag.
        await engine.append("dialog#42,43", b"{}", history_size=5, history_ttl_s=60.0)
        page = await engine.history("dialog#42,43", 10, None, False)
        assert [p.offset for p in page.publications] == [1]
    finally:
        await engine.close()
    client = redis_asyncio.Redis.from_url(redis_url)
    keys = sorted(k.decode() for k in await client.keys(f"{prefix}:*") if isinstance(k, bytes))
    await client.aclose()
    assert f"{prefix}:m:{{room:1}}" in keys and f"{prefix}:s:{{room:1}}" in keys
    assert f"{prefix}:s:{{dialog#42,43}}" in keys
    odd = [k for k in keys if "room" not in k and "dialog" not in k]
    assert len(odd) == 2
    assert len({k.split(":", 2)[2] for k in odd}) == 1  # one digest tag for both keys


async def test_a_burst_of_commands_beyond_the_pool_waits_instead_of_failing(
    engines: Callable[..., RedisEngine], redis_url: str
) -> None:
    """1,000 subscribes at once (a reconnect storm): each reads its channel's position.
    redis-py's plain pool raised 'Too many connections' past 100; the bounded blocking pool
    queues them, and the server sees at most POOL_SIZE connections from this engine."""
    engine = engines()
    positions = await asyncio.gather(*(engine.position(f"burst:{i}") for i in range(1000)))
    assert len({p.epoch for p in positions}) == 1000
    assert all(p.offset == 0 for p in positions)
    client = Redis.from_url(redis_url)
    try:
        clients = await client.client_list()
    finally:
        await client.aclose()
    assert len(clients) <= POOL_SIZE + 10
