"""The capture benchmark per source (logical, trigger, poll) against a fresh or given database."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import Progress

from syncline.bench.capture import CaptureResult, run_capture, trigger_write_cost
from syncline.bench.engines import BenchEngine
from syncline.db import migrate
from syncline.db.embedded import EmbeddedPostgres

MODES = ("logical", "trigger", "poll")


@dataclass
class CaptureOptions:
    """The existing capture benchmark's knobs."""

    modes: Sequence[str] = MODES
    backlog: int = 100_000
    rate: int = 1000
    seconds: float = 10.0
    write_cost: bool = False


@dataclass
class CaptureRun:
    """One result per mode, and the trigger's cost on writes when asked."""

    results: list[CaptureResult] = field(default_factory=list)
    write_cost: dict[str, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "modes": [r.as_dict() for r in self.results],
            "write_cost": self.write_cost,
            "lost": sum(r.lost for r in self.results),
            "duplicated": sum(r.duplicated for r in self.results),
        }


@contextlib.contextmanager
def _database(database_url: str | None) -> Iterator[str]:
    if database_url is not None:
        yield database_url
        return
    base = Path(tempfile.mkdtemp(prefix="syncline-capture-bench-"))
    base.chmod(0o755)
    server = EmbeddedPostgres(base / "data")
    try:
        yield server.start().url()
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def run_capture_modes(
    options: CaptureOptions,
    database_url: str | None = None,
    progress: Progress | None = None,
    engines: Sequence[BenchEngine] = (),
) -> CaptureRun:
    """Each mode in turn on one database (an embedded PostgreSQL made for the run by default),
    appending through each engine in turn (memory by default)."""
    engines = engines or [BenchEngine("memory", "memory")]
    run = CaptureRun()
    with _database(database_url) as url:
        migrate.upgrade(url)
        for mode, engine in [(m, e) for m in options.modes for e in engines]:
            label = f"capture {mode}" + (f" ({engine.name})" if len(engines) > 1 else "")
            task = progress.add_task(label, total=1) if progress else None
            result = asyncio.run(
                run_capture(
                    url,
                    mode,
                    backlog=options.backlog,
                    rate=options.rate,
                    seconds=options.seconds,
                    # A key prefix per mode: each mode's commit positions start afresh.
                    engine_url=engine.for_run(),
                    engine_pid=engine.pid,
                )
            )
            run.results.append(result)
            if progress is not None and task is not None:
                progress.update(task, completed=1)
        if options.write_cost:
            task = progress.add_task("trigger write cost", total=1) if progress else None
            run.write_cost = trigger_write_cost(url)
            if progress is not None and task is not None:
                progress.update(task, completed=1)
    return run
