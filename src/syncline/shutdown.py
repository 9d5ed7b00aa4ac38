"""Bounded shutdown: each step gets what is left of one deadline, and is abandoned past it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

from syncline.logs import get_logger

log = get_logger(__name__)

# A step that starts after the deadline still gets this long: closing what is already dead
# (a pool of broken connections, a cancelled task) takes microseconds and should happen.
MIN_STEP_S = 0.02
# A cancelled psycopg query on a hung server waits up to 10 s for the server to confirm the
# cancel; a second cancel makes it close the connection instead. This long between the two.
CANCEL_GRACE_S = 0.05


class Deadline:
    """Time left to shut down, shared by the steps in order."""

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def remaining(self, reserve: float = 0.0) -> float:
        """Seconds left, less `reserve` kept for the steps after this one."""
        return max(self._end - time.monotonic() - reserve, MIN_STEP_S)

    async def step(self, what: str, work: Awaitable[Any], *, reserve: float = 0.0) -> None:
        """Await `work` while time is left; past it, cancel it, log, and go on. An error of the
        step is logged, not raised: the next steps must still run."""
        await self.finish(what, asyncio.ensure_future(work), reserve=reserve)

    async def cancel(self, what: str, task: asyncio.Future[Any]) -> None:
        """Cancel `task` and wait for it while time is left."""
        task.cancel()
        await self.finish(what, task)

    async def finish(self, what: str, task: asyncio.Future[Any], *, reserve: float = 0.0) -> None:
        """Wait for `task` while time is left (less `reserve`); past it, cancel it and go on."""
        started = time.monotonic()
        await asyncio.wait({task}, timeout=self.remaining(reserve))
        if not task.done():
            log.warning(
                "shutdown step overran its time; abandoning it",
                step=what,
                seconds=round(time.monotonic() - started, 3),
            )
            task.cancel()
            await asyncio.wait({task}, timeout=CANCEL_GRACE_S)
            task.cancel()
            return
        if not task.cancelled() and task.exception() is not None:
            log.warning("shutdown step failed", step=what, error=repr(task.exception()))
