"""Logical capture: a durable pgoutput slot read over a replication connection in COPY_BOTH mode.

psycopg 3 has no replication API, but its libpq layer (`pq.PGconn`) speaks COPY_BOTH:
START_REPLICATION, then `get_copy_data` / `put_copy_data`, driven from the event loop with
add_reader. The bytes go to the sans-I/O decoder (syncline.core.pgoutput/transactions).
The flushed position is reported to PostgreSQL only after the sink returned, i.e. after the
changes are in the channel log.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo
from psycopg.rows import TupleRow

from syncline import metrics
from syncline.capture.base import CaptureError, ChangeSink
from syncline.core.changes import Change, Lsn
from syncline.core.replication import PrimaryKeepalive, encode_standby_status, parse_copy_data
from syncline.core.transactions import TransactionAssembler
from syncline.logs import get_logger

log = get_logger(__name__)

# Status updates at least this often, so the server's wal_sender_timeout (60 s) never fires
# and the slot's confirmed position keeps up with what we stored.
FEEDBACK_INTERVAL_S = 5.0
# An idle database writes no WAL for our slot; a heartbeat message lets the slot advance past
# other databases' and tables' WAL, so an idle source does not pin it.
HEARTBEAT_INTERVAL_S = 10.0
HEARTBEAT_PREFIX = "syncline-heartbeat"
# Polls (50 ms apart) for a terminated walsender to release the slot.
STALE_READER_WAIT_STEPS = 100
# Changes handed to the sink at once when the stream has more ready: amortizes the append.
MAX_BATCH = 5000
# Session settings of the walsender: pgoutput renders values in them, and the decoder
# expects UTC ISO timestamps. wal_sender_timeout: a walsender whose client sent no feedback
# for 20 s (four FEEDBACK_INTERVAL_S) ends, releasing the slot, so that a standby can stream
# from it after a hung leader lost its lease (the server default, 60 s, would hold it longer).
SESSION_OPTIONS = (
    "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=1"
    " -c wal_sender_timeout=20s"
)


def _wake(waiter: asyncio.Future[None]) -> None:
    # A reader or writer callback can fire again before it is removed.
    if not waiter.done():
        waiter.set_result(None)


def protocol_version(server_version: int) -> int:
    """The highest pgoutput protocol the server speaks (PG14: 2, PG15: 3, PG16+: 4)."""
    if server_version >= 160000:
        return 4
    if server_version >= 150000:
        return 3
    if server_version >= 140000:
        return 2
    return 1


def start_replication_command(slot: str, publication: str, proto: int) -> bytes:
    """START_REPLICATION for our slot, from the slot's confirmed position."""
    options = [f"proto_version '{proto}'", f"publication_names '\"{publication}\"'"]
    if proto >= 2:
        options.append("streaming 'on'")
    options.append("messages 'true'")
    return f'START_REPLICATION SLOT "{slot}" LOGICAL 0/0 ({", ".join(options)})'.encode()


