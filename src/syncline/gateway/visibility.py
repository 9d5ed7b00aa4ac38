"""Waits until captured transactions are visible to new snapshots, before a re-check reads.

PostgreSQL writes a commit to the WAL (where capture sees it) a moment before it leaves the
list of running transactions that new snapshots consult: a membership re-check that queries in
that moment still sees the deleted member. Observed as a flaky test under load, and a real
hole: the removed member would keep the subscription.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import psycopg
from psycopg_pool import AsyncConnectionPool

from syncline.logs import get_logger

log = get_logger(__name__)

VISIBLE_WITHIN_S = 2.0
POLL_S = 0.005
# Logical decoding gives 32-bit xids; widened to xid8 against the snapshot's xmax (a committed
# transaction is less than 2^31 transactions old, which PostgreSQL's wraparound protection
# guarantees). Trigger and poll capture already give 64-bit ids.
_ALL_VISIBLE = """
SELECT coalesce(bool_and(pg_visible_in_snapshot(
         (CASE WHEN x >= 4294967296 THEN x
               ELSE top - mod(mod(top, 4294967296) - x + 4294967296, 4294967296)
          END)::text::xid8, snap)), true)
FROM (SELECT pg_current_snapshot() AS snap) s,
     LATERAL (SELECT pg_snapshot_xmax(s.snap)::text::bigint AS top) t,
     unnest(%(xids)s::bigint[]) AS x
"""


async def wait_until_visible(
    pool: AsyncConnectionPool, xids: Sequence[int], within: float = VISIBLE_WITHIN_S
) -> bool:
    """True once every transaction of ``xids`` is visible to a new snapshot; False if that
    did not happen ``within`` seconds or could not be asked (the re-check then goes ahead)."""
    ids = [x for x in xids if x > 0]
    if not ids:
        return True
    deadline = time.monotonic() + within
    try:
        # Read committed (the pool's level): each statement takes a new snapshot.
        async with pool.connection() as conn:
            while True:
                row = await (await conn.execute(_ALL_VISIBLE, {"xids": ids})).fetchone()
                if row is not None and row[0]:
                    return True
                if time.monotonic() >= deadline:
                    log.warning("captured transactions not visible in time", xids=ids)
                    return False
                await asyncio.sleep(POLL_S)
    except psycopg.Error as err:
        log.warning("could not wait for captured transactions", error=str(err))
        return False
