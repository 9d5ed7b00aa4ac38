"""The official `centrifuge` JS SDK (Node, tests/js/sdk_client.js) against a running Syncline.

The README's test command installs Node and the SDK (npm install in tests/js); without them
these tests fail rather than skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from syncline.gateway.rpc import RpcContext, RpcError

from helpers.live_server import LiveServer

JS_DIR = Path(__file__).resolve().parent.parent / "js"
SCRIPT = JS_DIR / "sdk_client.js"
WAIT = 10.0  # seconds for any single expected event

Event = dict[str, Any]


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: run the README's test command (scripts/test.sh)")
    for package in ("centrifuge", "ws"):
        if not (JS_DIR / "node_modules" / package / "package.json").is_file():
            pytest.fail(
                f"tests/js/node_modules/{package} is missing: run the README's test command"
                " (scripts/test.sh), or `npm install` in tests/js"
            )
    return node


class NodeClient:
    """One `node sdk_client.js` process: JSON events from its stdout, commands to its stdin."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[Event] = []
        self._seen = 0
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

    def describe(self) -> str:
        return f"events: {self.events}\nstderr: {self._stderr}"

    async def expect(self, check: Callable[[Event], bool], timeout: float = WAIT) -> Event:
        """The next event (after those already returned) that passes `check`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"expected event not seen in {timeout} s\n{self.describe()}")
            try:
                event = await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                continue
            if event is None:
                raise AssertionError(f"node exited ({self.proc.returncode})\n{self.describe()}")
            if check(event):
                return event

    async def expect_event(self, name: str, timeout: float = WAIT, **fields: Any) -> Event:
        return await self.expect(
            lambda e: e["event"] == name and all(e.get(k) == v for k, v in fields.items()),
            timeout,
        )

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await asyncio.wait_for(self.proc.stdin.drain(), WAIT)

    async def close(self) -> None:
        """Ask the script to stop; kill it if it does not; reap it and its pipes."""
        stdin = self.proc.stdin
        if stdin is not None and not stdin.is_closing():
            with contextlib.suppress(ConnectionError):
                stdin.write(b"quit\n")
                stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), 5)
        finally:
            # Ends with the pipes (EOF); cancelled on a hung pipe so no task outlives the test.
            _, pending = await asyncio.wait(self._readers, timeout=5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._readers, return_exceptions=True)
            if stdin is not None:
                with contextlib.suppress(ConnectionError):
                    await stdin.wait_closed()


@contextlib.asynccontextmanager
async def node_client(
    server: LiveServer, scenario: str, *, token: str | None = None, **env: Any
) -> AsyncIterator[NodeClient]:
    node = node_binary()
    environment = {**os.environ, "URL": server.ws_url, "TOKEN": token or ""}
    for key, value in env.items():
        environment[key] = value if isinstance(value, str) else json.dumps(value)
    proc = await asyncio.create_subprocess_exec(
        node,
        str(SCRIPT),
        scenario,
        cwd=JS_DIR,
        env=environment,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    client = NodeClient(proc)
    try:
        yield client
    finally:
        try:
            await client.close()
        finally:
            if proc.returncode is None:  # close() itself failed: never leave it running
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


async def insert_order(server: LiveServer, product: str) -> None:
    await server.sql(
        "INSERT INTO orders (customer_name, product_name) VALUES ('a', %s)", (product,)
    )


async def test_changes_committed_with_sql_reach_a_subscriber(live_server: LiveServer) -> None:
    token = live_server.token("1")
    async with node_client(live_server, "subscribe", token=token, CHANNEL="orders") as client:
        await client.expect_event("connected")
        await client.expect_event("subscribed", channel="orders")
        await live_server.sql(
            "INSERT INTO orders (customer_name, product_name) VALUES ('ann', 'tea')"
        )
        pub = await client.expect_event("publication", channel="orders")
        assert pub["data"]["op"] == "insert"
        assert pub["data"]["row"]["product_name"] == "tea"
        assert pub["offset"] == 1


async def test_reconnect_recovers_exactly_the_missed_publications(
    live_server: LiveServer,
) -> None:
    token = live_server.token("1")
    async with node_client(live_server, "subscribe", token=token, CHANNEL="orders") as client:
        first = await client.expect_event("subscribed", channel="orders")
        assert first["recoverable"] is True
        assert first["wasRecovering"] is False
        await insert_order(live_server, "p0")
        pub = await client.expect_event("publication")
        assert (pub["offset"], pub["data"]["row"]["product_name"]) == (1, "p0")

        await client.send("disconnect")
        await client.expect_event("disconnected")
        for n in range(1, 21):
            await insert_order(live_server, f"p{n}")
        await asyncio.sleep(0.3)  # let capture append them while the client is away
        await client.send("connect")
        await client.expect_event("connected")
        again = await client.expect_event("subscribed", channel="orders")
        assert again["wasRecovering"] is True
        assert again["recovered"] is True
        recovered = [await client.expect_event("publication") for _ in range(20)]
        assert [p["data"]["row"]["product_name"] for p in recovered] == [
            f"p{n}" for n in range(1, 21)
        ]
        assert [p["offset"] for p in recovered] == list(range(2, 22))
        assert again["streamPosition"]["offset"] == 21
        await asyncio.sleep(0.2)  # nothing duplicated after the recovered ones
        assert len([e for e in client.events if e["event"] == "publication"]) == 21


async def test_rpc_round_trip_and_unknown_method(live_server: LiveServer) -> None:
    async def echo(ctx: RpcContext, data: Any) -> Any:
        if data == "fail":
            raise RpcError(400, "told to fail")
        return {"user": ctx.user, "echo": data}

    live_server.runtime.rpc.register("echo", echo)
    calls = [
        {"method": "echo", "data": {"x": 1}},
        {"method": "echo", "data": "fail"},
        {"method": "nope", "data": None},
    ]
    token = live_server.token("7")
    async with node_client(live_server, "rpc", token=token, RPC_CALLS=calls) as client:
        await client.expect_event("rpc_done")
        results = [e for e in client.events if e["event"] in ("rpc_result", "rpc_error")]
        assert results[0] == {
            "event": "rpc_result",
            "method": "echo",
            "data": {"user": "7", "echo": {"x": 1}},
        }
        assert (results[1]["event"], results[1]["code"]) == ("rpc_error", 400)
        assert (results[2]["event"], results[2]["method"]) == ("rpc_error", "nope")
        assert results[2]["code"] == 108
        # After an RPC error the connection is still usable.
        await client.send('rpc echo "again"')
        again = await client.expect_event("rpc_result")
        assert again["data"] == {"user": "7", "echo": "again"}


async def test_an_expired_token_at_connect_makes_the_sdk_fetch_a_new_one(
    live_server: LiveServer,
) -> None:
    expired = live_server.token("4", ttl=-10)
    async with node_client(live_server, "refresh", token=expired) as client:
        refused = await client.expect_event("error", type="connect")
        assert refused["code"] == 109  # token expired: the SDK then calls getToken
        await client.expect_event("get_token")
        await client.send(f"token {live_server.token('4')}")
        connected = await client.expect_event("connected")
        assert connected["client"]
        assert not [e for e in client.events if e["event"] == "disconnected"]


async def test_an_expiring_token_is_refreshed(live_server: LiveServer) -> None:
    tokens = [live_server.token("3", ttl=2), live_server.token("3", ttl=3600)]
    async with node_client(live_server, "refresh", TOKENS=tokens, CHANNEL="orders") as client:
        await client.expect_event("connected")
        await client.expect_event("subscribed", channel="orders")
        # The first token lives 2 s: the SDK asks for the next one and sends `refresh`.
        await client.expect_event("get_token", n=2, timeout=5)
        await asyncio.sleep(2)  # past the first token's expiry
        await insert_order(live_server, "y")
        pub = await client.expect_event("publication")
        assert pub["data"]["row"]["product_name"] == "y"
        assert not [e for e in client.events if e["event"] in ("disconnected", "connecting")][1:]


async def test_a_channel_the_user_may_not_see_is_refused(live_server: LiveServer) -> None:
    token = live_server.token("1")
    async with node_client(live_server, "subscribe", token=token, CHANNEL="user:999") as client:
        await client.expect_event("connected")
        unsubscribed = await client.expect_event("unsubscribed", channel="user:999")
        assert unsubscribed["code"] == 103  # permission denied, terminal
        assert not [e for e in client.events if e["event"] == "subscribed"]
        await asyncio.sleep(0.3)  # and the SDK does not retry
        assert not [e for e in client.events if e["event"] in ("subscribing", "subscribed")][1:]
