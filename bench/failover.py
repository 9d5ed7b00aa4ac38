"""Measure capture failover: kill -9 of the node that leads capture, among three `syncline up`.

Usage: ``python bench/failover.py [--kills 5] [--rate 100]``. It starts what it needs in a
temporary directory: an embedded PostgreSQL (wal_level=logical), a redis-server (AOF,
appendfsync always) and three `syncline up` nodes on their own ports with the same
DATABASE_URL, engine, slot and publication. A writer commits one row per transaction,
``--rate`` a second, the whole time. Each round:

1. a subscriber (the official SDK) connects to a node that stands by, channel ``orders``;
2. the leader gets SIGKILL (t = 0);
3. **leader**: until one survivor's /readyz says ``"capture": "leader"`` (polled every 20 ms);
4. **first row**: until the first row whose INSERT was sent after t = 0 reaches the
   subscriber (it includes the writer's spacing, at most 1 / rate);
5. the killed node starts again (same ports) and the next round kills the new leader.

It prints each round and the median of each number; the numbers behind docs/benchmarks.md,
"Capture failover". Not part of the test suite (tests/e2e/test_nodes.py asserts the bound).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg
from centrifuge import Client, PublicationContext, SubscriptionEventHandler

from syncline.db.embedded import EmbeddedPostgres, free_port

SECRET = secrets.token_urlsafe(48)
POLL_S = 0.02
READY_WITHIN_S = 60.0
ROUND_WITHIN_S = 30.0
HISTORY = {"history_size": 10_000, "history_ttl": 3600, "recover": True}


class Node:
    """One `syncline up` on fixed ports, restartable."""

    def __init__(self, name: str, base: Path, env: dict[str, str]) -> None:
        self.name = name
        self.dir = base / name
        self.dir.mkdir(parents=True)
        self.port, self.gateway_port = free_port(), free_port()
        self.http_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.gateway_port}/connection/websocket"
        self.env = {**env, "SYNCLINE_NODE_NAME": name}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.dir / "stderr.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "syncline",
                    "up",
                    "--data-dir",
                    str(self.dir / "data"),
                    "--port",
                    str(self.port),
                    "--gateway-port",
                    str(self.gateway_port),
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=self.env,
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    async def readyz(self, http: httpx.AsyncClient) -> dict[str, Any]:
        try:
            response = await http.get(f"{self.http_url}/readyz", timeout=1)
            body: dict[str, Any] = response.json()
            body["http_status"] = response.status_code
        except (httpx.TransportError, ValueError):
            return {}
        return body

    async def wait_ready(self, http: httpx.AsyncClient) -> None:
        deadline = time.monotonic() + READY_WITHIN_S
        while (await self.readyz(http)).get("http_status") != 200:
            assert self.proc is not None and self.proc.poll() is None, f"{self.name} exited"
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready within {READY_WITHIN_S} s")
            await asyncio.sleep(0.1)


class Arrivals(SubscriptionEventHandler):  # type: ignore[misc]
    """When each row (by its number) reached the subscriber."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.at.setdefault(int(ctx.pub.data["row"]["product_name"]), time.monotonic())


class Writer:
    """One row per transaction, `rate` a second; when each INSERT was sent."""

    def __init__(self, url: str, rate: float) -> None:
        self.url = url
        self.interval = 1 / rate
        self.sent: list[float] = []
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            while True:
                seq = len(self.sent)
                self.sent.append(time.monotonic())
                await conn.execute(
                    "INSERT INTO orders (customer_name, product_name) VALUES ('f', %s)", (str(seq),)
                )
                await asyncio.sleep(self.interval)

    def first_sent_after(self, moment: float) -> int | None:
        return next((i for i, at in enumerate(self.sent) if at > moment), None)


async def leader_of(http: httpx.AsyncClient, nodes: list[Node]) -> list[Node]:
    bodies = await asyncio.gather(*(node.readyz(http) for node in nodes))
    return [n for n, b in zip(nodes, bodies, strict=True) if b.get("capture") == "leader"]


