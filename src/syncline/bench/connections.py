"""Idle connections: the gateway's RSS per connection (each one subscribed) and the connect rate."""

from __future__ import annotations

import contextlib
import re
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.progress import Progress

from syncline.bench.clients import ClientPool, ClientSpec, ConnectStats, split
from syncline.bench.server import CHANNEL, Target, rss_bytes
from syncline.errors import SynclineError

# Time for the server to settle (buffers, GC) after a wave before its RSS is read.
SETTLE_S = 2.0
_GAUGE = re.compile(r"^syncline_gateway_connections\s+([0-9.e+]+)$", re.MULTILINE)


@dataclass
class ConnectionsOptions:
    """How many connections, in how many waves (one client process per wave)."""

    connections: int = 10_000
    waves: int = 5
    settle_s: float = SETTLE_S
    handshakes: int = 100  # connects in flight per wave


@dataclass
class Wave:
    """The state after one wave of connections."""

    connections: int
    rss_mb: float | None
    connect_seconds: float
    connects_per_s: float


@dataclass
class ConnectionsResult:
    """RSS before and after, per connection, connect rate, failures."""

    options: ConnectionsOptions
    rss_before_mb: float | None = None
    rss_after_mb: float | None = None
    kib_per_connection: float | None = None
    opened: int = 0
    failed: int = 0
    gateway_connections: float | None = None
    connect_seconds: float = 0.0
    connects_per_s: float = 0.0
    waves: list[Wave] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mb(value: int | None) -> float | None:
    return None if value is None else round(value / (1024 * 1024), 1)


def gateway_connections(http_url: str) -> float | None:
    """The server's own count of open WebSocket connections (/metrics)."""
    url = http_url + "/metrics"
    with (
        contextlib.suppress(OSError, ValueError),
        urllib.request.urlopen(url, timeout=5) as response,  # noqa: S310  (http(s) URL)
    ):
        match = _GAUGE.search(response.read().decode())
        if match:
            return float(match.group(1))
    return None


def run_connections(
    target: Target, options: ConnectionsOptions, progress: Progress | None = None
) -> ConnectionsResult:
    """Open the connections wave by wave; read the gateway's RSS before and after each wave."""
    result = ConnectionsResult(options)
    rss = (lambda: rss_bytes(target.pid)) if target.pid is not None else (lambda: None)
    before = rss()
    result.rss_before_mb = _mb(before)
    token = target.make_token("bench-idle")
    task = progress.add_task("connections", total=options.connections) if progress else None
    pools: list[ClientPool] = []
    total = ConnectStats()
    try:
        for count in split(options.connections, options.waves):
            spec = ClientSpec(target.ws_url, token, CHANNEL, count, concurrency=options.handshakes)
            pool = ClientPool(spec, 1)
            pools.append(pool)
            pool.__enter__()
            done = total.subscribed

            def tick(pool: ClientPool = pool, done: int = done) -> None:
                if progress is not None and task is not None:
                    progress.update(task, completed=done + pool.subscribed())

            stats = pool.connect(tick)
            total.subscribed += stats.subscribed
            total.failed += stats.failed
            total.seconds += stats.seconds
            total.errors += stats.errors
            time.sleep(options.settle_s)
            now = rss()
            result.waves.append(
                Wave(total.subscribed, _mb(now), round(stats.seconds, 3), round(stats.per_second))
            )
        after = rss()
        result.gateway_connections = gateway_connections(target.http_url)
    finally:
        for pool in pools:
            pool.close()
    result.opened, result.failed = total.subscribed, total.failed
    result.errors = total.errors[:5]
    result.connect_seconds = round(total.seconds, 3)
    result.connects_per_s = round(total.per_second, 1)
    if before is not None and after is not None:
        result.rss_after_mb = _mb(after)
        if total.subscribed:
            result.kib_per_connection = round((after - before) / 1024 / total.subscribed, 2)
    if total.subscribed == 0:
        first = total.errors[0] if total.errors else "unknown reason"
        raise SynclineError(f"no connection could subscribe: {first}")
    return result
