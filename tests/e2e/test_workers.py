"""`syncline up --workers 2` as a real process (embedded PostgreSQL, private redis-server): the
two workers share the ports, and a client sees the same Syncline whichever worker the kernel
gave it; kill -9 of a worker is invisible to its clients beyond a reconnect (issue 14)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
import websockets
from centrifuge import Client, PublicationContext, SubscribedContext, SubscriptionEventHandler
from websockets.exceptions import ConnectionClosed

from helpers.accounts import bearer, login_user, register_user
from helpers.up_process import UpProcess, pid_alive

NODE = "up"
W1, W2 = f"{NODE}-w1", f"{NODE}-w2"
SHUTDOWN_TIMEOUT = 5.0
HISTORY = {"history_size": 20_000, "history_ttl": 3600, "recover": True, "allow_history": True}
# Workers: a parent, its embedded PostgreSQL and redis-server, two workers; on a small machine
# starting them all takes a while.
READY_WITHIN_S = 45.0


def workers_up(**env: str) -> UpProcess:
    return UpProcess(
        args=("--workers", "2"),
        SYNCLINE_NODE_NAME=NODE,
        SYNCLINE_SHUTDOWN_TIMEOUT=str(SHUTDOWN_TIMEOUT),
        SYNCLINE_RATE_LIMIT_REGISTER_IP="",
        SYNCLINE_RATE_LIMIT_LOGIN_IP="",
        SYNCLINE_RATE_LIMIT_LOGIN_ACCOUNT="",
        **env,
    )


async def until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


class Raw:
    """A raw Centrifuge JSON client that keeps every push, on the worker its upgrade named."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        assert ws.response is not None
        self.node = ws.response.headers["X-Syncline-Node"]
        self.pushes: list[dict[str, Any]] = []
        self.replies: dict[int, dict[str, Any]] = {}
        self._next = 0
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                for line in str(frame).split("\n"):
                    message = json.loads(line)
                    if "id" in message:
                        self.replies[message["id"]] = message
                    elif "push" in message:
                        self.pushes.append(message["push"])
        except ConnectionClosed:
            pass

    async def command(self, body: dict[str, Any]) -> dict[str, Any]:
        self._next += 1
        command_id = self._next
        await self.ws.send(json.dumps({"id": command_id, **body}))
        await until(lambda: command_id in self.replies or self._reader.done(), "no reply")
        return self.replies.get(command_id, {})

    def closed(self) -> bool:
        return self.ws.close_code is not None

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


async def node_of_new_connection(up: UpProcess) -> tuple[websockets.ClientConnection, str]:
    ws = await websockets.connect(up.ws_url, open_timeout=5)
    assert ws.response is not None
    return ws, ws.response.headers["X-Syncline-Node"]


async def connect_on(up: UpProcess, node: str, token: str, attempts: int = 60) -> Raw:
    """A connected client on the worker named `node`: new connections until the kernel puts
    one there (it spreads them by their address and port)."""
    for _ in range(attempts):
        ws, name = await node_of_new_connection(up)
        if name == node:
            raw = Raw(ws)
            reply = await raw.command({"connect": {"token": token}})
            assert "connect" in reply, reply
            return raw
        await ws.close()
    raise AssertionError(f"no connection reached {node} in {attempts} attempts")


async def readyz(up: UpProcess) -> tuple[int, dict[str, Any]]:
    """/readyz on a new connection (keep-alive would stick to one worker)."""
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(f"{up.http_url}/readyz")
    body: dict[str, Any] = response.json()
    return response.status_code, body


