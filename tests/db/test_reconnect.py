"""With DATABASE_URL nothing supervises the server: when it comes back after a restart, the pool
and capture reconnect by themselves, and a stop while it is away is still bounded."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from centrifuge import Client, PublicationContext, SubscriptionEventHandler

from syncline.db import migrate
from syncline.db.embedded import EmbeddedPostgres
from syncline.db.pool import CHECKOUT_TIMEOUT_S

from helpers.live_server import LiveServer, start_live_server

SHUTDOWN_TIMEOUT_S = 2.0
READYZ_WITHIN_S = 1.0


class Names(SubscriptionEventHandler):  # type: ignore[misc]
    def __init__(self) -> None:
        self.names: list[str] = []

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.names.append(ctx.pub.data["row"]["product_name"])


async def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


@pytest.fixture
def external() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, standing in for an external server it may stop."""
    base = Path(tempfile.mkdtemp(prefix="syncline-test-external-"))
    server = EmbeddedPostgres(base / "data")
    migrate.upgrade(server.start().url())
    try:
        yield server
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)


async def readyz(live: LiveServer) -> tuple[int, dict[str, str]]:
    async with httpx.AsyncClient() as http:
        started = time.monotonic()
        response = await http.get(f"{live.http_url}/readyz", timeout=10)
        latency = time.monotonic() - started
    assert latency < READYZ_WITHIN_S, f"/readyz took {latency:.3f} s"
    return response.status_code, response.json()["checks"]


async def test_capture_and_readiness_come_back_with_the_database(
    external: EmbeddedPostgres,
) -> None:
    url = external.start().url()
    live = await start_live_server(url, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    assert live.task is not None
    client = Client(live.ws_url, token=live.token("1"))
    seen = Names()
    sub = client.new_subscription("orders", events=seen)
    try:
        await client.connect()
        await sub.subscribe()
        await sub.ready(timeout=10)
        await live.sql("INSERT INTO orders (customer_name, product_name) VALUES ('a', 'before')")
        await eventually(lambda: seen.names == ["before"], 10, "nothing captured")

        # A thread: a fast stop waits for our walsender, which this loop serves.
        await asyncio.to_thread(external.stop)
        status, checks = await readyz(live)
        assert status == 503, checks
        # A request that needs the database is answered 503 with a JSON error and a hint,
        # within the pool's checkout timeout: never a 500, never half a minute.
        async with httpx.AsyncClient(base_url=live.http_url, timeout=30) as http:
            asked = time.monotonic()
            refused = await http.post(
                "/api/auth/login", json={"username": "nobody", "password": "not-the-password-1"}
            )
            waited = time.monotonic() - asked
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "database_unavailable"
        assert int(refused.headers["retry-after"]) >= 1
        assert waited < CHECKOUT_TIMEOUT_S + 3, f"answered after {waited:.1f} s"
        await asyncio.to_thread(external.start)  # the same port: the URL is still right
        deadline = time.monotonic() + 20
        while (answer := await readyz(live))[0] != 200:
            assert time.monotonic() < deadline, f"still not ready: {answer[1]}"
            await asyncio.sleep(0.1)
        await live.sql("INSERT INTO orders (customer_name, product_name) VALUES ('a', 'after')")
        await eventually(lambda: seen.names == ["before", "after"], 10, f"got {seen.names}")

        # Away again, and asked to stop meanwhile, with a client connected (its goodbye writes
        # last-seen to the database that is not there).
        await asyncio.to_thread(external.stop)
        started = time.monotonic()
        live.runtime.request_stop()
        await asyncio.wait_for(live.task, 30)
        took = time.monotonic() - started
        assert took < SHUTDOWN_TIMEOUT_S + 0.5, f"the stop took {took:.1f} s"
    finally:
        await client.disconnect()
        if not live.task.done():
            live.runtime.request_stop()
            await asyncio.wait_for(live.task, 30)
