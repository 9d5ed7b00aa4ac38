"""Syncline's own browser client (src/syncline/web/syncline-client.js) against a real server.

Node runs tests/js/client_driver.mjs, which drives the client from JSON commands on stdin and
prints its events as JSON lines. Node and `ws` (npm install in tests/js) are required: without
them these tests fail rather than skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from syncline.gateway.rpc import RpcContext

from helpers.live_server import LiveServer

JS_DIR = Path(__file__).resolve().parent.parent / "js"
DRIVER = JS_DIR / "client_driver.mjs"
WAIT = 10.0  # seconds for any single expected event

Event = dict[str, Any]


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node (>= 20) is not installed: it runs the JS client tests")
    if not (JS_DIR / "node_modules" / "ws" / "package.json").is_file():
        pytest.fail("tests/js/node_modules/ws is missing: run `npm install` in tests/js")
    return node


class Driver:
    """One `node client_driver.mjs`: JSON commands to its stdin, JSON events from its stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[Event] = []
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._stderr: list[str] = []
        self._readers = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        ]

    async def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        try:
            while line := await self.proc.stdout.readline():
                try:
                    event = json.loads(line)
                except ValueError:
                    self._stderr.append(f"(stdout, not JSON) {line!r}")
                    continue
                self.events.append(event)
                await self._queue.put(event)
        finally:
            await self._queue.put(None)

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self._stderr.append(line.decode(errors="replace").rstrip())

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e["event"] == name]

    async def expect(self, name: str, timeout: float = WAIT, **fields: Any) -> Event:
        """The next event (after those already returned) named `name` with these fields."""
        try:
            async with asyncio.timeout(timeout):
                while (event := await self._queue.get()) is not None:
                    if event["event"] == name and all(event.get(k) == v for k, v in fields.items()):
                        return event
        except TimeoutError:
            pass
        raise AssertionError(
            f"no {name} {fields} within {timeout} s (node exit: {self.proc.returncode})\n"
            f"events: {self.events}\nstderr: {self._stderr}"
        )

    async def send(self, cmd: str, **fields: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}).encode() + b"\n")
        await asyncio.wait_for(self.proc.stdin.drain(), WAIT)

    async def close(self) -> None:
        """Ask the driver to quit; kill it if it does not; reap it and its pipes."""
        stdin = self.proc.stdin
        if stdin is not None and not stdin.is_closing():
            with contextlib.suppress(ConnectionError):
                stdin.write(b'{"cmd": "quit"}\n')
                stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), 5)
        finally:
            _, pending = await asyncio.wait(self._readers, timeout=5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._readers, return_exceptions=True)
            if stdin is not None:
                with contextlib.suppress(ConnectionError):
                    await stdin.wait_closed()


@contextlib.asynccontextmanager
async def js_client(server: LiveServer, token: str) -> AsyncIterator[Driver]:
    node = node_binary()
    proc = await asyncio.create_subprocess_exec(
        node,
        str(DRIVER),
        cwd=JS_DIR,
        env={**os.environ, "URL": server.ws_url, "TOKEN": token},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    driver = Driver(proc)
    try:
        await driver.expect("ready")
        yield driver
    finally:
        try:
            await driver.close()
        finally:
            if proc.returncode is None:  # close() itself failed: never leave it running
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


async def insert_order(server: LiveServer, product: str) -> None:
    await server.sql(
        "INSERT INTO orders (customer_name, product_name) VALUES ('a', %s)", (product,)
    )


def close_all(server: LiveServer, code: int) -> int:
    gateway = server.runtime.gateway
    assert gateway is not None
    connections = list(gateway.connections)
    for conn in connections:
        conn.close(code)
    return len(connections)


def states(driver: Driver) -> list[str]:
    return [e["state"] for e in driver.named("state")]


async def test_a_row_inserted_by_sql_reaches_a_subscriber(live_server: LiveServer) -> None:
    async with js_client(live_server, live_server.token("1")) as client:
        await client.send("connect")
        await client.send("subscribe", channel="orders")
        await client.expect("state", state="connected")
        subscribed = await client.expect("subscribed", channel="orders")
        assert subscribed["recoverable"] is True
        assert subscribed["wasRecovering"] is False
        await insert_order(live_server, "tea")
        pub = await client.expect("publication", channel="orders")
        assert pub["data"]["op"] == "insert"
        assert pub["data"]["row"]["product_name"] == "tea"
        assert pub["offset"] == 1


async def test_a_forced_reconnect_recovers_exactly_the_missed_rows(
    live_server: LiveServer,
) -> None:
    async with js_client(live_server, live_server.token("1")) as client:
        await client.send("connect")
        await client.send("subscribe", channel="orders")
        await client.expect("subscribed", channel="orders")
        await insert_order(live_server, "p0")
        assert (await client.expect("publication"))["offset"] == 1

        assert close_all(live_server, 3011) == 1  # force reconnect
        for n in range(1, 21):
            await insert_order(live_server, f"p{n}")
        again = await client.expect("subscribed", channel="orders")
        assert again["wasRecovering"] is True
        assert again["recovered"] is True
        rows = [await client.expect("publication") for _ in range(20)]
        assert [p["data"]["row"]["product_name"] for p in rows] == [f"p{n}" for n in range(1, 21)]
        assert [p["offset"] for p in rows] == list(range(2, 22))
        await asyncio.sleep(0.3)  # nothing duplicated after them
        assert len(client.named("publication")) == 21
        assert states(client) == ["connecting", "connected", "connecting", "connected"]
        assert client.named("state")[2]["code"] == 3011


async def test_rpc_round_trip_and_unknown_method(live_server: LiveServer) -> None:
    async def echo(ctx: RpcContext, data: Any) -> Any:
        return {"user": ctx.user, "echo": data}

    live_server.runtime.rpc.register("echo", echo)
    async with js_client(live_server, live_server.token("7")) as client:
        await client.send("connect")
        await client.send("rpc", ref=1, method="echo", data={"x": 1})
        result = await client.expect("rpc_result", ref=1)
        assert result["data"] == {"user": "7", "echo": {"x": 1}}
        await client.send("rpc", ref=2, method="nope", data=None)
        refused = await client.expect("rpc_error", ref=2)
        assert refused["code"] == 108
        assert refused["message"]
        await client.send("rpc", ref=3, method="echo", data="again")  # still usable
        assert (await client.expect("rpc_result", ref=3))["data"]["echo"] == "again"


async def test_a_terminal_close_stops_the_client(live_server: LiveServer) -> None:
    async with js_client(live_server, live_server.token("1")) as client:
        await client.send("connect")
        await client.expect("state", state="connected")
        assert close_all(live_server, 3503) == 1  # force disconnect
        disconnected = await client.expect("state", state="disconnected")
        assert disconnected["code"] == 3503
        await asyncio.sleep(0.6)  # several reconnect delays: it stays down
        assert states(client) == ["connecting", "connected", "disconnected"]
        gateway = live_server.runtime.gateway
        assert gateway is not None
        assert not gateway.connections


async def test_an_expired_token_at_connect_is_replaced_via_get_token(
    live_server: LiveServer,
) -> None:
    async with js_client(live_server, live_server.token("4", ttl=-10)) as client:
        await client.send("connect")
        refused = await client.expect("error", type="connect")
        assert refused["code"] == 109
        await client.expect("get_token")
        await client.send("token", token=live_server.token("4"))
        await client.expect("state", state="connected")
        assert "disconnected" not in states(client)
