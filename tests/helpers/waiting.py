"""Waiting in tests for something another task or process does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Return once ``check()`` is true; fail the test if it is not within ``timeout`` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)
