"""Auth API on a real PostgreSQL: register, sign in, refresh rotation, sign out, sessions."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest

from syncline.apps.auth.refresh import token_hash
from syncline.apps.auth.tokens import issue_access_token

from helpers.accounts import DEFAULT_PASSWORD, AuthApi, auth_api, bearer, email_for
from helpers.live_server import TEST_SECRET

GENEROUS = {
    "rate_limit_login_ip": "1000/minute",
    "rate_limit_login_account": "1000/minute",
    "rate_limit_register_ip": "1000/minute",
}


def name(prefix: str = "u") -> str:
    return f"{prefix}{secrets.token_hex(4)}"


@pytest.fixture
async def api(migrated_url: str) -> AsyncIterator[AuthApi]:
    async with auth_api(migrated_url, **GENEROUS) as api:
        yield api


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body


async def sql_one(api: AuthApi, query: str, *params: object) -> Any:
    async with api.pool.connection() as conn:
        cur = await conn.execute(query, params)
        row = await cur.fetchone()
    return row


# -- register ---------------------------------------------------------------------------------


async def test_register_returns_a_token_pair_and_joins_the_global_room(api: AuthApi) -> None:
    username = name("Ann")
    pair = await api.register(username, display_name="  Ann Lee ")
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] == 900
    user = pair["user"]
    assert user["username"] == username
    assert user["email"] == email_for(username)
    assert user["display_name"] == "Ann Lee"
    assert user["email_verified"] is False
    assert set(user) == {"id", "username", "email", "display_name", "email_verified", "created_at"}
    claims = jwt.decode(pair["access_token"], TEST_SECRET, algorithms=["HS256"])
    assert claims["sub"] == str(user["id"])
    assert claims["exp"] - claims["iat"] == 900
    assert claims["info"] == {"username": username, "display_name": "Ann Lee"}
    uuid.UUID(claims["sid"])
    member = await sql_one(
        api,
        "SELECT r.kind, m.role FROM room_members m JOIN rooms r ON r.id = m.room_id"
        " WHERE m.user_id = %s",
        user["id"],
    )
    assert member == ("global", "member")
    stored = await sql_one(api, "SELECT password_hash FROM users WHERE id = %s", user["id"])
    assert stored[0].startswith("$argon2id$") and DEFAULT_PASSWORD not in stored[0]
    me = await api.client.get("/api/users/me", headers=bearer(pair))
    assert me.json() == user


async def test_display_name_defaults_to_the_username(api: AuthApi) -> None:
    username = name()
    pair = await api.register(username)
    assert pair["user"]["display_name"] == username


async def test_duplicate_username_or_email_ignoring_case_is_409(api: AuthApi) -> None:
    username = name("Bo")
    await api.register(username)
    again = await api.client.post(
        "/api/auth/register",
        json={
            "username": username.upper(),
            "email": "other@example.test",
            "password": DEFAULT_PASSWORD,
        },
    )
    error(again, 409, "username_taken")
    same_mail = await api.client.post(
        "/api/auth/register",
        json={
            "username": name(),
            "email": email_for(username).upper(),
            "password": DEFAULT_PASSWORD,
        },
    )
    error(same_mail, 409, "email_taken")


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("short1A", "at least 10"),
        ("nodigitsatall", "a letter and a digit"),
        ("password123", "too common"),
        ("a1" * 100, "at most 128"),
    ],
)
async def test_weak_passwords_are_400(api: AuthApi, password: str, fragment: str) -> None:
    response = await api.client.post(
        "/api/auth/register",
        json={"username": name(), "email": f"{name()}@example.test", "password": password},
    )
    assert fragment in error(response, 400, "weak_password")["error"]["message"]


async def test_a_password_containing_the_username_is_weak(api: AuthApi) -> None:
    username = name("zed")
    response = await api.client.post(
        "/api/auth/register",
        json={
            "username": username,
            "email": email_for(username),
            "password": f"x{username.upper()}9",
        },
    )
    error(response, 400, "weak_password")


@pytest.mark.parametrize(
    "body",
    [
        {"username": "ab", "email": "a@example.test", "password": DEFAULT_PASSWORD},
        {"username": "x" * 33, "email": "a@example.test", "password": DEFAULT_PASSWORD},
        {"username": "has space", "email": "a@example.test", "password": DEFAULT_PASSWORD},
        {"username": "émile", "email": "a@example.test", "password": DEFAULT_PASSWORD},
        {"username": "okname", "email": "not-an-email", "password": DEFAULT_PASSWORD},
        {"username": "okname", "email": "a@b", "password": DEFAULT_PASSWORD},
        {"username": "okname", "email": "a b@example.test", "password": DEFAULT_PASSWORD},
        {"username": "okname", "email": "a@example.test", "password": ""},
        {"username": "okname", "email": "a@example.test", "password": DEFAULT_PASSWORD,
         "display_name": "x" * 65},
        {"username": "okname", "email": "a@example.test", "password": DEFAULT_PASSWORD,
         "display_name": "bell\x07"},
        {"username": "okname", "email": "a@example.test", "password": DEFAULT_PASSWORD,
         "is_admin": True},
        {"username": "okname", "email": "a@example.test"},
        {"username": 5, "email": "a@example.test", "password": DEFAULT_PASSWORD},
    ],
)  # fmt: skip
async def test_invalid_register_bodies_are_422(api: AuthApi, body: dict[str, Any]) -> None:
    error(await api.client.post("/api/auth/register", json=body), 422, "invalid_input")


async def test_unknown_fields_are_named_in_the_error(api: AuthApi) -> None:
    response = await api.client.post(
        "/api/auth/login", json={"username": "a", "password": "b", "remember_me": True}
    )
    assert "remember_me" in error(response, 422, "invalid_input")["error"]["message"]


# -- login ------------------------------------------------------------------------------------


async def test_login_by_username_or_email_in_any_case(api: AuthApi) -> None:
    username = name("Cy")
    registered = await api.register(username)
    for ident in (username, username.lower(), email_for(username).upper()):
        response = await api.client.post(
            "/api/auth/login", json={"username": ident, "password": DEFAULT_PASSWORD}
        )
        assert response.status_code == 200, response.text
        pair = response.json()
        assert pair["user"] == registered["user"]
        assert pair["refresh_token"] != registered["refresh_token"]
    sessions = await api.client.get("/api/auth/sessions", headers=bearer(registered))
    assert len(sessions.json()) == 4  # registration + three sign-ins


async def test_wrong_password_and_unknown_user_look_the_same(api: AuthApi) -> None:
    username = name()
    await api.register(username)
    wrong = await api.client.post(
        "/api/auth/login", json={"username": username, "password": DEFAULT_PASSWORD + "x"}
    )
    unknown = await api.client.post(
        "/api/auth/login", json={"username": name("nobody"), "password": DEFAULT_PASSWORD}
    )
    assert error(wrong, 401, "invalid_credentials") == error(unknown, 401, "invalid_credentials")


async def test_seeded_users_without_a_real_hash_cannot_sign_in(api: AuthApi) -> None:
    username = name("seed")
    async with api.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO users (username, email, password_hash) VALUES (%s, %s, 'x')",
            (username, email_for(username)),
        )
    response = await api.client.post(
        "/api/auth/login", json={"username": username, "password": "x"}
    )
    error(response, 401, "invalid_credentials")


# -- access tokens ----------------------------------------------------------------------------


async def test_missing_tampered_and_expired_access_tokens_are_401(api: AuthApi) -> None:
    pair = await api.register(name())
    error(await api.client.get("/api/users/me"), 401, "unauthorized")
    error(
        await api.client.get("/api/users/me", headers={"Authorization": "Basic abc"}),
        401,
        "unauthorized",
    )
    header, payload, signature = pair["access_token"].split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    tampered = {"Authorization": f"Bearer {header}.{payload}.{flipped}"}
    response = await api.client.get("/api/users/me", headers=tampered)
    error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    claims = jwt.decode(pair["access_token"], TEST_SECRET, algorithms=["HS256"])
    expired = issue_access_token(
        TEST_SECRET,
        user_id=int(claims["sub"]),
        session_id=claims["sid"],
        username="x",
        display_name="x",
        ttl_s=-60,
    )
    response = await api.client.get("/api/users/me", headers={"Authorization": f"Bearer {expired}"})
    error(response, 401, "token_expired")
    other_key = issue_access_token(
        "another-secret-" + "y" * 40,
        user_id=int(claims["sub"]),
        session_id=claims["sid"],
        username="x",
        display_name="x",
    )
    response = await api.client.get(
        "/api/users/me", headers={"Authorization": f"Bearer {other_key}"}
    )
    error(response, 401, "unauthorized")


async def test_a_token_naming_no_live_session_is_refused(api: AuthApi) -> None:
    pair = await api.register(name())
    user_id = pair["user"]["id"]
    for sid in (str(uuid.uuid4()), "not-a-uuid"):
        token = issue_access_token(
            TEST_SECRET, user_id=user_id, session_id=sid, username="x", display_name="x"
        )
        response = await api.client.get(
            "/api/users/me", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401, response.text
    # Another user's session id in my token: refused too.
    other = await api.register(name())
    other_sid = jwt.decode(other["access_token"], TEST_SECRET, algorithms=["HS256"])["sid"]
    token = issue_access_token(
        TEST_SECRET, user_id=user_id, session_id=other_sid, username="x", display_name="x"
    )
    response = await api.client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
    error(response, 401, "session_revoked")


async def test_an_expired_session_is_refused(api: AuthApi) -> None:
    pair = await api.register(name())
    sid = jwt.decode(pair["access_token"], TEST_SECRET, algorithms=["HS256"])["sid"]
    async with api.pool.connection() as conn:
        await conn.execute(
            "UPDATE auth_sessions SET expires_at = now() - interval '1 second' WHERE id = %s",
            (sid,),
        )
    error(await api.client.get("/api/users/me", headers=bearer(pair)), 401, "session_revoked")
    response = await api.client.post(
        "/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    error(response, 401, "session_revoked")


# -- refresh ----------------------------------------------------------------------------------


async def test_refresh_rotates_and_keeps_the_session(api: AuthApi) -> None:
    pair = await api.register(name())
    sid = jwt.decode(pair["access_token"], TEST_SECRET, algorithms=["HS256"])["sid"]
    response = await api.client.post(
        "/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert response.status_code == 200, response.text
    new = response.json()
    assert new["refresh_token"] != pair["refresh_token"]
    assert new["user"] == pair["user"]
    assert jwt.decode(new["access_token"], TEST_SECRET, algorithms=["HS256"])["sid"] == sid
    # Both access tokens name the same live session, so both still work until they expire.
    assert (await api.client.get("/api/users/me", headers=bearer(new))).status_code == 200
    assert (await api.client.get("/api/users/me", headers=bearer(pair))).status_code == 200
    # Only the hash is stored.
    row = await sql_one(
        api,
        "SELECT count(*) FROM refresh_tokens WHERE token_hash = convert_to(%s, 'UTF8')",
        new["refresh_token"],
    )
    assert row == (0,)


async def test_reusing_a_rotated_token_revokes_the_whole_family(api: AuthApi) -> None:
    pair = await api.register(name())
    first = await api.client.post(
        "/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    second = await api.client.post(
        "/api/auth/refresh", json={"refresh_token": first.json()["refresh_token"]}
    )
    newest = second.json()
    # The first token is presented again (say, by a thief who copied it).
    replay = await api.client.post(
        "/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    error(replay, 401, "token_reused")
    # The newest token of the family is dead too, and so is its access token.
    response = await api.client.post(
        "/api/auth/refresh", json={"refresh_token": newest["refresh_token"]}
    )
    error(response, 401, "session_revoked")
    error(await api.client.get("/api/users/me", headers=bearer(newest)), 401, "session_revoked")


async def test_the_family_revocation_spares_other_sessions(api: AuthApi) -> None:
    username = name()
    pair = await api.register(username)
    other = (
        await api.client.post(
            "/api/auth/login", json={"username": username, "password": DEFAULT_PASSWORD}
        )
    ).json()
    first = await api.client.post(
        "/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    await api.client.post(
        "/api/auth/refresh", json={"refresh_token": first.json()["refresh_token"]}
    )
    replay = await api.client.post(
        "/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    error(replay, 401, "token_reused")
    assert (await api.client.get("/api/users/me", headers=bearer(other))).status_code == 200


async def test_concurrent_refreshes_with_one_token_yield_one_winner(api: AuthApi) -> None:
    pair = await api.register(name())
    responses = await asyncio.gather(
        *(
            api.client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]})
            for _ in range(4)
        )
    )
    # They queue on the session's lock: the first rotates; the second reads as the first's
    # reply lost and replaces its successor (once); the third is reuse and revokes the session;
    # the fourth finds it revoked.
    codes = sorted(
        r.json()["error"]["code"] if r.status_code == 401 else str(r.status_code) for r in responses
    )
    assert codes == ["200", "200", "session_revoked", "token_reused"], [r.text for r in responses]
    newest = next(r.json() for r in responses if r.status_code == 200)
    error(await api.client.get("/api/users/me", headers=bearer(newest)), 401, "session_revoked")


async def test_a_refresh_whose_reply_was_lost_can_be_repeated_once(api: AuthApi) -> None:
    """A page reloaded mid-refresh: the server rotated, the client never saw the new pair."""
    pair = await api.register(name())
    lost = await api.client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert lost.status_code == 200
    again = await api.client.post(
        "/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert again.status_code == 200, again.text
    pair2 = again.json()
    assert pair2["refresh_token"] != lost.json()["refresh_token"]
    assert (await api.client.get("/api/users/me", headers=bearer(pair2))).status_code == 200
    # The session still has exactly one live refresh token: the repeated refresh's.
    live = await sql_one(
        api,
        "SELECT count(*) FROM refresh_tokens t JOIN auth_sessions s ON s.id = t.session_id"
        " WHERE s.id = (SELECT session_id FROM refresh_tokens WHERE token_hash = %s)"
        " AND t.rotated_at IS NULL",
        token_hash(pair["refresh_token"]),
    )
    assert live == (1,)
    # The new pair keeps working: the session goes on as if the first reply had arrived.
    onward = await api.client.post(
        "/api/auth/refresh", json={"refresh_token": pair2["refresh_token"]}
    )
    assert onward.status_code == 200, onward.text
    # Once only: the old token again is reuse, and the whole session goes.
    error(
        await api.client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}),
        401,
        "token_reused",
    )
    error(
        await api.client.get("/api/users/me", headers=bearer(onward.json())), 401, "session_revoked"
    )


async def test_a_rotated_token_past_the_grace_is_reuse(api: AuthApi) -> None:
    pair = await api.register(name())
    lost = await api.client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert lost.status_code == 200
    # The rotation (and the successor's issue) happened 31 s ago: past the 30 s grace.
    async with api.pool.connection() as conn:
        await conn.execute(
            "UPDATE refresh_tokens SET created_at = created_at - interval '31 seconds',"
            " rotated_at = rotated_at - interval '31 seconds'"
            " WHERE session_id = (SELECT session_id FROM refresh_tokens WHERE token_hash = %s)",
            (token_hash(pair["refresh_token"]),),
        )
    error(
        await api.client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}),
        401,
        "token_reused",
    )


@pytest.mark.parametrize("token", ["", "x" * 129, "never-issued-token"])
async def test_bad_refresh_tokens(api: AuthApi, token: str) -> None:
    response = await api.client.post("/api/auth/refresh", json={"refresh_token": token})
    if token == "never-issued-token":
        error(response, 401, "invalid_refresh_token")
    else:
        error(response, 422, "invalid_input")


# -- logout and sessions ----------------------------------------------------------------------


async def test_logout_revokes_the_current_session_only(api: AuthApi) -> None:
    username = name()
    pair = await api.register(username)
    other = (
        await api.client.post(
            "/api/auth/login", json={"username": username, "password": DEFAULT_PASSWORD}
        )
    ).json()
    response = await api.client.post("/api/auth/logout", headers=bearer(pair))
    assert response.status_code == 204 and response.content == b""
    error(await api.client.get("/api/users/me", headers=bearer(pair)), 401, "session_revoked")
    error(
        await api.client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}),
        401,
        "session_revoked",
    )
    assert (await api.client.get("/api/users/me", headers=bearer(other))).status_code == 200


async def test_sessions_list_and_revoke(api: AuthApi) -> None:
    username = name()
    pair = await api.register(username)
    response = await api.client.post(
        "/api/auth/login",
        json={"username": username, "password": DEFAULT_PASSWORD},
        headers={"User-Agent": "phone/1.0"},
    )
    phone = response.json()
    listed = (await api.client.get("/api/auth/sessions", headers=bearer(pair))).json()
    assert len(listed) == 2
    assert set(listed[0]) == {"id", "created_at", "last_used_at", "user_agent", "ip", "current"}
    current = [s for s in listed if s["current"]]
    others = [s for s in listed if not s["current"]]
    assert len(current) == 1 and len(others) == 1
    assert others[0]["user_agent"] == "phone/1.0"
    assert others[0]["ip"] == "127.0.0.1"
    response = await api.client.delete(
        f"/api/auth/sessions/{others[0]['id']}", headers=bearer(pair)
    )
    assert response.status_code == 204
    error(await api.client.get("/api/users/me", headers=bearer(phone)), 401, "session_revoked")
    listed = (await api.client.get("/api/auth/sessions", headers=bearer(pair))).json()
    assert [s["id"] for s in listed] == [current[0]["id"]]


async def test_another_users_session_is_404_and_stays_live(api: AuthApi) -> None:
    mine = await api.register(name())
    theirs = await api.register(name())
    their_sid = jwt.decode(theirs["access_token"], TEST_SECRET, algorithms=["HS256"])["sid"]
    response = await api.client.delete(f"/api/auth/sessions/{their_sid}", headers=bearer(mine))
    error(response, 404, "not_found")
    error(
        await api.client.delete(f"/api/auth/sessions/{uuid.uuid4()}", headers=bearer(mine)),
        404,
        "not_found",
    )
    error(
        await api.client.delete("/api/auth/sessions/not-a-uuid", headers=bearer(mine)),
        422,
        "invalid_input",
    )
    assert (await api.client.get("/api/users/me", headers=bearer(theirs))).status_code == 200
    # And the list shows only one's own sessions.
    listed = (await api.client.get("/api/auth/sessions", headers=bearer(mine))).json()
    assert their_sid not in {s["id"] for s in listed}


async def test_sessions_are_capped_per_user(api: AuthApi) -> None:
    from syncline.apps.auth.service import MAX_ACTIVE_SESSIONS

    username = name()
    first = await api.register(username)
    async with api.pool.connection() as conn:
        # Older than any new sign-in, so the first session is the least recently used.
        await conn.execute(
            "UPDATE auth_sessions SET last_used_at = now() - interval '1 day' WHERE user_id = %s",
            (first["user"]["id"],),
        )
    started = time.monotonic()
    for _ in range(MAX_ACTIVE_SESSIONS):
        response = await api.client.post(
            "/api/auth/login", json={"username": username, "password": DEFAULT_PASSWORD}
        )
        assert response.status_code == 200
    assert time.monotonic() - started < 60
    error(await api.client.get("/api/users/me", headers=bearer(first)), 401, "session_revoked")
    last = response.json()
    listed = (await api.client.get("/api/auth/sessions", headers=bearer(last))).json()
    assert len(listed) == MAX_ACTIVE_SESSIONS
