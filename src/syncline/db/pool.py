"""The connection pool: hands out no dead connection and reconnects when the database is back."""

from __future__ import annotations

import asyncio
import select
from typing import Any

from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from syncline.logs import get_logger

log = get_logger(__name__)

# A connection attempt to a hung server (accepting, never answering) gives up after this
# unless the URL says otherwise; psycopg's own default is over two minutes.
CONNECT_TIMEOUT_S = 5
# psycopg_pool backs off 1, 2, 4 … s between attempts to replace a lost connection, and a
# slot stays taken while it does: with the default (5 min) a pool whose connections all died
# in an outage can wait minutes after the database is back. Past this, the slot is freed and
# the next request connects at once.
RECONNECT_TIMEOUT_S = 10.0
# How long a request waits for a free connection before it is answered 503 (psycopg_pool's
# default, 30 s, held clients for half a minute while the database restarted).
CHECKOUT_TIMEOUT_S = 5.0


class DeadConnectionCheck:
    """The pool's `check`: raise if an idle connection is dead, at the cost of one poll() (no
    round trip) when it is not.

    An idle connection has nothing to read; one whose server went away has its end of stream
    or a FATAL message waiting, and only then is a round trip made. A dead one means the server
    restarted, so every idle connection is likely dead too: they are swept out at once, in the
    background, instead of one per request with the pool's growing pause (1 s, 2 s, …) between.
    """

    def __init__(self) -> None:
        self.pool: AsyncConnectionPool | None = None
        self._sweep: asyncio.Task[None] | None = None

    async def __call__(self, conn: AsyncConnection[Any]) -> None:
        if conn.closed:
            raise ConnectionError("connection is closed")
        poller = select.poll()
        poller.register(conn.pgconn.socket, select.POLLIN)
        if not poller.poll(0):
            return
        try:
            await conn.execute("")
        except Exception:
            self._sweep_the_rest()
            raise

    def _sweep_the_rest(self) -> None:
        if self.pool is None or self.pool.closed or (self._sweep and not self._sweep.done()):
            return
        log.info("a pooled connection was dead; checking the others", pool=self.pool.name)
        self._sweep = asyncio.create_task(self.pool.check(), name="pool-sweep")
        self._sweep.add_done_callback(_quiet)


def make_pool(url: str, max_size: int) -> AsyncConnectionPool:
    """A pool for `url` (not opened yet) that survives the database restarting."""
    kwargs: dict[str, Any] = {"autocommit": True}
    if "connect_timeout" not in conninfo_to_dict(url):
        kwargs["connect_timeout"] = CONNECT_TIMEOUT_S
    check = DeadConnectionCheck()
    pool = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        open=False,
        kwargs=kwargs,
        check=check,
        reconnect_timeout=RECONNECT_TIMEOUT_S,
        reconnect_failed=_reconnect_failed,
        timeout=CHECKOUT_TIMEOUT_S,
    )
    check.pool = pool
    return pool


def _quiet(task: asyncio.Task[None]) -> None:
    # A sweep that fails (the server died again) changes nothing: requests check on their own.
    if not task.cancelled() and task.exception() is not None:
        log.info("pool sweep failed", error=str(task.exception()))


def _reconnect_failed(pool: AsyncConnectionPool) -> None:
    log.warning(
        "database still unreachable; the pool connects again on the next request",
        pool=pool.name,
        seconds=RECONNECT_TIMEOUT_S,
    )
