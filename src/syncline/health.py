"""Readiness: named checks that each part registers; /readyz is green only when all pass."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

# A check returns None when healthy, else a short description of what is wrong.
Check = Callable[[], Awaitable[str | None]]
# A readiness probe must answer fast even when a dependency hangs.
CHECK_TIMEOUT_S = 2.0


class Readiness:
    """The registry of readiness checks."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    async def run(self) -> dict[str, str | None]:
        """Run every check concurrently; a check that times out or raises is a failure."""

        async def one(check: Check) -> str | None:
            try:
                return await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
            except TimeoutError:
                return "timed out"
            except Exception as err:  # a probe reports, it does not crash
                return f"{type(err).__name__}: {err}"

        names = list(self._checks)
        results = await asyncio.gather(*(one(self._checks[n]) for n in names))
        return dict(zip(names, results, strict=True))
