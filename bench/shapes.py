"""Shapes (issue 18): the cost of routing changes through many shapes, and of a snapshot.

    .venv/bin/python bench/shapes.py [--json out.json] [--rows 100000]

1. Changes/s through ``ShapeRegistry.route`` with 1, 100 and 10,000 distinct shapes on one
   table, for four kinds of filter: ``owner_id = k`` (the registry's equality index applies),
   ``total > k`` and ``total < -k-1`` (the index of ordered comparisons applies; many shapes
   match, or none), and ``total < -k-1 or status = 'never'`` (no index covers an ``or``: every
   shape is evaluated, none matches, the filter's cost alone). Rates are per CPU second of
   this process (the machine is shared). Each change is an update with the full old
   row (REPLICA IDENTITY FULL), half of them moving the row between owners or totals.
2. The time to read a snapshot of ``--rows`` matching rows with ``open_snapshot`` (embedded
   PostgreSQL, started here), rows decoded as capture decodes them.

Each figure is the median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from syncline.core.changes import Change, CommitPosition, Op
from syncline.core.shapes.registry import ShapeRegistry
from syncline.core.shapes.shape import ShapeRequest, ShapeRule, TableSchema, compile_shape
from syncline.db.embedded import EmbeddedPostgres
from syncline.shapes.snapshot import open_snapshot, read_table_schema

ORDERS = TableSchema(
    "public",
    "orders",
    {"id": "int8", "owner_id": "int8", "status": "text", "total": "numeric"},
    ("id",),
)
RULE = ShapeRule(table="orders", policy="authenticated")


def _registry(count: int, kind: str) -> ShapeRegistry:
    registry = ShapeRegistry(max_shapes=count, max_per_connection=count)
    for k in range(count):
        where = {
            "equality": f"owner_id = {k}",
            "range": f"total > {k}",
            "range-miss": f"total < {-k - 1}",  # never true
            # never true, and an `or` that no index covers: every shape is evaluated
            "or-miss": f"total < {-k - 1} or status = 'never'",
        }[kind]
        request = ShapeRequest(table="orders", where=where)
        registry.open("bench", compile_shape(request, RULE, ORDERS, "u"))
    return registry


def _changes(count: int, shapes: int, seed: int = 18) -> list[Change]:
    rng = random.Random(seed)  # noqa: S311 - a reproducible workload, not a secret
    out = []
    for i in range(count):
        old = {
            "id": i,
            "owner_id": rng.randrange(shapes),
            "status": "a",
            "total": rng.randrange(shapes),
        }
        new = dict(old)
        if i % 2:
            new["owner_id"], new["total"] = rng.randrange(shapes), rng.randrange(shapes)
        else:
            new["status"] = "b"
        out.append(Change("public", "orders", Op.UPDATE, new, old, CommitPosition(i, 0), i + 3, 0))
    return out


def route_rate(shapes: int, kind: str, repeats: int) -> dict[str, Any]:
    registry = _registry(shapes, kind)
    # Fewer changes where every shape is evaluated, so that a run takes about a second.
    count = 20_000
    if kind == "range":
        count = {1: 20_000, 100: 1_000}.get(shapes, 20)
    elif kind == "or-miss":
        count = {1: 20_000, 100: 2_000}.get(shapes, 40)
    changes = _changes(count, shapes)
    rates, events = [], 0
    for _ in range(repeats):
        # CPU time of this process: on a shared machine, wall time counts the others' work.
        start = time.process_time()
        events = 0
        for change in changes:
            for _, result in registry.route(change):
                events += len(result) if isinstance(result, list) else 0
        rates.append(count / (time.process_time() - start))
    return {
        "shapes": shapes,
        "filter": kind,
        "changes_per_s": statistics.median(rates),
        "events_per_change": events / count,
    }


async def snapshot_time(rows: int, repeats: int) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="syncline-bench-shapes-"))
    server = EmbeddedPostgres(base / "data")
    info = server.start()
    try:
        url = info.url("postgres")
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(
                "CREATE TABLE orders (id int8 PRIMARY KEY, owner_id int8, status text,"
                " total numeric, created_at timestamptz DEFAULT now())"
            )
            await conn.execute("ALTER TABLE orders REPLICA IDENTITY FULL")
            # Twice the rows, half of them matching: the filter has work to do.
            await conn.execute(
                "INSERT INTO orders (id, owner_id, status, total)"
                " SELECT g, g %% 100, CASE WHEN g %% 2 = 0 THEN 'pending' ELSE 'paid' END,"
                " (g %% 1000) / 10.0 FROM generate_series(1, %s) g",
                (rows * 2,),
            )
            await conn.execute("ANALYZE orders")
            table = await read_table_schema(conn, "public", "orders")
        assert table is not None
        request = ShapeRequest(table="orders", where="status = 'pending'")
        shape = compile_shape(request, RULE, table, "u")
        times, cpu, count = [], [], 0
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            count = 0
            async with open_snapshot(url, shape, table) as snap:
                async for batch in snap.batches():
                    count += len(batch)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        assert count == rows, count
        return {
            "rows": rows,
            "seconds": statistics.median(times),
            "client_cpu_seconds": statistics.median(cpu),
            "runs": times,
        }
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, Any] = {"route": [], "snapshot": None}
    for kind in ("equality", "range", "range-miss", "or-miss"):
        for shapes in (1, 100, 10_000):
            result = route_rate(shapes, kind, args.repeats)
            results["route"].append(result)
            print(
                f"route  {kind:8} {shapes:6} shapes: {result['changes_per_s']:12,.0f} changes/s"
                f"  ({result['events_per_change']:.2f} events/change)"
            )
    snap = asyncio.run(snapshot_time(args.rows, args.repeats))
    results["snapshot"] = snap
    print(
        f"snapshot {snap['rows']:,} rows: {snap['seconds']:.2f} s wall,"
        f" {snap['client_cpu_seconds']:.2f} s of this process's CPU (medians)"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
