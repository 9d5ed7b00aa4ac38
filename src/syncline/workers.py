"""`syncline up --workers N`: N worker processes on the same ports, supervised by the parent.

Each worker is a whole Syncline (HTTP API, gateway, a capture that leads or stands by) bound
with SO_REUSEPORT to the same HTTP and WebSocket ports, so the kernel spreads connections
over them; they share state only through PostgreSQL and the engine's Redis, exactly as nodes
on several machines do. The parent owns what there is one of: the embedded PostgreSQL, the
migrations (run once, before any worker starts), the private redis-server, and the workers
themselves: a worker that dies is restarted (logged, with backoff); SIGINT or SIGTERM stops
them all within ``shutdown_timeout``.

A worker gets its settings as JSON on stdin (secrets included, so that they appear in no
command line or environment), and says ``ready`` on stdout once it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from syncline.logs import get_logger

log = get_logger(__name__)

# A worker that exits is restarted after this, doubling up to RESTART_MAX_S while it keeps
# dying; one that stayed up STABLE_S starts the count again.
RESTART_MIN_S = 0.5
RESTART_MAX_S = 30.0
STABLE_S = 60.0
# How long a worker may take from start to `ready` (migrations ran before: this is opening the
# pool, binding, the gateway and uvicorn) before it is killed and started again.
READY_TIMEOUT_S = 60.0
READY_LINE = b"ready"


def worker_count(workers: int | str) -> int:
    """`auto` is one worker per core."""
    if workers == "auto":
        return max(os.cpu_count() or 1, 1)
    return int(workers)


@dataclass
class _Worker:
    index: int
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    delay: float = RESTART_MIN_S
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class Workers:
    """Starts, watches and stops the workers; run() returns when they are all stopped."""

    def __init__(
        self,
        count: int,
        settings_json: Callable[[int], dict[str, Any]],
        *,
        shutdown_timeout: float,
    ) -> None:
        self._workers = [_Worker(i) for i in range(1, count + 1)]
        self._settings_json = settings_json
        self._shutdown_timeout = shutdown_timeout
        self._stopping = asyncio.Event()

    def request_stop(self) -> None:
        self._stopping.set()

    @property
    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers if w.proc is not None]

    async def _spawn(self, worker: _Worker) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "syncline",
            "worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            # Its own process group: a Ctrl+C in the terminal reaches the parent only, which
            # stops the workers in order instead of all at once mid-request.
            start_new_session=True,
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(self._settings_json(worker.index)).encode())
        proc.stdin.close()
        worker.proc, worker.started_at = proc, time.monotonic()
        worker.ready.clear()
        log.info("worker started", worker=worker.index, pid=proc.pid)

    async def _watch(self, worker: _Worker) -> None:
        """Keep one worker running until the stop."""
        while not self._stopping.is_set():
            await self._spawn(worker)
            proc = worker.proc
            assert proc is not None and proc.stdout is not None
            await self._await_ready(worker, proc)
            # Keep reading its stdout: a worker that printed more would block on a full pipe.
            code, _ = await asyncio.gather(proc.wait(), proc.stdout.read())
            if self._stopping.is_set():
                return
            uptime = time.monotonic() - worker.started_at
            if uptime >= STABLE_S:
                worker.delay = RESTART_MIN_S
            log.warning(
                "worker exited; restarting",
                worker=worker.index,
                code=code,
                uptime_s=round(uptime, 1),
                restart_in_s=worker.delay,
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(worker.delay):
                    await self._stopping.wait()
            worker.delay = min(worker.delay * 2, RESTART_MAX_S)

    async def _await_ready(self, worker: _Worker, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                while line := await proc.stdout.readline():
                    if line.strip() == READY_LINE:
                        worker.ready.set()
                        return
        except TimeoutError:
            log.error("worker not ready in time; killing it", worker=worker.index)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    async def wait_ready(self) -> None:
        """Until every worker said `ready` once."""
        await asyncio.gather(*(w.ready.wait() for w in self._workers))

    async def run(self, on_ready: Callable[[], None] | None = None) -> None:
        watchers = [asyncio.create_task(self._watch(w)) for w in self._workers]
        ready = asyncio.create_task(self.wait_ready())
        stopping = asyncio.create_task(self._stopping.wait())
        done, _ = await asyncio.wait({ready, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if ready in done and on_ready is not None:
            on_ready()
        await self._stopping.wait()
        ready.cancel()
        await self._stop_all()
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)

    async def _stop_all(self) -> None:
        """SIGTERM to every worker; SIGKILL to any still running at the deadline."""
        running = [w.proc for w in self._workers if w.proc and w.proc.returncode is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(self._shutdown_timeout):
                await asyncio.gather(*(p.wait() for p in running))
        except TimeoutError:
            for proc in running:
                if proc.returncode is None:
                    log.warning("worker did not stop in time; killing it", pid=proc.pid)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            await asyncio.gather(*(p.wait() for p in running))
        log.info("workers stopped", count=len(running))
