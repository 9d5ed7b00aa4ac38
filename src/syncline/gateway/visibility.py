"""Waits until committed transactions are visible to new snapshots, for membership checks.

PostgreSQL writes a commit to the WAL (where capture sees it) a moment before it leaves the
list of running transactions that new snapshots consult. A membership re-check that queries in
that moment still sees the deleted member (observed as a flaky test under load, and a real
hole: the removed member would keep the subscription). The converse: a client told of its new
membership on its user channel subscribes to the room at once, and a check in that moment does
not see the member yet (observed in CI: a refused subscription, and the room's first message
never reached the sender's page).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from syncline.logs import get_logger

log = get_logger(__name__)

VISIBLE_WITHIN_S = 2.0
POLL_S = 0.005
# Logical decoding and pg_locks give 32-bit xids; widened to xid8 as the one nearest the
# snapshot's xmax (within 2^31 either side, which PostgreSQL's wraparound protection
# guarantees). Not only below it: a transaction just committed can be at or past xmax, which
# counts only those that have left the list of running transactions. Trigger and poll capture
# already give 64-bit ids.
_WIDEN = """(CASE WHEN {x} >= 4294967296 THEN {x}
      ELSE top + mod({x} - mod(top, 4294967296) + 6442450944, 4294967296) - 2147483648 END)"""
# A new snapshot (read committed: each statement takes one) and its xmax, as `snap` and `top`.
_SNAPSHOT = """(SELECT pg_current_snapshot() AS snap) s,
     LATERAL (SELECT pg_snapshot_xmax(s.snap)::text::bigint AS top) t"""
_VISIBLE_COUNT = f"""
SELECT count(*) FILTER (WHERE pg_visible_in_snapshot({_WIDEN.format(x="x")}::text::xid8, snap))
FROM {_SNAPSHOT}, unnest(%(xids)s::bigint[]) AS x
"""
# Every transaction holds the lock on its own id until after it has left the list of running
# transactions (pg_locks shows it to any role): those not visible to a new snapshot are running,
# or committed in the WAL a moment ago and not visible yet. PostgreSQL does not tell the two
# apart (pg_xact_status says "in progress" for both).
_RUNNING = f"""
SELECT coalesce(array_agg(x), '{{}}') FROM (
    SELECT {_WIDEN.format(x="l.transactionid::text::bigint")} AS x, snap
    FROM {_SNAPSHOT}, pg_locks l
    WHERE l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock' AND l.granted
) held
WHERE NOT pg_visible_in_snapshot(x::text::xid8, snap)
"""


async def _count_visible(conn: psycopg.AsyncConnection[Any], xids: list[int], within: float) -> int:
    """How many of ``xids`` a new snapshot sees, asked until all or ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        row = await (await conn.execute(_VISIBLE_COUNT, {"xids": xids})).fetchone()
        visible = int(row[0]) if row is not None else 0
        if visible == len(xids) or time.monotonic() >= deadline:
            return visible
        await asyncio.sleep(POLL_S)


async def wait_until_visible(
    pool: AsyncConnectionPool, xids: Sequence[int], within: float = VISIBLE_WITHIN_S
) -> bool:
    """True once every transaction of ``xids`` is visible to a new snapshot; False if that
    did not happen ``within`` seconds or could not be asked (the re-check then goes ahead)."""
    ids = [x for x in xids if x > 0]
    if not ids:
        return True
    try:
        async with pool.connection() as conn:
            if await _count_visible(conn, ids, within) == len(ids):
                return True
    except psycopg.Error as err:
        log.warning("could not wait for captured transactions", error=str(err))
        return False
    log.warning("captured transactions not visible in time", xids=ids)
    return False


# A commit's moment between the WAL and visibility is short (a process descheduled between the
# two: milliseconds under load); a transaction still running when this has passed is a real
# one, and the refusal stands.
SETTLE_WITHIN_S = 0.25


class CommitSettler:
    """For a membership check that said no: waits (bounded) until the transactions running when
    it asked have ended, so that one committed a moment ago is seen by the check asked again.

    Refusals at the same moment share one wait, so a burst of them (a client probing channels
    it may not see) holds one pooled connection, not one each.
    """

    def __init__(self, pool: AsyncConnectionPool, within: float = SETTLE_WITHIN_S) -> None:
        self._pool = pool
        self._within = within
        self._task: asyncio.Task[bool] | None = None
        self._started = 0.0

    async def settle(self, asked_at: float) -> bool:
        """True when a transaction running at `asked_at` (loop time) or later has become
        visible since: a check asked again may answer otherwise."""
        loop = asyncio.get_running_loop()
        while True:
            task = self._task
            if task is not None and not task.done():
                if self._started >= asked_at:
                    return await asyncio.shield(task)
                # It looked before this check asked: the next wait covers it.
                await asyncio.wait([task])
                continue
            self._started = loop.time()
            self._task = loop.create_task(self._wait())

    async def _wait(self) -> bool:
        try:
            async with self._pool.connection() as conn:
                row = await (await conn.execute(_RUNNING)).fetchone()
                xids: list[int] = row[0] if row is not None else []
                return bool(xids) and await _count_visible(conn, xids, self._within) > 0
        except psycopg.Error as err:
            log.warning("could not wait for running transactions", error=str(err))
            return False
