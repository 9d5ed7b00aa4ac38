"""Readiness answers within CHECK_TIMEOUT_S whatever a check does, and a hung check runs once."""

from __future__ import annotations

import asyncio
import time

from syncline.health import CHECK_TIMEOUT_S, Readiness


async def test_a_hung_check_times_out_and_is_joined_not_restarted() -> None:
    readiness = Readiness()
    started: list[float] = []
    release = asyncio.Event()

    async def hung() -> str | None:
        started.append(time.monotonic())
        await release.wait()
        return None

    async def fine() -> str | None:
        return None

    async def broken() -> str | None:
        raise ConnectionError("refused")

    readiness.add("database", hung)
    readiness.add("gateway", fine)
    readiness.add("capture", broken)
    for _ in range(3):
        began = time.monotonic()
        results = await readiness.run()
        assert time.monotonic() - began < CHECK_TIMEOUT_S + 0.2
        assert results == {
            "database": "timed out",
            "gateway": None,
            "capture": "ConnectionError: refused",
        }
    assert len(started) == 1, "each probe must join the hung check, not start another"
    release.set()
    assert (await readiness.run())["database"] is None  # the same run, done at last
    assert (await readiness.run())["database"] is None
    assert len(started) == 2, "a finished check runs again on the next probe"
    readiness.close()


async def test_close_cancels_checks_still_running() -> None:
    readiness = Readiness()

    async def forever() -> str | None:
        await asyncio.Event().wait()
        return None

    readiness.add("database", forever)
    await readiness.run()
    running = [t for t in asyncio.all_tasks() if t.get_name() == "readiness-database"]
    readiness.close()
    await asyncio.wait(running, timeout=1)
    assert all(t.cancelled() for t in running)
