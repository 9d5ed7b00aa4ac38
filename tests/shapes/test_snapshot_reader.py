"""The snapshot reader and the handoff against a real PostgreSQL and real logical capture.

Writers run random concurrent transactions (inserts, updates that move rows in and out of the
shapes, deletes, rollbacks, transactions held open across snapshots) while shapes are opened
at random moments: each opening registers a Handoff with the capture stream, reads the
snapshot, and from then on applies the shape's events to a local copy by primary key, strictly
(an insert of a key it has, an update or delete of a key it lacks, fails the test: those are
doubles and misses). After quiescence, every copy must equal SELECT … WHERE filter.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from syncline.capture.logical import LogicalSource
from syncline.core.changes import Change
from syncline.core.shapes.shape import (
    Shape,
    ShapeEvent,
    ShapeProblem,
    ShapeRequest,
    ShapeRule,
    TableSchema,
    compile_shape,
)
from syncline.core.shapes.snapshot import Handoff, RecentTransactions, SnapshotTooEarlyError
from syncline.shapes.snapshot import open_snapshot, read_table_schema
from syncline.shapes.sql import where_clause

FILTERS = [
    None,
    "status = 'a'",
    "status in ('a', 'b') and n > 3",
    "n is null or n < 5",
    "status != 'c' or (n >= 2 and n <= 6)",
]
STATUSES = ["a", "b", "c", None]
IDS = 40


@dataclass
class View:
    """One subscriber's copy of a shape."""

    shape: Shape
    handoff: Handoff
    rows: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)
    live: bool = False

    def apply(self, event: ShapeEvent) -> None:
        if event.op == "truncate":
            self.rows.clear()
            return
        assert event.key is not None
        key = tuple(event.key.values())
        if event.op == "insert":
            assert key not in self.rows, f"{self.shape.where}: insert of {key}, already there"
            assert event.row is not None
            self.rows[key] = event.row
        elif event.op == "update":
            assert key in self.rows, f"{self.shape.where}: update of {key}, never inserted"
            assert event.row is not None
            self.rows[key] = event.row
        else:
            assert key in self.rows, f"{self.shape.where}: delete of {key}, not there"
            del self.rows[key]

    def apply_changes(self, changes: Sequence[Change]) -> None:
        for change in changes:
            events = self.shape.classify(change)
            assert not isinstance(events, ShapeProblem), events
            for event in events:
                self.apply(event)


@dataclass
class Stats:
    snapshots: int = 0
    in_flight: int = 0  # snapshots taken with transactions of the table running
    held_applied: int = 0
    retries: int = 0


async def _writer(url: str, seed: int, rounds: int, slow: bool) -> None:
    rng = random.Random(seed)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for _ in range(rounds):
            try:
                for _ in range(rng.randint(1, 3)):
                    row_id = rng.randint(1, IDS)
                    action = rng.random()
                    status, n = rng.choice(STATUSES), rng.choice([None, *range(8)])
                    if action < 0.4:
                        await conn.execute(
                            "INSERT INTO items VALUES (%s, %s, %s) ON CONFLICT (id) DO UPDATE"
                            " SET status = excluded.status, n = excluded.n",
                            (row_id, status, n),
                        )
                    elif action < 0.8:
                        await conn.execute(
                            "UPDATE items SET status = %s, n = %s WHERE id = %s",
                            (status, n, row_id),
                        )
                    elif action < 0.9:
                        # Moves a row to another key, inside or outside the shapes.
                        await conn.execute(
                            "UPDATE items SET id = %s WHERE id = %s AND NOT EXISTS"
                            " (SELECT 1 FROM items WHERE id = %s)",
                            (row_id + IDS, row_id, row_id + IDS),
                        )
                    else:
                        await conn.execute("DELETE FROM items WHERE id = %s", (row_id,))
                if slow:
                    await asyncio.sleep(rng.uniform(0.02, 0.15))  # held open across snapshots
                if rng.random() < 0.15:
                    await conn.rollback()
                else:
                    await conn.commit()
            except (psycopg.errors.DeadlockDetected, psycopg.errors.UniqueViolation):
                # Writers touch random rows: PostgreSQL aborts one of a lock cycle (or a move
                # that raced another to the same key), one more rolled-back transaction.
                await conn.rollback()
            await asyncio.sleep(rng.uniform(0, 0.01))


