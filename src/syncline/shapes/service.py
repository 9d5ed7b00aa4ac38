"""The shape service: registers clients' shapes, routes captured changes to their channels, and
gives each client a state joined exactly to a channel position (docs/topics/shapes.md)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
from psycopg_pool import AsyncConnectionPool

from syncline.core.changes import Change, Op
from syncline.core.log import StreamPosition
from syncline.core.namespaces import Deny, NamespaceRegistry
from syncline.core.shapes import (
    FilterError,
    Handoff,
    Shape,
    ShapeLimitError,
    ShapeProblem,
    ShapeRegistry,
    ShapeRequest,
    ShapeRule,
    ShapeRules,
    SnapshotTooEarlyError,
    TableSchema,
    compile_shape,
)
from syncline.core.shapes.snapshot import DEFAULT_RECENT_TRANSACTIONS, RecentTransactions
from syncline.core.shapes.stream import ShapeReset, ShapeState, encode_change, encode_reset, pages
from syncline.core.transactions import MESSAGE_PREFIX
from syncline.engine.base import AppendRequest, ChannelLog
from syncline.logs import get_logger
from syncline.shapes.snapshot import open_snapshot, read_table_schema

log = get_logger(__name__)

__all__ = ["FENCE_CHANNEL_PREFIX", "ShapeOpenError", "ShapeService", "ShapeView"]

# The channel named in a fence: a transactional logical message committed after a snapshot was
# taken. Once capture has delivered it, every transaction that committed before the snapshot's
# WAL position has been delivered too (capture delivers in commit order).
FENCE_CHANNEL_PREFIX = "syncline-shape-fence:"
# Capture normally delivers a fence within milliseconds; this long means it is far behind.
# Kept well under the gateway's pong timeout (10 s): the connection's commands wait for an RPC
# (its pong too), so shape.open answers 503 "try again" rather than hold it longer.
FENCE_TIMEOUT_S = 5.0
# Snapshots read at once: each holds a connection and a REPEATABLE READ transaction.
MAX_CONCURRENT_SNAPSHOTS = 4
# A snapshot that can't be used (a delivered transaction not yet visible in it, or the channel
# history lost meanwhile) is read again, this many times at most.
SNAPSHOT_ATTEMPTS = 5
# Pages of a state: far below any client's or proxy's frame limit, whatever the shape's size.
PAGE_ROWS = 1000
PAGE_BYTES = 48 * 1024
# A state's later pages are kept this long for `shape.page`.
CURSOR_TTL_S = 120.0
# A table's catalog entry is read again after this (a column added, replica identity set).
SCHEMA_TTL_S = 10.0
# The idle sweep: connections gone, shapes unused, cursors expired.
TICK_S = 1.0


class ShapeOpenError(Exception):
    """A shape can't be opened: ``code`` (an error code for the RPC reply) and why."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Live:
    """A registered shape: its channel (the key and this registration's nonce) and how it was
    asked for, to check later subscribers against."""

    channel: str
    request: ShapeRequest
    rule: ShapeRule
    schema: TableSchema


@dataclass
class ShapeView:
    """What ``open`` answers: the channel, the position the rows stand at, the first page."""

    channel: str
    shape: Shape
    position: StreamPosition
    rows: list[dict[str, Any]]
    cursor: str | None
    total: int


@dataclass
class _Cursor:
    client: str
    pages: list[list[Any]]
    expires: float
    next: int = 1


@dataclass
class _Fences:
    waiting: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)


