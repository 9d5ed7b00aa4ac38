"""Group commit for chat sends: the sends that wait while the database is busy go in one statement.

A send used to be one statement and one transaction of its own: a checkout, a round trip and
a commit (a WAL flush, and a transaction for capture to decode) per message. Under load most
of a POST's CPU was that fixed cost (docs/benchmarks.md, issue 19). Here a send joins the
sends that arrived in the same turn of the event loop, or while earlier batches were in flight,
and a batch is one `INSERT … SELECT FROM unnest(…)`: the same membership check (FOR SHARE) and
the same idempotency (ON CONFLICT … DO NOTHING) row by row, one round trip and one commit for
all. A lone send is not delayed: with nothing in flight its batch starts in the next turn.

What a send is told does not depend on its neighbours: a send the batch did not store (not a
member, a repeated client_msg_id) gets None, as from the one-row statement, and its caller
tells the two apart as before; if the batch statement fails for a reason of one row (a body
PostgreSQL refuses, a deadlock with a concurrent leave), every send of it is tried again
alone, so each gets its own answer. Only a lost database fails them all, as it would have.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import psycopg
from prometheus_client import Histogram
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from syncline.apps.chat import messages
from syncline.apps.sql import Row

# Enough for a burst of a second on a busy process, few enough that one statement stays short.
MAX_BATCH = 256
# One batch in flight while the database answers promptly: the sends made meanwhile wait and go
# together, the fewest statements (with two always in flight, two workers on two cores needed
# 10-15 % more CPU a send and had a longer tail, docs/benchmarks.md). A second batch goes beside
# the first only once that has been out STALL_S: one waiting on a lock (a leave in its room)
# then holds up no other room for longer.
MAX_IN_FLIGHT = 2
STALL_S = 0.005

BATCH_SIZES = Histogram(
    "syncline_chat_send_batch_size",
    "Chat messages written by one statement (group commit)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)

# Row by row, as _SEND_IF_MEMBER: stored only where the author is a member (the membership row
# held FOR SHARE, so a concurrent leave waits), a repeated client_msg_id skipped. The ids are
# drawn here, in the order the sends arrived, so that each inserted row is matched back to its
# send by id (RETURNING sees only the table's columns).
_SEND_BATCH = f"""
WITH input AS (
    SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[])
        WITH ORDINALITY AS t(room_id, user_id, body, client_msg_id, seq)
), member AS (
    SELECT input.* FROM input JOIN room_members m USING (room_id, user_id)
    ORDER BY input.seq FOR SHARE OF m
), numbered AS (
    SELECT member.*, nextval(pg_get_serial_sequence('messages', 'id')::regclass) AS id
    FROM member
), inserted AS (
    INSERT INTO messages (id, room_id, user_id, body, client_msg_id)
    SELECT id, room_id, user_id, body, client_msg_id FROM numbered ORDER BY seq
    ON CONFLICT (user_id, client_msg_id) WHERE client_msg_id IS NOT NULL DO NOTHING
    RETURNING {messages.COLUMNS}
)
SELECT numbered.seq, inserted.* FROM inserted JOIN numbered USING (id)
"""


@dataclass(slots=True)
class _Send:
    room_id: int
    user_id: int
    body: str
    client_msg_id: str | None
    done: asyncio.Future[Row | None]


def _settle(send: _Send, row: Row | None) -> None:
    if not send.done.done():  # its caller may have been cancelled meanwhile
        send.done.set_result(row)


def _fail(send: _Send, error: BaseException) -> None:
    if not send.done.done():
        send.done.set_exception(error)


class SendBatcher:
    """`send` as messages.send_if_member, with the sends that wait together in one statement."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        max_batch: int = MAX_BATCH,
        max_in_flight: int = MAX_IN_FLIGHT,
        stall_after: float = STALL_S,
    ) -> None:
        self.pool = pool
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self.stall_after = stall_after
        self._waiting: list[_Send] = []
        # Each batch in flight, with the loop time it started.
        self._in_flight: dict[asyncio.Task[None], float] = {}
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    async def send(
        self, room_id: int, user_id: int, body: str, client_msg_id: str | None
    ) -> Row | None:
        """The stored message; None when the author is not a member or client_msg_id repeats."""
        if self._closed:
            async with self.pool.connection() as conn:
                return await messages.send_if_member(conn, room_id, user_id, body, client_msg_id)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Row | None] = loop.create_future()
        self._waiting.append(_Send(room_id, user_id, body, client_msg_id, done))
        self._schedule(loop)
        # A cancelled caller leaves its send in the batch: like a statement already sent, it
        # may still be stored, and the future is simply not waited for.
        return await done

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._scheduled or self._timer is not None:
            return
        if not self._in_flight:
            # The next turn, not now: the sends read in this turn (other sockets') join.
            self._scheduled = True
            loop.call_soon(self._start)
        elif len(self._in_flight) < self.max_in_flight:
            newest = max(self._in_flight.values())
            self._timer = loop.call_at(newest + self.stall_after, self._stalled)

    def _stalled(self) -> None:
        self._timer = None
        self._start()

    def _may_start(self, now: float) -> bool:
        if not self._in_flight:
            return True
        newest = max(self._in_flight.values())
        return len(self._in_flight) < self.max_in_flight and now - newest >= self.stall_after

    def _start(self) -> None:
        self._scheduled = False
        loop = asyncio.get_running_loop()
        if self._waiting and self._may_start(loop.time()):
            batch = self._waiting[: self.max_batch]
            del self._waiting[: self.max_batch]
            task = loop.create_task(self._write(batch))
            self._in_flight[task] = loop.time()
            task.add_done_callback(self._finished)
        if self._waiting:
            self._schedule(loop)

    def _finished(self, task: asyncio.Task[None]) -> None:
        del self._in_flight[task]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._waiting:
            self._schedule(asyncio.get_running_loop())

    async def _write(self, batch: list[_Send]) -> None:
        BATCH_SIZES.observe(len(batch))
        try:
            if len(batch) == 1:
                await self._alone(batch[0])
                return
            try:
                rows = await self._statement(batch)
            except psycopg.OperationalError as err:
                for send in batch:
                    _fail(send, err)
                return
            except psycopg.Error:
                # One row's problem (or a deadlock) fails the statement: each send alone.
                for send in batch:
                    await self._alone(send)
                return
            for seq, send in enumerate(batch, start=1):
                _settle(send, rows.get(seq))
        except asyncio.CancelledError:
            for send in batch:
                send.done.cancel()
            raise
        except Exception as err:  # not the database's: the senders see it, as they would have
            for send in batch:
                _fail(send, err)

    async def _statement(self, batch: list[_Send]) -> dict[int, Row]:
        params = (
            [s.room_id for s in batch],
            [s.user_id for s in batch],
            [s.body for s in batch],
            [s.client_msg_id for s in batch],
        )
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(_SEND_BATCH, params)
            found: list[dict[str, Any]] = await cur.fetchall()
        return {int(row.pop("seq")): row for row in found}

    async def _alone(self, send: _Send) -> None:
        try:
            async with self.pool.connection() as conn:
                row = await messages.send_if_member(
                    conn, send.room_id, send.user_id, send.body, send.client_msg_id
                )
        except Exception as err:
            _fail(send, err)
        else:
            _settle(send, row)

    async def close(self) -> None:
        """Write what is waiting and wait for it; later sends go alone, unbatched."""
        self._closed = True
        while self._waiting or self._in_flight:
            if self._waiting and not self._in_flight:
                self._start()
            await asyncio.gather(*self._in_flight, return_exceptions=True)
