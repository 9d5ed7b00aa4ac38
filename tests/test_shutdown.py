"""A shutdown deadline: steps share it, a step past it is abandoned, an error stops nothing."""

from __future__ import annotations

import asyncio
import time

from syncline.shutdown import CANCEL_GRACE_S, MIN_STEP_S, Deadline


async def test_steps_share_one_deadline_and_a_hung_one_is_abandoned() -> None:
    deadline = Deadline(0.3)
    done: list[str] = []

    async def quick(name: str) -> None:
        done.append(name)

    async def hangs() -> None:
        await asyncio.Event().wait()

    async def fails() -> None:
        raise RuntimeError("pool already broken")

    began = time.monotonic()
    await deadline.step("first", quick("first"))
    await deadline.step("hung", hangs())
    await deadline.step("broken", fails())
    await deadline.step("last", quick("last"))
    took = time.monotonic() - began
    assert done == ["first", "last"], "an overrun or an error must not skip the steps after it"
    assert took < 0.3 + CANCEL_GRACE_S + 3 * MIN_STEP_S + 0.1


async def test_a_task_that_resists_one_cancel_gets_a_second() -> None:
    """As psycopg does: the first cancel makes it wait for the server to confirm the cancel."""
    cancels = 0

    async def psycopg_like() -> None:
        nonlocal cancels
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancels += 1
            try:
                await asyncio.sleep(10)  # waiting for a hung server
            except asyncio.CancelledError:
                cancels += 1
                raise

    task = asyncio.create_task(psycopg_like())
    await asyncio.sleep(0)
    began = time.monotonic()
    await Deadline(0.1).cancel("query", task)
    await asyncio.wait({task}, timeout=1)
    assert task.cancelled() and cancels == 2
    # Far below the hung server's 10 s; the slack is for a busy machine's scheduling.
    assert time.monotonic() - began < 0.1 + CANCEL_GRACE_S + 1.0
