"""The writer: stamped events at a fixed rate from its own process — rows, SQL or HTTP publishes.

`rows` commits one row of the bench table per transaction (captured by the sync rule); `publish`
calls syncline.publish() `batch` times per transaction; `http` posts to the server API's
publish. Every event carries the same fields (run, seq, sent_at_us, note) under `row`, so the
subscribers account for them all the same way.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

import httpx
import psycopg

from syncline.bench import histogram
from syncline.bench.server import CHANNEL, TABLE
from syncline.errors import SynclineError

INSERT = "INSERT INTO {table} (run, seq, sent_at_us, note) VALUES (%s, %s, %s, %s)"
# One statement, so in autocommit it is the whole transaction: `batch` publications, one commit.
PUBLISH = """
SELECT syncline.publish(%(channel)s, jsonb_build_object('row', jsonb_build_object(
    'run', %(run)s::bigint, 'seq', s, 'sent_at_us', %(sent)s::bigint, 'note', %(note)s::text)))
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS s
"""
PROGRESS_EVERY_S = 0.2
VIA = ("rows", "publish", "http")


@dataclass(frozen=True)
class Via:
    """How events are written: table rows, syncline.publish() in SQL, or the server HTTP API."""

    kind: str = "rows"
    batch: int = 1  # publications per transaction (publish only)
    http_url: str = ""
    api_key: str = ""
    # Where: rows go into `table`, publishes to `channel` (server.LANES).
    table: str = TABLE
    channel: str = CHANNEL

    def __post_init__(self) -> None:
        if self.kind not in VIA:
            raise SynclineError(f"--via must be one of {', '.join(VIA)}, not {self.kind!r}")
        if self.batch < 1 or (self.batch > 1 and self.kind != "publish"):
            raise SynclineError("--batch is a positive number, and only for --via publish")
        if self.kind == "http" and not (self.http_url and self.api_key):
            raise SynclineError("--via http needs the server API key (--api-key)")


@dataclass
class WriteResult:
    """What the writer committed: rows numbered 0 … rows-1 in run `run`."""

    run: int
    rows: int
    seconds: float
    commit_hist: bytes = b""  # encoded HDR histogram of the commits' round trips (µs)

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def _sql_writer(
    conn: psycopg.Connection[tuple[object, ...]], via: Via, run: int, note: str
) -> Callable[[int, int, int], None]:
    if via.kind == "rows":
        insert_sql = INSERT.format(table=via.table)

        def insert(first: int, _last: int, sent_us: int) -> None:
            conn.execute(insert_sql, (run, first, sent_us, note), prepare=True)

        return insert

    def publish(first: int, last: int, sent_us: int) -> None:
        params = {"channel": via.channel, "run": run, "sent": sent_us, "note": note}
        conn.execute(PUBLISH, {**params, "first": first, "last": last}, prepare=True)

    return publish


def _http_writer(
    http: httpx.Client, run: int, note: str, channel: str
) -> Callable[[int, int, int], None]:
    def post(first: int, _last: int, sent_us: int) -> None:
        row = {"run": run, "seq": first, "sent_at_us": sent_us, "note": note}
        response = http.post("/api/server/publish", json={"channel": channel, "data": {"row": row}})
        if response.status_code != 200:
            raise SynclineError(f"publish answered {response.status_code}: {response.text[:200]}")

    return post


def write_rows(
    database_url: str,
    run: int,
    rate: float,
    seconds: float,
    note: str,
    progress: Callable[[int], None] | None = None,
    via: Via | None = None,
) -> WriteResult:
    """Write rate * seconds events, each stamped with the wall clock just before its commit."""
    via = via or Via()
    total = max(int(rate * seconds), 1)
    commits = histogram.new_histogram()
    with contextlib.ExitStack() as stack:
        if via.kind == "http":
            http = stack.enter_context(
                httpx.Client(base_url=via.http_url, headers={"X-API-Key": via.api_key}, timeout=30)
            )
            write = _http_writer(http, run, note, via.channel)
        else:
            conn = stack.enter_context(psycopg.connect(database_url, autocommit=True))
            write = _sql_writer(conn, via, run, note)
        start = time.perf_counter()
        next_progress = start + PROGRESS_EVERY_S
        for first in range(0, total, via.batch):
            last = min(first + via.batch, total) - 1
            due = start + first / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            # Autocommit (or the API's own transaction): the write is the whole transaction,
            # so the stamp is taken before its COMMIT.
            sent_us = time.time_ns() // 1000
            write(first, last, sent_us)
            histogram.record_us(commits, time.time_ns() // 1000 - sent_us)
            if progress is not None and time.perf_counter() >= next_progress:
                progress(last + 1)
                next_progress += PROGRESS_EVERY_S
        elapsed = time.perf_counter() - start
    if progress is not None:
        progress(total)
    return WriteResult(run, total, elapsed, histogram.encode(commits))


def _writer_main(
    pipe: Connection,
    database_url: str,
    run: int,
    rate: float,
    seconds: float,
    note: str,
    via: Via,
) -> None:
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        try:
            result = write_rows(
                database_url, run, rate, seconds, note, lambda n: pipe.send(("progress", n)), via
            )
        except (psycopg.Error, httpx.HTTPError, SynclineError) as error:
            pipe.send(("error", str(error).strip().splitlines()[-1]))
            return
        pipe.send(("done", result))


class WriterProcess:
    """`write_rows` in a process of its own, so that the bench's own work can't delay it."""

    def __init__(
        self,
        database_url: str,
        run: int,
        rate: float,
        seconds: float,
        note: str,
        via: Via | None = None,
    ):
        ctx = multiprocessing.get_context("spawn")
        self.pipe, theirs = ctx.Pipe()
        args = (theirs, database_url, run, rate, seconds, note, via or Via())
        self.proc = ctx.Process(target=_writer_main, args=args, daemon=True)
        self.proc.start()
        theirs.close()
        self.written = 0
        self.result: WriteResult | None = None

    def poll(self, timeout: float = 0.0) -> bool:
        """Read the writer's messages; True once it is done."""
        try:
            while self.result is None and self.pipe.poll(timeout):
                kind, body = self.pipe.recv()
                if kind == "progress":
                    self.written = int(body)
                elif kind == "done":
                    self.result = body
                    self.written = body.rows
                else:
                    raise SynclineError(f"the writer failed: {body}")
                timeout = 0.0
        except EOFError:
            raise SynclineError(f"the writer died (exit code {self.proc.exitcode})") from None
        return self.result is not None

    def close(self) -> None:
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.pipe.close()
