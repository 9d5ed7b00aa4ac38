"""Presenting results: the JSON document, the summary tables, the progress bars, the verdict."""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from syncline import __version__
from syncline.tables import table_or_blocks

_PACKAGES = ("picows", "psycopg", "orjson", "uvicorn", "hdrhistogram", "k6")


def progress_bars(console: Console, enabled: bool = True) -> Progress:
    """Progress on stderr (stdout is kept for the results)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )


def environment() -> dict[str, Any]:
    """Date, machine and versions: numbers mean little without them."""
    versions = {"syncline": __version__, "python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    cpu = ""
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((ln.split(":", 1)[1].strip() for ln in handle if "model name" in ln), "")
    except OSError:
        pass
    import os

    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": cpu,
            "system": f"{platform.system()} {platform.release()}",
        },
        "versions": versions,
    }


def document(
    command: str,
    target: Mapping[str, Any],
    result: Mapping[str, Any],
    engine: Mapping[str, Any] | None = None,
) -> str:
    """The one JSON document `--json` prints; `engine` is None for a running server's own."""
    doc = {
        "command": command,
        **environment(),
        "engine": None if engine is None else dict(engine),
        "target": dict(target),
        "result": dict(result),
    }
    return json.dumps(doc, indent=2, default=str)


def _ms(value: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.1f} ms" if value >= 10 else f"{value:.2f} ms"


FANOUT_HEADERS = (
    "rows/s",
    "offered",
    "subscribers",
    "deliveries/s",
    "p50",
    "p95",
    "p99",
    "max",
    "commit p99",
    "lost / dup",
    "CPU s server / clients (/ redis)",
)


def fanout_table(
    title: str, steps: Iterable[Mapping[str, Any]], width: int = 200
) -> RenderableType:
    """The steps of a fan-out run: a table when it fits `width` columns, else a block a step
    (a squeezed table printed "subscrib…")."""
    rows = []
    for step in steps:
        lat = step["latency_ms"]
        acc = step["accounting"]
        cpu = (step.get("server_cpu_s", "-"), step["client_cpu_s"])
        cpu += (step["engine_cpu_s"],) if "engine_cpu_s" in step else ()
        rows.append(
            (
                f"{step['rate']:g}",
                f"{step['offered_rate']:,.1f}",
                f"{step['subscribers']:,}",
                f"{step['deliveries_per_s']:,.0f}",
                _ms(lat.get("p50")),
                _ms(lat.get("p95")),
                _ms(lat.get("p99")),
                _ms(lat.get("max")),
                _ms(step.get("commit_ms", {}).get("p99")),
                f"{acc['lost']:,} / {acc['duplicated']:,}",
                " / ".join(str(c) for c in cpu),
            )
        )
    return table_or_blocks(title, FANOUT_HEADERS, rows, width)


def pairs_table(title: str, rows: Iterable[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for key, value in rows:
        table.add_row(key, value)
    return table


def console_for(as_json: bool) -> Console:
    """Where tables go: stdout, or stderr when stdout carries the JSON document."""
    stream = sys.stderr if as_json else sys.stdout
    # Off a terminal Rich assumes 80 columns, too narrow for the results table.
    width = None if stream.isatty() else 120
    return Console(file=stream, highlight=False, soft_wrap=True, width=width)
