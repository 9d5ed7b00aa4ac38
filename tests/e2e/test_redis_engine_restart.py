"""kill -9 of Syncline in the middle of 10,000 committed inserts, with the Redis engine: the
restarted Syncline finds the channel's epoch and offsets in Redis, capture re-reads its slot
and the engine drops what it already has by commit position, so the official SDK reconnects
with `recovered: true` and receives every row exactly once, in order (issue 13)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import psycopg
from centrifuge import Client, PublicationContext, SubscribedContext, SubscriptionEventHandler

from helpers.live_server import TEST_SECRET, drop_slot
from helpers.redis_servers import RedisServer
from helpers.up_process import UpProcess

TOTAL, PER_TXN = 10_000, 100
# Everything written while Syncline is down must still be in history when the SDK recovers:
# more than TOTAL, so recovery can only fail for a real reason (a lost epoch).
HISTORY = {"history_size": 20_000, "history_ttl": 3600, "recover": True, "allow_history": True}


@dataclass
class Received(SubscriptionEventHandler):  # type: ignore[misc]
    names: list[str] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    subscribed: list[SubscribedContext] = field(default_factory=list)

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.names.append(str(ctx.pub.data["row"]["product_name"]))
        self.offsets.append(int(ctx.pub.offset))

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.subscribed.append(ctx)


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def write_all(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for start in range(0, TOTAL, PER_TXN):
            await conn.execute(
                "INSERT INTO orders (customer_name, product_name)"
                " SELECT 'r', lpad(n::text, 6, '0') FROM generate_series(%s::int, %s::int) n",
                (start, start + PER_TXN - 1),
            )
            await conn.commit()


async def test_kill_9_of_syncline_on_redis_is_invisible_to_subscribers(
    schema_url: str, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path / "redis", appendonly=True, appendfsync="always").start()
    slot = f"r_{secrets.token_hex(4)}"
    up = UpProcess(
        DATABASE_URL=schema_url,
        SYNCLINE_ENGINE=redis.url,
        SYNCLINE_JWT_SECRET=TEST_SECRET,
        SYNCLINE_SLOT_NAME=slot,
        SYNCLINE_PUBLICATION_NAME=slot,
        SYNCLINE_NAMESPACES=json.dumps({"default": HISTORY}),
        SYNCLINE_LOG_LEVEL="warning",
    )
    token = jwt.encode({"sub": "1", "exp": int(time.time()) + 3600}, TEST_SECRET, "HS256")
    client = Client(up.ws_url, token=token, max_reconnect_delay=0.5)
    received = Received()
    try:
        up.start()
        await up.wait_ready()
        sub = client.new_subscription("orders", events=received)
        await client.connect()
        await sub.subscribe()
        writer = asyncio.create_task(write_all(schema_url))
        await until(lambda: len(received.names) >= TOTAL // 4, 60, "nothing arrived")
        assert up.proc is not None
        up.proc.kill()  # SIGKILL: capture had not acknowledged its last batches
        up.proc.wait()
        killed_at = len(received.names)
        assert killed_at < TOTAL, "the kill must come in the middle"
        await asyncio.wait_for(writer, 120)

        up.start()  # same ports, same Redis, same slot
        await up.wait_ready()
        await until(lambda: len(received.names) >= TOTAL, 90, "not every row came back")
        await asyncio.sleep(0.5)  # anything more would be a duplicate
    finally:
        await client.disconnect()
        up.close()
        redis.stop()
    await drop_slot(schema_url, slot)

    assert received.names == [f"{n:06d}" for n in range(TOTAL)], "lost, repeated or reordered"
    assert received.offsets == list(range(1, TOTAL + 1))
    resumed = received.subscribed[-1]
    assert len(received.subscribed) >= 2, "the SDK never resubscribed"
    assert resumed.was_recovering
    assert resumed.recovered, "the epoch did not survive the restart"
