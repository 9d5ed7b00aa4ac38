"""Issue 12's inputs, one by one: NUL, lone surrogates, huge numbers and ids as strings are a
422 invalid_input naming the field, never a 500 or an error log line (RPC: test_rpc_input)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
import structlog

from helpers.chat import Account, make_account
from helpers.live_server import LiveServer, start_live_server, stop_live_server

API_KEY = "input-rules-api-key-" + "k" * 24
NUL = "a\u0000b"
# A JSON text with a lone (high) surrogate escape: json.loads takes it, UTF-8 cannot hold it.
LONE = '"a\\ud800b"'

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(migrated_url: str) -> AsyncIterator[LiveServer]:
    server = await start_live_server(migrated_url, api_key=API_KEY)
    try:
        yield server
    finally:
        await stop_live_server(server)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ann(live: LiveServer) -> Account:
    return await make_account(live.database_url, "ann")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(live: LiveServer, ann: Account) -> AsyncIterator[httpx.AsyncClient]:
    headers = {**ann.headers, "X-API-Key": API_KEY, "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=live.http_url, headers=headers, timeout=30) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fixtures(http: httpx.AsyncClient) -> dict[str, int]:
    """A room with a message and an order the cases can name in their paths."""
    room = (await http.post("/api/rooms", json={"name": "rules"})).json()["id"]
    message = (await http.post(f"/api/rooms/{room}/messages", json={"body": "hi"})).json()["id"]
    order = (
        await http.post("/api/orders", json={"customer_name": "c", "product_name": "p"})
    ).json()["id"]
    return {"room": room, "message": message, "order": order}


@pytest.fixture
def error_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fails the test if anything is logged at ERROR or above, through structlog or stdlib."""
    caplog.set_level(logging.ERROR)
    with structlog.testing.capture_logs() as captured:
        yield
    errors = [e for e in captured if e.get("log_level") in {"error", "critical", "exception"}]
    assert not errors, errors
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def raw(value: Any, **replace: str) -> bytes:
    """JSON of `value` with string placeholders swapped for raw JSON texts (lone surrogates)."""
    text = orjson.dumps(value).decode()
    for placeholder, json_text in replace.items():
        text = text.replace(f'"{placeholder}"', json_text)
    return text.encode()


# (method, path template, JSON body or raw bytes, the field the message must name)
REST_CASES: list[tuple[str, str, Any, str]] = [
    ("POST", "/api/rooms/{room}/messages", {"body": NUL}, "body"),
    ("POST", "/api/rooms/{room}/messages", {"body": "x", "client_msg_id": NUL}, "client_msg_id"),
    ("PATCH", "/api/messages/{message}", {"body": NUL}, "body"),
    ("POST", "/api/rooms", {"name": NUL}, "name"),
    ("PATCH", "/api/rooms/{room}", {"name": NUL}, "name"),
    ("POST", "/api/rooms/join", {"token": NUL}, "token"),
    ("POST", "/api/orders", {"customer_name": NUL, "product_name": "p"}, "customer_name"),
    ("PATCH", "/api/orders/{order}", {"product_name": NUL}, "product_name"),
    ("POST", "/api/auth/login", {"username": NUL, "password": "x"}, "username"),
    ("POST", "/api/auth/login", raw({"username": "ann", "password": "L"}, L=LONE), "password"),
    ("POST", "/api/auth/refresh", {"refresh_token": NUL}, "refresh_token"),
    ("POST", "/api/auth/verify-email", raw({"token": "L"}, L=LONE), "token"),
    ("POST", "/api/auth/password-reset", {"token": NUL, "new_password": "x"}, "token"),
    ("POST", "/api/auth/password-reset/request", raw({"email": "L"}, L=LONE), "email"),
    ("PATCH", "/api/users/me", {"email": "a\u0000@b.c"}, "email"),
    ("GET", "/api/users?q=a%00", None, "q"),
    ("POST", "/api/server/publish", {"channel": "orders", "data": {"text": NUL}}, "data.text"),
    ("POST", "/api/server/publish", {"channel": "orders", "data": {NUL: 1}}, "data.a\\u0000b"),
    ("POST", "/api/server/publish", raw({"channel": "orders", "data": "L"}, L=LONE), "data"),
    ("POST", "/api/server/publish", raw({"channel": "orders", "data": ["L"]}, L=LONE), "data.0"),
    ("POST", "/api/server/publish", {"channel": "orders", "data": 2**70}, "data"),
    ("POST", "/api/server/publish", b'{"channel": "orders", "data": NaN}', "data"),
    ("POST", "/api/server/broadcast", {"channels": ["orders"], "data": [NUL]}, "data.0"),
    ("POST", "/api/server/publish", raw({"channel": "L", "data": 1}, L=LONE), "channel"),
    ("POST", "/api/server/history", {"channel": "orders", "since": {"offset": 0, "epoch": NUL}},
     "since.epoch"),
    ("POST", "/api/server/history",
     {"channel": "orders", "since": {"offset": 2**64, "epoch": "e"}}, "since.offset"),
    ("POST", "/api/server/unsubscribe", {"channel": "orders", "user": NUL}, "user"),
    ("POST", "/api/server/channels", raw({"pattern": "L"}, L=LONE), "pattern"),
    # An unknown field whose name is a lone surrogate: the message names it, escaped.
    ("POST", "/api/rooms", raw({"name": "n", "K": 1}, K=LONE), "a\\ud800b"),
]  # fmt: skip

