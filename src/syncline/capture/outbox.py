"""Trigger and poll capture: read the outbox table that per-table triggers fill.

Rows are read only below the oldest running transaction (pg_snapshot_xmin), so a row whose
transaction commits after a row with a higher id is never skipped. Each read claims its rows
with a durable position (batch, index); rows are deleted only after the channel log has them.
Claims run in the session that holds the capture leader lock, so that no claim of an old
leader can commit after a new one has taken over and looked for claimed rows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from syncline.capture.base import CaptureError, ChangeSink
from syncline.core.changes import Change, CommitPosition, Op
from syncline.logs import get_logger

log = get_logger(__name__)

NOTIFY_CHANNEL = "syncline_changes"
# Rows claimed per read: big enough to amortize the round trips at 10k+ rows/s, small enough
# that one batch is a few MB of JSON at most.
BATCH_SIZE = 2000
# Rows held back by a running transaction get no new NOTIFY when it ends: re-check, backing off
# from BACKOFF_MIN_S to BACKOFF_MAX_S while they wait.
BACKOFF_MIN_S = 0.005
BACKOFF_MAX_S = 0.5
# With LISTEN, a missed wake-up costs at most this long.
LISTEN_SAFETY_INTERVAL_S = 1.0

# `c.claim IS NULL` again on the row itself: READ COMMITTED re-checks only the updated row's own
# conditions after waiting for a lock on it, so a row another session claimed meanwhile would
# otherwise be claimed a second time.
_CLAIM = """
WITH picked AS (
    SELECT id, row_number() OVER (ORDER BY id) AS n
    FROM syncline.changes
    WHERE claim IS NULL AND xid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY id
    LIMIT %(limit)s
), batch AS (SELECT nextval('syncline.changes_claim_batch') AS b)
UPDATE syncline.changes c SET claim = batch.b, claim_seq = picked.n
FROM picked, batch
WHERE c.id = picked.id AND c.claim IS NULL
RETURNING c.claim, c.claim_seq, c.xid::text, c.schema_name, c.table_name, c.op,
          c.row, c.old, c.channel, c.created_at
"""
_CLAIMED = """
SELECT claim, claim_seq, xid::text, schema_name, table_name, op, row, old, channel, created_at
FROM syncline.changes WHERE claim IS NOT NULL ORDER BY claim, claim_seq
"""
_PENDING = "SELECT EXISTS (SELECT 1 FROM syncline.changes WHERE claim IS NULL)"
_DELETE = "DELETE FROM syncline.changes WHERE claim <= %s"


def _unix_us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def row_to_change(row: Sequence[Any]) -> Change:
    """One claimed outbox row as a Change (values are already to_jsonb() JSON)."""
    claim, seq, xid, schema, table, op, new, old, channel, created_at = row
    position = CommitPosition(int(claim), int(seq))
    if op == "message":
        return Change(
            schema="",
            table="",
            op=Op.MESSAGE,
            row={"data": new},
            old=None,
            position=position,
            xid=int(xid),
            commit_time_us=_unix_us(created_at),
            channel=channel,
        )
    return Change(
        schema=schema,
        table=table,
        op=Op(op),
        row=new,
        old=old,
        position=position,
        xid=int(xid),
        commit_time_us=_unix_us(created_at),
    )


class OutboxSource:
    """Reads the outbox: woken by NOTIFY (trigger mode) or on an interval (poll mode).

    `leader` is the session holding the capture leader lock (CaptureService): every claim and
    delete runs in it. A new leader gets the lock only once that session has ended, so every
    claim the old one made has committed or rolled back by then, and the new leader's first
    look (`_CLAIMED`) sees it. A claim on a connection of its own could land after that look,
    which published the rows twice or, once deleted with the new leader's batches, never.
    """

    def __init__(
        self,
        url: str,
        leader: psycopg.AsyncConnection[TupleRow],
        *,
        listen: bool,
        interval: float = 0.25,
    ) -> None:
        self.name = "trigger" if listen else "poll"
        self._url = url
        self._leader = leader
        self._listen = listen
        self._interval = LISTEN_SAFETY_INTERVAL_S if listen else interval
        self._wake = asyncio.Event()
        self._problem: str | None = "starting"

    def problem(self) -> str | None:
        return self._problem

    async def run(self, sink: ChangeSink) -> None:
        conn = self._leader
        listener: asyncio.Task[None] | None = None
        try:
            if self._listen:
                listener = asyncio.create_task(self._listen_loop(), name="outbox-listen")
            # Rows claimed before a crash come first, with their old positions.
            claimed = await (await conn.execute(_CLAIMED)).fetchall()
            if claimed:
                log.info("republishing claimed outbox rows", rows=len(claimed))
                await self._publish(conn, claimed, sink)
            self._problem = None
            backoff = BACKOFF_MIN_S
            while True:
                rows = await (await conn.execute(_CLAIM, {"limit": BATCH_SIZE})).fetchall()
                if rows:
                    await self._publish(conn, rows, sink)
                    backoff = BACKOFF_MIN_S
                    if len(rows) == BATCH_SIZE:
                        continue
                held_back = (await (await conn.execute(_PENDING)).fetchone() or (False,))[0]
                if held_back:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
                    continue
                self._wake.clear()
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that lands as the wait completes, and stop would never return.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval):
                        await self._wake.wait()
        except psycopg.Error as err:
            self._problem = f"database error: {err}"
            raise CaptureError(f"{self.name} capture failed: {err}") from None
        finally:
            self._problem = self._problem or "stopped"
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await listener

    async def _publish(
        self,
        conn: psycopg.AsyncConnection[TupleRow],
        rows: Sequence[Sequence[Any]],
        sink: ChangeSink,
    ) -> None:
        await sink([row_to_change(row) for row in rows])
        await conn.execute(_DELETE, (rows[-1][0],))

    async def _listen_loop(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._wake.set()  # anything written while we were not listening
                    async for _ in conn.notifies():
                        self._wake.set()
            except psycopg.Error as err:
                # Losing LISTEN loses no rows (they wait in the outbox); reconnect and wake.
                log.warning("outbox listener lost its connection; reconnecting", error=str(err))
                self._wake.set()
                await asyncio.sleep(1.0)
