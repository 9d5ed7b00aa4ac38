"""Trigger and poll capture across a change of leader: a claim the old leader made is never lost.

The outbox reader claims rows (a durable position), publishes them, then deletes them; a new
leader republishes what is claimed and not yet deleted. That is only sound if no claim of the
old leader can commit after the new leader looked: here the old leader's claim waits on a row
lock while its lease ends and a standby takes over, and the lock is released after that.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest

from syncline.capture.pipeline import Pipeline
from syncline.capture.service import LEADER_LOCK_KEY, CaptureService
from syncline.core.changes import Change
from syncline.engine.memory import MemoryEngine
from syncline.settings import load_settings
from syncline.sync_config import build_sync_config

from helpers.capture_harness import Received, sql

# The sessions whose claim (the UPDATE drawing a claim batch) waits on a lock.
CLAIMS_WAITING = (
    "SELECT coalesce(array_agg(pid), '{}') FROM pg_stat_activity"
    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    " AND query LIKE '%claim_batch%'"
)
LEADER_PID = (
    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


async def insert(url: str, *names: str) -> None:
    for name in names:
        await sql(
            url,
            "INSERT INTO orders (customer_name, product_name) VALUES ('f', %s)",
            params=(name,),
        )


async def claims_waiting(
    conn: psycopg.AsyncConnection[tuple[Any, ...]], besides: frozenset[int] = frozenset()
) -> set[int]:
    """The pids of waiting claims other than `besides`, once there is one (15 s at most)."""
    for _ in range(750):
        row = await (await conn.execute(CLAIMS_WAITING)).fetchone()
        pids = set(row[0]) - besides if row else set()
        if pids:
            return pids
        await asyncio.sleep(0.02)
    raise AssertionError("no claim waits on the row lock")


@pytest.mark.parametrize("old_leader", ["alive", "hung"])
@pytest.mark.parametrize("mode", ["trigger", "poll"])
async def test_a_claim_in_flight_when_the_leader_changes_is_published_once(
    mode: str, old_leader: str, schema_url: str
) -> None:
    """alive: the old leader goes on and stores what its claim returns (the new one must not
    claim the same rows again); hung: it never stores them (the new one must)."""
    settings = load_settings(None, capture=mode, poll_interval=0.05)
    sync = build_sync_config(settings)
    engine = MemoryEngine()
    received = Received()
    engine.subscribe_fanout(received)
    pipeline = Pipeline(sync.rules, sync.registry, engine)
    hang = asyncio.Event()

    async def old_sink(changes: Sequence[Change]) -> None:
        if hang.is_set():
            await asyncio.Event().wait()  # hung before it stored what it claimed
        await pipeline(changes)

    old = CaptureService(schema_url, settings, sync.rules, old_sink)
    new = CaptureService(schema_url, settings, sync.rules, pipeline)
    tasks = [asyncio.create_task(old.run())]
    async with await psycopg.AsyncConnection.connect(schema_url, autocommit=True) as watch:
        try:
            await asyncio.wait_for(old.ready.wait(), 15)
            await insert(schema_url, "before")
            await received.wait_for("orders", 1)
            if old_leader == "hung":
                hang.set()

            # The rows wait in the outbox behind a running transaction; then a row lock on
            # them (taken by a later transaction) stops the leader's claim mid-statement.
            async with (
                await psycopg.AsyncConnection.connect(schema_url) as held_xmin,
                await psycopg.AsyncConnection.connect(schema_url) as row_lock,
            ):
                await held_xmin.execute("SELECT pg_current_xact_id()")
                await insert(schema_url, "r1", "r2", "r3")
                await row_lock.execute(
                    "SELECT id FROM syncline.changes WHERE claim IS NULL FOR UPDATE"
                )
                await held_xmin.rollback()
                old_claim = await claims_waiting(watch)

                # Its lease ends (a hung process stops renewing it): a standby takes over.
                row = await (await watch.execute(LEADER_PID, (LEADER_LOCK_KEY,))).fetchone()
                assert row is not None
                await watch.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                tasks.append(asyncio.create_task(new.run()))
                await asyncio.wait_for(new.ready.wait(), 15)
                await claims_waiting(watch, besides=frozenset(old_claim))
                # The row lock goes; the claims still alive take the rows in turn.
                await row_lock.commit()

            await insert(schema_url, "after")
            for _ in range(1000):
                names = [pub["row"]["product_name"] for pub in received.data("orders")]
                if "after" in names:
                    break
                await asyncio.sleep(0.02)
            assert names == ["before", "r1", "r2", "r3", "after"]
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await engine.close()
