"""Chat and orders test helpers: accounts made with SQL (user, global room, session, token),
and the HTTP API over ASGI against a real pool."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
from psycopg_pool import AsyncConnectionPool

from syncline.api.app import create_app
from syncline.api.context import AppContext
from syncline.apps.auth.tokens import issue_access_token
from syncline.apps.chat.sending import SendBatcher
from syncline.client import Event, Publication
from syncline.settings import load_settings

from helpers.live_server import TEST_SECRET


@dataclass(frozen=True)
class Account:
    """A user with a valid access token (and the session row it names)."""

    id: int
    username: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def make_account(url: str, name: str, *, display_name: str = "") -> Account:
    """A user in the global room with a session, as registration would leave them."""
    username = f"{name}_{secrets.token_hex(3)}"
    session_id = str(uuid.uuid4())
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "INSERT INTO users (username, email, password_hash, display_name)"
            " VALUES (%s, %s, 'x', %s) RETURNING id",
            (username, f"{username}@example.test", display_name),
        )
        row = await cur.fetchone()
        assert row is not None
        user_id = int(row[0])
        await conn.execute(
            "INSERT INTO room_members (room_id, user_id)"
            " SELECT id, %s FROM rooms WHERE kind = 'global'",
            (user_id,),
        )
        await conn.execute(
            "INSERT INTO auth_sessions (id, user_id, expires_at)"
            " VALUES (%s, %s, now() + interval '1 day')",
            (session_id, user_id),
        )
        await conn.commit()
    token = issue_access_token(
        TEST_SECRET,
        user_id=user_id,
        session_id=session_id,
        username=username,
        display_name=display_name or username,
    )
    return Account(user_id, username, token)


async def global_room_id(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT id FROM rooms WHERE kind = 'global'")
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


@asynccontextmanager
async def api_client(url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP API in-process (no gateway, no capture) over a real connection pool."""
    settings = load_settings(None, jwt_secret=TEST_SECRET, log_level="warning")
    pool = AsyncConnectionPool(url, min_size=1, max_size=4, open=False, kwargs={"autocommit": True})
    await pool.open(wait=True)
    # Sends through the group commit, as in the running server.
    sender = SendBatcher(pool)
    try:
        context = AppContext(
            settings=settings, pool=pool, jwt_secret=TEST_SECRET, chat_sender=sender
        )
        transport = httpx.ASGITransport(app=create_app(context))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
    finally:
        await sender.close()
        await pool.close()


async def expect(response: httpx.Response, status: int, code: str | None = None) -> Any:
    """The JSON of a response with `status`; for errors, check the error shape and code."""
    assert response.status_code == status, response.text
    if status == 204:
        assert response.content == b""
        return None
    body = response.json()
    if code is not None:
        assert set(body) == {"error"}
        assert body["error"]["code"] == code, body
        assert body["error"]["message"]
    return body


async def wait_for(
    events: AsyncIterator[Event], match: Callable[[Event], bool], timeout: float = 10.0
) -> Event:
    """The first event that matches (skipping the others), or AssertionError on timeout."""

    async def scan() -> Event:
        async for event in events:
            if match(event):
                return event
        raise AssertionError("the event stream ended")

    try:
        return await asyncio.wait_for(scan(), timeout)
    except TimeoutError:
        raise AssertionError("no matching event in time") from None


def row_event(table: str, op: str, **row: Any) -> Callable[[Event], bool]:
    """A matcher for a captured row publication with these column values (of the old row
    for a delete)."""

    def match(event: Event) -> bool:
        if not isinstance(event, Publication) or not isinstance(event.data, dict):
            return False
        data = event.data
        if data.get("table") != table or data.get("op") != op:
            return False
        values = data.get("row") or data.get("old") or {}
        return all(values.get(k) == v for k, v in row.items())

    return match
