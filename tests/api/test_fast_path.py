"""The fast chat routes answer exactly as the FastAPI routes do: the same requests, good and bad,
sent to the app with and without ChatFastPath, compared by status, error body and headers."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
import psycopg
from prometheus_client import REGISTRY
from psycopg_pool import AsyncConnectionPool

from syncline.api.app import create_app
from syncline.api.context import AppContext
from syncline.api.fast import ChatFastPath, FastPathApp
from syncline.apps.chat.sending import SendBatcher
from syncline.settings import load_settings

from helpers.chat import Account, global_room_id, make_account
from helpers.live_server import TEST_SECRET

MAX_ID = (1 << 63) - 1
ROUTE = "/api/rooms/{room_id}/messages"
# The headers both paths must give alike (the rest, date and server, are the server's).
COMPARED_HEADERS = (
    "content-type",
    "www-authenticate",
    "retry-after",
    "x-content-type-options",
    "content-security-policy",
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "vary",
)


@asynccontextmanager
async def both_apps(
    url: str, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """(with the fast path, without it) over one pool and one database."""
    settings = load_settings(None, jwt_secret=TEST_SECRET, log_level="warning", **overrides)
    pool = AsyncConnectionPool(url, min_size=1, max_size=4, open=False, kwargs={"autocommit": True})
    await pool.open(wait=True)
    sender = SendBatcher(pool)
    try:
        context = AppContext(
            settings=settings, pool=pool, jwt_secret=TEST_SECRET, chat_sender=sender
        )
        fast_app = create_app(context)
        slow_app = create_app(context)
        assert isinstance(fast_app, FastPathApp) and isinstance(slow_app, FastPathApp)
        assert fast_app.fast_path is not None
        slow_app.fast_path = None
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(fast_app), base_url="http://t") as fast,
            httpx.AsyncClient(transport=httpx.ASGITransport(slow_app), base_url="http://t") as slow,
        ):
            yield fast, slow
    finally:
        await sender.close()
        await pool.close()


def _shape(response: httpx.Response) -> dict[str, Any]:
    """What must match: status, compared headers, and the body (a new message's own id and
    time differ from request to request, so for created ones only their keys and fields)."""
    headers = {k: response.headers.get(k) for k in COMPARED_HEADERS}
    try:
        body: Any = response.json()
    except ValueError:
        body = response.content
    if response.status_code == 201:
        body = {k: (None if k in ("id", "created_at") else v) for k, v in body.items()}
    return {"status": response.status_code, "headers": headers, "body": body}


async def same(
    fast: httpx.AsyncClient, slow: httpx.AsyncClient, method: str, path: str, **kw: Any
) -> httpx.Response:
    a = await fast.request(method, path, **kw)
    b = await slow.request(method, path, **kw)
    assert _shape(a) == _shape(b), (method, path, kw)
    return a


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def expired_token(account: Account) -> str:
    claims = {"sub": str(account.id), "sid": str(uuid.uuid4()), "exp": int(time.time()) - 10}
    return jwt.encode(claims, TEST_SECRET, algorithm="HS256")


async def revoked_account(url: str) -> Account:
    account = await make_account(url, "gone")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE auth_sessions SET revoked_at = now() WHERE user_id = %s", (account.id,)
        )
    return account


async def test_send_answers_alike(schema_url: str) -> None:
    ann = await make_account(schema_url, "ann")
    revoked = await revoked_account(schema_url)
    room = await global_room_id(schema_url)
    path = f"/api/rooms/{room}/messages"
    auth = bearer(ann.token)
    async with both_apps(schema_url) as (fast, slow):
        assert (
            await same(fast, slow, "POST", path, json={"body": "hi"}, headers=auth)
        ).status_code == 201
        # Idempotency: the first send of an id made on either path is what both repeat.
        first = await fast.post(path, json={"body": "once", "client_msg_id": "c-1"}, headers=auth)
        assert first.status_code == 201
        again = await same(
            fast, slow, "POST", path, json={"body": "once", "client_msg_id": "c-1"}, headers=auth
        )
        assert again.status_code == 200
        assert again.json() == first.json()
        bodies: list[Any] = [
            {"body": "x", "client_msg_id": "c-1"},  # the same id in another room: 409 below
            {},
            [],
            "text",
            {"body": ""},
            {"body": "   "},
            {"body": "x" * 4001},
            {"body": 5},
            {"body": "a\u0000b"},
            {"body": "x", "extra": 1},
            {"body": "x", "client_msg_id": "has space"},
            {"body": "x", "client_msg_id": ""},
            {"body": "x", "client_msg_id": None},
            {"body": "x", "client_msg_id": 12},
            {"body": "x", "client_msg_id": "y" * 65},
            {"body": "ünïcödé ✓ \n\t"},
        ]
        for payload in bodies:
            for where in (path, "/api/rooms/1/messages", f"/api/rooms/{MAX_ID}/messages"):
                await same(fast, slow, "POST", where, json=payload, headers=auth)
        raw_bodies = [
            b"",
            b"{",
            b'{"body": NaN}',
            b'{"body": "\\ud800"}',
            b'{"body": "x", "k\\ud800": 1}',
            b'{"body": "a", "body": "b"}',
            b'{"body": "x", "client_msg_id": 99999999999999999999999}',
            b"\xff\xfe",
            '{"body": "utf-16"}'.encode("utf-16"),
        ]
        for raw in raw_bodies:
            headers = {**auth, "Content-Type": "application/json"}
            await same(fast, slow, "POST", path, content=raw, headers=headers)
        for content_type in ("text/plain", "application/json; charset=utf-8", "application/x+json"):
            headers = {**auth, "Content-Type": content_type}
            await same(fast, slow, "POST", path, content=b'{"body": "ct"}', headers=headers)
        no_type = await slow.post(path, content=b'{"body": "no type"}', headers=auth)
        assert (
            await fast.post(path, content=b'{"body": "no type"}', headers=auth)
        ).status_code == (no_type.status_code)
        for odd in ("0", "01", "-1", "+1", "abc", str(MAX_ID + 1), "1.0", "1/x"):
            await same(
                fast, slow, "POST", f"/api/rooms/{odd}/messages", json={"body": "x"}, headers=auth
            )
        for headers in (
            {},
            {"Authorization": "Basic abc"},
            {"Authorization": "Bearer"},
            bearer("not.a.token"),
            bearer(expired_token(ann)),
            bearer(revoked.token),
            {"Authorization": f"bearer {ann.token}"},
        ):
            for payload in ({"body": "x"}, {"body": ""}):
                await same(fast, slow, "POST", path, json=payload, headers=headers)
            await same(fast, slow, "POST", path, content=b"{", headers=headers)
        too_big = {**auth, "Content-Type": "application/json", "Content-Length": str(10**9)}
        await same(fast, slow, "POST", path, content=b'{"body": "x"}', headers=too_big)
        odd_size = {**auth, "Content-Type": "application/json", "Content-Length": "+13"}
        await same(fast, slow, "POST", path, content=b'{"body": "x"}', headers=odd_size)
        for method in ("PUT", "DELETE", "HEAD", "PATCH"):
            await same(fast, slow, method, path, headers=auth)


async def test_history_answers_alike(schema_url: str) -> None:
    ann = await make_account(schema_url, "ann")
    room = await global_room_id(schema_url)
    path = f"/api/rooms/{room}/messages"
    auth = bearer(ann.token)
    async with both_apps(schema_url) as (fast, slow):
        ids = []
        for i in range(7):
            sent = await fast.post(path, json={"body": f"m{i}"}, headers=auth)
            ids.append(sent.json()["id"])
        queries = [
            "",
            "?limit=3",
            f"?before={ids[4]}&limit=2",
            f"?after={ids[1]}",
            f"?after={ids[1]}&before={ids[5]}",
            "?limit=0",
            "?limit=101",
            "?limit=100",
            "?limit=abc",
            "?limit=%35",
            "?limit=3&limit=4",
            "?before=-1",
            f"?before={MAX_ID + 1}",
            "?after=0",
            "?x=1",
            "?limit",
            "?limit=",
            "?limit=1&",
        ]
        for query in queries:
            await same(fast, slow, "GET", path + query, headers=auth)
        await same(fast, slow, "GET", "/api/rooms/1/messages", headers=auth)
        await same(fast, slow, "GET", f"/api/rooms/{MAX_ID}/messages", headers=auth)
        await same(fast, slow, "GET", "/api/rooms/0/messages", headers=auth)
        for headers in ({}, bearer("x.y.z"), bearer(expired_token(ann))):
            await same(fast, slow, "GET", path, headers=headers)
            await same(fast, slow, "GET", path + "?limit=0", headers=headers)


async def test_the_fast_path_answers_ordinary_requests_itself(schema_url: str) -> None:
    """Good requests never reach FastAPI's router; a bad one does (the route's 422)."""
    ann = await make_account(schema_url, "ann")
    room = await global_room_id(schema_url)
    path = f"/api/rooms/{room}/messages"
    auth = bearer(ann.token)
    async with both_apps(schema_url) as (fast, _):
        layer: ChatFastPath = fast._transport.app.fast_path  # type: ignore[attr-defined]
        inner, passed = layer.app, []

        async def spy(scope: Any, receive: Any, send: Any) -> None:
            passed.append(scope["path"])
            await inner(scope, receive, send)

        layer.app = spy
        sent = await fast.post(path, json={"body": "hi", "client_msg_id": "f"}, headers=auth)
        assert sent.status_code == 201
        assert sent.headers["x-content-type-options"] == "nosniff"
        page = await fast.get(path + "?limit=1", headers=auth)
        assert page.json() == {"messages": [sent.json()], "has_more": False}
        assert passed == []
        assert (await fast.post(path, json={"body": ""}, headers=auth)).status_code == 422
        assert passed == [path]


async def test_a_token_verified_before_is_refused_once_its_session_is_revoked(
    schema_url: str,
) -> None:
    """The verified token's claims are kept (VerifiedTokens), its session's liveness is not:
    signing out refuses the very next send and read, on both paths."""
    ann = await make_account(schema_url, "ann")
    room = await global_room_id(schema_url)
    path = f"/api/rooms/{room}/messages"
    auth = bearer(ann.token)
    async with both_apps(schema_url) as (fast, _):
        for _ in range(3):
            assert (await fast.post(path, json={"body": "hi"}, headers=auth)).status_code == 201
            assert (await fast.get(path, headers=auth)).status_code == 200
        assert (await fast.get("/api/users/me", headers=auth)).status_code == 200
        assert (await fast.post("/api/auth/logout", headers=auth)).status_code == 204
        for refused in (
            await fast.post(path, json={"body": "hi"}, headers=auth),
            await fast.get(path, headers=auth),
        ):
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "session_revoked"
        refused = await fast.get("/api/users/me", headers=auth)
        assert refused.status_code == 401


async def test_cross_origin_requests_get_the_cors_answer(schema_url: str) -> None:
    """With CORS on, a request naming its origin gets CORSMiddleware's headers either way."""
    ann = await make_account(schema_url, "ann")
    room = await global_room_id(schema_url)
    path = f"/api/rooms/{room}/messages"
    async with both_apps(schema_url, cors_origins=["http://web.test"]) as (fast, slow):
        for origin in ("http://web.test", "http://elsewhere.test"):
            headers = {**bearer(ann.token), "Origin": origin}
            sent = await same(fast, slow, "POST", path, json={"body": "o"}, headers=headers)
            assert sent.status_code == 201
            page = await same(fast, slow, "GET", path + "?limit=1", headers=headers)
            assert page.status_code == 200
        allowed = {**bearer(ann.token), "Origin": "http://web.test"}
        assert (await fast.get(path, headers=allowed)).headers[
            "access-control-allow-origin"
        ] == "http://web.test"
        # Without an Origin header the fast path answers, CORS on or not.
        assert (await fast.get(path, headers=bearer(ann.token))).status_code == 200


async def test_the_request_counter_counts_fast_answers_by_route(schema_url: str) -> None:
    ann = await make_account(schema_url, "ann")
    room = await global_room_id(schema_url)
    path = f"/api/rooms/{room}/messages"

    def count(method: str, status: str) -> float:
        value = REGISTRY.get_sample_value(
            "syncline_http_requests_total", {"method": method, "route": ROUTE, "status": status}
        )
        return value or 0.0

    async with both_apps(schema_url) as (fast, _):
        before = count("POST", "201"), count("GET", "200"), count("POST", "401")
        await fast.post(path, json={"body": "n"}, headers=bearer(ann.token))
        await fast.get(path, headers=bearer(ann.token))
        await fast.post(path, json={"body": "n"}, headers=bearer("not.a.token"))
        after = count("POST", "201"), count("GET", "200"), count("POST", "401")
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 1]
