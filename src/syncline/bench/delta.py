"""Fossil delta on the orders channel: the wire bytes of the dashboard's row updates, with and
without `delta: "fossil"`, seen by two subscribers of one server at once.

Each run inserts fresh orders, then updates them as the dashboard does (a status and its
`updated_at`, one transaction each, on rows picked at random), while a plain subscriber and a
delta subscriber count the bytes of every `pub` push they get. The delta subscriber rebuilds
each publication from the deltas and the run fails unless it equals the plain one's.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from fossil_delta import apply_delta
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from syncline.errors import SynclineError

CHANNEL = "orders"
STATUSES = ("pending", "shipped", "delivered")
# The orders namespace of the app, with delta allowed: what `syncline up` is started with.
NAMESPACES_ENV = {
    "SYNCLINE_NAMESPACES": json.dumps(
        {
            "default": {
                "history_size": 1000,
                "history_ttl": 3600,
                "recover": True,
                "allow_history": True,
                "allowed_delta_types": ["fossil"],
            }
        }
    )
}
WAIT_S = 60.0  # for every publication of a run to reach both subscribers


@dataclass(frozen=True)
class DeltaOptions:
    orders: int = 20  # rows of the dashboard; each update picks one at random
    updates: int = 300
    runs: int = 5
    seed: int = 7


class Subscriber(WSListener):
    """A raw client: the size and the body of every `pub` push of the channel, as received."""

    def __init__(self) -> None:
        self.pushes: list[dict[str, Any]] = []
        self.sizes: list[int] = []  # bytes of each push's line (its JSON object on the wire)
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not WSMsgType.TEXT:
            return
        for line in frame.get_payload_as_bytes().split(b"\n"):
            message = json.loads(line)
            if not message:
                transport.send(WSMsgType.TEXT, b"{}")  # pong
            elif "push" in message and "pub" in message["push"]:
                self.sizes.append(len(line))
                self.pushes.append(message["push"]["pub"])
            else:
                self.replies.put_nowait(message)

    async def command(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, json.dumps(command).encode())
        reply = await asyncio.wait_for(self.replies.get(), 10)
        if "error" in reply:
            raise SynclineError(f"the server answered {reply}")
        return reply


@dataclass(frozen=True)
class RunResult:
    publications: int
    updates: int
    plain_bytes: int
    delta_bytes: int
    plain_update_bytes: int
    delta_update_bytes: int
    sent_as_delta: int

    @property
    def saved(self) -> float:
        return 1 - self.delta_bytes / self.plain_bytes

    @property
    def saved_on_updates(self) -> float:
        return 1 - self.delta_update_bytes / self.plain_update_bytes


def rebuilt(pushes: list[dict[str, Any]]) -> list[bytes]:
    """What the SDK rebuilds from a delta subscription's pushes: each publication's JSON text."""
    texts: list[bytes] = []
    held = b""
    for pub in pushes:
        wire = str(pub["data"]).encode("utf-8")
        held = apply_delta(held, wire) if pub.get("delta") else wire
        texts.append(held)
    return texts


async def _connect(ws_url: str, token: str, delta: bool) -> Subscriber:
    subscriber = Subscriber()
    await ws_connect(lambda: subscriber, ws_url)
    await subscriber.command({"id": 1, "connect": {"token": token}})
    params: dict[str, Any] = {"channel": CHANNEL}
    if delta:
        params["delta"] = "fossil"
    reply = await subscriber.command({"id": 2, "subscribe": params})
    if delta and not reply["subscribe"].get("delta"):
        raise SynclineError("the server did not negotiate delta on the orders channel")
    return subscriber


def _write(database_url: str, options: DeltaOptions, run: int) -> int:
    """Insert the run's orders, then update them; returns how many publications that makes."""
    rng = random.Random(options.seed * 1000 + run)  # noqa: S311 (a reproducible workload)
    with psycopg.connect(database_url, autocommit=True) as conn:
        ids = []
        for n in range(options.orders):
            row = conn.execute(
                "INSERT INTO orders (customer_name, product_name) VALUES (%s, %s) RETURNING id",
                (f"Customer {run}-{n}", rng.choice(["Green tea", "Coffee beans", "Oolong 250 g"])),
            ).fetchone()
            assert row is not None
            ids.append(row[0])
        for _ in range(options.updates):
            conn.execute(
                "UPDATE orders SET status = %s, updated_at = now() WHERE id = %s",
                (rng.choice(STATUSES), rng.choice(ids)),
            )
    return options.orders + options.updates


async def _run_once(target: Any, options: DeltaOptions, run: int) -> RunResult:
    plain = await _connect(target.ws_url, target.make_token("bench-plain"), delta=False)
    delta = await _connect(target.ws_url, target.make_token("bench-delta"), delta=True)
    try:
        expected = await asyncio.to_thread(_write, target.database_url, options, run)
        deadline = time.monotonic() + WAIT_S
        while len(plain.pushes) < expected or len(delta.pushes) < expected:
            if time.monotonic() > deadline:
                raise SynclineError(
                    f"run {run}: {len(plain.pushes)} and {len(delta.pushes)} of {expected} "
                    "publications arrived"
                )
            await asyncio.sleep(0.05)
        plain_texts = [json.dumps(p["data"], separators=(",", ":")).encode() for p in plain.pushes]
        delta_texts = rebuilt(delta.pushes)
        if [json.loads(t) for t in delta_texts] != [json.loads(t) for t in plain_texts]:
            raise SynclineError(f"run {run}: the rebuilt publications differ from the plain ones")
        first_update = options.orders
        return RunResult(
            publications=expected,
            updates=options.updates,
            plain_bytes=sum(plain.sizes),
            delta_bytes=sum(delta.sizes),
            plain_update_bytes=sum(plain.sizes[first_update:]),
            delta_update_bytes=sum(delta.sizes[first_update:]),
            sent_as_delta=sum(1 for p in delta.pushes if p.get("delta")),
        )
    finally:
        for subscriber in (plain, delta):
            if subscriber.transport is not None:
                subscriber.transport.disconnect()


def run_delta(
    target: Any, options: DeltaOptions, tick: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Every run, then the medians; raises SynclineError when a run fails its checks."""

    async def runs() -> list[RunResult]:
        results = []
        for run in range(options.runs):
            results.append(await _run_once(target, options, run))
            if tick is not None:
                tick(run + 1)
        return results

    results = asyncio.run(runs())

    def median(value: Callable[[RunResult], float]) -> float:
        return float(statistics.median(value(r) for r in results))

    return {
        "options": {"orders": options.orders, "updates": options.updates, "runs": options.runs},
        "runs": [
            {**r.__dict__, "saved": r.saved, "saved_on_updates": r.saved_on_updates}
            for r in results
        ],
        "median": {
            "plain_bytes_per_publication": median(lambda r: r.plain_bytes / r.publications),
            "delta_bytes_per_publication": median(lambda r: r.delta_bytes / r.publications),
            "plain_bytes_per_update": median(lambda r: r.plain_update_bytes / r.updates),
            "delta_bytes_per_update": median(lambda r: r.delta_update_bytes / r.updates),
            "saved": median(lambda r: r.saved),
            "saved_on_updates": median(lambda r: r.saved_on_updates),
            "sent_as_delta": median(lambda r: r.sent_as_delta / r.publications),
        },
    }