async def capture_leader(up: UpProcess, timeout: float = 15.0) -> str:
    """The worker that says it leads capture (asking new connections until one lands there)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = await readyz(up)
        if status == 200 and body.get("capture") == "leader":
            return str(body["node"])
        await asyncio.sleep(0.05)
    raise AssertionError("no worker leads capture")


async def insert_orders(url: str, names: list[str]) -> None:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for name in names:
            await conn.execute(
                "INSERT INTO orders (customer_name, product_name) VALUES ('w', %s)", (name,)
            )
        await conn.commit()


async def server_api(up: UpProcess, method: str, body: dict[str, Any]) -> dict[str, Any]:
    key = (up.data_dir / "api.key").read_text().strip()
    async with httpx.AsyncClient(base_url=up.http_url, timeout=10) as http:
        response = await http.post(f"/api/server/{method}", json=body, headers={"X-API-Key": key})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


async def global_room(up: UpProcess, pair: dict[str, Any]) -> int:
    async with httpx.AsyncClient(base_url=up.http_url, timeout=10) as http:
        rooms = (await http.get("/api/rooms", headers=bearer(pair))).json()
    return int(next(r["id"] for r in rooms if r["kind"] == "global"))


def pub_names(raw: Raw, channel: str) -> list[str]:
    return [
        str(p["pub"]["data"]["row"]["product_name"])
        for p in raw.pushes
        if p.get("channel") == channel and "pub" in p
    ]


async def test_two_workers_serve_one_syncline_on_the_same_ports() -> None:
    up = workers_up(SYNCLINE_LOG_LEVEL="warning")
    clients: list[Raw] = []
    try:
        async with asyncio.timeout(55):
            up.start()
            await up.wait_ready(READY_WITHIN_S)
            # Both workers accept on the WebSocket port: new connections reach each of them.
            # /readyz answered for one worker: the other may still be starting (a loaded
            # machine), so keep connecting for a while rather than a fixed number of times.
            seen: set[str] = set()
            deadline = time.monotonic() + 30
            while seen != {W1, W2} and time.monotonic() < deadline:
                ws, name = await node_of_new_connection(up)
                await ws.close()
                seen.add(name)
                await asyncio.sleep(0.05)
            assert seen == {W1, W2}
            assert len(up.worker_pids()) == 2
            assert len(up.redis_pids()) == 1, "no private redis-server"

            ann = await register_user(up.http_url, f"ann{secrets.token_hex(3)}")
            ben = await register_user(up.http_url, f"ben{secrets.token_hex(3)}")
            room = f"room:{await global_room(up, ann)}"
            on_w1 = await connect_on(up, W1, ann["access_token"])
            on_w2 = await connect_on(up, W2, ben["access_token"])
            clients += [on_w1, on_w2]

            # Rows committed through SQL reach the client on w1, whichever worker captures.
            assert "subscribe" in await on_w1.command({"subscribe": {"channel": "orders"}})
            await insert_orders(up.database_url, ["a1", "a2", "a3"])
            await until(lambda: pub_names(on_w1, "orders") == ["a1", "a2", "a3"], "no rows on w1")

            # Ben, connected to w2, is present in the room as w1 sees it, and online.
            assert "subscribe" in await on_w1.command({"subscribe": {"channel": room}})
            assert "subscribe" in await on_w2.command({"subscribe": {"channel": room}})
            stats: dict[str, Any] = {}

            async def both_present() -> bool:
                nonlocal stats
                stats = await on_w1.command({"presence_stats": {"channel": room}})
                return stats.get("presence_stats") == {"num_clients": 2, "num_users": 2}

            deadline = time.monotonic() + 10
            while not await both_present():
                assert time.monotonic() < deadline, stats
                await asyncio.sleep(0.05)
            present = (await on_w1.command({"presence": {"channel": room}}))["presence"]
            users = {c["user"] for c in present["presence"].values()}
            assert users == {str(ann["user"]["id"]), str(ben["user"]["id"])}
            assert await server_api(up, "presence_stats", {"channel": room}) == {
                "num_clients": 2,
                "num_users": 2,
            }
            async with httpx.AsyncClient(base_url=up.http_url, timeout=10) as http:
                profile = await http.get(f"/api/users/{ben['user']['id']}", headers=bearer(ann))
            assert profile.json()["online"] is True

            # A second session of Ben's, connected to both workers: signing it out through
            # REST (whichever worker answers) closes both sockets, so one closed across
            # workers; his first session, on w2, stays.
            second = await login_user(up.http_url, ben["user"]["username"])
            revoked = [
                await connect_on(up, W1, second["access_token"]),
                await connect_on(up, W2, second["access_token"]),
            ]
            clients += revoked
            async with httpx.AsyncClient(base_url=up.http_url, timeout=10) as http:
                out = await http.post("/api/auth/logout", headers=bearer(second))
            assert out.status_code == 204
            for raw in revoked:
                await until(raw.closed, f"the revoked session stayed open on {raw.node}")
                assert (raw.ws.close_code, raw.ws.close_reason) == (3500, "session revoked")
            await asyncio.sleep(0.3)
            assert not on_w2.closed(), "the revocation closed another session"
            assert "presence_stats" in await on_w2.command({"presence_stats": {"channel": room}})
    finally:
        for raw in clients:
            await raw.close()
        up.close()


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


@dataclass
class Subscriber:
    client: Client
    received: Received
    node: str


def sdk_node(client: Client) -> str:
    """The worker of the SDK client's current connection (the SDK exposes no headers)."""
    conn = client._conn
    assert conn is not None and conn.response is not None
    return str(conn.response.headers["X-Syncline-Node"])


