"""A commit held in the moment between the WAL and visibility, for as long as a test needs.

On a server with `synchronous_standby_names` naming a standby that never comes, a commit is
written to the WAL and the commit log and then waits for the standby, still running for new
snapshots, until its wait is cancelled (pg_cancel_backend: the commit stands). Sessions with
`synchronous_commit = local` commit as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import psycopg

HOLD_STANDBY = "nobody"


async def hold_standby(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
    """From now on, commits wait for a standby that never comes (autocommit `conn`)."""
    await conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{HOLD_STANDBY}'")
    await conn.execute("SELECT pg_reload_conf()")


async def release_standby(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
    await conn.execute("ALTER SYSTEM RESET synchronous_standby_names")
    await conn.execute("SELECT pg_reload_conf()")


@dataclass
class HeldCommit:
    """A statement whose commit is in the WAL and not yet visible."""

    writer: psycopg.AsyncConnection[tuple[object, ...]]
    running: asyncio.Future[object]
    pid: int
    xid: int
    released: bool = False

    async def release(self, admin: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        """Ends the wait (not the commit), and closes the writer; once."""
        if self.released:
            return
        self.released = True
        await admin.execute("SELECT pg_cancel_backend(%s)", (self.pid,))
        try:
            # The statement ends with a warning that the wait was cancelled, or an error.
            with contextlib.suppress(psycopg.Error):
                await asyncio.wait_for(self.running, 10)
        finally:
            await self.writer.close()


async def hold_commit(url: str, statement: str) -> HeldCommit:
    """Runs `statement` (autocommit) in a session whose commit waits for the standby; returns
    once it waits there."""
    writer = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await writer.execute("SET synchronous_commit = on")
    # The reload reaches a session at its next statement; this one may have started before it.
    for _ in range(500):
        cur = await writer.execute("SHOW synchronous_standby_names")
        if await cur.fetchone() == (HOLD_STANDBY,):
            break
        await asyncio.sleep(0.01)
    pid = writer.info.backend_pid
    running: asyncio.Future[object] = asyncio.ensure_future(writer.execute(statement))
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as probe:
        for _ in range(500):
            cur = await probe.execute(
                "SELECT wait_event, backend_xid::text FROM pg_stat_activity WHERE pid = %s",
                (pid,),
            )
            row = await cur.fetchone()
            if row is not None and row[0] == "SyncRep":
                return HeldCommit(writer, running, pid, int(str(row[1])))
            if running.done():
                break
            await asyncio.sleep(0.01)
    await writer.close()
    running.result()  # its error, if it failed
    raise AssertionError("the commit never waited for the standby")
