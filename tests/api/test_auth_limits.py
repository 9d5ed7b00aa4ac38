"""Rate limits (429 + Retry-After), request size limits and malformed bodies on the auth API."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from helpers.accounts import DEFAULT_PASSWORD, AuthApi, auth_api, bearer, email_for


def name(prefix: str = "u") -> str:
    return f"{prefix}{secrets.token_hex(4)}"


def limited(response: httpx.Response) -> int:
    """The Retry-After of a 429 rate_limited answer."""
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limited"
    retry_after = int(response.headers["Retry-After"])
    assert retry_after >= 1
    return retry_after


async def login(api: AuthApi, ident: str, password: str = DEFAULT_PASSWORD) -> httpx.Response:
    return await api.client.post("/api/auth/login", json={"username": ident, "password": password})


@pytest.fixture
async def api(migrated_url: str) -> AsyncIterator[AuthApi]:
    async with auth_api(migrated_url) as api:
        yield api


async def test_login_is_limited_per_account_even_with_the_right_password(
    migrated_url: str,
) -> None:
    async with auth_api(
        migrated_url, rate_limit_login_account="3/minute", rate_limit_login_ip="100/minute"
    ) as api:
        username = name()
        await api.register(username)
        assert (await login(api, username, "wrong-password-1")).status_code == 401
        assert (await login(api, username, "wrong-password-2")).status_code == 401
        # By email it is the same account: the third attempt of the minute.
        assert (await login(api, email_for(username))).status_code == 200
        retry_after = limited(await login(api, username))
        assert retry_after <= 60
        # Another account is not affected.
        other = name()
        await api.register(other)
        assert (await login(api, other)).status_code == 200


async def test_unknown_accounts_are_limited_like_known_ones(migrated_url: str) -> None:
    async with auth_api(
        migrated_url, rate_limit_login_account="2/minute", rate_limit_login_ip="100/minute"
    ) as api:
        ghost = name("ghost")
        for _ in range(2):
            assert (await login(api, ghost)).status_code == 401
        limited(await login(api, ghost))


async def test_login_is_limited_per_ip(migrated_url: str) -> None:
    async with auth_api(migrated_url, rate_limit_login_ip="2/minute") as api:
        username = name()
        await api.register(username)
        for _ in range(2):
            assert (await login(api, username)).status_code == 200
        limited(await login(api, username))
        limited(await login(api, name("anyone")))
    # The same server state is per process; another client address has its own allowance.
    async with auth_api(migrated_url, rate_limit_login_ip="2/minute", client_ip="10.9.8.7") as api:
        assert (await login(api, username)).status_code == 200


async def test_register_is_limited_per_ip(migrated_url: str) -> None:
    async with auth_api(migrated_url, rate_limit_register_ip="2/minute") as api:
        await api.register(name())
        await api.register(name())
        response = await api.client.post(
            "/api/auth/register",
            json={
                "username": name(),
                "email": f"{name()}@example.test",
                "password": DEFAULT_PASSWORD,
            },
        )
        limited(response)


async def test_reset_requests_are_limited_per_address_and_per_ip(migrated_url: str) -> None:
    async with auth_api(
        migrated_url, rate_limit_reset_account="2/hour", rate_limit_reset_ip="4/hour"
    ) as api:
        username = name()
        await api.register(username)

        async def request(address: str) -> httpx.Response:
            return await api.client.post(
                "/api/auth/password-reset/request", json={"email": address}
            )

        assert (await request(email_for(username))).status_code == 202
        assert (await request(email_for(username).upper())).status_code == 202
        assert limited(await request(email_for(username))) > 60  # an hourly window
        # Two mails were written, not three.
        resets = [m for m in await api.outbox(email_for(username)) if "Reset" in m["subject"]]
        assert len(resets) == 2
        # An unknown address has its own allowance; the per-IP limit counted every request
        # (the refused one too), so it ends it all after the fourth.
        assert (await request("ghost1@example.test")).status_code == 202
        limited(await request("ghost2@example.test"))


async def test_verification_mails_are_limited_per_account(migrated_url: str) -> None:
    async with auth_api(migrated_url, rate_limit_reset_account="1/hour") as api:
        pair = await api.register(name())
        response = await api.client.post("/api/auth/verify-email/request", headers=bearer(pair))
        assert response.status_code == 202
        limited(await api.client.post("/api/auth/verify-email/request", headers=bearer(pair)))


async def test_change_password_guesses_are_limited(migrated_url: str) -> None:
    async with auth_api(migrated_url, rate_limit_login_account="2/minute") as api:
        pair = await api.register(name())

        async def guess(current: str) -> httpx.Response:
            return await api.client.post(
                "/api/auth/change-password",
                json={"current_password": current, "new_password": "Lp3r-Tx8w-Nq5v"},
                headers=bearer(pair),
            )

        assert (await guess("guess-one-1")).status_code == 403
        assert (await guess("guess-two-2")).status_code == 403
        limited(await guess(DEFAULT_PASSWORD))


# -- request size and malformed bodies --------------------------------------------------------


async def test_an_oversized_body_is_413_json(api: AuthApi) -> None:
    big = {"username": "x" * (70 * 1024), "password": "y"}
    response = await api.client.post("/api/auth/login", json=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_an_oversized_chunked_body_is_413_json(api: AuthApi) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"username": "'
        for _ in range(80):
            yield b"x" * 1024
        yield b'", "password": "y"}'

    response = await api.client.post(
        "/api/auth/login", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_the_body_limit_is_a_setting(migrated_url: str) -> None:
    async with auth_api(migrated_url, max_request_body=2048) as api:
        response = await api.client.post(
            "/api/auth/login", json={"username": "x" * 3000, "password": "y"}
        )
        assert response.status_code == 413
        small = await api.client.post("/api/auth/login", json={"username": "x", "password": "y"})
        assert small.status_code == 401


async def test_a_bad_content_length_is_400(api: AuthApi) -> None:
    response = await api.client.post(
        "/api/auth/login",
        content=b'{"username": "a", "password": "b"}',
        headers={"Content-Type": "application/json", "Content-Length": "-5"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"username": "a", "password": ', "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (b'"just a string"', "application/json"),
        (b"null", "application/json"),
        (b"username=a&password=b", "application/x-www-form-urlencoded"),
        (b'{"username": "a", "password": "b"}', "text/plain"),
        (b"\xff\xfe\x00garbage", "application/json"),
        (b"", "application/json"),
    ],
)
async def test_malformed_bodies_are_4xx_json(
    api: AuthApi, content: bytes, content_type: str
) -> None:
    response = await api.client.post(
        "/api/auth/login", content=content, headers={"Content-Type": content_type}
    )
    assert 400 <= response.status_code < 500, response.text
    body: dict[str, Any] = response.json()
    assert body["error"]["code"] in {"invalid_input", "bad_request"}
