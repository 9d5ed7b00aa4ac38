"""Shapes end to end: commit → client latency of a shape subscriber, and changes per second.

One client opens the shape "orders where status = 'pending'" (shape.open, then a subscription
from its position) and another subscribes to the `orders` channel the sync rule feeds, so the
same commits are timed through both paths in one run. Phase 1: single-row updates at a steady
rate, each moving an order into or out of the shape (one shape event and one channel
publication each); latency is the client's receive time less the transaction's commit time
(one machine, one clock). Phase 2: a burst of multi-row updates; changes/s is the shape events
delivered over the time from the first write to the last event received.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from syncline.bench.histogram import new_histogram, record_us, summary_ms
from syncline.client import ConnectionLost, Publication, ReplyError, SynclineClient
from syncline.client.subscription import Subscription
from syncline.errors import SynclineError

SHAPE = {"table": "orders", "where": "status = 'pending'"}
WAIT_S = 120.0  # for the last event of a phase


@dataclass(frozen=True)
class ShapeBenchOptions:
    orders: int = 2000  # rows in the table; half of them pending at the start
    updates: int = 300  # phase 1: single-row updates
    rate: float = 100.0  # phase 1: updates per second
    burst: int = 20_000  # phase 2: rows updated, 100 per transaction
    seed: int = 18


class _Reader:
    """Reads a subscription's publications: receive-time latencies and a count."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.latency = new_histogram()
        self.count = 0
        self.last_at = 0.0
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for event in self.sub.events():
            if not isinstance(event, Publication):
                continue
            now = time.time()
            committed = datetime.fromisoformat(event.data["commit_time"]).timestamp()
            record_us(self.latency, int((now - committed) * 1_000_000))
            self.count += 1
            self.last_at = now

    def reset(self) -> None:
        self.latency = new_histogram()
        self.count = 0

    async def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + WAIT_S
        while self.count < count:
            if time.monotonic() > deadline:
                raise SynclineError(f"{self.count} of {count} events arrived in {WAIT_S:.0f} s")
            await asyncio.sleep(0.01)


async def _drained(client: SynclineClient) -> None:
    """Open a shape that matches nothing until its fence gets through (503 while capture is
    more than the fence timeout behind)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            await client.rpc("shape.open", {"table": "orders", "where": "id < 0"})
            return
        except (ReplyError, ConnectionLost) as err:
            # 503, a connection dropped, or 108 while capture leads again: all seen while
            # capture works through a large seed on a loaded machine. Try again.
            transient = isinstance(err, ConnectionLost) or err.code in (108, 503)
            if not transient or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def _seed(database_url: str, options: ShapeBenchOptions) -> list[int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO orders (customer_name, product_name, status)"
            " SELECT 'bench ' || g, 'tea', CASE WHEN g %% 2 = 0 THEN 'pending' ELSE 'shipped' END"
            " FROM generate_series(1, %s) g",
            (options.orders,),
        )
        rows = conn.execute("SELECT id FROM orders ORDER BY id").fetchall()
    return [row[0] for row in rows]


def _steady(database_url: str, ids: list[int], options: ShapeBenchOptions) -> None:
    rng = random.Random(options.seed)  # noqa: S311 (a reproducible workload)
    interval = 1.0 / options.rate
    with psycopg.connect(database_url, autocommit=True) as conn:
        start = time.monotonic()
        for n in range(options.updates):
            delay = start + n * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            # Flip one order: pending → shipped leaves the shape, shipped → pending enters it.
            conn.execute(
                "UPDATE orders SET status = CASE status WHEN 'pending' THEN 'shipped'"
                " ELSE 'pending' END, updated_at = now() WHERE id = %s",
                (rng.choice(ids),),
            )


def _burst(database_url: str, ids: list[int], options: ShapeBenchOptions) -> int:
    """Flip ``burst`` rows, 100 a transaction; each flip is one shape event."""
    done = 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        while done < options.burst:
            batch = [ids[(done + i) % len(ids)] for i in range(min(100, options.burst - done))]
            conn.execute(
                "UPDATE orders SET status = CASE status WHEN 'pending' THEN 'shipped'"
                " ELSE 'pending' END WHERE id = ANY(%s)",
                (batch,),
            )
            done += len(batch)
    return done


async def _run(
    target: Any, options: ShapeBenchOptions, tick: Callable[[int], None]
) -> dict[str, Any]:
    ids = await asyncio.to_thread(_seed, target.database_url, options)
    # shape.open of a large shape takes seconds (the snapshot, then the fence).
    shape_client = SynclineClient(
        target.ws_url, token=target.make_token("bench-shape"), timeout=WAIT_S
    )
    channel_client = SynclineClient(target.ws_url, token=target.make_token("bench-channel"))
    await shape_client.connect()
    await channel_client.connect()
    try:
        # A shape matching nothing: its fence waits until capture has delivered the seed, so
        # the timed open below measures the snapshot and the handoff, not the seed's backlog.
        await _drained(shape_client)
        opened_at = time.monotonic()
        opened = await shape_client.rpc("shape.open", SHAPE)
        rows = len(opened["rows"])
        cursor = opened["cursor"]
        while cursor:
            page = await shape_client.rpc("shape.page", {"cursor": cursor})
            rows += len(page["rows"])
            cursor = page["cursor"]
        open_s = time.monotonic() - opened_at
        shape = _Reader(
            await shape_client.subscribe(
                opened["channel"], since=(opened["epoch"], int(opened["offset"]))
            )
        )
        channel = _Reader(await channel_client.subscribe("orders"))
        tick(1)
        await asyncio.to_thread(_steady, target.database_url, ids, options)
        await shape.wait_for(options.updates)
        await channel.wait_for(options.updates)
        steady = {"shape": summary_ms(shape.latency), "channel": summary_ms(channel.latency)}
        tick(2)
        shape.reset()
        channel.reset()
        started = time.time()
        written = await asyncio.to_thread(_burst, target.database_url, ids, options)
        write_s = time.time() - started
        await shape.wait_for(written)
        await channel.wait_for(written)
        tick(3)
        burst = {
            "changes": written,
            "write_s": write_s,
            "shape_changes_per_s": written / (shape.last_at - started),
            "channel_changes_per_s": written / (channel.last_at - started),
            "shape_latency": summary_ms(shape.latency),
            "channel_latency": summary_ms(channel.latency),
        }
        for reader in (shape, channel):
            reader.task.cancel()
        return {
            "options": options.__dict__,
            "open": {"rows": rows, "seconds": open_s},
            "steady": steady,
            "burst": burst,
        }
    finally:
        await shape_client.close()
        await channel_client.close()


def run_shapes(
    target: Any, options: ShapeBenchOptions, tick: Callable[[int], None]
) -> dict[str, Any]:
    """The three phases (open, steady, burst); raises SynclineError when events go missing."""
    return asyncio.run(_run(target, options, tick))
