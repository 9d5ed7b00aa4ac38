"""Presenting results: the JSON document, the summary tables, the progress bars, the verdict."""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from syncline.bench.capture import CaptureResult
    from syncline.bench.fanout import FanoutResult

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
    engine: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """The one JSON document `--json` prints; `engine` is None for a running server's own, a
    list for engines measured side by side."""
    doc = {
        "command": command,
        **environment(),
        "engine": engine,
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


def _mb(value: object) -> str:
    return f"{value / 1e6:,.2f}" if isinstance(value, int | float) else "-"


def _number(value: object, pattern: str) -> str:
    return pattern.format(value) if isinstance(value, int | float) else "-"


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
    "wire MB/s",
    "client µs / delivery",
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
        cpu += (step["engine_cpu_s"],) if step.get("engine_cpu_s") is not None else ()
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
                _mb(step.get("bytes_per_s")),
                _number(step.get("client_cpu_us_per_delivery"), "{:.1f}"),
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


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return round(value / reference, 3)


def fanout_ratios(names: Sequence[str], results: Sequence[FanoutResult]) -> dict[str, Any]:
    """Each engine (or format) against the first: the sustainable rate and deliveries/s, and at
    each rate both held (the last step of it, the one that counted) deliveries/s, p50, p99,
    wire bytes/s and a delivery, and the receivers' CPU a delivery."""
    first_name, first = names[0], results[0]
    values: dict[str, Any] = {}
    lines: list[str] = []
    for name, result in zip(names[1:], results[1:], strict=True):
        mine, theirs = _last_steps(result), _last_steps(first)
        by_rate = {}
        for rate in [r for r in mine if r in theirs]:
            a, b = mine[rate], theirs[rate]
            by_rate[f"{rate:g}"] = {
                "deliveries_per_s": _ratio(a.deliveries_per_s, b.deliveries_per_s),
                "bytes_per_s": _ratio(a.bytes_per_s, b.bytes_per_s),
                "bytes_per_delivery": _ratio(
                    a.wire_bytes / a.deliveries if a.deliveries else None,
                    b.wire_bytes / b.deliveries if b.deliveries else None,
                ),
                "client_cpu_us_per_delivery": _ratio(
                    a.client_cpu_us_per_delivery, b.client_cpu_us_per_delivery
                ),
                **{
                    key: _ratio(float(a.latency_ms.get(key, 0)), float(b.latency_ms.get(key, 0)))
                    for key in ("p50", "p99")
                },
            }
        values[name] = {
            "against": first_name,
            "sustainable_rate": _ratio(result.sustainable_rate, first.sustainable_rate),
            "sustainable_deliveries_per_s": _ratio(
                result.sustainable_deliveries_per_s, first.sustainable_deliveries_per_s
            ),
            "by_rate": by_rate,
        }
        if result.options.ramp:
            lines.append(
                f"{name} / {first_name}: sustainable {result.sustainable_rate or 0:g} /"
                f" {first.sustainable_rate or 0:g} rows/s, deliveries/s"
                f" {result.sustainable_deliveries_per_s or 0:,.0f} /"
                f" {first.sustainable_deliveries_per_s or 0:,.0f}"
                f" = {values[name]['sustainable_deliveries_per_s'] or 0:.2f}x"
            )
        for rate_text, ratio in by_rate.items():
            lines.append(
                f"{name} / {first_name} at {rate_text} rows/s: deliveries/s"
                f" {ratio['deliveries_per_s'] or 0:.2f}x, p50 {ratio['p50'] or 0:.2f}x,"
                f" p99 {ratio['p99'] or 0:.2f}x, wire bytes/s {ratio['bytes_per_s'] or 0:.2f}x,"
                f" client CPU/delivery {ratio['client_cpu_us_per_delivery'] or 0:.2f}x"
            )
    return {"values": values, "lines": lines}


def _last_steps(result: FanoutResult) -> dict[float, Any]:
    return {step.rate: step for step in result.steps}


def capture_ratios(results: Sequence[CaptureResult], reference: str) -> dict[str, dict[str, Any]]:
    """Per mode, each engine's backlog changes/s against the `reference` engine's."""
    ratios: dict[str, dict[str, Any]] = {}
    for result in results:
        base = next((r for r in results if r.mode == result.mode and r.engine == reference), None)
        if base is not None and result is not base:
            ratios.setdefault(result.mode, {})[result.engine] = _ratio(
                result.changes_per_s, base.changes_per_s
            )
    return ratios
