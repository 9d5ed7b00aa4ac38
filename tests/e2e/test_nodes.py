"""Three `syncline up` nodes (real processes on their own ports) on one PostgreSQL and one Redis:
capture runs on exactly one of them; kill -9 of it mid 10,000 inserts hands capture to a
survivor within 5 s that continues from the slot, so subscribers on the survivors get every
row once, in order; the dead node leaves `info` and its users leave presence (issue 14)."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg
import pytest
from centrifuge import Client, PublicationContext, SubscribedContext, SubscriptionEventHandler

from syncline.capture.service import LEADER_LEASE_S
from syncline.nodes_redis import NODE_TTL_S

from helpers.live_server import TEST_SECRET, drop_slot
from helpers.redis_servers import RedisServer
from helpers.up_process import UpProcess

TOTAL, PER_TXN = 10_000, 100
API_KEY = "node-test-api-key-" + "k" * 32
PRESENCE_TTL_S = 3.0
# Capture's standby asks for the leader lock every second; the bound.
TAKEOVER_WITHIN_S = 5.0
HISTORY = {"history_size": 20_000, "history_ttl": 3600, "recover": True, "allow_history": True}
LOBBY = {"presence": True, "allow_presence": True, "join_leave": True}
NAMES = ("n1", "n2", "n3")


@dataclass
class Cluster:
    redis: RedisServer
    nodes: dict[str, UpProcess]
    slot: str


@pytest.fixture
async def cluster(schema_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    redis = RedisServer(tmp_path / "redis", appendonly=True, appendfsync="always").start()
    slot = f"c_{secrets.token_hex(4)}"
    nodes = {
        name: UpProcess(
            DATABASE_URL=schema_url,
            SYNCLINE_ENGINE=f"{redis.url}?prefix={slot}",
            SYNCLINE_JWT_SECRET=TEST_SECRET,
            SYNCLINE_API_KEY=API_KEY,
            SYNCLINE_SLOT_NAME=slot,
            SYNCLINE_PUBLICATION_NAME=slot,
            SYNCLINE_NODE_NAME=name,
            SYNCLINE_PRESENCE_TTL=str(PRESENCE_TTL_S),
            SYNCLINE_NAMESPACES=json.dumps({"default": HISTORY, "lobby": LOBBY}),
            SYNCLINE_LOG_LEVEL="warning",
        )
        for name in NAMES
    }
    try:
        for node in nodes.values():
            node.start()
        async with asyncio.timeout(40):
            await asyncio.gather(*(node.wait_ready(40) for node in nodes.values()))
        yield Cluster(redis, nodes, slot)
    finally:
        for node in nodes.values():
            node.close()
        redis.stop()
        await drop_slot(schema_url, slot)


def token(sub: str) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 3600}, TEST_SECRET, "HS256")


async def readyz(http: httpx.AsyncClient, node: UpProcess) -> dict[str, Any]:
    try:
        response = await http.get(f"{node.http_url}/readyz", timeout=1)
    except httpx.TransportError:
        return {}
    body: dict[str, Any] = response.json()
    return body


async def leaders(http: httpx.AsyncClient, nodes: list[UpProcess]) -> list[str]:
    bodies = await asyncio.gather(*(readyz(http, node) for node in nodes))
    return [str(b["node"]) for b in bodies if b.get("capture") == "leader"]


async def server_api(node: UpProcess, method: str, body: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=node.http_url, timeout=5) as http:
        response = await http.post(
            f"/api/server/{method}", json=body, headers={"X-API-Key": API_KEY}
        )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


async def node_names(node: UpProcess) -> set[str]:
    return {str(n["name"]) for n in (await server_api(node, "info", {}))["nodes"]}


async def within(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Poll an async check until it is true; the seconds that took."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < timeout, f"{what} not within {timeout} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


@dataclass
class Received(SubscriptionEventHandler):  # type: ignore[misc]
    names: list[str] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    subscribed: list[SubscribedContext] = field(default_factory=list)

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.names.append(str(ctx.pub.data["row"]["product_name"]))
        self.offsets.append(int(ctx.pub.offset))

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.subscribed.append(ctx)


async def subscribe(node: UpProcess, sub: str, channel: str, events: Any = None) -> Client:
    client = Client(node.ws_url, token=token(sub), max_reconnect_delay=0.5)
    subscription = client.new_subscription(channel, events=events)
    await client.connect()
    await subscription.subscribe()
    await subscription.ready(timeout=10)
    return client


async def write_all(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for start in range(0, TOTAL, PER_TXN):
            await conn.execute(
                "INSERT INTO orders (customer_name, product_name)"
                " SELECT 'n', lpad(n::text, 6, '0') FROM generate_series(%s::int, %s::int) n",
                (start, start + PER_TXN - 1),
            )
            await conn.commit()


@pytest.mark.slow
async def test_kill_9_of_the_capture_leader_among_three_nodes(
    cluster: Cluster, schema_url: str
) -> None:
    clients: list[Client] = []
    writer: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(58), httpx.AsyncClient() as http:
            everyone = list(cluster.nodes.values())
            # Capture runs on exactly one node; the others stand by (and are ready).
            await within(
                lambda: _one_leader(http, everyone), 10, "exactly one leader among three nodes"
            )
            (leader_name,) = await leaders(http, everyone)
            bodies = [await readyz(http, node) for node in everyone]
            assert sorted(b["capture"] for b in bodies) == ["leader", "standby", "standby"]
            leader = cluster.nodes[leader_name]
            survivors = {n: p for n, p in cluster.nodes.items() if n != leader_name}
            first, second = survivors.values()

            received = {name: Received() for name in survivors}
            for name, node in survivors.items():
                clients.append(await subscribe(node, "1", "orders", received[name]))
            # A user on the doomed node in a presence channel, watched from a survivor.
            clients.append(await subscribe(leader, "66", "lobby:hall"))
            clients.append(await subscribe(first, "77", "lobby:hall"))
            both = {"num_clients": 2, "num_users": 2}

            async def both_present() -> bool:
                return await server_api(second, "presence_stats", {"channel": "lobby:hall"}) == both

            await within(both_present, 5, "presence across nodes")
            await within(
                lambda: _names_are(second, set(NAMES)), 2 * NODE_TTL_S, "three nodes in info"
            )

            writer = asyncio.create_task(write_all(schema_url))
            some = next(iter(received.values()))
            await until(lambda: len(some.names) >= TOTAL // 4, 30, "nothing arrived")
            assert leader.proc is not None
            leader.proc.kill()  # SIGKILL: capture had not acknowledged its last batches
            leader.proc.wait()
            killed_at = time.monotonic()
            assert len(some.names) < TOTAL, "the kill must come in the middle"

            async def survivor_leads() -> bool:
                return len(await leaders(http, list(survivors.values()))) == 1

            async def ghost_left() -> bool:
                stats = await server_api(second, "presence_stats", {"channel": "lobby:hall"})
                return stats == {"num_clients": 1, "num_users": 1}

            takeover, presence_gone, info_gone = await asyncio.gather(
                within(survivor_leads, TAKEOVER_WITHIN_S, "a survivor leading capture"),
                within(ghost_left, PRESENCE_TTL_S + 3, "the dead node's user leaving"),
                within(
                    lambda: _names_are(first, set(survivors)), NODE_TTL_S + 3, "dead node in info"
                ),
            )
            assert len(await leaders(http, list(survivors.values()))) == 1

            await asyncio.wait_for(writer, 40)
            await until(
                lambda: all(len(r.names) >= TOTAL for r in received.values()),
                30,
                "not every row arrived",
            )
            await asyncio.sleep(0.5)  # anything more would be a duplicate
            print(
                f"takeover {takeover:.2f} s, presence {presence_gone:.2f} s,"
                f" info {info_gone:.2f} s, all rows {time.monotonic() - killed_at:.2f} s"
            )
    finally:
        if writer is not None:
            writer.cancel()
        for client in clients:
            await client.disconnect()

    for name, r in received.items():
        assert r.names == [f"{n:06d}" for n in range(TOTAL)], f"{name}: lost, repeated, reordered"
        assert r.offsets == list(range(1, TOTAL + 1)), name
        assert len(r.subscribed) == 1, f"{name}: subscribers on survivors never resubscribe"


async def _one_leader(http: httpx.AsyncClient, nodes: list[UpProcess]) -> bool:
    return len(await leaders(http, nodes)) == 1


async def _names_are(node: UpProcess, names: set[str]) -> bool:
    return await node_names(node) == names


@pytest.mark.slow
async def test_a_hung_capture_leader_loses_its_lease_and_a_standby_takes_over(
    cluster: Cluster, schema_url: str
) -> None:
    """SIGSTOP of the leader (a hung process, or a machine gone without closing its
    connections): its lock session ends after LEADER_LEASE_S without a renewal, its walsender
    after wal_sender_timeout, and a standby leads and streams every row written meanwhile."""
    clients: list[Client] = []
    stopped: UpProcess | None = None
    try:
        async with asyncio.timeout(58), httpx.AsyncClient() as http:
            everyone = list(cluster.nodes.values())
            await within(lambda: _one_leader(http, everyone), 10, "exactly one leader")
            (leader_name,) = await leaders(http, everyone)
            survivors = [p for n, p in cluster.nodes.items() if n != leader_name]
            received = Received()
            clients.append(await subscribe(survivors[0], "1", "orders", received))
            stopped = cluster.nodes[leader_name]
            assert stopped.proc is not None
            stopped.proc.send_signal(signal.SIGSTOP)
            hung_at = time.monotonic()
            async with await psycopg.AsyncConnection.connect(schema_url) as conn:
                for n in range(20):
                    await conn.execute(
                        "INSERT INTO orders (customer_name, product_name) VALUES ('h', %s)",
                        (f"hung{n:02d}",),
                    )
                    await conn.commit()
            await within(
                lambda: _one_leader(http, survivors), LEADER_LEASE_S + 10, "a standby leading"
            )
            took_over = time.monotonic() - hung_at
            await until(lambda: len(received.names) >= 20, 40, "rows after the hang")
            assert received.names == [f"hung{n:02d}" for n in range(20)]
            assert took_over < LEADER_LEASE_S + 10, f"took over after {took_over:.1f} s"
    finally:
        if stopped is not None and stopped.proc is not None:
            stopped.proc.send_signal(signal.SIGCONT)
        for client in clients:
            await client.disconnect()
