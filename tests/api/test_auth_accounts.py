"""Email verification, password reset and change, profiles and user search, on real PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from helpers.accounts import DEFAULT_PASSWORD, AuthApi, auth_api, bearer, email_for

GENEROUS = {
    "rate_limit_login_ip": "1000/minute",
    "rate_limit_login_account": "1000/minute",
    "rate_limit_register_ip": "1000/minute",
    "rate_limit_reset_ip": "1000/minute",
    "rate_limit_reset_account": "1000/minute",
}
NEW_PASSWORD = "Lp3r-Tx8w-Nq5v"


def name(prefix: str = "u") -> str:
    return f"{prefix}{secrets.token_hex(4)}"


@pytest.fixture
async def api(migrated_url: str) -> AsyncIterator[AuthApi]:
    async with auth_api(migrated_url, **GENEROUS) as api:
        yield api


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"]["code"] == code, body
    return body


async def login(api: AuthApi, ident: str, password: str = DEFAULT_PASSWORD) -> httpx.Response:
    return await api.client.post("/api/auth/login", json={"username": ident, "password": password})


# -- email verification -----------------------------------------------------------------------


async def test_registration_mails_a_verification_link_that_works_once(api: AuthApi) -> None:
    username = name()
    pair = await api.register(username)
    [mail] = await api.outbox(email_for(username))
    assert mail["subject"] == "Confirm your email address for Syncline"
    assert "http://syncline.test/#/verify?token=" in mail["body"]
    token = await api.mailed_token(email_for(username), "verify")
    response = await api.client.post("/api/auth/verify-email", json={"token": token})
    assert response.status_code == 200, response.text
    assert response.json()["email_verified"] is True
    me = (await api.client.get("/api/users/me", headers=bearer(pair))).json()
    assert me["email_verified"] is True
    again = await api.client.post("/api/auth/verify-email", json={"token": token})
    error(again, 400, "invalid_token")


async def test_verification_request_mails_again_unless_verified(api: AuthApi) -> None:
    username = name()
    pair = await api.register(username)
    response = await api.client.post("/api/auth/verify-email/request", headers=bearer(pair))
    assert response.status_code == 202
    assert len(await api.outbox(email_for(username))) == 2
    token = await api.mailed_token(email_for(username), "verify")
    assert (
        await api.client.post("/api/auth/verify-email", json={"token": token})
    ).status_code == 200
    response = await api.client.post("/api/auth/verify-email/request", headers=bearer(pair))
    assert response.status_code == 202
    assert len(await api.outbox(email_for(username))) == 2  # verified: nothing more to send
    error(await api.client.post("/api/auth/verify-email/request"), 401, "unauthorized")


async def test_expired_and_unknown_verification_tokens(api: AuthApi) -> None:
    username = name()
    pair = await api.register(username)
    token = await api.mailed_token(email_for(username), "verify")
    async with api.pool.connection() as conn:
        await conn.execute(
            "UPDATE email_tokens SET expires_at = now() - interval '1 second' WHERE user_id = %s",
            (pair["user"]["id"],),
        )
    error(
        await api.client.post("/api/auth/verify-email", json={"token": token}), 400, "invalid_token"
    )
    error(
        await api.client.post("/api/auth/verify-email", json={"token": "nope"}),
        400,
        "invalid_token",
    )
    error(await api.client.post("/api/auth/verify-email", json={"token": ""}), 422, "invalid_input")


async def test_a_verify_token_is_not_a_reset_token(api: AuthApi) -> None:
    username = name()
    await api.register(username)
    token = await api.mailed_token(email_for(username), "verify")
    response = await api.client.post(
        "/api/auth/password-reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    error(response, 400, "invalid_token")


# -- password reset ---------------------------------------------------------------------------


async def test_password_reset_end_to_end(api: AuthApi) -> None:
    username = name()
    pair = await api.register(username)
    response = await api.client.post(
        "/api/auth/password-reset/request", json={"email": email_for(username).upper()}
    )
    assert response.status_code == 202 and response.content == b""
    [reset_mail, _verify_mail] = await api.outbox(email_for(username))
    assert reset_mail["subject"] == "Reset your Syncline password"
    token = await api.mailed_token(email_for(username), "reset")
    # A weak choice is refused without spending the link.
    weak = await api.client.post(
        "/api/auth/password-reset", json={"token": token, "new_password": "password123"}
    )
    error(weak, 400, "weak_password")
    response = await api.client.post(
        "/api/auth/password-reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 200, response.text
    assert response.json()["username"] == username
    assert response.json()["email_verified"] is True  # the link proved the address
    # Every session ended; the old password is gone, the new one works.
    error(await api.client.get("/api/users/me", headers=bearer(pair)), 401, "session_revoked")
    error(await login(api, username), 401, "invalid_credentials")
    assert (await login(api, username, NEW_PASSWORD)).status_code == 200
    # The link works once.
    again = await api.client.post(
        "/api/auth/password-reset", json={"token": token, "new_password": "Zz9-" + NEW_PASSWORD}
    )
    error(again, 400, "invalid_token")


async def test_reset_request_for_an_unknown_address_looks_the_same(api: AuthApi) -> None:
    address = f"{name('ghost')}@example.test"
    response = await api.client.post("/api/auth/password-reset/request", json={"email": address})
    assert response.status_code == 202 and response.content == b""
    assert await api.outbox(address) == []
    error(
        await api.client.post("/api/auth/password-reset/request", json={"email": "nope"}),
        422,
        "invalid_input",
    )


async def test_a_used_reset_voids_the_other_outstanding_links(api: AuthApi) -> None:
    username = name()
    await api.register(username)
    for _ in range(2):
        await api.client.post(
            "/api/auth/password-reset/request", json={"email": email_for(username)}
        )
    mails = [m for m in await api.outbox(email_for(username)) if "reset" in m["subject"].lower()]
    assert len(mails) == 2
    tokens = [m["body"].split("/#/reset?token=")[1].split()[0] for m in mails]
    ok = await api.client.post(
        "/api/auth/password-reset", json={"token": tokens[1], "new_password": NEW_PASSWORD}
    )
    assert ok.status_code == 200
    stale = await api.client.post(
        "/api/auth/password-reset", json={"token": tokens[0], "new_password": "Zz9-" + NEW_PASSWORD}
    )
    error(stale, 400, "invalid_token")


# -- change password --------------------------------------------------------------------------


async def test_change_password_revokes_the_other_sessions(api: AuthApi) -> None:
    username = name()
    pair = await api.register(username)
    other = (await login(api, username)).json()
    body = {"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD}
    response = await api.client.post("/api/auth/change-password", json=body, headers=bearer(pair))
    assert response.status_code == 204, response.text
    assert (await api.client.get("/api/users/me", headers=bearer(pair))).status_code == 200
    error(await api.client.get("/api/users/me", headers=bearer(other)), 401, "session_revoked")
    error(await login(api, username), 401, "invalid_credentials")
    assert (await login(api, username, NEW_PASSWORD)).status_code == 200


async def test_change_password_refusals(api: AuthApi) -> None:
    username = name()
    pair = await api.register(username)

    async def change(current: str, new: str) -> httpx.Response:
        return await api.client.post(
            "/api/auth/change-password",
            json={"current_password": current, "new_password": new},
            headers=bearer(pair),
        )

    error(await change("wrong-password-1", NEW_PASSWORD), 403, "wrong_password")
    error(await change(DEFAULT_PASSWORD, "short1"), 400, "weak_password")
    error(await change(DEFAULT_PASSWORD, DEFAULT_PASSWORD), 400, "weak_password")
    error(await change(DEFAULT_PASSWORD, f"{username}-123"), 400, "weak_password")
    response = await api.client.post(
        "/api/auth/change-password",
        json={"current_password": DEFAULT_PASSWORD},
        headers=bearer(pair),
    )
    error(response, 422, "invalid_input")
    response = await api.client.post(
        "/api/auth/change-password", json={"current_password": "a", "new_password": NEW_PASSWORD}
    )
    error(response, 401, "unauthorized")
    assert (await login(api, username)).status_code == 200  # unchanged


# -- profile ----------------------------------------------------------------------------------


async def test_profile_update_display_name(api: AuthApi) -> None:
    pair = await api.register(name())
    response = await api.client.patch(
        "/api/users/me", json={"display_name": "  New Name "}, headers=bearer(pair)
    )
    assert response.status_code == 200, response.text
    assert response.json()["display_name"] == "New Name"
    bad_bodies: list[dict[str, str]] = [
        {"display_name": ""},
        {"display_name": "   "},
        {"display_name": "x" * 65},
        {"display_name": "tab\there"},
        {"username": "renamed"},
        {"email": "bad"},
    ]
    for bad in bad_bodies:
        response = await api.client.patch("/api/users/me", json=bad, headers=bearer(pair))
        error(response, 422, "invalid_input")
    response = await api.client.patch("/api/users/me", json={}, headers=bearer(pair))
    assert response.json()["display_name"] == "New Name"


async def test_a_new_email_must_be_verified_again(api: AuthApi) -> None:
    username = name()
    pair = await api.register(username)
    old_token = await api.mailed_token(email_for(username), "verify")
    new_address = f"{name('new')}@example.test"
    # A stolen access token alone cannot move the mailbox: the password is asked for.
    change = {"email": new_address}
    response = await api.client.patch("/api/users/me", json=change, headers=bearer(pair))
    error(response, 400, "password_required")
    wrong = {**change, "current_password": "Wrong-pass-123"}
    response = await api.client.patch("/api/users/me", json=wrong, headers=bearer(pair))
    error(response, 403, "wrong_password")
    right = {**change, "current_password": DEFAULT_PASSWORD}
    response = await api.client.patch("/api/users/me", json=right, headers=bearer(pair))
    assert response.status_code == 200, response.text
    assert response.json()["email"] == new_address
    assert response.json()["email_verified"] is False
    # The old address is told, the new one gets a link; the old link verifies nothing now.
    [notice, _] = await api.outbox(email_for(username))
    assert new_address in notice["body"]
    error(
        await api.client.post("/api/auth/verify-email", json={"token": old_token}),
        400,
        "invalid_token",
    )
    token = await api.mailed_token(new_address, "verify")
    verified = await api.client.post("/api/auth/verify-email", json={"token": token})
    assert verified.json()["email_verified"] is True
    # Changing only the letter case keeps the address verified.
    response = await api.client.patch(
        "/api/users/me", json={"email": new_address.upper()}, headers=bearer(pair)
    )
    assert response.json()["email_verified"] is True
    # Signing in works with the new address.
    assert (await login(api, new_address)).status_code == 200


async def test_an_email_taken_by_another_account_is_409(api: AuthApi) -> None:
    taken = name()
    await api.register(taken)
    pair = await api.register(name())
    change = {"email": email_for(taken).upper(), "current_password": DEFAULT_PASSWORD}
    response = await api.client.patch("/api/users/me", json=change, headers=bearer(pair))
    error(response, 409, "email_taken")


# -- users ------------------------------------------------------------------------------------


async def test_search_by_prefix_and_public_profiles(api: AuthApi) -> None:
    prefix = f"q{secrets.token_hex(3)}"
    users = [await api.register(f"{prefix}_{n}") for n in ("b", "A", "c")]
    await api.register(f"{prefix}xother")  # "_" is literal, not LIKE's any-character
    caller = users[0]
    response = await api.client.get(
        "/api/users", params={"q": f"{prefix.upper()}_"}, headers=bearer(caller)
    )
    assert response.status_code == 200, response.text
    found = response.json()
    assert [u["username"] for u in found] == [f"{prefix}_A", f"{prefix}_b", f"{prefix}_c"]
    assert set(found[0]) == {"id", "username", "display_name", "online", "last_seen_at"}
    assert found[0]["online"] is False
    assert found[0]["last_seen_at"] is not None
    limited = await api.client.get(
        "/api/users", params={"q": prefix, "limit": 2}, headers=bearer(caller)
    )
    assert len(limited.json()) == 2
    bad_params: list[dict[str, str | int]] = [
        {"q": ""},
        {"q": "x" * 33},
        {"q": "a", "limit": 0},
        {"q": "a", "limit": 51},
        {},
    ]
    for params in bad_params:
        error(
            await api.client.get("/api/users", params=params, headers=bearer(caller)),
            422,
            "invalid_input",
        )
    error(await api.client.get("/api/users", params={"q": prefix}), 401, "unauthorized")
    user_id = users[1]["user"]["id"]
    profile = await api.client.get(f"/api/users/{user_id}", headers=bearer(caller))
    assert profile.json() == found[0]
    assert "email" not in profile.json()
    error(await api.client.get("/api/users/999999999", headers=bearer(caller)), 404, "not_found")
    for bad in ("0", "abc", str(2**63)):
        error(
            await api.client.get(f"/api/users/{bad}", headers=bearer(caller)), 422, "invalid_input"
        )
