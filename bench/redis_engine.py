"""Measure the Redis engine: append throughput, fan-out rate, append → handler latency, memory.

Usage: ``python bench/redis_engine.py redis://127.0.0.1:PORT/0 [appends|fanout|latency|memory]``
against a redis-server of its own (it writes keys under a random prefix and leaves them). The
numbers behind docs/topics/engines.md; not part of the test suite.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import sys
import time

import redis.asyncio as redis_asyncio

from syncline.core.changes import CommitPosition
from syncline.core.log import Publication
from syncline.core.wire import encode_pub_push
from syncline.engine.base import AppendRequest, ChannelLog
from syncline.engine.memory import MemoryEngine
from syncline.engine.redis import RedisEngine

CHANNELS = 100
PAYLOAD = b'{"id":12345,"room_id":42,"body":"' + b"x" * 140 + b'","ts":"2026-12-07T10:00:00Z"}'


def batches(total: int, size: int, start: int = 0) -> list[list[AppendRequest]]:
    """Capture-like batches: each item with a commit position, spread over the channels."""
    out = []
    for first in range(start, start + total, size):
        out.append(
            [
                AppendRequest(
                    f"room:{i % CHANNELS}", PAYLOAD, 300, 300.0, None, CommitPosition(i, 0)
                )
                for i in range(first, first + size)
            ]
        )
    return out


async def bench_appends(url: str) -> None:
    for size in (100, 250, 500):
        engine = RedisEngine(url, prefix=f"b{secrets.token_hex(4)}")
        work = batches(50_000, size)
        await engine.append_batch(work[0])  # connect, load the scripts
        start = time.perf_counter()
        for batch in work[1:]:
            await engine.append_batch(batch)
        rate = (len(work) - 1) * size / (time.perf_counter() - start)
        print(f"append_batch of {size:3} over {CHANNELS} channels: {rate:9,.0f} changes/s")
        await engine.close()


class Counter:
    """A handler doing what the gateway's hub does per publication: encode the push once and
    queue it to each of ``subscribers`` connections (here: append to a list)."""

    def __init__(self, expected: int, subscribers: int) -> None:
        self.count = 0
        self.expected = expected
        self.queues: list[list[bytes]] = [[] for _ in range(subscribers)]
        self.first = 0.0
        self.done = asyncio.Event()

    def on_publication(self, channel: str, epoch: str, pub: Publication, /) -> None:
        if not self.count:
            self.first = time.perf_counter()
        frame = encode_pub_push(channel, pub.data, pub.offset, pub.info)
        for queue in self.queues:
            queue.append(frame)
            if len(queue) > 1000:
                queue.clear()
        self.count += 1
        if self.count == self.expected:
            self.done.set()

    def on_gap(self, channel: str | None, /) -> None:
        print("gap", channel)


# Publishes ARGV[2] times, round robin over the topics in KEYS, messages as the append script
# builds them: Redis produces faster than one Python process can consume, so what is measured
# is the receiving engine (read, parse, dispatch), not a producer.
FLOOD = """
local n = tonumber(ARGV[2])
for i = 1, n do
  local k = (i - 1) % #KEYS + 1
  local offset = string.format('%d', tonumber(ARGV[3]) + i)
  redis.call('PUBLISH', KEYS[k], offset .. ' 1796000000000 Ep0ch ' .. ARGV[1])
end
return n
"""


async def flood(publisher: redis_asyncio.Redis, topics: list[str], body: bytes, total: int) -> None:
    for sent in range(0, total, 5000):
        await publisher.eval(FLOOD, len(topics), *topics, body, 5000, sent)


async def bench_fanout(url: str) -> None:
    total = 100_000
    for subscribers in (1, 100):
        memory = MemoryEngine()
        counter = Counter(total, subscribers)
        memory.subscribe_fanout(counter)
        work = batches(total, 250)
        start = time.perf_counter()
        for batch in work:
            await memory.append_batch(batch)
        memory_rate = total / (time.perf_counter() - start)

        prefix = f"b{secrets.token_hex(4)}"
        engine = RedisEngine(url, prefix=prefix)
        counter = Counter(total, subscribers)
        engine.subscribe_fanout(counter)
        for i in range(CHANNELS):
            await engine.listen(f"room:{i}")
        topics = [f"{prefix}:p:{{room:{i}}}" for i in range(CHANNELS)]
        publisher = redis_asyncio.Redis.from_url(url)
        body = b"0 " + PAYLOAD

        task = asyncio.create_task(flood(publisher, topics, body, total))
        await asyncio.wait_for(counter.done.wait(), 120)
        redis_rate = total / (time.perf_counter() - counter.first)
        await task
        await publisher.aclose()
        await engine.close()
        print(
            f"{subscribers:3} subscribers a channel: memory append + fan-out {memory_rate:9,.0f}/s,"
            f" redis fan-out received {redis_rate:9,.0f}/s, ratio {redis_rate / memory_rate:.2f}"
            f" (gaps: buffer drops {engine._fanout.dropped})"
        )


async def bench_latency(url: str) -> None:
    prefix = f"b{secrets.token_hex(4)}"
    writer, reader = RedisEngine(url, prefix=prefix), RedisEngine(url, prefix=prefix)
    sent: dict[int, float] = {}
    latencies: list[float] = []

    class Timer:
        def on_publication(self, channel: str, epoch: str, pub: Publication, /) -> None:
            latencies.append(time.perf_counter() - sent[pub.offset])

        def on_gap(self, channel: str | None, /) -> None:
            pass

    reader.subscribe_fanout(Timer())
    await reader.listen("lat")
    for i in range(1, 2001):
        sent[i] = time.perf_counter()
        await writer.append(
            "lat",
            PAYLOAD,
            position=CommitPosition(i, 0),
            history_size=300,
            history_ttl_s=300.0,
        )
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.2)
    ms = sorted(x * 1000 for x in latencies[100:])
    p50, p99 = statistics.median(ms), ms[int(len(ms) * 0.99)]
    print(f"append → handler in another engine: p50 {p50:.2f} ms, p99 {p99:.2f} ms ({len(ms)})")
    await writer.close()
    await reader.close()


async def bench_memory(url: str) -> None:
    client = redis_asyncio.Redis.from_url(url)
    for count in (1, 100, 300, 1000):
        prefix = f"b{secrets.token_hex(4)}"
        engine: ChannelLog = RedisEngine(url, prefix=prefix)
        items = [AppendRequest("room:1", PAYLOAD, count, 300.0) for _ in range(count)]
        await engine.append_batch(items)
        stream = await client.memory_usage(f"{prefix}:s:{{room:1}}", samples=0) or 0
        meta = await client.memory_usage(f"{prefix}:m:{{room:1}}", samples=0) or 0
        print(
            f"{count:5} publications of {len(PAYLOAD)} bytes: stream {stream:8,} B,"
            f" meta {meta} B, {(stream + meta) / count:7,.0f} B a publication"
        )
        await engine.close()
    await client.aclose()


def main() -> None:
    url = sys.argv[1]
    which = sys.argv[2:] or ["appends", "fanout", "latency", "memory"]
    runs = {
        "appends": bench_appends,
        "fanout": bench_fanout,
        "latency": bench_latency,
        "memory": bench_memory,
    }
    for name in which:
        asyncio.run(runs[name](url))


if __name__ == "__main__":
    main()
