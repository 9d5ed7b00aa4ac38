"""`syncline sync add` against a running Syncline, while rows are being written: the rule is in
force from the commit position the command prints, with no restart, and no row committed
after it is lost (logical and trigger capture)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner, Result

from syncline.cli import app
from syncline.client import Publication, SynclineClient
from syncline.core.changes import CommitPosition

from helpers.chat import make_account
from helpers.live_server import TEST_SECRET, LiveServer, start_live_server, stop_live_server

WRITE_EVERY_S = 0.005
POSITION = re.compile(r"in force from commit position (\d+:\d+)")


@pytest.fixture(params=["logical", "trigger"])
async def server(request: pytest.FixtureRequest, schema_url: str) -> AsyncIterator[LiveServer]:
    with psycopg.connect(schema_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS products")
        conn.execute("CREATE TABLE products (id serial PRIMARY KEY, name text NOT NULL)")
    live = await start_live_server(schema_url, capture=request.param)
    try:
        yield live
    finally:
        await stop_live_server(live)


def sync_add(server: LiveServer) -> Result:
    settings = server.runtime.settings
    env = {
        "DATABASE_URL": server.database_url,
        "SYNCLINE_JWT_SECRET": TEST_SECRET,
        "SYNCLINE_CAPTURE": settings.capture,
        "SYNCLINE_PUBLICATION_NAME": settings.publication_name,
    }
    args = ["sync", "add", "products", "--channel", "products", "--columns", "id,name"]
    return CliRunner().invoke(app, args, env=env)


async def test_a_rule_added_while_running_loses_no_commit(
    server: LiveServer, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.chdir(tmp_path)
    ann = await make_account(server.database_url, "ann")
    client = SynclineClient(server.ws_url, token=ann.token, timeout=5.0)
    phase = "before"
    written: dict[str, list[int]] = {"before": [], "during": [], "after": []}
    stop = asyncio.Event()

    async def write() -> None:
        async with await psycopg.AsyncConnection.connect(
            server.database_url, autocommit=True
        ) as conn:
            while not stop.is_set():
                cur = await conn.execute("INSERT INTO products (name) VALUES ('lamp') RETURNING id")
                row = await cur.fetchone()
                assert row is not None
                written[phase].append(row[0])
                await asyncio.sleep(WRITE_EVERY_S)

    try:
        await client.connect()
        events = (await client.subscribe("products")).events()
        writer = asyncio.create_task(write())
        await asyncio.sleep(0.3)
        phase = "during"
        # A thread of its own: the server runs in this event loop.
        result = await asyncio.to_thread(sync_add, server)
        phase = "after"
        await asyncio.sleep(0.3)
        stop.set()
        await writer
        assert result.exit_code == 0, result.output
        found = POSITION.search(result.output)
        assert found is not None, result.output
        applied = CommitPosition.parse(found[1])

        published: list[int] = []
        positions: list[CommitPosition] = []
        last = written["after"][-1]
        while last not in published:
            event = await asyncio.wait_for(anext(events), 10)
            if isinstance(event, Publication) and event.data.get("table") == "products":
                published.append(event.data["row"]["id"])
                positions.append(CommitPosition.parse(event.data["lsn"]))
    finally:
        stop.set()
        await client.close()
    assert written["before"] and written["during"] and written["after"]
    assert len(published) == len(set(published))  # exactly once
    assert not set(published) & set(written["before"])
    assert set(written["after"]) <= set(published)
    # Every row the rule published committed after the rule: the position says where.
    assert min(positions) > applied
    # Rows written while the command ran: published exactly when they committed after it.
    assert set(published) <= set(written["during"]) | set(written["after"])
