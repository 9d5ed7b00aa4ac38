"""A subscribe asked in the moment a new membership is committed but not yet visible (capture has
its row, the member's client acted on it at once) is let in, not refused: against a real
PostgreSQL whose commit is held in that moment, a live server and the official Python SDK."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from centrifuge import Client

from syncline.db import migrate
from syncline.db.embedded import EmbeddedPostgres
from syncline.gateway.visibility import CommitSettler

from helpers.held_commits import hold_commit, hold_standby, release_standby
from helpers.live_server import LiveServer, start_live_server, stop_live_server


@pytest.fixture(scope="module")
def held_url() -> Iterator[str]:
    """A server of its own, migrated, where a commit can be held between the WAL and visibility:
    commits wait for a synchronous standby that never comes, except those of sessions with
    synchronous_commit = local (everyone's, by PGOPTIONS, but the writer's)."""
    base = Path(tempfile.mkdtemp(prefix="syncline-test-pg-"))
    server = EmbeddedPostgres(base / "data")
    info = server.start()
    try:
        url = info.url()
        migrate.upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO users (id, username, email, password_hash)"
                " VALUES (1, 'ann', 'ann@example.test', 'x')"
            )
            conn.execute(
                "INSERT INTO rooms (id, kind, name) VALUES (4, 'group', 'a'), (5, 'group', 'b')"
            )
        yield url
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
async def server(held_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LiveServer]:
    monkeypatch.setenv("PGOPTIONS", "-c synchronous_commit=local")
    live = await start_live_server(held_url)
    try:
        yield live
    finally:
        await stop_live_server(live)


async def test_a_membership_committed_a_moment_ago_lets_the_subscribe_in(
    server: LiveServer, held_url: str
) -> None:
    gateway = server.runtime.gateway
    assert gateway is not None and gateway.pool is not None
    # The moment is held for as long as the test needs, not the production bound.
    gateway.settler = CommitSettler(gateway.pool, within=10)
    async with await psycopg.AsyncConnection.connect(held_url, autocommit=True) as admin:
        await hold_standby(admin)
        held = await hold_commit(
            held_url, "INSERT INTO room_members (room_id, user_id) VALUES (4, 1)"
        )
        client = Client(server.ws_url, token=server.token("1"))
        try:
            await client.connect()
            sub = client.new_subscription("room:4")
            subscribing = asyncio.ensure_future(sub.subscribe())
            await asyncio.sleep(0.5)
            assert sub.state.value == "subscribing"  # the check waits for the commit
            await held.release(admin)
            await asyncio.wait_for(subscribing, 10)
            for _ in range(100):
                if sub.state.value == "subscribed":
                    break
                await asyncio.sleep(0.05)
            assert sub.state.value == "subscribed"
            # Someone who is not a member is still refused, after the bounded wait.
            stranger = client.new_subscription("room:5")
            await stranger.subscribe()
            for _ in range(300):
                if stranger.state.value == "unsubscribed":
                    break
                await asyncio.sleep(0.05)
            assert stranger.state.value == "unsubscribed"
        finally:
            await client.disconnect()
            await held.release(admin)
            await release_standby(admin)
