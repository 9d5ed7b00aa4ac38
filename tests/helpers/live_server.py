"""A whole Syncline running inside the test's event loop, and what tests do with it."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import jwt
import psycopg
import pytest

from syncline.runtime import Endpoints, Runtime
from syncline.settings import load_settings

TEST_SECRET = "test-secret-" + "x" * 40
# Tests register and sign in many accounts from 127.0.0.1; the auth tests set limits themselves.
NO_AUTH_RATE_LIMITS = {
    "rate_limit_login_ip": "",
    "rate_limit_login_account": "",
    "rate_limit_register_ip": "",
}


@dataclass
class LiveServer:
    """A whole Syncline (API, capture, gateway) running in the test's event loop."""

    runtime: Runtime
    database_url: str
    http_url: str = ""
    ws_url: str = ""
    task: asyncio.Task[None] | None = None

    def token(self, sub: str | None, *, ttl: float = 3600, **claims: object) -> str:
        """A connection token for ``sub`` (None: a token without the claim)."""
        payload = {"sub": sub, "exp": int(time.time() + ttl), **claims}
        if sub is None:
            del payload["sub"]
        return jwt.encode(payload, self.runtime.jwt_secret, algorithm="HS256")

    async def sql(self, statement: str, params: tuple[object, ...] | None = None) -> None:
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
            await conn.execute(statement, params)
            await conn.commit()


async def start_live_server(
    url: str, *, wait_for_capture: bool = True, **overrides: object
) -> LiveServer:
    """A Syncline on free ports; `wait_for_capture=False` for a node that stands by while
    another one captures (same slot and engine)."""
    slot = f"s_{secrets.token_hex(4)}"
    defaults: dict[str, object] = {
        "jwt_secret": TEST_SECRET,
        "port": 0,
        "gateway_port": 0,
        "slot_name": slot,
        "publication_name": slot,
        "log_level": "warning",
    }
    settings = load_settings(None, **{**defaults, **NO_AUTH_RATE_LIMITS, **overrides})
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else TEST_SECRET
    runtime = Runtime(settings, secret)
    server = LiveServer(runtime, url)
    ready = asyncio.Event()

    def on_ready(endpoints: Endpoints) -> None:
        server.http_url, server.ws_url = endpoints.http_url, endpoints.websocket_url
        ready.set()

    task = asyncio.create_task(runtime.run(url, on_ready=on_ready))
    server.task = task
    done, _ = await asyncio.wait(
        {task, asyncio.create_task(ready.wait())}, return_when=asyncio.FIRST_COMPLETED
    )
    if task in done:
        task.result()
    assert runtime.capture is not None
    if wait_for_capture:
        await asyncio.wait_for(runtime.capture.ready.wait(), 15)
    return server


async def stop_live_server(server: LiveServer) -> None:
    server.runtime.request_stop()
    assert server.task is not None
    await asyncio.wait_for(server.task, 30)
    await drop_slot(server.database_url, server.runtime.settings.slot_name)


async def drop_slot(url: str, slot: str) -> None:
    """Drop a test's replication slot (a real deployment keeps it across restarts).

    Every test makes its own slot; left behind they would exhaust max_replication_slots. The
    walsender of a stopped source may take a moment to let go of it.
    """
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for _ in range(100):
            cur = await conn.execute(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            )
            row = await cur.fetchone()
            if row is None:
                return
            if row[0] is None:
                await conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                return
            await conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
            await asyncio.sleep(0.05)
        raise AssertionError(f"replication slot {slot} stays active")


@contextlib.asynccontextmanager
async def server_on_engine(
    request: pytest.FixtureRequest, url: str, **options: object
) -> AsyncIterator[LiveServer]:
    """A live server on the engine that the fixture's parameter names ("memory" or "redis":
    then the session's redis-server, under a key prefix of its own), stopped at the end."""
    if request.param == "redis":
        redis_url = request.getfixturevalue("redis_url")
        options["engine"] = f"{redis_url}?prefix=t{secrets.token_hex(4)}"
    live = await start_live_server(url, wait_for_capture=True, **options)
    try:
        yield live
    finally:
        await stop_live_server(live)
