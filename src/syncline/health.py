"""Readiness: named checks that each part registers; /readyz is green only when all pass."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

# A check returns None when healthy, else a short description of what is wrong.
Check = Callable[[], Awaitable[str | None]]
# /readyz answers within this even when a dependency hangs (orchestrators probe with a 1 s
# timeout): a check still running then reports "timed out".
CHECK_TIMEOUT_S = 0.5


class Readiness:
    """The registry of readiness checks.

    A check that outlives CHECK_TIMEOUT_S is not cancelled: cancelling a query on a hung
    server makes psycopg wait up to 10 s for the cancel, which is the hang we must not wait
    for. It keeps running, and the next probes wait for that same run instead of starting
    another, so a hung database holds one run per check, not one per probe.
    """

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}
        self._running: dict[str, asyncio.Task[str | None]] = {}

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    async def run(self) -> dict[str, str | None]:
        """Run every check concurrently; a check that times out or raises is a failure."""
        tasks = {name: self._start(name) for name in self._checks}
        if tasks:
            await asyncio.wait(tasks.values(), timeout=CHECK_TIMEOUT_S)
        return {name: _outcome(task) for name, task in tasks.items()}

    def close(self) -> None:
        """Cancel the checks still running (at shutdown)."""
        for task in self._running.values():
            task.cancel()
        self._running.clear()

    def _start(self, name: str) -> asyncio.Task[str | None]:
        task = self._running.get(name)
        if task is None or task.done():
            task = asyncio.create_task(_call(self._checks[name]), name=f"readiness-{name}")
            # Retrieve the outcome even if no probe is left to read it (no "never retrieved").
            task.add_done_callback(_outcome)
            self._running[name] = task
        return task


async def _call(check: Check) -> str | None:
    return await check()


def _outcome(task: asyncio.Task[str | None]) -> str | None:
    if not task.done():
        return "timed out"
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    if error is not None:  # a probe reports, it does not crash
        return f"{type(error).__name__}: {error}"
    return task.result()
