"""Runs capture: picks the source, sets the database up for it, falls back, reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import Sequence

import psycopg
from psycopg.rows import TupleRow

from syncline import metrics
from syncline.capture import live_rules, setup
from syncline.capture.base import CaptureError, CaptureSource, ChangeSink
from syncline.capture.choose import FALLBACK, capabilities, choose
from syncline.capture.live_rules import LiveRules
from syncline.capture.logical import LogicalSource
from syncline.capture.outbox import OutboxSource
from syncline.core.rules import RuleSet
from syncline.engine.base import EngineUnavailableError
from syncline.logs import get_logger
from syncline.settings import Settings

log = get_logger(__name__)

# One capturing process per database: the holder of this session advisory lock. Holding it
# also proves that a walsender still attached to our slot belongs to a dead instance.
LEADER_LOCK_KEY = 0x53594E4C  # "SYNL"
# The lock connection's application_name: the node's name after it, so `syncline doctor` and
# pg_stat_activity tell which node leads capture.
CAPTURE_APPLICATION_PREFIX = "syncline-capture:"
# After a source that was streaming fails (database restart, network), retry with jittered
# exponential backoff between these bounds; the slot or outbox keeps every change meanwhile.
RETRY_MIN_S = 0.5
RETRY_MAX_S = 15.0
# Connecting to a server that accepts and never answers (hung) fails after this.
CONNECT_TIMEOUT_S = 10
# While another process holds the leader lock, ask for it this often.
STANDBY_POLL_S = 1.0
# The leader lock is a lease: its session dies after this long without a statement, and the
# leader renews it every LEASE_RENEW_S (three renewals a lease: one late one loses nothing).
LEADER_LEASE_S = 6.0
LEASE_RENEW_S = LEADER_LEASE_S / 3


class CaptureService:
    """Owns the running capture source for one database."""

    def __init__(
        self,
        url: str,
        settings: Settings,
        rules: RuleSet,
        sink: ChangeSink,
        *,
        live: LiveRules | None = None,
        shape_tables: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._url = url
        # The tables of [[shapes]] rules: captured, with REPLICA IDENTITY FULL (logical only).
        self._shape_tables = tuple(shape_tables)
        self._settings = settings
        self._rules = rules
        # With `live`, the rules added at runtime (syncline.sync_rules) too: read at every
        # setup, in force from where capture resumes, and their table captured.
        self._live = live
        self._sink = sink
        self._source: CaptureSource | None = None
        self.mode: str | None = None
        # Set once a source streamed: later failures reconnect in its mode, never fall back.
        self._streamed = False
        # Why capture is not leading right now (database unreachable, standing by), if so.
        self._outage: str | None = None
        self._retry_now = asyncio.Event()
        self.ready = asyncio.Event()
        # "leader" while this process holds the capture lock, "standby" while another does.
        self.role = "starting"
        self.node_name = settings.node_name or socket.gethostname()

    def problem(self) -> str | None:
        if self.role == "standby":
            # Another node captures; this one serves its clients and takes over if it dies.
            return None
        if self._outage is not None:
            return self._outage
        if self._source is None:
            return "not started"
        return self._source.problem()

    def retry_now(self) -> None:
        """Cut the current backoff short (the database is known to be back)."""
        self._retry_now.set()

    async def run(self) -> None:
        """Run until cancelled, as the only capturing process of the database.

        A database that goes away (restart, crash) takes the leader lock with it: capture
        stops, reconnects with backoff, leads again and resumes from the slot (or outbox),
        which kept every change; the channel log drops what it already has.
        """
        delay = RETRY_MIN_S
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url,
                    autocommit=True,
                    connect_timeout=CONNECT_TIMEOUT_S,
                    application_name=(CAPTURE_APPLICATION_PREFIX + self.node_name)[:63],
                ) as lock:
                    await self._lease(lock)
                    await self._lead(lock)
                    self._outage = None
                    delay = RETRY_MIN_S
                    await self._run_while_leading(lock)
            except (CaptureError, psycopg.Error, OSError) as err:
                self.role = "down"
                metrics.CAPTURE_LEADER.set(0)
                # EngineUnavailableError is an OSError too: Redis down. Nothing was acknowledged
                # past what the engine holds, so leading again re-reads exactly the rest.
                metrics.CAPTURE_UP.set(0)
                what = "channel log" if isinstance(err, EngineUnavailableError) else "database"
                self._outage = f"{what} unreachable: {_first_line(err)}"
                log.error(f"capture lost the {what}; reconnecting", error=str(err), retry_in=delay)
                await self._backoff(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def _lead(self, conn: psycopg.AsyncConnection[TupleRow]) -> None:
        waited = False
        while True:
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,))
            row = await cur.fetchone()
            if row and row[0]:
                if waited:
                    log.warning("capture leader gone; this node captures now")
                self.role = "leader"
                metrics.CAPTURE_LEADER.set(1)
                return
            if not waited:
                log.info("another Syncline is capturing from this database; standing by")
                self.role = "standby"
                metrics.CAPTURE_LEADER.set(0)
                self._outage = "standing by: another Syncline is capturing from this database"
                waited = True
            await asyncio.sleep(STANDBY_POLL_S)

    async def _run_while_leading(self, lock: psycopg.AsyncConnection[TupleRow]) -> None:
        """Capture until the lock's connection is lost; then raise (capture must lead again)."""
        capture = asyncio.create_task(self._run(lock), name="capture-source")
        watch = asyncio.create_task(self._watch_lock(lock), name="capture-leader-lock")
        try:
            done, _ = await asyncio.wait({capture, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            capture.cancel()
            watch.cancel()
            # wait(), not gather(): a cancellation of this task arriving here still propagates.
            await asyncio.wait({capture, watch})
        for task in done:
            task.result()
        raise CaptureError("capture stopped")

    async def _watch_lock(self, conn: psycopg.AsyncConnection[TupleRow]) -> None:
        """Renew the lease on the leader lock; raise once its connection is gone (the lock is
        gone with it).

        The lock's session is killed by PostgreSQL after LEADER_LEASE_S without a statement
        (idle_session_timeout, set in _lease): a leader that hangs (SIGSTOP, a stuck event
        loop) or whose machine vanishes stops renewing, loses the lock within the lease, and
        a standby takes over. A live leader renews well within it.
        """
        while True:
            await asyncio.sleep(LEASE_RENEW_S)
            try:
                async with asyncio.timeout(LEADER_LEASE_S):
                    await conn.execute("SELECT 1")
            except (psycopg.Error, TimeoutError) as err:
                raise CaptureError(f"lost the leader lock's connection: {err}") from None

    async def _lease(self, conn: psycopg.AsyncConnection[TupleRow]) -> None:
        """Bound the lock session's life without statements (PostgreSQL 14+)."""
        try:
            await conn.execute(f"SET idle_session_timeout = '{int(LEADER_LEASE_S * 1000)}ms'")
        except psycopg.errors.UndefinedObject:
            log.warning(
                "this PostgreSQL has no idle_session_timeout (before 14): a hung capture leader"
                " keeps the lock until its connection drops"
            )

    async def _run(self, lock: psycopg.AsyncConnection[TupleRow]) -> None:
        mode = self.mode if self._streamed and self.mode else await self._initial_mode()
        delay = RETRY_MIN_S
        while True:
            source = self._make(mode, lock)
            self._source, self.mode = source, mode
            try:
                await self._setup(mode)
                watcher = asyncio.create_task(self._watch_ready(source))
                try:
                    await source.run(self._sink)
                finally:
                    watcher.cancel()
                self._streamed = self._streamed or self.ready.is_set()
                raise CaptureError(f"{mode} capture stopped")
            except (CaptureError, psycopg.Error) as err:
                metrics.CAPTURE_UP.set(0)
                self._streamed = self._streamed or self.ready.is_set()
                if lock.closed:
                    # The leader lock went with its session: lead again before reading more.
                    raise CaptureError(f"lost the leader lock's connection: {err}") from None
                if not self._streamed and mode in FALLBACK:
                    if not await self._reachable():
                        # An outage is no reason to change the source: reconnect as we were.
                        raise
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
                await self._backoff(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def _backoff(self, delay: float) -> None:
        """Sleep about `delay` (jittered), or less if retry_now() is called meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay * (0.5 + random.random())):  # noqa: S311
                await self._retry_now.wait()
        self._retry_now.clear()

    async def _reachable(self) -> bool:
        try:
            async with await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
            ) as conn:
                await conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    async def _watch_ready(self, source: CaptureSource) -> None:
        while source.problem() is not None:  # noqa: ASYNC110  (sources expose no event)
            await asyncio.sleep(0.02)
        metrics.CAPTURE_UP.set(1)
        self.ready.set()

    async def _initial_mode(self) -> str:
        async with await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
        ) as conn:
            caps = await capabilities(conn)
        mode, why = choose(self._settings.capture, caps)
        log.info("capture mode chosen", mode=mode, why=why)
        return mode

    def _make(self, mode: str, lock: psycopg.AsyncConnection[TupleRow]) -> CaptureSource:
        if mode == "logical":
            return LogicalSource(
                self._url,
                slot=self._settings.slot_name,
                publication=self._settings.publication_name,
            )
        # The outbox is claimed in the lock's own session: see OutboxSource.
        return OutboxSource(
            self._url, lock, listen=(mode == "trigger"), interval=self._settings.poll_interval
        )

    async def _setup(self, mode: str) -> None:
        try:
            async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                rules, extra = self._rules.rules, []
                if self._live is not None:
                    found = await live_rules.fetch(conn)
                    if found is not None:
                        self._live.load(found)
                        rules, extra = self._live.current.rules, [live_rules.RULES_TABLE]
                if mode == "logical":
                    await setup.setup_logical(
                        conn,
                        rules,
                        self._settings.publication_name,
                        extra=extra,
                        full_identity=self._shape_tables,
                    )
                else:
                    await setup.setup_triggers(conn, rules, extra=extra)
                    await setup.drop_inactive_slot(conn, self._settings.slot_name)
                await setup.record_mode(conn, mode)
        except psycopg.Error as err:
            raise CaptureError(f"{mode} capture setup failed: {err}") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
