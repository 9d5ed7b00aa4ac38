"""Capture benchmark: decode+append throughput, commit→append latency, the trigger's write cost."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from hdrh.histogram import HdrHistogram

from syncline.bench.server import process_cpu_seconds
from syncline.capture.pipeline import Pipeline
from syncline.capture.service import CaptureService
from syncline.core.changes import Change
from syncline.engine import open_engine
from syncline.settings import load_settings
from syncline.sync_config import build_sync_config

TABLE_DDL = """
CREATE TABLE IF NOT EXISTS bench_rows (
    id bigserial PRIMARY KEY, n integer NOT NULL, note text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now())
"""
RULES = [{"table": "bench_rows", "channel": "bench", "columns": "*"}]
_OUTBOX = "SELECT to_regclass('syncline.changes') IS NOT NULL"
# The bench table's rows in the outbox (trigger and poll).
_OUR_OUTBOX_ROWS = (
    "FROM syncline.changes WHERE schema_name = 'public' AND table_name = 'bench_rows'"
)
_OUTBOX_LEFT = (
    "SELECT count(*) FILTER (WHERE claim IS NULL), count(*) FILTER (WHERE claim IS NOT NULL) "
    + _OUR_OUTBOX_ROWS
)
# Latency histogram bounds: 1 µs to 60 s, 3 significant digits.
HIST_MAX_US = 60_000_000


@dataclass
class CaptureResult:
    """What one capture benchmark measured."""

    mode: str
    engine: str = "memory"
    backlog_changes: int = 0
    backlog_seconds: float = 0.0
    changes_per_s: float = 0.0
    cpu_seconds: float = 0.0
    engine_cpu_seconds: float | None = None  # the private redis-server's, while draining
    latency_rate: int = 0
    latency_changes: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)
    # What the channel log holds at the end: its top offset (consecutive from 1, each append
    # one), so an append the engine skipped or made twice shows even if the sink saw it once.
    log_offset: int = 0
    lost: int = 0
    duplicated: int = 0
    # Trigger and poll: the benchmark's rows still in the outbox at the end, unclaimed (held
    # back by a running transaction) and claimed (never published or never deleted): where
    # lost changes are, if anywhere.
    outbox_left: dict[str, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Counter:
    """A sink wrapper that counts and times what reaches the channel log."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.count = 0
        self.seen: set[int] = set()
        self.duplicates = 0
        self.hist = HdrHistogram(1, HIST_MAX_US, 3)
        self.track_latency = False
        self.done = asyncio.Event()
        self.target = 0

    async def __call__(self, changes: Sequence[Change]) -> None:
        await self.pipeline(changes)
        now_us = time.time() * 1_000_000
        for change in changes:
            if change.row is None:
                continue
            key = int(change.row["id"])
            if key in self.seen:
                self.duplicates += 1
            self.seen.add(key)
            if self.track_latency:
                self.hist.record_value(max(int(now_us - change.commit_time_us), 1))
        self.count += len(changes)
        # Distinct rows, not changes: a change without a row (a TRUNCATE the outbox trigger
        # left from an earlier run) or a duplicate must not end a phase while rows are still
        # on their way (poll capture's are for a few hundred ms), which would count them lost.
        if self.target and len(self.seen) >= self.target:
            self.done.set()


def _writer(url: str, rate: int, seconds: float) -> None:
    """Single-row commits at a fixed rate, from its own process (the server's other core)."""
    with psycopg.connect(url, autocommit=True) as conn:
        total = int(rate * seconds)
        start = time.perf_counter()
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            conn.execute("INSERT INTO bench_rows (n, note) VALUES (%s, 'x')", (i,))


