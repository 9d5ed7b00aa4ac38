"""wait_until_visible against a real PostgreSQL: a transaction in flight is not visible, a
committed one is, whether its id comes as logical decoding's 32 bits or as a full xid8."""

from __future__ import annotations

import psycopg
from psycopg_pool import AsyncConnectionPool

from syncline.gateway.visibility import wait_until_visible


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