class LogicalSource:
    """Streams a logical replication slot through the pgoutput decoder into a sink."""

    name = "logical"

    def __init__(
        self,
        url: str,
        *,
        slot: str,
        publication: str,
        heartbeat_interval: float = HEARTBEAT_INTERVAL_S,
    ) -> None:
        self._url = url
        self._slot = slot
        self._publication = publication
        self._heartbeat_interval = heartbeat_interval
        self._problem: str | None = "starting"
        self._flushed = Lsn(0)
        self._server_end = Lsn(0)
        self._last_feedback = 0.0

    def problem(self) -> str | None:
        return self._problem

    async def run(self, sink: ChangeSink) -> None:
        server_version = await self._prepare()
        heartbeat = asyncio.create_task(self._heartbeat(), name="logical-heartbeat")
        pgconn: pq.abc.PGconn | None = None
        try:
            pgconn = await self._connect()
            await self._start(pgconn, protocol_version(server_version))
            self._problem = None
            log.info("logical capture streaming", slot=self._slot, publication=self._publication)
            await self._stream(pgconn, sink)
        finally:
            self._problem = self._problem or "stopped"
            heartbeat.cancel()
            # wait(), not `await heartbeat` under suppress(CancelledError): a cancellation of
            # this task arriving here must still propagate.
            await asyncio.wait({heartbeat})
            if pgconn is not None:
                pgconn.finish()

    # -- setup ----------------------------------------------------------------------------

    async def _prepare(self) -> int:
        """Check the server, create the slot if missing; return the server version."""
        try:
            async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                row = await (await conn.execute("SHOW wal_level")).fetchone()
                if not row or row[0] != "logical":
                    raise CaptureError(
                        f"wal_level is {row[0] if row else '?'}, logical capture needs"
                        " wal_level=logical (ALTER SYSTEM SET wal_level = logical; restart)"
                    )
                exists = await (
                    await conn.execute(
                        "SELECT plugin FROM pg_replication_slots WHERE slot_name = %s",
                        (self._slot,),
                    )
                ).fetchone()
                if exists is None:
                    await conn.execute(
                        "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (self._slot,)
                    )
                    log.info("created replication slot", slot=self._slot)
                elif exists[0] != "pgoutput":
                    raise CaptureError(
                        f"replication slot {self._slot} uses plugin {exists[0]}, not pgoutput"
                    )
                await self._evict_stale_reader(conn)
                return conn.info.server_version
        except psycopg.Error as err:
            self._problem = str(err).strip()
            raise CaptureError(f"logical capture cannot start: {self._problem}") from None

    async def _evict_stale_reader(self, conn: psycopg.AsyncConnection[TupleRow]) -> None:
        """End a walsender still holding our slot: it belongs to a dead instance.

        We run under the capture leader lock, so no live Syncline reads this slot. A process
        killed with -9 leaves its walsender attached until wal_sender_timeout (60 s).
        """
        for _ in range(STALE_READER_WAIT_STEPS):
            cur = await conn.execute(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s AND active",
                (self._slot,),
            )
            row = await cur.fetchone()
            if row is None or row[0] is None:
                return
            log.warning("ending a stale reader of the replication slot", pid=row[0])
            await conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
            await asyncio.sleep(0.05)
        raise CaptureError(f"replication slot {self._slot} stays in use by another process")

    async def _connect(self) -> pq.abc.PGconn:
        conninfo = make_conninfo(
            self._url, replication="database", options=SESSION_OPTIONS, client_encoding="UTF8"
        )
        pgconn = pq.PGconn.connect_start(conninfo.encode())
        loop = asyncio.get_running_loop()
        while True:
            state = pgconn.connect_poll()
            if state == pq.PollingStatus.OK:
                break
            if state == pq.PollingStatus.FAILED:
                message = pgconn.error_message.decode(errors="replace").strip()
                pgconn.finish()
                self._problem = message
                raise CaptureError(f"replication connection failed: {message}")
            waiter: asyncio.Future[None] = loop.create_future()
            fd = pgconn.socket
            if state == pq.PollingStatus.READING:
                loop.add_reader(fd, _wake, waiter)
                try:
                    async with asyncio.timeout(30):
                        await waiter
                finally:
                    loop.remove_reader(fd)
            else:
                loop.add_writer(fd, _wake, waiter)
                try:
                    async with asyncio.timeout(30):
                        await waiter
                finally:
                    loop.remove_writer(fd)
        pgconn.nonblocking = 1
        return pgconn

    async def _start(self, pgconn: pq.abc.PGconn, proto: int) -> None:
        pgconn.send_query(start_replication_command(self._slot, self._publication, proto))
        await self._flush_out(pgconn)
        while True:
            pgconn.consume_input()
            if not pgconn.is_busy():
                break
            await self._readable(pgconn, None)
        result = pgconn.get_result()
        if result is None or result.status != pq.ExecStatus.COPY_BOTH:
            detail = (
                result.error_message.decode(errors="replace").strip()
                if result is not None
                else pgconn.error_message.decode(errors="replace").strip()
            )
            if "is active for PID" in detail:
                detail += " (another Syncline is capturing from this slot)"
            self._problem = detail
            raise CaptureError(f"START_REPLICATION failed: {detail}")

    # -- streaming ------------------------------------------------------------------------

    async def _stream(self, pgconn: pq.abc.PGconn, sink: ChangeSink) -> None:
        assembler = TransactionAssembler()
        pending: list[Change] = []
        while True:
            nbytes, data = pgconn.get_copy_data(1)
            if nbytes == 0:
                if pending:
                    await self._deliver(pending, sink)
                    pending = []
                    self._flushed = assembler.last_commit_end_lsn or self._flushed
                if assembler.is_idle and self._server_end > self._flushed:
                    # Nothing half-received: everything the server sent up to here is handled.
                    self._flushed = self._server_end
                await self._feedback(pgconn, force=False)
                await self._readable(pgconn, FEEDBACK_INTERVAL_S)
                pgconn.consume_input()
                continue
            if nbytes < 0:
                self._raise_stream_end(pgconn)
            message = parse_copy_data(data)
            if isinstance(message, PrimaryKeepalive):
                self._server_end = max(self._server_end, message.wal_end)
                if message.reply_requested:
                    if pending:
                        await self._deliver(pending, sink)
                        pending = []
                        self._flushed = assembler.last_commit_end_lsn or self._flushed
                    await self._feedback(pgconn, force=True)
                continue
            self._server_end = max(self._server_end, message.wal_end)
            changes = assembler.feed_xlog(message)
            if changes:
                pending.extend(changes)
                if len(pending) >= MAX_BATCH:
                    await self._deliver(pending, sink)
                    pending = []
                    self._flushed = assembler.last_commit_end_lsn or self._flushed

    async def _deliver(self, changes: Sequence[Change], sink: ChangeSink) -> None:
        await sink(changes)
        lag_s = time.time() - changes[-1].commit_time_us / 1_000_000
        metrics.CAPTURE_LAG_SECONDS.set(max(lag_s, 0.0))

    async def _feedback(self, pgconn: pq.abc.PGconn, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_feedback < FEEDBACK_INTERVAL_S:
            return
        self._last_feedback = now
        flushed = self._flushed
        status = encode_standby_status(
            flushed, flushed, flushed, clock_us=int(time.time() * 1_000_000)
        )
        if pgconn.put_copy_data(status) != 1:
            self._raise_stream_end(pgconn)
        await self._flush_out(pgconn)
        metrics.CAPTURE_LAG_BYTES.set(max(self._server_end.value - flushed.value, 0))

    def _raise_stream_end(self, pgconn: pq.abc.PGconn) -> None:
        message = pgconn.error_message.decode(errors="replace").strip() or "server ended the stream"
        self._problem = message
        raise CaptureError(f"replication stream ended: {message}")

    @staticmethod
    async def _readable(pgconn: pq.abc.PGconn, timeout: float | None) -> None:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        fd = pgconn.socket
        loop.add_reader(fd, _wake, waiter)
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that lands as the socket turns readable, and the stream would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await waiter
        finally:
            loop.remove_reader(fd)

    @staticmethod
    async def _flush_out(pgconn: pq.abc.PGconn) -> None:
        loop = asyncio.get_running_loop()
        while pgconn.flush() == 1:
            waiter: asyncio.Future[None] = loop.create_future()
            fd = pgconn.socket
            loop.add_writer(fd, _wake, waiter)
            try:
                await waiter
            finally:
                loop.remove_writer(fd)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True
                ) as conn:
                    await conn.execute(
                        "SELECT pg_logical_emit_message(false, %s, '')", (HEARTBEAT_PREFIX,)
                    )
                    row = await (
                        await conn.execute(
                            "SELECT pg_current_wal_lsn() - restart_lsn FROM pg_replication_slots"
                            " WHERE slot_name = %s",
                            (self._slot,),
                        )
                    ).fetchone()
                    if row and row[0] is not None:
                        metrics.SLOT_RETAINED_WAL.set(float(row[0]))
            except psycopg.Error as err:
                log.warning("heartbeat failed", error=str(err))
