"""Accounts for tests: register (or sign in) users through the real HTTP API."""

from __future__ import annotations

from typing import Any

import httpx

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
