"""One form for every time a client sees: a timestamptz column reads the same in REST and on
its channel, in logical and trigger capture, whatever the writer's TimeZone; commit_time too."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import psycopg
import pytest

from syncline.client import Publication, SynclineClient

from helpers.chat import expect, global_room_id, make_account, row_event, wait_for
from helpers.live_server import LiveServer, start_live_server, stop_live_server

# RFC 3339 in UTC as PostgreSQL's to_jsonb() writes it.
ONE_FORM = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,5}[1-9])?\+00:00")


@pytest.fixture(params=["logical", "trigger"])
async def server(request: pytest.FixtureRequest, schema_url: str) -> AsyncIterator[LiveServer]:
    live = await start_live_server(schema_url, capture=request.param)
    try:
        yield live
    finally:
        await stop_live_server(live)


async def test_rest_and_channel_times_are_one_form(server: LiveServer) -> None:
    ann = await make_account(server.database_url, "ann")
    client = SynclineClient(server.ws_url, token=ann.token, timeout=5.0)
    try:
        await client.connect()
        events = (await client.subscribe("orders")).events()
        # Written by a session in another zone: its to_jsonb() would say +05:30.
        async with await psycopg.AsyncConnection.connect(server.database_url) as conn:
            await conn.execute("SET TimeZone = 'Asia/Kolkata'")
            cur = await conn.execute(
                "INSERT INTO orders (customer_name, product_name, created_at)"
                " VALUES ('Ada', 'Tea', '2026-11-23 19:04:04.12+00') RETURNING id"
            )
            row = await cur.fetchone()
            await conn.commit()
        assert row is not None
        pub = await wait_for(events, row_event("orders", "insert", id=row[0]))
        assert isinstance(pub, Publication)
        on_channel = pub.data["row"]
        async with httpx.AsyncClient(base_url=server.http_url, headers=ann.headers) as http:
            in_rest = await expect(await http.get(f"/api/orders/{row[0]}"), 200)
        assert on_channel["created_at"] == in_rest["created_at"] == "2026-11-23T19:04:04.12+00:00"
        assert on_channel["updated_at"] == in_rest["updated_at"]
        for text in (in_rest["updated_at"], pub.data["commit_time"]):
            assert ONE_FORM.fullmatch(text), text
    finally:
        await client.close()


async def test_a_message_reads_the_same_in_rest_and_on_its_room(server: LiveServer) -> None:
    ann = await make_account(server.database_url, "ann")
    room = await global_room_id(server.database_url)
    client = SynclineClient(server.ws_url, token=ann.token, timeout=5.0)
    try:
        await client.connect()
        events = (await client.subscribe(f"room:{room}")).events()
        async with httpx.AsyncClient(base_url=server.http_url, headers=ann.headers) as http:
            sent = await expect(
                await http.post(f"/api/rooms/{room}/messages", json={"body": "on time"}), 201
            )
            page = await expect(await http.get(f"/api/rooms/{room}/messages"), 200)
        pub = await wait_for(events, row_event("messages", "insert", id=sent["id"]))
        assert isinstance(pub, Publication)
        [listed] = [m for m in page["messages"] if m["id"] == sent["id"]]
        assert pub.data["row"]["created_at"] == sent["created_at"] == listed["created_at"]
        assert ONE_FORM.fullmatch(sent["created_at"])
    finally:
        await client.close()