def _has_outbox(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(_OUTBOX).fetchone()
    return bool(row and row[0])


async def run_capture(
    url: str,
    mode: str,
    *,
    backlog: int,
    rate: int,
    seconds: float,
    engine_url: str = "memory",
    engine_pid: int | None = None,
) -> CaptureResult:
    """Measure one capture mode against the database at `url` (its bench_rows table),
    appending through the engine at `engine_url` (`engine_pid`: its server, for CPU time)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(TABLE_DDL)
        conn.execute("TRUNCATE bench_rows")
        if _has_outbox(conn):
            # An earlier run's triggers wrote the TRUNCATE to the outbox: not this run's.
            conn.execute("DELETE " + _OUR_OUTBOX_ROWS)
    slot = f"bench_{os.getpid()}"
    settings = load_settings(
        None, capture=mode, rules=RULES, slot_name=slot, publication_name=slot, log_level="warning"
    )
    sync = build_sync_config(settings)
    engine = open_engine(engine_url)
    counter = _Counter(Pipeline(sync.rules, sync.registry, engine))
    result = CaptureResult(mode=mode, engine="memory" if engine_url == "memory" else "redis")

    async def start() -> tuple[CaptureService, asyncio.Task[None]]:
        service = CaptureService(url, settings, sync.rules, counter)
        task = asyncio.create_task(service.run())
        await asyncio.wait_for(service.ready.wait(), 30)
        return service, task

    async def stop(task: asyncio.Task[None]) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    # 1. Backlog: the slot/outbox holds `backlog` committed changes; time how fast they drain.
    _, task = await start()
    await stop(task)
    with psycopg.connect(url, autocommit=True) as conn:
        for start_n in range(0, backlog, 1000):
            conn.execute(
                "INSERT INTO bench_rows (n, note)"
                " SELECT g, 'x' FROM generate_series(%s::int, %s::int) g",
                (start_n, min(start_n + 1000, backlog) - 1),
            )
    counter.target = backlog
    engine_cpu0 = process_cpu_seconds(engine_pid)
    cpu0, t0 = time.process_time(), time.perf_counter()
    _, task = await start()
    await asyncio.wait_for(counter.done.wait(), 600)
    result.backlog_seconds = time.perf_counter() - t0
    result.cpu_seconds = time.process_time() - cpu0
    if engine_cpu0 is not None:
        result.engine_cpu_seconds = round((process_cpu_seconds(engine_pid) or 0.0) - engine_cpu0, 2)
    result.backlog_changes = counter.count
    result.changes_per_s = round(counter.count / result.backlog_seconds, 1)

    # 2. Latency: single-row commits at `rate` per second from another process.
    counter.track_latency = True
    counter.done.clear()
    counter.target = len(counter.seen) + int(rate * seconds)
    writer = multiprocessing.get_context("spawn").Process(target=_writer, args=(url, rate, seconds))
    writer.start()
    await asyncio.to_thread(writer.join)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(counter.done.wait(), 30)
    await stop(task)
    result.latency_rate = rate
    result.latency_changes = counter.hist.get_total_count()
    result.latency_ms = {
        f"p{p}": round(counter.hist.get_value_at_percentile(p) / 1000, 3)
        for p in (50, 95, 99, 99.9)
    }
    result.latency_ms["max"] = round(counter.hist.get_max_value() / 1000, 3)
    expected = backlog + int(rate * seconds)
    result.log_offset = (await engine.position(RULES[0]["channel"])).offset
    result.lost = max(expected - len(counter.seen), expected - result.log_offset)
    result.duplicated = counter.duplicates + max(result.log_offset - expected, 0)
    await engine.close()
    with psycopg.connect(url, autocommit=True) as conn:
        if mode != "logical" and _has_outbox(conn):
            unclaimed, claimed = conn.execute(_OUTBOX_LEFT).fetchone() or (0, 0)
            result.outbox_left = {"unclaimed": unclaimed, "claimed": claimed}
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE slot_name = %s AND NOT active",
            (slot,),
        )
    return result


def trigger_write_cost(url: str, seconds: float = 5.0) -> dict[str, float]:
    """Single-row commit rate into bench_rows with and without the capture trigger."""
    rates: dict[str, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(TABLE_DDL)
        for label, install in (("without_trigger", False), ("with_trigger", True)):
            conn.execute("DROP TRIGGER IF EXISTS syncline_capture ON bench_rows")
            if install:
                conn.execute(
                    "CREATE TRIGGER syncline_capture AFTER INSERT OR UPDATE OR DELETE ON bench_rows"
                    " FOR EACH ROW EXECUTE FUNCTION syncline.capture_row()"
                )
            count, end = 0, time.perf_counter() + seconds
            while time.perf_counter() < end:
                conn.execute("INSERT INTO bench_rows (n, note) VALUES (1, 'x')")
                count += 1
            rates[label] = round(count / seconds, 1)
            t0 = time.perf_counter()
            conn.execute(
                "INSERT INTO bench_rows (n, note) SELECT g, 'x' FROM generate_series(1, 50000) g"
            )
            rates[f"{label}_bulk_rows_per_s"] = round(50000 / (time.perf_counter() - t0), 1)
        conn.execute("DROP TRIGGER IF EXISTS syncline_capture ON bench_rows")
        conn.execute("DELETE FROM syncline.changes")
    rates["single_row_ratio"] = round(rates["with_trigger"] / rates["without_trigger"], 3)
    return rates


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m syncline.bench.capture [MODE ...]`: each mode against a fresh embedded
    PostgreSQL, then the trigger's write cost; one JSON line each."""
    import json
    import shutil
    import sys
    import tempfile
    from pathlib import Path

    from syncline.db import migrate
    from syncline.db.embedded import EmbeddedPostgres

    modes = list(argv if argv is not None else sys.argv[1:]) or ["logical", "trigger", "poll"]
    base = Path(tempfile.mkdtemp(prefix="syncline-capture-bench-"))
    server = EmbeddedPostgres(base / "data")
    url = server.start().url()
    try:
        migrate.upgrade(url)
        for mode in modes:
            result = asyncio.run(run_capture(url, mode, backlog=100_000, rate=1000, seconds=10))
            print(json.dumps(result.as_dict()), flush=True)
        print(json.dumps({"trigger_write_cost": trigger_write_cost(url)}), flush=True)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
