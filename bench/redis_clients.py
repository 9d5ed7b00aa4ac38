"""Compare async Redis clients for the engine's two hot paths: batched EVALSHA and pub/sub receive.

Usage: ``python bench/redis_clients.py redis://127.0.0.1:PORT/0``. It needs redis-py (with and
without hiredis) and coredis installed; it is a one-off measurement behind docs/topics/engines.md,
not part of the test suite.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from typing import Any

import coredis
import redis.asyncio as redis_asyncio
from redis._parsers.resp2 import _AsyncRESP2Parser as PythonParser
from redis.asyncio.connection import ConnectionPool

# Per item: XADD to a capped stream and PUBLISH, as the engine's append script does, without
# the meta bookkeeping, so that the client's cost (argument packing, reply parsing) shows.
SCRIPT = """
local out = {}
for i = 1, #ARGV do
  redis.call('XADD', KEYS[1], 'MAXLEN', 100, '*', 'b', ARGV[i])
  redis.call('PUBLISH', KEYS[2], ARGV[i])
  out[i] = i
end
return out
"""
# Publishes ARGV[2] to KEYS[1] ARGV[1] times: the publisher costs the client nothing, so the
# receive rate is the receiving client's.
PUBLISHER = """
for i = 1, tonumber(ARGV[1]) do redis.call('PUBLISH', KEYS[1], ARGV[2]) end
return 0
"""
BATCH = 250
BATCHES = 200
PAYLOAD = b'{"id":12345,"room_id":42,"body":"' + b"x" * 150 + b'","ts":"2026-12-07T10:00:00Z"}'
MESSAGES = 100_000


async def bench_redis_py(url: str, parser: Any) -> tuple[float, float]:
    kwargs: dict[str, Any] = {} if parser is None else {"parser_class": parser}
    pool = ConnectionPool.from_url(url, **kwargs)
    client = redis_asyncio.Redis(connection_pool=pool)
    sha = await client.script_load(SCRIPT)
    args = [PAYLOAD] * BATCH
    start = time.perf_counter()
    for _ in range(BATCHES):
        await client.evalsha(sha, 2, "bench:s", "bench:p", *args)
    appends = BATCH * BATCHES / (time.perf_counter() - start)

    pubsub = client.pubsub()
    await pubsub.subscribe("bench:fan")
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    publisher = redis_asyncio.Redis.from_url(url)
    received = 0
    start = time.perf_counter()

    async def publish() -> None:
        for _ in range(0, MESSAGES, 1000):
            await publisher.eval(PUBLISHER, 1, "bench:fan", 1000, PAYLOAD)

    task = asyncio.create_task(publish())
    while received < MESSAGES:
        msg = await pubsub.get_message(timeout=5)
        if msg is not None:
            received += 1
    receive = MESSAGES / (time.perf_counter() - start)
    await task
    await pubsub.aclose()
    await publisher.aclose()
    await client.aclose()
    return appends, receive


async def bench_redis_py_raw(url: str) -> tuple[float, float]:
    """redis-py's bare Connection read in a loop: what the engine's pub/sub reader does."""
    # RESP2: pub/sub messages are plain replies (RESP3 would route them to a push handler).
    pool = ConnectionPool.from_url(url, protocol=2)
    conn = pool.make_connection()
    await conn.connect()
    await conn.send_command("SUBSCRIBE", "bench:fan")
    await conn.read_response(timeout=math.inf)
    publisher = redis_asyncio.Redis.from_url(url)

    async def publish() -> None:
        for _ in range(0, MESSAGES, 1000):
            await publisher.eval(PUBLISHER, 1, "bench:fan", 1000, PAYLOAD)  # type: ignore[misc]

    start = time.perf_counter()
    task = asyncio.create_task(publish())
    for _ in range(MESSAGES):
        await conn.read_response(timeout=math.inf)
    receive = MESSAGES / (time.perf_counter() - start)
    await task
    await conn.disconnect()
    await publisher.aclose()
    return 0.0, receive


async def bench_coredis(url: str) -> tuple[float, float]:
    client: coredis.Redis[bytes] = coredis.Redis.from_url(url)
    async with client:
        sha = await client.script_load(SCRIPT)
        args = [PAYLOAD] * BATCH
        start = time.perf_counter()
        for _ in range(BATCHES):
            await client.evalsha(sha, ["bench:s", "bench:p"], args)
        appends = BATCH * BATCHES / (time.perf_counter() - start)

        publisher: coredis.Redis[bytes] = coredis.Redis.from_url(url)
        async with publisher, client.pubsub(channels=["bench:fan"]) as pubsub:
            received = 0
            start = time.perf_counter()

            async def publish() -> None:
                for _ in range(0, MESSAGES, 1000):
                    await publisher.eval(PUBLISHER, ["bench:fan"], [1000, PAYLOAD])

            task = asyncio.create_task(publish())
            async for msg in pubsub:
                if msg["type"] == "message":
                    received += 1
                    if received == MESSAGES:
                        break
            receive = MESSAGES / (time.perf_counter() - start)
            await task
    return appends, receive


async def main(url: str) -> None:
    for name, run in (
        ("redis-py + hiredis", lambda: bench_redis_py(url, None)),
        ("redis-py, pure-Python parser", lambda: bench_redis_py(url, PythonParser)),
        ("redis-py + hiredis, bare reader", lambda: bench_redis_py_raw(url)),
        ("coredis", lambda: bench_coredis(url)),
    ):
        appends, receive = await run()
        print(f"{name:32} append {appends:9,.0f} items/s   pub/sub receive {receive:9,.0f} msg/s")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
