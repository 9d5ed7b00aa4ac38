"""wait_until_visible and settle_commits against a real PostgreSQL: a transaction in flight is
not visible, a committed one is, whether its id comes as logical decoding's 32 bits or as a full
xid8, at or past the snapshot's xmax; CommitSettler waits for a commit that new snapshots do
not see yet, bounded, and shares one wait among refusals at the same moment."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from syncline.db.embedded import EmbeddedPostgres
from syncline.gateway.visibility import CommitSettler, wait_until_visible

from helpers.held_commits import HOLD_STANDBY, hold_commit


async def _pool(url: str) -> AsyncConnectionPool:
    pool = AsyncConnectionPool(url, min_size=1, max_size=2, open=False)
    await pool.open()
    return pool


async def test_a_transaction_in_flight_is_waited_for_until_its_commit(database_url: str) -> None:
    pool = await _pool(database_url)
    try:
        async with await psycopg.AsyncConnection.connect(database_url) as writer:
            row = await (await writer.execute("SELECT pg_current_xact_id()::text")).fetchone()
            assert row is not None
            full = int(row[0])
            short = full % 2**32
            assert not await wait_until_visible(pool, [short], within=0.2)
            assert not await wait_until_visible(pool, [full], within=0.2)
            await writer.commit()
        assert await wait_until_visible(pool, [short], within=1)
        assert await wait_until_visible(pool, [full, short], within=1)
    finally:
        await pool.close()


async def test_nothing_to_wait_for(database_url: str) -> None:
    pool = await _pool(database_url)
    try:
        assert await wait_until_visible(pool, [])
        assert await wait_until_visible(pool, [0])  # capture modes without an id
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def held_commits_url() -> Iterator[str]:
    """A server of its own whose commits wait for a synchronous standby that never comes: a
    transaction then stays committed (in the WAL and the commit log) but still running for new
    snapshots until its wait is cancelled, the moment settle_commits is for, held still."""
    base = Path(tempfile.mkdtemp(prefix="syncline-test-pg-"))
    server = EmbeddedPostgres(base / "data")
    info = server.start()
    try:
        url = info.url()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE members (room_id bigint, user_id bigint)")
            conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{HOLD_STANDBY}'")
            conn.execute("SELECT pg_reload_conf()")
        yield url
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)


async def _local(url: str) -> psycopg.AsyncConnection[tuple[object, ...]]:
    """A connection whose commits do not wait for the standby."""
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await conn.execute("SET synchronous_commit = local")
    return conn


async def test_a_commit_not_yet_visible_is_waited_for(held_commits_url: str) -> None:
    pool = AsyncConnectionPool(
        held_commits_url,
        min_size=1,
        max_size=2,
        open=False,
        kwargs={"autocommit": True, "options": "-c synchronous_commit=local"},
    )
    await pool.open()
    admin = await _local(held_commits_url)
    held = await hold_commit(held_commits_url, "INSERT INTO members VALUES (1, 2)")
    try:
        # Committed (capture could have read it), not visible: a check now would refuse the
        # new member. Its id is at the snapshot's xmax, not below: still not visible.
        cur = await admin.execute("SELECT count(*) FROM members")
        assert await cur.fetchone() == (0,)
        assert not await wait_until_visible(pool, [held.xid], within=0.2)
        settler = CommitSettler(pool, within=5)
        asked_at = asyncio.get_running_loop().time()
        settling = asyncio.ensure_future(settler.settle(asked_at))
        await asyncio.sleep(0.3)
        assert not settling.done()
        await held.release(admin)  # its wait, not its commit
        assert await asyncio.wait_for(settling, 5)
        assert await wait_until_visible(pool, [held.xid], within=1)
        cur = await admin.execute("SELECT count(*) FROM members")
        assert await cur.fetchone() == (1,)
        # Nothing running: nothing to wait for, and no reason to ask again.
        assert not await settler.settle(asyncio.get_running_loop().time())
    finally:
        await held.release(admin)
        await admin.close()
        await pool.close()


@pytest.fixture
async def pool_beside_a_writer(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    """A pool, while another session holds a transaction with an id, running (not committed)."""
    pool = await _pool(database_url)
    try:
        async with await psycopg.AsyncConnection.connect(database_url) as writer:
            await writer.execute("SELECT pg_current_xact_id()")
            yield pool
    finally:
        await pool.close()


async def test_a_transaction_still_running_leaves_the_refusal_standing(
    pool_beside_a_writer: AsyncConnectionPool,
) -> None:
    settler = CommitSettler(pool_beside_a_writer, within=0.2)
    started = time.monotonic()
    assert not await settler.settle(asyncio.get_running_loop().time())
    assert 0.2 <= time.monotonic() - started < 2


async def test_refusals_at_the_same_moment_share_one_wait(
    pool_beside_a_writer: AsyncConnectionPool,
) -> None:
    pool = pool_beside_a_writer
    settler = CommitSettler(pool, within=0.3)
    before = pool.get_stats().get("requests_num", 0)
    asked_at = asyncio.get_running_loop().time()
    answers = await asyncio.gather(*(settler.settle(asked_at) for _ in range(20)))
    assert answers == [False] * 20
    assert pool.get_stats().get("requests_num", 0) - before == 1
    # A refusal asked after that wait began gets a wait of its own.
    late = asyncio.get_running_loop().time()
    first = asyncio.ensure_future(settler.settle(late - 1))
    await asyncio.sleep(0.05)
    second = asyncio.ensure_future(settler.settle(asyncio.get_running_loop().time()))
    await asyncio.gather(first, second)
    assert pool.get_stats().get("requests_num", 0) - before == 3