async def one_round(
    http: httpx.AsyncClient, nodes: list[Node], writer: Writer
) -> tuple[float, float, str]:
    deadline = time.monotonic() + ROUND_WITHIN_S
    while len(leading := await leader_of(http, nodes)) != 1:
        assert time.monotonic() < deadline, "no single leader"
        await asyncio.sleep(0.1)
    (leader,) = leading
    survivors = [n for n in nodes if n is not leader]
    token = jwt.encode({"sub": "1", "exp": int(time.time()) + 3600}, SECRET, "HS256")
    arrivals = Arrivals()
    client = Client(survivors[0].ws_url, token=token, max_reconnect_delay=0.5)
    sub = client.new_subscription("orders", events=arrivals)
    try:
        await client.connect()
        await sub.subscribe()
        await sub.ready(timeout=10)
        # Capture is flowing to this subscriber before the kill.
        mark = len(writer.sent)
        while not any(seq >= mark for seq in arrivals.at):
            assert time.monotonic() < deadline, "rows do not flow before the kill"
            await asyncio.sleep(POLL_S)
        killed_at = time.monotonic()
        leader.kill()
        while not await leader_of(http, survivors):
            assert time.monotonic() < killed_at + ROUND_WITHIN_S, "no survivor leads"
            await asyncio.sleep(POLL_S)
        leads = time.monotonic() - killed_at
        while True:
            first = writer.first_sent_after(killed_at)
            if first is not None and first in arrivals.at:
                row = arrivals.at[first] - killed_at
                break
            assert time.monotonic() < killed_at + ROUND_WITHIN_S, "rows stopped after the kill"
            await asyncio.sleep(POLL_S)
    finally:
        await client.disconnect()
    leader.start()
    await leader.wait_ready(http)
    return leads, row, leader.name


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({model}), {platform.system()} {platform.release()}"


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    port = free_port()
    workdir.mkdir(parents=True)
    args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", ""]
    proc = subprocess.Popen(
        [binary, *args, "--appendonly", "yes", "--appendfsync", "always"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return proc, f"redis://127.0.0.1:{port}/0"
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("redis-server did not start")
        time.sleep(0.05)


async def main(kills: int, rate: float) -> None:
    base = Path(tempfile.mkdtemp(prefix="syncline-failover-"))
    pg = EmbeddedPostgres(base / "pg")
    redis, redis_url = start_redis(base / "redis")
    nodes: list[Node] = []
    writer_task: asyncio.Task[None] | None = None
    try:
        url = pg.start().url()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCLINE_")}
        env |= {
            "DATABASE_URL": url,
            "SYNCLINE_ENGINE": redis_url,
            "SYNCLINE_JWT_SECRET": SECRET,
            "SYNCLINE_SLOT_NAME": "failover",
            "SYNCLINE_PUBLICATION_NAME": "failover",
            "SYNCLINE_NAMESPACES": json.dumps({"default": HISTORY}),
            "SYNCLINE_LOG_LEVEL": "warning",
        }
        nodes = [Node(f"n{i}", base, env) for i in (1, 2, 3)]
        async with httpx.AsyncClient() as http:
            nodes[0].start()  # it migrates the database; the others then find it at head
            await nodes[0].wait_ready(http)
            for node in nodes[1:]:
                node.start()
            await asyncio.gather(*(node.wait_ready(http) for node in nodes[1:]))
            writer = Writer(url, rate)
            writer_task = asyncio.create_task(writer.run())
            print(f"machine: {machine()}; writer: {rate:g} single-row commits/s")
            print("round  killed  survivor leads  first row after the kill")
            results = []
            for i in range(1, kills + 1):
                leads, row, name = await one_round(http, nodes, writer)
                results.append((leads, row))
                print(f"{i:5}  {name:6}  {leads * 1000:11.0f} ms  {row * 1000:21.0f} ms")
            leads_ms = statistics.median(r[0] for r in results) * 1000
            row_ms = statistics.median(r[1] for r in results) * 1000
            print(f"median of {kills}: survivor leads {leads_ms:.0f} ms, first row {row_ms:.0f} ms")
    finally:
        if writer_task is not None:
            writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
                await writer_task
        for node in nodes:
            node.stop()
        redis.terminate()
        redis.wait(timeout=10)
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--rate", type=float, default=100.0, help="single-row commits a second")
    options = parser.parse_args()
    asyncio.run(main(options.kills, options.rate))