# Strict ids: an integer in a JSON body is a JSON number, never a string or a float.
STRICT_CASES: list[tuple[str, str, Any, str]] = [
    ("POST", "/api/rooms/direct", {"user_id": "1"}, "user_id"),
    ("POST", "/api/rooms/{room}/members", {"user_id": "1"}, "user_id"),
    ("POST", "/api/rooms/{room}/read", {"message_id": "{message}"}, "message_id"),
    ("POST", "/api/rooms/{room}/read", {"message_id": 1.0}, "message_id"),
    ("POST", "/api/server/history", {"channel": "orders", "limit": "1"}, "limit"),
    ("POST", "/api/server/history", {"channel": "orders", "reverse": "true"}, "reverse"),
]


async def call(
    http: httpx.AsyncClient, ids: dict[str, int], method: str, path: str, body: Any
) -> httpx.Response:
    url = path.format(**ids)
    if body is None or isinstance(body, bytes):
        return await http.request(method, url, content=body)
    if isinstance(body, dict):
        body = {
            k: v.format(**ids) if isinstance(v, str) and "{" in v else v for k, v in body.items()
        }
    # json, not orjson: it writes integers of any size (2**70).
    return await http.request(method, url, content=json.dumps(body))


def assert_invalid_input(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, (response.status_code, response.text)
    error = response.json()["error"]
    assert error["code"] == "invalid_input", error
    assert error["message"].startswith(f"{field}:") or f".{field}:" in error["message"], error


@pytest.mark.parametrize(("method", "path", "body", "field"), REST_CASES)
async def test_unstorable_input_is_422_naming_the_field(
    http: httpx.AsyncClient,
    fixtures: dict[str, int],
    error_logs: None,
    method: str,
    path: str,
    body: Any,
    field: str,
) -> None:
    assert_invalid_input(await call(http, fixtures, method, path, body), field)


@pytest.mark.parametrize(("method", "path", "body", "field"), STRICT_CASES)
async def test_ids_in_bodies_are_json_numbers(
    http: httpx.AsyncClient,
    fixtures: dict[str, int],
    error_logs: None,
    method: str,
    path: str,
    body: Any,
    field: str,
) -> None:
    assert_invalid_input(await call(http, fixtures, method, path, body), field)


async def test_ids_in_paths_and_queries_are_url_text(
    http: httpx.AsyncClient, fixtures: dict[str, int], error_logs: None
) -> None:
    room = fixtures["room"]
    response = await http.get(f"/api/rooms/{room}/messages", params={"limit": "1"})
    assert response.status_code == 200, response.text
    for bad in ("0x1", "1e3", str(2**63), "a\u0000"):
        response = await http.get(f"/api/rooms/{room}/messages", params={"limit": bad})
        assert_invalid_input(response, "query.limit")
