"""Auth on the whole running system: the shared helpers, the access token as the gateway's
connection token, proxy-forwarded client addresses and mailed links under the public URL."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest
import websockets

from helpers.accounts import bearer, email_for, login_user, register_user
from helpers.live_server import LiveServer, start_live_server, stop_live_server


async def connect_reply(ws_url: str, token: str) -> dict[str, Any]:
    async with websockets.connect(ws_url) as ws:
        await ws.send(json.dumps({"id": 1, "connect": {"token": token}}))
        while True:
            for line in str(await asyncio.wait_for(ws.recv(), 5)).split("\n"):
                reply: dict[str, Any] = json.loads(line)
                if reply.get("id") == 1:
                    return reply


async def test_helpers_and_the_access_token_as_connection_token(live_server: LiveServer) -> None:
    username = f"live{secrets.token_hex(3)}"
    pair = await register_user(live_server.http_url, username, display_name="Live One")
    assert pair["user"]["username"] == username
    again = await login_user(live_server.http_url, username)
    assert again["user"]["id"] == pair["user"]["id"]
    reply = await connect_reply(live_server.ws_url, pair["access_token"])
    assert "connect" in reply, reply
    async with httpx.AsyncClient(base_url=live_server.http_url) as client:
        me = await client.get("/api/users/me", headers=bearer(pair))
        assert me.json()["display_name"] == "Live One"
        # The live server turns the login limits off for the other tests' many accounts.
        wrong = {"username": username, "password": "wrong-password-1"}
        for _ in range(12):
            assert (await client.post("/api/auth/login", json=wrong)).status_code == 401


@pytest.fixture
async def limited_server(schema_url: str) -> AsyncIterator[LiveServer]:
    server = await start_live_server(
        schema_url,
        rate_limit_login_ip="2/minute",
        public_url="https://chat.example.test/",
        trusted_proxies=["127.0.0.1"],
    )
    try:
        yield server
    finally:
        await stop_live_server(server)


async def test_proxy_forwarded_addresses_and_public_links(limited_server: LiveServer) -> None:
    username = f"prox{secrets.token_hex(3)}"
    await register_user(limited_server.http_url, username)
    body = {"username": username, "password": "wrong-password-1"}
    async with httpx.AsyncClient(base_url=limited_server.http_url) as client:

        async def attempt(ip: str) -> int:
            # This server trusts X-Forwarded-For from loopback (a local reverse proxy).
            response = await client.post(
                "/api/auth/login", json=body, headers={"X-Forwarded-For": ip}
            )
            if response.status_code == 429:
                assert int(response.headers["Retry-After"]) >= 1
            return response.status_code

        assert [await attempt("203.0.113.7") for _ in range(3)] == [401, 401, 429]
        assert await attempt("203.0.113.8") == 401
        await client.post("/api/auth/password-reset/request", json={"email": email_for(username)})
    async with await psycopg.AsyncConnection.connect(limited_server.database_url) as conn:
        cur = await conn.execute(
            "SELECT body FROM mail_outbox WHERE to_address = %s ORDER BY id DESC LIMIT 1",
            (email_for(username),),
        )
        row = await cur.fetchone()
    assert row is not None
    assert "https://chat.example.test/#/reset?token=" in row[0]


async def test_forwarded_addresses_are_ignored_unless_the_proxy_is_trusted(
    schema_url: str,
) -> None:
    """By default no proxy is trusted: a local process cannot choose the address its login
    attempts are counted under."""
    server = await start_live_server(schema_url, rate_limit_login_ip="2/minute")
    try:
        username = f"noprox{secrets.token_hex(3)}"
        await register_user(server.http_url, username)
        body = {"username": username, "password": "wrong-password-1"}
        async with httpx.AsyncClient(base_url=server.http_url) as client:
            codes = [
                (
                    await client.post(
                        "/api/auth/login", json=body, headers={"X-Forwarded-For": f"203.0.113.{i}"}
                    )
                ).status_code
                for i in range(3)
            ]
        assert codes == [401, 401, 429]
    finally:
        await stop_live_server(server)
