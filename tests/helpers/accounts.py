"""Accounts for tests: register (or sign in) users through the real HTTP API."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httpx
from fastapi import FastAPI
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from syncline.api.app import create_app
from syncline.api.context import AppContext
from syncline.apps.auth.service import AuthService
from syncline.settings import load_settings

from helpers.live_server import TEST_SECRET

# Meets the strength rules (length, a letter and a digit, not a common password); no words in
# it, so no test's username is part of it.
DEFAULT_PASSWORD = "Qz7v-Km9x-Wr4t"


def email_for(username: str) -> str:
    """The address register_user gives an account."""
    return f"{username.lower()}@example.test"


async def register_user(
    http_url: str,
    username: str,
    *,
    password: str = DEFAULT_PASSWORD,
    email: str | None = None,
    display_name: str | None = None,
) -> dict[str, Any]:
    """Register an account; the TokenPair JSON (access_token, refresh_token, user, ...)."""
    body: dict[str, Any] = {
        "username": username,
        "email": email if email is not None else email_for(username),
        "password": password,
    }
    if display_name is not None:
        body["display_name"] = display_name
    async with httpx.AsyncClient(base_url=http_url, timeout=30) as client:
        response = await client.post("/api/auth/register", json=body)
    if response.status_code != 201:
        raise AssertionError(f"register {username}: {response.status_code} {response.text}")
    pair: dict[str, Any] = response.json()
    return pair


async def login_user(
    http_url: str, username: str, *, password: str = DEFAULT_PASSWORD
) -> dict[str, Any]:
    """Sign in (a new session); the TokenPair JSON."""
    async with httpx.AsyncClient(base_url=http_url, timeout=30) as client:
        response = await client.post(
            "/api/auth/login", json={"username": username, "password": password}
        )
    if response.status_code != 200:
        raise AssertionError(f"login {username}: {response.status_code} {response.text}")
    pair: dict[str, Any] = response.json()
    return pair


def bearer(pair: dict[str, Any]) -> dict[str, str]:
    """The Authorization header for a TokenPair's access token."""
    return {"Authorization": f"Bearer {pair['access_token']}"}


@dataclass
class AuthApi:
    """The HTTP API in-process (ASGI) over a real pool, with its AuthService at hand."""

    client: httpx.AsyncClient
    app: FastAPI
    pool: AsyncConnectionPool

    @property
    def auth(self) -> AuthService:
        service: AuthService = self.app.state.auth
        return service

    async def register(self, username: str, **fields: Any) -> dict[str, Any]:
        """Register through the API; the TokenPair JSON."""
        body: dict[str, Any] = {
            "username": username,
            "email": email_for(username),
            "password": DEFAULT_PASSWORD,
            **fields,
        }
        response = await self.client.post("/api/auth/register", json=body)
        assert response.status_code == 201, response.text
        pair: dict[str, Any] = response.json()
        return pair

    async def outbox(self, to: str) -> list[dict[str, Any]]:
        """The mails to an address, newest first."""
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT id, to_address, subject, body, sent_at, error FROM mail_outbox"
                " WHERE to_address = %s ORDER BY id DESC",
                (to,),
            )
            return await cur.fetchall()

    async def mailed_token(self, to: str, route: str) -> str:
        """The token of the newest mail to `to` linking to the UI's `route` (verify, reset)."""
        for mail in await self.outbox(to):
            match = re.search(rf"/#/{route}\?token=([A-Za-z0-9_%-]+)", mail["body"])
            if match:
                return unquote(match.group(1))
        raise AssertionError(f"no {route} mail to {to}")


@asynccontextmanager
async def auth_api(
    url: str, *, client_ip: str = "127.0.0.1", **overrides: Any
) -> AsyncIterator[AuthApi]:
    """create_app over a real pool (no gateway, no capture); settings overrides apply."""
    settings = load_settings(None, jwt_secret=TEST_SECRET, log_level="warning", **overrides)
    pool = AsyncConnectionPool(url, min_size=1, max_size=4, open=False, kwargs={"autocommit": True})
    await pool.open(wait=True)
    try:
        context = AppContext(
            settings=settings, pool=pool, jwt_secret=TEST_SECRET, http_url="http://syncline.test"
        )
        app = create_app(context)
        transport = httpx.ASGITransport(app=app, client=(client_ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            api = AuthApi(client, app, pool)
            try:
                yield api
            finally:
                await api.auth.mailer.drain()
                await api.auth.close()
    finally:
        await pool.close()