class ShapeService:
    """Live queries of one process: the capture leader's (workers = 1)."""

    def __init__(
        self,
        rules: ShapeRules,
        namespaces: NamespaceRegistry,
        engine: ChannelLog,
        pool: AsyncConnectionPool,
        url: str,
        *,
        available: Callable[[], str | None],
        registry: ShapeRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rules = rules
        self.registry = ShapeRegistry() if registry is None else registry
        self._namespaces = namespaces
        self._engine = engine
        self._pool = pool
        self._url = url
        # None when shapes can be served here, else why not (one sentence for the client).
        self._available = available
        self._clock = clock
        self._live: dict[str, _Live] = {}
        self._recent = RecentTransactions(DEFAULT_RECENT_TRANSACTIONS)
        self._fences = _Fences()
        self._schemas: dict[tuple[str, str], tuple[float, TableSchema | None]] = {}
        self._cursors: dict[str, _Cursor] = {}
        self._snapshots = asyncio.Semaphore(MAX_CONCURRENT_SNAPSHOTS)
        self._bounds: tuple[int, float] | None = None

    # -- capture side (called by the pipeline, synchronously, in commit order) --------------

    def fence(self, change: Change) -> bool:
        """Whether ``change`` is a fence (consumed here, published nowhere)."""
        if change.op is not Op.MESSAGE or not change.channel:
            return False
        if not change.channel.startswith(FENCE_CHANNEL_PREFIX):
            return False
        self._fences.seen.append(change.channel[len(FENCE_CHANNEL_PREFIX) :])
        return True

    def route(self, change: Change) -> list[AppendRequest]:
        """The publications ``change`` makes in the shapes' channels (a registration made
        while the pipeline awaits an append takes effect from the next batch on)."""
        if change.xid:
            self._recent.record(change.xid)
        routed = self.registry.route(change)
        if not routed:
            return []
        size, ttl = self._history_bounds()
        out: list[AppendRequest] = []
        for shape, result in routed:
            live = self._live.get(shape.key)
            if live is None:
                continue
            if isinstance(result, ShapeProblem):
                log.warning("shape stream ended", channel=live.channel, why=result.message)
                out.append(AppendRequest(live.channel, encode_reset(result.message), size, ttl))
                self._forget(shape.key)
                continue
            data = encode_change(result, change)
            out.append(AppendRequest(live.channel, data, size, ttl, None, change.position))
        return out

    def appended(self) -> None:
        """The batch is in the channel log: wake the fences it carried."""
        seen, self._fences.seen = self._fences.seen, []
        for token in seen:
            waiter = self._fences.waiting.pop(token, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    # -- gateway side ---------------------------------------------------------------------

    def may_subscribe(self, channel: str, user: str) -> bool:
        """Whether ``user`` may subscribe to ``channel``: its shape is registered under that
        very channel, and compiling the shape's request for ``user`` (the row policy bound to
        them) gives the same shape. The channel name alone proves nothing."""
        key, _, _ = channel.rpartition(".")
        live = self._live.get(key)
        if live is None or live.channel != channel or not user:
            return False
        try:
            again = compile_shape(live.request, live.rule, live.schema, user)
        except FilterError:
            return False
        return again.key == key

    # -- opening ----------------------------------------------------------------------------

    async def open(self, client: str, user: str, request: ShapeRequest) -> ShapeView:
        """Register the shape for ``client`` and read its state; ShapeOpenError says why not."""
        problem = self._available()
        if problem is not None:
            raise ShapeOpenError(108, problem)
        rule = self.rules.get(request.table)
        if rule is None:
            raise ShapeOpenError(
                403, f"table {request.table!r} is not open to shapes (no [[shapes]] rule names it)"
            )
        schema = await self._schema(rule.table_key)
        if schema is None:
            raise ShapeOpenError(404, f"table {'.'.join(rule.table_key)} does not exist")
        if not schema.replica_identity_full:
            name = ".".join(rule.table_key)
            raise ShapeOpenError(
                503,
                f"table {name} needs REPLICA IDENTITY FULL for shapes; Syncline sets it when "
                f"capture starts, or run: ALTER TABLE {name} REPLICA IDENTITY FULL",
            )
        try:
            compiled = compile_shape(request, rule, schema, user or None)
        except FilterError as err:
            raise ShapeOpenError(400, str(err)) from None
        try:
            shape, created = self.registry.open(client, compiled)
        except ShapeLimitError as err:
            raise ShapeOpenError(106, str(err)) from None
        if created or shape.key not in self._live:
            channel = f"{shape.key}.{secrets.token_hex(6)}"
            self._live[shape.key] = _Live(channel, request, rule, schema)
        live = self._live[shape.key]
        async with self._snapshots:
            state, position = await self._state(shape, live)
        chunks = pages(state.rows.values(), max_rows=PAGE_ROWS, max_bytes=PAGE_BYTES)
        cursor = None
        if len(chunks) > 1:
            cursor = secrets.token_urlsafe(12)
            self._cursors[cursor] = _Cursor(client, chunks, self._clock() + CURSOR_TTL_S)
        return ShapeView(live.channel, shape, position, chunks[0], cursor, len(state.rows))

    def page(self, client: str, cursor: str) -> tuple[list[Any], str | None]:
        """The next page of a state; the cursor is the opener's only."""
        held = self._cursors.get(cursor)
        if held is None or held.client != client or held.expires < self._clock():
            raise ShapeOpenError(404, "unknown or expired cursor: open the shape again")
        rows = held.pages[held.next]
        held.next += 1
        if held.next >= len(held.pages):
            del self._cursors[cursor]
            return rows, None
        return rows, cursor

    def close(self, client: str, channel: str) -> None:
        key, _, _ = channel.rpartition(".")
        self.registry.close(client, key, self._clock())

    async def _state(self, shape: Shape, live: _Live) -> tuple[ShapeState, StreamPosition]:
        for attempt in range(SNAPSHOT_ATTEMPTS):
            try:
                return await self._join(shape, live)
            except SnapshotTooEarlyError:
                await asyncio.sleep(0.005 * (attempt + 1))
            except _HistoryLostError:
                continue
            except ShapeReset as err:
                why = f"the shape's stream ended ({err}): open it again"
                raise ShapeOpenError(503, why) from None
        raise ShapeOpenError(503, "the shape's rows changed too fast to read a snapshot; retry")

    async def _join(self, shape: Shape, live: _Live) -> tuple[ShapeState, StreamPosition]:
        """The shape's rows exactly as of the channel position returned.

        1. Read the channel's position p0 and the xids capture delivered so far (every
           publication up to p0 has its xid among them). 2. Take the snapshot, and check that
           each of those xids is visible in it (else take another). 3. Commit a fence and wait
           for capture to deliver it: every transaction committed before the snapshot's WAL
           position is then in the channel log, before the position p1 read next. 4. Apply
           the publications in (p0, p1] whose transaction the snapshot does not contain.
           Publications after p1 all committed after the fence, so the snapshot contains none:
           the client recovers them from p1.
        """
        channel = live.channel
        p0 = await self._engine.position(channel)
        delivered = self._recent.copy()
        state = ShapeState(shape)
        async with open_snapshot(self._url, shape, live.schema) as snapshot:
            boundary = snapshot.boundary
            Handoff(delivered).check(boundary)
            async for batch in snapshot.batches():
                state.load(batch)
        await self._fence()
        p1 = await self._engine.position(channel)
        if p1.epoch != p0.epoch:
            raise _HistoryLostError
        if p1.offset > p0.offset:
            recovered = await self._engine.recover(channel, p0)
            if not recovered.recovered:
                raise _HistoryLostError
            for pub in recovered.publications:
                if pub.offset <= p1.offset:
                    state.apply(pub.data, boundary)
        return state, p1

    async def _fence(self) -> None:
        token = secrets.token_hex(8)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._fences.waiting[token] = waiter
        body = orjson.dumps({"channel": FENCE_CHANNEL_PREFIX + token, "data": None}).decode()
        try:
            async with self._pool.connection() as conn:
                await conn.execute(
                    "SELECT pg_logical_emit_message(true, %s, %s)", (MESSAGE_PREFIX, body)
                )
            async with asyncio.timeout(FENCE_TIMEOUT_S):
                await waiter
        except TimeoutError:
            raise ShapeOpenError(503, "capture is behind; try again shortly") from None
        finally:
            self._fences.waiting.pop(token, None)

    async def _schema(self, table: tuple[str, str]) -> TableSchema | None:
        now = self._clock()
        cached = self._schemas.get(table)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            async with self._pool.connection() as conn:
                schema = await read_table_schema(conn, *table)
        except psycopg.Error as err:
            raise ShapeOpenError(503, f"cannot read the table's columns: {err}") from None
        self._schemas[table] = (now + SCHEMA_TTL_S, schema)
        return schema

    def _history_bounds(self) -> tuple[int, float]:
        if self._bounds is None:
            found = self._namespaces.resolve("shape:x")
            if isinstance(found, Deny):  # the namespace is built in; config can't remove it
                raise RuntimeError(f"no namespace for shape channels: {found.reason}")
            self._bounds = (found.history_size, float(found.history_ttl))
        return self._bounds

    # -- idle shapes ------------------------------------------------------------------------

    def _forget(self, key: str) -> None:
        self.registry.drop(key)
        self._live.pop(key, None)

    async def sweep(self, connected: set[str], listened: Callable[[str], int]) -> None:
        """Release the shapes of closed connections, keep those still subscribed to, drop the
        ones idle too long (their channel gets a reset, so no client trusts it again)."""
        now = self._clock()
        for client in self.registry.connections():
            if client not in connected:
                self.registry.close_connection(client, now)
        for key, live in self._live.items():
            if listened(live.channel) > 0:
                self.registry.touch(key, now)
        size, ttl = self._history_bounds()
        for shape in self.registry.expire(now):
            gone = self._live.pop(shape.key, None)
            if gone is not None:
                with contextlib.suppress(ConnectionError):
                    await self._engine.append(
                        gone.channel,
                        encode_reset("closed: no subscribers"),
                        history_size=size,
                        history_ttl_s=ttl,
                    )
        for token in [t for t, c in self._cursors.items() if c.expires < now]:
            del self._cursors[token]

    async def run(self, connected: Callable[[], set[str]], listened: Callable[[str], int]) -> None:
        """Sweep every TICK_S until cancelled."""
        while True:
            await asyncio.sleep(TICK_S)
            try:
                await self.sweep(connected(), listened)
            except Exception:
                log.exception("shape sweep failed")


class _HistoryLostError(Exception):
    """The channel's history no longer reaches back to the state's start: read again."""
