"""A revoked sign-in session loses the socket too: every kind of revocation by {a new connect,
a live connection, an RPC write, a subscribe}, with a raw socket and the official
centrifuge-python SDK (issue 12, item 1)."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httpx
import jwt
import psycopg
import pytest
import websockets
from centrifuge import Client, ClientEventHandler, DisconnectedContext
from websockets.exceptions import ConnectionClosed

from helpers.accounts import DEFAULT_PASSWORD, bearer, email_for, login_user, register_user
from helpers.live_server import TEST_SECRET, LiveServer, start_live_server, stop_live_server

NEW_PASSWORD = "Lp3n-Vx8q-Rd2w"
KINDS = ["logout", "delete_session", "change_password", "reset_password", "refresh_reuse"]


@pytest.fixture
def server(live_server: LiveServer) -> LiveServer:
    """conftest's live server, under the name this module's helpers take it by."""
    return live_server


@dataclass
class Victim:
    """A user with two sessions: `pair` (to be revoked) and `other` (which revokes it)."""

    username: str
    user_id: int
    pair: dict[str, Any]
    other: dict[str, Any]

    @property
    def session_id(self) -> str:
        claims = jwt.decode(self.pair["access_token"], TEST_SECRET, algorithms=["HS256"])
        return str(claims["sid"])


async def victim(server: LiveServer) -> Victim:
    username = f"rev{secrets.token_hex(4)}"
    pair = await register_user(server.http_url, username)
    other = await login_user(server.http_url, username)
    return Victim(username, pair["user"]["id"], pair, other)


async def revoke(server: LiveServer, kind: str, who: Victim) -> None:
    """Revoke `who.pair`'s session the way `kind` does."""
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
        if kind == "logout":
            response = await http.post("/api/auth/logout", headers=bearer(who.pair))
        elif kind == "delete_session":
            response = await http.delete(
                f"/api/auth/sessions/{who.session_id}", headers=bearer(who.other)
            )
        elif kind == "change_password":
            response = await http.post(
                "/api/auth/change-password",
                json={"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD},
                headers=bearer(who.other),
            )
        elif kind == "reset_password":
            email = email_for(who.username)
            asked = await http.post("/api/auth/password-reset/request", json={"email": email})
            assert asked.status_code == 202, asked.text
            token = await _mailed_reset_token(server, email)
            response = await http.post(
                "/api/auth/password-reset", json={"token": token, "new_password": NEW_PASSWORD}
            )
        elif kind == "refresh_reuse":
            body = {"refresh_token": who.pair["refresh_token"]}
            first = await http.post("/api/auth/refresh", json=body)
            assert first.status_code == 200, first.text
            # The new token used too, so the old one presented again is reuse (not a repeat
            # of a refresh whose reply was lost).
            second = await http.post(
                "/api/auth/refresh", json={"refresh_token": first.json()["refresh_token"]}
            )
            assert second.status_code == 200, second.text
            # The rotated pair's access token is of the same session: the one to be refused.
            who.pair = {**who.pair, "access_token": second.json()["access_token"]}
            response = await http.post("/api/auth/refresh", json=body)
            assert response.status_code == 401 and "reused" in response.text, response.text
            return
        else:
            raise AssertionError(kind)
    assert response.status_code < 300, response.text


async def _mailed_reset_token(server: LiveServer, email: str) -> str:
    for _ in range(100):
        async with await psycopg.AsyncConnection.connect(server.database_url) as conn:
            cur = await conn.execute(
                "SELECT body FROM mail_outbox WHERE to_address = %s ORDER BY id DESC LIMIT 1",
                (email,),
            )
            row = await cur.fetchone()
        if row is not None:
            match = re.search(r"/#/reset\?token=([A-Za-z0-9_%-]+)", row[0])
            assert match, row[0]
            return unquote(match.group(1))
        await asyncio.sleep(0.05)
    raise AssertionError(f"no reset mail to {email}")


# -- a raw socket ------------------------------------------------------------------------------


class Raw:
    """A raw Centrifuge JSON client over `websockets`."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.next_id = 1

    async def command(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Send one command; its reply, or None when the server closed the socket instead."""
        command_id = self.next_id
        self.next_id += 1
        try:
            await self.ws.send(json.dumps({"id": command_id, **body}))
            while True:
                frame = await asyncio.wait_for(self.ws.recv(), 10)
                for line in str(frame).split("\n"):
                    reply: dict[str, Any] = json.loads(line)
                    if reply.get("id") == command_id:
                        return reply
        except ConnectionClosed:
            return None

    async def closed(self, timeout: float = 5.0) -> tuple[int | None, str]:
        """Wait for the server's close frame: (code, reason)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self.ws.recv()
        except ConnectionClosed:
            pass
        return self.ws.close_code, self.ws.close_reason or ""


@asynccontextmanager
async def connected(server: LiveServer, token: str) -> AsyncIterator[Raw]:
    """A raw client, connected with `token`."""
    async with websockets.connect(server.ws_url) as ws:
        raw = Raw(ws)
        reply = await raw.command({"connect": {"token": token}})
        assert reply is not None and "connect" in reply, reply
        yield raw


async def global_room(server: LiveServer) -> int:
    async with await psycopg.AsyncConnection.connect(server.database_url) as conn:
        cur = await conn.execute("SELECT id FROM rooms WHERE kind = 'global'")
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def messages_with(server: LiveServer, body: str) -> int:
    async with await psycopg.AsyncConnection.connect(server.database_url) as conn:
        cur = await conn.execute("SELECT count(*) FROM messages WHERE body = %s", (body,))
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


SESSION_REVOKED = (3500, "session revoked")


@pytest.mark.parametrize("kind", KINDS)
async def test_a_new_connect_with_a_revoked_sessions_token_is_closed_3500(
    server: LiveServer, kind: str
) -> None:
    who = await victim(server)
    await revoke(server, kind, who)
    async with websockets.connect(server.ws_url) as ws:
        raw = Raw(ws)
        assert await raw.command({"connect": {"token": who.pair["access_token"]}}) is None
        assert await raw.closed() == SESSION_REVOKED


@pytest.mark.parametrize("kind", KINDS)
async def test_a_live_connection_of_a_revoked_session_is_closed_at_once(
    server: LiveServer, kind: str
) -> None:
    who = await victim(server)
    async with connected(server, who.pair["access_token"]) as raw:
        await revoke(server, kind, who)
        assert await raw.closed(timeout=2.0) == SESSION_REVOKED


@pytest.mark.parametrize("kind", KINDS)
async def test_an_rpc_write_after_revocation_writes_nothing(server: LiveServer, kind: str) -> None:
    who = await victim(server)
    room = await global_room(server)
    body = f"after-{kind}-{secrets.token_hex(3)}"
    async with connected(server, who.pair["access_token"]) as raw:
        await revoke(server, kind, who)
        reply = await raw.command(
            {"rpc": {"method": "chat.send", "data": {"room_id": room, "body": body}}}
        )
        assert reply is None or "error" in reply, reply
        assert await raw.closed() == SESSION_REVOKED
    assert await messages_with(server, body) == 0


@pytest.mark.parametrize("kind", KINDS)
async def test_a_subscribe_after_revocation_is_refused(server: LiveServer, kind: str) -> None:
    who = await victim(server)
    room = await global_room(server)
    async with connected(server, who.pair["access_token"]) as raw:
        await revoke(server, kind, who)
        reply = await raw.command({"subscribe": {"channel": f"room:{room}"}})
        assert reply is None or "error" in reply, reply
        assert await raw.closed() == SESSION_REVOKED


# -- without the control bus: the per-command re-check -----------------------------------------


@pytest.fixture
async def uncached(schema_url: str) -> AsyncIterator[LiveServer]:
    live = await start_live_server(schema_url, session_check_ttl=0)
    try:
        yield live
    finally:
        await stop_live_server(live)


async def revoke_in_sql(server: LiveServer, who: Victim) -> None:
    """A revocation no process announces (made by hand): only the re-check can see it."""
    await server.sql("UPDATE auth_sessions SET revoked_at = now() WHERE id = %s", (who.session_id,))


Action = Callable[[Raw, int, str], Awaitable[dict[str, Any] | None]]


async def _rpc_send(raw: Raw, room: int, body: str) -> dict[str, Any] | None:
    return await raw.command(
        {"rpc": {"method": "chat.send", "data": {"room_id": room, "body": body}}}
    )


async def _subscribe(raw: Raw, room: int, body: str) -> dict[str, Any] | None:
    return await raw.command({"subscribe": {"channel": f"room:{room}"}})


async def _history(raw: Raw, room: int, body: str) -> dict[str, Any] | None:
    return await raw.command({"history": {"channel": f"room:{room}", "limit": 10}})


@pytest.mark.parametrize(
    "action", [_rpc_send, _subscribe, _history], ids=["rpc", "subscribe", "history"]
)
async def test_every_read_and_write_rechecks_the_session(
    uncached: LiveServer, action: Action
) -> None:
    who = await victim(uncached)
    room = await global_room(uncached)
    body = f"sql-revoked-{secrets.token_hex(3)}"
    async with connected(uncached, who.pair["access_token"]) as raw:
        await revoke_in_sql(uncached, who)
        assert await action(raw, room, body) is None
        assert await raw.closed() == SESSION_REVOKED
    assert await messages_with(uncached, body) == 0


async def test_a_refresh_with_a_revoked_sessions_token_is_closed_3500(server: LiveServer) -> None:
    who = await victim(server)
    async with connected(server, who.other["access_token"]) as raw:
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            out = await http.post("/api/auth/logout", headers=bearer(who.pair))
            assert out.status_code == 204
        # The connection is of the other session; refreshing it with the revoked one's token
        # must not carry it over.
        assert await raw.command({"refresh": {"token": who.pair["access_token"]}}) is None
        assert await raw.closed() == SESSION_REVOKED


async def test_a_refresh_with_a_live_sessions_token_keeps_the_connection(
    server: LiveServer,
) -> None:
    who = await victim(server)
    async with connected(server, who.pair["access_token"]) as raw:
        reply = await raw.command({"refresh": {"token": who.other["access_token"]}})
        assert reply is not None and "refresh" in reply, reply
        # Now it is the other session's connection: revoking the first no longer closes it.
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            await http.post("/api/auth/logout", headers=bearer(who.pair))
        reply = await raw.command({"history": {"channel": f"room:{await global_room(server)}"}})
        assert reply is not None and "history" in reply, reply


async def test_a_session_that_expires_ends_its_connection(server: LiveServer) -> None:
    who = await victim(server)
    await server.sql(
        "UPDATE auth_sessions SET expires_at = now() + interval '2 seconds' WHERE id = %s",
        (who.session_id,),
    )
    async with connected(server, who.pair["access_token"]) as raw:
        # The access token is good for 15 minutes; the session ends first, and so does the
        # connection (3005: the SDK fetches a new token, which a dead session cannot give).
        code, _ = await raw.closed(timeout=6.0)
        assert code == 3005
    async with websockets.connect(server.ws_url) as ws:
        late = Raw(ws)
        assert await late.command({"connect": {"token": who.pair["access_token"]}}) is None
        assert await late.closed() == SESSION_REVOKED


async def test_other_sessions_and_users_keep_their_connections(server: LiveServer) -> None:
    who = await victim(server)
    bystander = await register_user(server.http_url, f"by{secrets.token_hex(4)}")
    room = await global_room(server)
    async with (
        connected(server, who.pair["access_token"]) as revoked,
        connected(server, who.other["access_token"]) as kept,
        connected(server, bystander["access_token"]) as other_user,
    ):
        await revoke(server, "logout", who)
        assert await revoked.closed(timeout=2.0) == SESSION_REVOKED
        for raw in (kept, other_user):
            reply = await raw.command({"history": {"channel": f"room:{room}", "limit": 1}})
            assert reply is not None and "history" in reply, reply


# -- the official SDK --------------------------------------------------------------------------


class Disconnects(ClientEventHandler):  # type: ignore[misc]
    def __init__(self) -> None:
        self.seen: list[tuple[int, str]] = []
        self.event = asyncio.Event()

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        self.seen.append((ctx.code, ctx.reason))
        self.event.set()


@pytest.mark.parametrize("kind", KINDS)
async def test_the_sdk_is_disconnected_for_good_when_its_session_is_revoked(
    server: LiveServer, kind: str
) -> None:
    who = await victim(server)
    events = Disconnects()
    client = Client(server.ws_url, token=who.pair["access_token"], events=events)
    await client.connect()
    await client.ready(timeout=5)
    try:
        await revoke(server, kind, who)
        await asyncio.wait_for(events.event.wait(), 5)
        assert events.seen[0] == SESSION_REVOKED
        # 3500 is terminal for the SDK: it does not reconnect with the dead token.
        await asyncio.sleep(1.0)
        assert client.state.value == "disconnected"
        assert len(events.seen) == 1
    finally:
        await client.disconnect()


async def test_the_sdk_cannot_connect_with_a_revoked_sessions_token(server: LiveServer) -> None:
    who = await victim(server)
    await revoke(server, "logout", who)
    events = Disconnects()
    client = Client(server.ws_url, token=who.pair["access_token"], events=events)
    try:
        await client.connect()
        await asyncio.wait_for(events.event.wait(), 5)
        assert events.seen[0] == SESSION_REVOKED
        assert client.state.value == "disconnected"
    finally:
        await client.disconnect()
