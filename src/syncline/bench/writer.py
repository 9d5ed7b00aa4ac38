"""The writer: single-row commits into the bench table at a fixed rate, from its own process."""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

import psycopg

from syncline.bench import histogram
from syncline.bench.server import TABLE
from syncline.errors import SynclineError

INSERT = f"INSERT INTO {TABLE} (run, seq, sent_at_us, note) VALUES (%s, %s, %s, %s)"
PROGRESS_EVERY_S = 0.2


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


def write_rows(
    database_url: str,
    run: int,
    rate: float,
    seconds: float,
    note: str,
    progress: Callable[[int], None] | None = None,
) -> WriteResult:
    """Insert rate * seconds rows, each stamped with the wall clock just before its commit."""
    total = max(int(rate * seconds), 1)
    commits = histogram.new_histogram()
    with psycopg.connect(database_url, autocommit=True) as conn:
        start = time.perf_counter()
        next_progress = start + PROGRESS_EVERY_S
        for seq in range(total):
            due = start + seq / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            # Autocommit: this statement is the transaction, so the stamp is taken before COMMIT.
            sent_us = time.time_ns() // 1000
            conn.execute(INSERT, (run, seq, sent_us, note), prepare=True)
            histogram.record_us(commits, time.time_ns() // 1000 - sent_us)
            if progress is not None and time.perf_counter() >= next_progress:
                progress(seq + 1)
                next_progress += PROGRESS_EVERY_S
        elapsed = time.perf_counter() - start
    if progress is not None:
        progress(total)
    return WriteResult(run, total, elapsed, histogram.encode(commits))


def _writer_main(
    pipe: Connection, database_url: str, run: int, rate: float, seconds: float, note: str
) -> None:
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        try:
            result = write_rows(
                database_url, run, rate, seconds, note, lambda n: pipe.send(("progress", n))
            )
        except psycopg.Error as error:
            pipe.send(("error", str(error).strip().splitlines()[-1]))
            return
        pipe.send(("done", result))


class WriterProcess:
    """`write_rows` in a process of its own, so that the bench's own work can't delay it."""

    def __init__(self, database_url: str, run: int, rate: float, seconds: float, note: str):
        ctx = multiprocessing.get_context("spawn")
        self.pipe, theirs = ctx.Pipe()
        self.proc = ctx.Process(
            target=_writer_main, args=(theirs, database_url, run, rate, seconds, note), daemon=True
        )
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
