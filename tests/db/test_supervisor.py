"""The supervisor's policy on a fake server: restart at once, back off, give up after a bound,
count again once the server stayed up."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from syncline.db import supervisor as sup
from syncline.db.supervisor import PostgresSupervisor
from syncline.errors import SynclineError


class FakeServer:
    """Runs until killed; each restart succeeds or fails as scripted, and may die again soon."""

    log_file = Path("/nonexistent/server.log")

    def __init__(self, *, starts: list[bool], dies_after: float | None = None) -> None:
        self.running = True
        self.starts = starts
        self.dies_after = dies_after
        self.attempts: list[float] = []
        self.cleared = 0
        self._since = time.monotonic()

    def is_running(self) -> bool:
        if self.dies_after is not None and time.monotonic() - self._since > self.dies_after:
            self.running = False
        return self.running

    def clear_after_crash(self) -> None:
        self.cleared += 1

    async def restart(self) -> None:
        self.attempts.append(time.monotonic())
        if not (self.starts.pop(0) if self.starts else True):
            raise SynclineError("pg_ctl failed: could not start server")
        self.running, self._since = True, time.monotonic()


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sup, "WATCH_INTERVAL_S", 0.01)
    monkeypatch.setattr(sup, "RESTART_BACKOFF_MIN_S", 0.02)
    monkeypatch.setattr(sup, "RESTART_BACKOFF_MAX_S", 0.08)


async def test_a_dead_server_is_restarted_at_once_and_listeners_told() -> None:
    server = FakeServer(starts=[True])
    supervisor = PostgresSupervisor(server)
    told: list[int] = []
    supervisor.on_restart(lambda: told.append(supervisor.restarts))
    task = asyncio.create_task(supervisor.run())
    await asyncio.sleep(0.05)
    died = time.monotonic()
    server.running = False
    while not told:
        await asyncio.sleep(0.005)
    task.cancel()
    assert server.attempts[0] - died < 0.05, "the first restart does not wait"
    assert (server.cleared, told, supervisor.problem()) == (1, [1], None)


async def test_failed_starts_back_off_then_give_up_with_the_log_to_read() -> None:
    server = FakeServer(starts=[False] * 10)
    server.running = False
    supervisor = PostgresSupervisor(server)
    with pytest.raises(SynclineError, match=r"\(5 restarts in a row\); see /nonexistent"):
        await asyncio.wait_for(supervisor.run(), 5)
    assert len(server.attempts) == sup.MAX_RESTARTS
    gaps = [b - a for a, b in zip(server.attempts, server.attempts[1:], strict=False)]
    # 0.02, 0.04, 0.08, then capped at 0.08.
    assert gaps[0] >= 0.02 and gaps[2] >= 0.08 and gaps[3] < 0.08 * 3
    assert supervisor.problem() == "embedded PostgreSQL could not be restarted"


async def test_a_server_that_keeps_dying_is_given_up_on() -> None:
    server = FakeServer(starts=[], dies_after=0.02)
    with pytest.raises(SynclineError, match="keeps dying"):
        await asyncio.wait_for(PostgresSupervisor(server).run(), 5)
    assert len(server.attempts) == sup.MAX_RESTARTS


async def test_a_server_that_stayed_up_starts_the_count_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sup, "STABLE_AFTER_S", 0.05)
    server = FakeServer(starts=[], dies_after=0.1)
    task = asyncio.create_task(PostgresSupervisor(server).run())
    await asyncio.sleep(1.5)
    assert not task.done(), "a server that stays up past STABLE_AFTER_S is never given up on"
    task.cancel()
    assert len(server.attempts) > sup.MAX_RESTARTS
