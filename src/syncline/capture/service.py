"""Runs capture: picks the source, sets the database up for it, falls back, reconnects."""

from __future__ import annotations

import asyncio
import random

import psycopg
from psycopg.rows import TupleRow

from syncline import metrics
from syncline.capture import setup
from syncline.capture.base import CaptureError, CaptureSource, ChangeSink
from syncline.capture.choose import FALLBACK, capabilities, choose
from syncline.capture.logical import LogicalSource
from syncline.capture.outbox import OutboxSource
from syncline.core.rules import RuleSet
from syncline.logs import get_logger
from syncline.settings import Settings

log = get_logger(__name__)

# One capturing process per database: the holder of this session advisory lock. Holding it
# also proves that a walsender still attached to our slot belongs to a dead instance.
LEADER_LOCK_KEY = 0x53594E4C  # "SYNL"
# After a source that was streaming fails (database restart, network), retry with jittered
# exponential backoff between these bounds; the slot or outbox keeps every change meanwhile.
RETRY_MIN_S = 0.5
RETRY_MAX_S = 15.0


class CaptureService:
    """Owns the running capture source for one database."""

    def __init__(self, url: str, settings: Settings, rules: RuleSet, sink: ChangeSink) -> None:
        self._url = url
        self._settings = settings
        self._rules = rules
        self._sink = sink
        self._source: CaptureSource | None = None
        self.mode: str | None = None
        self.ready = asyncio.Event()

    def problem(self) -> str | None:
        if self._source is None:
            return "not started"
        return self._source.problem()

    async def run(self) -> None:
        """Run until cancelled, as the only capturing process of the database."""
        async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as lock:
            await self._lead(lock)
            await self._run()

    async def _lead(self, conn: psycopg.AsyncConnection[TupleRow]) -> None:
        waited = False
        while True:
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,))
            row = await cur.fetchone()
            if row and row[0]:
                return
            if not waited:
                log.warning("another Syncline is capturing from this database; standing by")
                waited = True
            await asyncio.sleep(1.0)

    async def _run(self) -> None:
        mode = await self._initial_mode()
        streamed = False
        delay = RETRY_MIN_S
        while True:
            source = self._make(mode)
            self._source, self.mode = source, mode
            try:
                await self._setup(mode)
                watcher = asyncio.create_task(self._watch_ready(source))
                try:
                    await source.run(self._sink)
                finally:
                    watcher.cancel()
                streamed = streamed or self.ready.is_set()
                raise CaptureError(f"{mode} capture stopped")
            except (CaptureError, psycopg.Error) as err:
                metrics.CAPTURE_UP.set(0)
                streamed = streamed or self.ready.is_set()
                if not streamed and mode in FALLBACK:
                    next_mode = FALLBACK[mode]
                    log.warning(
                        "capture source failed at start; falling back",
                        failed=mode,
                        using=next_mode,
                        error=str(err),
                    )
                    mode = next_mode
                    continue
                log.error("capture failed; retrying", mode=mode, error=str(err), retry_in=delay)
                await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311
                delay = min(delay * 2, RETRY_MAX_S)

    async def _watch_ready(self, source: CaptureSource) -> None:
        while source.problem() is not None:  # noqa: ASYNC110  (sources expose no event)
            await asyncio.sleep(0.02)
        metrics.CAPTURE_UP.set(1)
        self.ready.set()

    async def _initial_mode(self) -> str:
        async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
            caps = await capabilities(conn)
        mode, why = choose(self._settings.capture, caps)
        log.info("capture mode chosen", mode=mode, why=why)
        return mode

    def _make(self, mode: str) -> CaptureSource:
        if mode == "logical":
            return LogicalSource(
                self._url,
                slot=self._settings.slot_name,
                publication=self._settings.publication_name,
            )
        return OutboxSource(
            self._url, listen=(mode == "trigger"), interval=self._settings.poll_interval
        )

    async def _setup(self, mode: str) -> None:
        try:
            async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                if mode == "logical":
                    await setup.setup_logical(
                        conn, self._rules.rules, self._settings.publication_name
                    )
                else:
                    await setup.setup_triggers(conn, self._rules.rules)
                    await setup.drop_inactive_slot(conn, self._settings.slot_name)
                await setup.record_mode(conn, mode)
        except psycopg.Error as err:
            raise CaptureError(f"{mode} capture setup failed: {err}") from None
