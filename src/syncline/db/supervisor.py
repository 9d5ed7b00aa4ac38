"""Keeps the embedded PostgreSQL running: notices its death, restarts it, gives up if it must."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from syncline.errors import SynclineError
from syncline.logs import get_logger

log = get_logger(__name__)

# How often the postmaster's pid is checked: a file read and a /proc lookup, nothing sent to
# the server, so a dead one is noticed within this (a hung one is not ours to judge).
WATCH_INTERVAL_S = 0.2
# Restarts in a row (a failed start, or a death before the server was up STABLE_AFTER_S)
# before giving up: a server that cannot stay up needs a person (disk full, corrupt data).
MAX_RESTARTS = 5
# A server up this long has recovered: its next death starts the count again.
STABLE_AFTER_S = 60.0
# The first restart is immediate (a kill -9 needs no waiting); later ones back off
# exponentially between these bounds, leaving time for whatever made the start fail.
RESTART_BACKOFF_MIN_S = 0.5
RESTART_BACKOFF_MAX_S = 8.0


class Supervised(Protocol):
    """What the supervisor needs of a server (EmbeddedPostgres)."""

    @property
    def log_file(self) -> Path: ...

    def is_running(self) -> bool: ...

    def clear_after_crash(self) -> None: ...

    async def restart(self) -> None: ...


class PostgresSupervisor:
    """Watches the embedded server of `up` and restarts it with bounded, logged retries."""

    def __init__(self, server: Supervised) -> None:
        self.server = server
        self.restarts = 0
        self._problem: str | None = None
        self._listeners: list[Callable[[], None]] = []

    def on_restart(self, listener: Callable[[], None]) -> None:
        """Call `listener` each time the server is back (e.g. to reconnect without waiting)."""
        self._listeners.append(listener)

    def problem(self) -> str | None:
        """None while the server runs; else what the supervisor is doing about it."""
        return self._problem

    async def run(self) -> None:
        """Watch until cancelled; raise SynclineError once MAX_RESTARTS restarts in a row fail."""
        in_a_row = 0
        up_since = time.monotonic()
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            if self.server.is_running():
                continue
            if time.monotonic() - up_since >= STABLE_AFTER_S:
                in_a_row = 0
            log.error("embedded PostgreSQL died; restarting it", log_file=str(self.server.log_file))
            in_a_row = await self._restart(in_a_row)
            up_since = time.monotonic()

    async def _restart(self, in_a_row: int) -> int:
        """Restart until it works; return the restarts in a row so far."""
        delay = 0.0
        while True:
            if in_a_row >= MAX_RESTARTS:
                self._problem = "embedded PostgreSQL could not be restarted"
                log.error(
                    "embedded PostgreSQL could not be restarted; giving up",
                    attempts=in_a_row,
                    log_file=str(self.server.log_file),
                )
                raise SynclineError(
                    f"the embedded PostgreSQL keeps dying or does not start ({in_a_row} restarts"
                    f" in a row); see {self.server.log_file}"
                )
            in_a_row += 1
            self._problem = f"restarting embedded PostgreSQL (attempt {in_a_row}/{MAX_RESTARTS})"
            if delay:
                await asyncio.sleep(delay)
            log.info("restarting embedded PostgreSQL", attempt=in_a_row, of=MAX_RESTARTS)
            delay = min(max(delay * 2, RESTART_BACKOFF_MIN_S), RESTART_BACKOFF_MAX_S)
            started = time.monotonic()
            try:
                # Blocking (it polls /proc and may wait for the old processes), so in a thread.
                await asyncio.to_thread(self.server.clear_after_crash)
                await self.server.restart()
            except (SynclineError, OSError) as err:
                log.warning(
                    "embedded PostgreSQL did not start",
                    attempt=in_a_row,
                    of=MAX_RESTARTS,
                    error=str(err),
                    retry_in=delay,
                )
                continue
            self.restarts += 1
            self._problem = None
            log.info(
                "embedded PostgreSQL is back",
                attempt=in_a_row,
                seconds=round(time.monotonic() - started, 3),
                restarts=self.restarts,
            )
            for listener in self._listeners:
                listener()
            return in_a_row