async def sdk_subscriber(up: UpProcess, token: str) -> Subscriber:
    client = Client(up.ws_url, token=token, max_reconnect_delay=0.3)
    received = Received()
    sub = client.new_subscription("orders", events=received)
    await client.connect()
    await client.ready(timeout=10)
    await sub.subscribe()
    await sub.ready(timeout=10)
    return Subscriber(client, received, sdk_node(client))


TOTAL, PER_TXN = 3_000, 50


async def write_slowly(url: str) -> None:
    """TOTAL rows, PER_TXN a transaction, paced so that the kill lands in the middle."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for start in range(0, TOTAL, PER_TXN):
            await conn.execute(
                "INSERT INTO orders (customer_name, product_name)"
                " SELECT 'w', lpad(n::text, 6, '0') FROM generate_series(%s::int, %s::int) n",
                (start, start + PER_TXN - 1),
            )
            await conn.commit()
            await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_kill_9_of_a_worker_its_clients_recover_on_the_other_and_it_restarts() -> None:
    up = workers_up(
        SYNCLINE_LOG_LEVEL="info",  # the parent logs each worker's pid at info
        SYNCLINE_NAMESPACES=json.dumps({"default": HISTORY}),
    )
    subscribers: list[Subscriber] = []
    writer: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(58):
            up.start()
            await up.wait_ready(READY_WITHIN_S)
            # Kill the worker that leads capture: its clients and capture both move over.
            victim = await capture_leader(up)
            survivor = W2 if victim == W1 else W1
            pids = up.worker_pids_by_name(NODE)
            assert set(pids) == {W1, W2}, pids
            token = up.token("1")
            for _ in range(40):
                subscribers.append(await sdk_subscriber(up, token))
                on = [s.node for s in subscribers]
                if on.count(victim) >= 2 and on.count(survivor) >= 1:
                    break
            on_victim = [s for s in subscribers if s.node == victim]
            assert len(on_victim) >= 2

            writer = asyncio.create_task(write_slowly(up.database_url))
            first = subscribers[0].received
            await until(lambda: len(first.names) >= TOTAL // 4, "no rows arrive", 20)
            os.kill(pids[victim], signal.SIGKILL)
            killed_at = time.monotonic()
            assert len(first.names) < TOTAL, "the kill must come in the middle"

            # Its clients reconnect at once, to the other worker: the same port.
            await until(
                lambda: all(
                    s.client._conn is not None and sdk_node(s.client) == survivor for s in on_victim
                ),
                "the killed worker's clients did not move",
                10,
            )
            # The survivor took capture over (it asks for the lock every second).
            assert await capture_leader(up, timeout=5) == survivor
            await asyncio.wait_for(writer, 40)
            await until(
                lambda: all(len(s.received.names) >= TOTAL for s in subscribers), "rows missing", 20
            )
            await asyncio.sleep(0.5)  # anything more would be a duplicate

            # The parent started the dead worker again: a third worker pid, both names again.
            restarted: dict[str, int] = {}

            def new_pid() -> bool:
                nonlocal restarted
                restarted = up.worker_pids_by_name(NODE)
                return restarted.get(victim, pids[victim]) != pids[victim]

            await until(new_pid, "the dead worker was not restarted", 15)
            assert len({*pids.values(), *restarted.values()}) == 3
            assert sorted(up.worker_pids()) == sorted(restarted.values())
            seen: set[str] = set()
            deadline = time.monotonic() + 20
            while seen != {W1, W2}:
                assert time.monotonic() < deadline, f"only {seen} accept after the restart"
                try:
                    ws, name = await node_of_new_connection(up)
                    await ws.close()
                    seen.add(name)
                except (OSError, websockets.InvalidHandshake):
                    await asyncio.sleep(0.05)
            assert (await readyz(up))[0] == 200
            restart_took = time.monotonic() - killed_at

            # SIGTERM stops everything within shutdown_timeout, leaving nothing behind.
            for s in subscribers:
                await s.client.disconnect()
            servers = [*up.worker_pids(), *up.redis_pids()]
            assert len(servers) == 3
            children = up.children()
            code, took = await up.terminate(timeout=SHUTDOWN_TIMEOUT + 5)
            assert code == 0, up.log()[-2000:]
            assert took < SHUTDOWN_TIMEOUT, f"SIGTERM took {took:.1f} s"
            assert [pid for pid in servers if pid_alive(pid)] == [], "workers or redis left"
            # multiprocessing's resource tracker (from the migrations' child) exits when it
            # reads the end of its pipe: just after the parent.
            await until(
                lambda: not any(pid_alive(pid) for pid in children), "a child outlived up", 3
            )
            assert up.postgres_pids() == []
    finally:
        if writer is not None:
            writer.cancel()
        for s in subscribers:
            await s.client.disconnect()
        up.close()

    for s in subscribers:
        assert s.received.names == [f"{n:06d}" for n in range(TOTAL)], f"{s.node}: lost or dup"
        assert s.received.offsets == list(range(1, TOTAL + 1))
    for s in on_victim:
        assert len(s.received.subscribed) >= 2, "never resubscribed"
        resumed = s.received.subscribed[-1]
        assert resumed.was_recovering and resumed.recovered, "not recovered"
    assert restart_took < 20


async def test_sigterm_with_a_hung_worker_stops_everything_within_shutdown_timeout() -> None:
    """A worker that does not stop (SIGSTOPped) is killed in time for the parent to stop its
    redis-server and embedded PostgreSQL and exit, all within shutdown_timeout."""
    up = workers_up(SYNCLINE_LOG_LEVEL="warning")
    hung: int | None = None
    try:
        async with asyncio.timeout(55):
            up.start()
            await up.wait_ready(READY_WITHIN_S)
            await until(lambda: len(up.worker_pids()) == 2, "two workers", 10)
            seen: set[str] = set()
            while seen != {W1, W2}:  # both serve: the stop finds them running
                ws, name = await node_of_new_connection(up)
                await ws.close()
                seen.add(name)
            hung = up.worker_pids()[0]
            os.kill(hung, signal.SIGSTOP)
            servers = [*up.worker_pids(), *up.redis_pids()]
            code, took = await up.terminate(timeout=SHUTDOWN_TIMEOUT + 10)
            assert code == 0, up.log()[-2000:]
            assert took < SHUTDOWN_TIMEOUT, f"SIGTERM took {took:.2f} s"
            print(f"SIGTERM with a hung worker: {took:.2f} s")
            assert "worker did not stop in time; killing it" in up.log()
            assert [pid for pid in servers if pid_alive(pid)] == []
            assert up.postgres_pids() == []
    finally:
        if hung is not None and pid_alive(hung):
            os.kill(hung, signal.SIGKILL)
        up.close()