async def _open(
    url: str,
    where: str | None,
    table: TableSchema,
    views: list[View],
    recent: RecentTransactions,
    stats: Stats,
) -> None:
    rule = ShapeRule(table="items", policy="authenticated")
    shape = compile_shape(ShapeRequest(table="items", where=where), rule, table, "u")
    # Registered with capture before the snapshot transaction starts, with what was delivered.
    view = View(shape, Handoff(recent.copy()))
    views.append(view)
    while True:
        async with open_snapshot(url, shape, table, batch_rows=7) as snap:
            try:
                view.handoff.check(snap.boundary)
            except SnapshotTooEarlyError:
                stats.retries += 1
                continue
            stats.snapshots += 1
            stats.in_flight += bool(snap.boundary.snapshot.xip)
            async for batch in snap.batches():  # changes arriving meanwhile are held
                for row in batch:
                    view.apply(ShapeEvent("insert", shape.row_key(row), shape.project(row)))
        break
    held = view.handoff.start(snap.boundary)
    stats.held_applied += len(held)
    view.apply_changes(held)
    view.live = True


async def test_shapes_opened_during_concurrent_writes_end_equal_to_select(
    database_url: str,
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE items (id int PRIMARY KEY, status text, n int)")
        await conn.execute("ALTER TABLE items REPLICA IDENTITY FULL")
        await conn.execute("CREATE PUBLICATION shapes_pub FOR TABLE items")
        table = await read_table_schema(conn, "public", "items")
    assert table is not None
    assert table.primary_key == ("id",) and table.replica_identity_full

    views: list[View] = []
    recent = RecentTransactions()
    delivered: list[int] = []

    async def sink(changes: Sequence[Change]) -> None:
        for view in views:
            passed = [c for change in changes for c in view.handoff.feed(change)]
            if passed:
                view.apply_changes(passed)
        for change in changes:
            recent.record(change.xid)
            delivered.append(change.xid)

    source = LogicalSource(database_url, slot=f"s_{secrets.token_hex(4)}", publication="shapes_pub")
    capture = asyncio.create_task(source.run(sink))
    try:
        for _ in range(100):
            if source.problem() is None:
                break
            await asyncio.sleep(0.05)
        assert source.problem() is None
        rng = random.Random(18)
        stats = Stats()
        writers = [
            asyncio.create_task(_writer(database_url, seed, 60, slow=seed % 3 == 0))
            for seed in range(6)
        ]
        openers = []
        while not all(w.done() for w in writers):
            where = rng.choice(FILTERS)
            openers.append(
                asyncio.create_task(_open(database_url, where, table, views, recent, stats))
            )
            await asyncio.sleep(rng.uniform(0.02, 0.2))
        await asyncio.gather(*writers, *openers)

        # Quiescence: a last transaction, and capture has delivered it.
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            cur = await conn.execute(
                "INSERT INTO items VALUES (1000, 'z', 0) RETURNING pg_current_xact_id()::text"
            )
            row = await cur.fetchone()
            assert row is not None
            last = int(row[0]) % (1 << 32)
            await conn.commit()
        for _ in range(300):
            if last in delivered:
                break
            await asyncio.sleep(0.02)
        assert last in delivered

        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            for view in views:
                assert view.live
                condition, params = where_clause(view.shape.filter)
                query = sql.SQL("SELECT id, status, n FROM items WHERE {}").format(condition)
                rows = await (await conn.execute(query, params)).fetchall()
                expected = {(i,): {"id": i, "status": s, "n": n} for i, s, n in rows}
                assert view.rows == expected, view.shape.where
        assert len(views) >= 10
        assert stats.snapshots == len(views)
        assert stats.in_flight > 0, "no snapshot was taken with a transaction in flight"
        assert stats.held_applied > 0, "no change held during a snapshot was applied after it"
    finally:
        capture.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await capture


async def test_table_schema_reads_domains_keys_and_replica_identity(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("CREATE DOMAIN positive AS int4 CHECK (VALUE > 0)")
        await conn.execute(
            "CREATE TABLE pairs (a int, b text, qty positive, tags text[], doc jsonb,"
            " PRIMARY KEY (b, a))"
        )
        await conn.execute("ALTER TABLE pairs DROP COLUMN doc")
        schema = await read_table_schema(conn, "public", "pairs")
        assert schema is not None
        assert schema == TableSchema(
            "public",
            "pairs",
            {"a": "int4", "b": "text", "qty": "int4", "tags": "_text"},
            ("b", "a"),
            replica_identity_full=False,
        )
        assert await read_table_schema(conn, "public", "nope") is None
        await conn.execute("INSERT INTO pairs VALUES (1, 'x', 5, '{a,\"b c\"}')")
    # A snapshot decodes every column as capture would, whatever its type.
    table = TableSchema("public", "pairs", schema.columns, schema.primary_key)
    rule = ShapeRule(table="pairs", policy="authenticated")
    shape = compile_shape(ShapeRequest(table="pairs", where="qty >= 5"), rule, table, "u")
    async with open_snapshot(database_url, shape, table) as snap:
        rows = [row async for batch in snap.batches() for row in batch]
    assert rows == [{"a": 1, "b": "x", "qty": 5, "tags": ["a", "b c"]}]
