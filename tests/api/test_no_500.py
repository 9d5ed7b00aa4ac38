"""No 500, ever: hostile values (any Unicode, NUL, lone surrogates, controls, huge and
non-finite numbers) in every path, query and body field of every route get a 2xx/4xx JSON
answer and log nothing at ERROR. Routes come from the OpenAPI spec: a new one is covered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast
from urllib.parse import quote

import httpx
import jwt
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool

from syncline.api.app import create_app
from syncline.api.context import AppContext
from syncline.settings import load_settings

from helpers.accounts import DEFAULT_PASSWORD, bearer, register_user
from helpers.hostile import (
    LONE_SURROGATE,
    NUL,
    dump,
    hostile_number,
    hostile_text,
    hostile_value,
    no_error_logs,
)
from helpers.live_server import TEST_SECRET, LiveServer, start_live_server, stop_live_server

API_KEY = "no-500-api-key-" + "n" * 28


def _spec() -> dict[str, Any]:
    # Only the routes are read: building the spec needs no database, so no pool.
    settings = load_settings(None, jwt_secret=TEST_SECRET)
    app = create_app(AppContext(settings=settings, pool=cast(AsyncConnectionPool, None)))
    return app.openapi()


SPEC = _spec()
# Signing out or revoking would leave every later example unauthenticated.
SKIPPED = {("POST", "/api/auth/logout"), ("DELETE", "/api/auth/sessions/{session_id}")}
OPERATIONS = [
    (method.upper(), path)
    for path, operations in SPEC["paths"].items()
    for method in operations
    if (method.upper(), path) not in SKIPPED
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(migrated_url: str) -> AsyncIterator[LiveServer]:
    server = await start_live_server(migrated_url, api_key=API_KEY)
    try:
        yield server
    finally:
        await stop_live_server(server)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    pair = await register_user(live.http_url, "fuzzer")
    headers = {**bearer(pair), "X-API-Key": API_KEY}
    async with httpx.AsyncClient(base_url=live.http_url, headers=headers, timeout=30) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def valid(http: httpx.AsyncClient) -> dict[str, Any]:
    """Values that pass validation, by field name: examples mixing them with hostile ones get
    past the first refusal and into the services and the database."""
    me = (await http.get("/api/users/me")).json()
    claims = jwt.decode(
        http.headers["Authorization"].removeprefix("Bearer "), options={"verify_signature": False}
    )
    room = (await http.post("/api/rooms", json={"name": "fuzz"})).json()["id"]
    message = (await http.post(f"/api/rooms/{room}/messages", json={"body": "hi"})).json()["id"]
    order = (
        await http.post("/api/orders", json={"customer_name": "c", "product_name": "p"})
    ).json()["id"]
    return {
        "room_id": room,
        "message_id": message,
        "order_id": order,
        "user_id": me["id"],
        "session_id": claims["sid"],
        "username": me["username"],
        "password": DEFAULT_PASSWORD,
        "current_password": DEFAULT_PASSWORD,
        "new_password": DEFAULT_PASSWORD,
        "email": me["email"],
        "body": "hello",
        "name": "a room",
        "customer_name": "c",
        "product_name": "p",
        "status": "pending",
        "channel": "orders",
        "channels": ["orders"],
        "data": {"n": 1},
        "q": "fuzz",
        "limit": 10,
        "offset": 0,
        "epoch": "e",
        "reverse": False,
        "pattern": "*",
        "client": "",
        "user": str(me["id"]),
        "display_name": "Fuzz",
        "client_msg_id": "k-1",
        "token": "t" * 43,
        "refresh_token": "t" * 43,
        "before": message + 1,
        "after": 0,
    }


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = SPEC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    for key in ("anyOf", "oneOf"):  # Optional[Model]: the object branch
        for branch in schema.get(key, ()):
            resolved = _resolve(branch)
            if resolved.get("type") == "object":
                return resolved
    return schema


def valid_object(schema: dict[str, Any], valid: dict[str, Any]) -> dict[str, Any]:
    """The schema's object with a valid value in every field one is known for."""
    out: dict[str, Any] = {}
    for name, sub in schema.get("properties", {}).items():
        nested = _resolve(sub)
        if name in valid:
            out[name] = valid[name]
        elif nested.get("properties"):
            out[name] = valid_object(nested, valid)
    return out


def hostile_field(
    name: str, schema: dict[str, Any], valid: dict[str, Any]
) -> st.SearchStrategy[Any]:
    """A hostile value for a field; for an object field, maybe the object with one inside."""
    options: list[st.SearchStrategy[Any]] = [hostile_value, hostile_text, hostile_number]
    nested = _resolve(schema)
    if nested.get("properties"):
        options.append(one_hostile(nested, valid))
    return st.one_of(*options)


def one_hostile(schema: dict[str, Any], valid: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A valid object but for one field: the likeliest way to reach deep with a bad value."""
    properties: dict[str, Any] = schema.get("properties", {})
    if not properties:
        return hostile_value
    base = valid_object(schema, valid)
    return st.sampled_from(sorted(properties)).flatmap(
        lambda name: hostile_field(name, properties[name], valid).map(
            lambda value: {**base, name: value}
        )
    )


def any_mix(schema: dict[str, Any], valid: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Some of the schema's fields, each valid or hostile, maybe an unknown one more."""
    properties: dict[str, Any] = schema.get("properties", {})

    def field(name: str, sub: dict[str, Any]) -> st.SearchStrategy[Any]:
        if name in valid:
            return st.one_of(st.just(valid[name]), hostile_field(name, sub, valid))
        return hostile_field(name, sub, valid)

    fields = st.fixed_dictionaries({}, optional={n: field(n, s) for n, s in properties.items()})
    extra = st.dictionaries(hostile_text, hostile_value, max_size=1)
    return st.builds(lambda known, more: {**more, **known}, fields, extra)


def body_value(schema: dict[str, Any], valid: dict[str, Any]) -> st.SearchStrategy[Any]:
    resolved = _resolve(schema)
    one = one_hostile(resolved, valid)
    return st.one_of(one, one, any_mix(resolved, valid), hostile_value)  # one: twice as likely


def url_text(value: Any) -> str:
    """A value as URL text: percent-encoded UTF-8 (a lone surrogate as its raw bytes)."""
    text = value if isinstance(value, str) else dump(value)
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def param_value(name: str, valid: dict[str, Any], hostile: bool) -> st.SearchStrategy[str]:
    """URL text for a parameter: its valid value (when known and not `hostile`) or a bad one."""
    if name in valid and not hostile:
        return st.just(url_text(valid[name]))
    options: list[st.SearchStrategy[Any]] = [hostile_text, hostile_number, st.just(NUL)]
    if name == "session_id":
        options.append(st.uuids().map(str))
    return st.one_of(*options).map(url_text)


def check_answer(response: httpx.Response, method: str, path: str) -> None:
    where = f"{method} {response.request.url} → {response.status_code}: {response.text[:300]}"
    assert response.status_code < 500, where
    if path == "/metrics" or (response.status_code in (202, 204) and not response.content):
        return  # Prometheus text; accepted or done with nothing to say
    if response.is_redirect:
        return  # "%2F" in an id makes a trailing slash: redirected to the URL without it
    body = response.json()  # JSON, always
    if response.status_code >= 400:
        error = body.get("error")
        assert isinstance(error, dict) and error.get("code") and error.get("message"), where


def draw_request(
    data: st.DataObject, method: str, path: str, valid: dict[str, Any]
) -> tuple[str, str | None]:
    """A URL and a JSON body for the operation: mostly a valid request with hostile values in
    one place (the parameters or the body), sometimes hostile everywhere."""
    operation = SPEC["paths"][path][method.lower()]
    target = data.draw(st.sampled_from(["body", "body", "params", "everything"]), label="target")
    url = path
    query: list[str] = []
    for param in operation.get("parameters", ()):
        name = param["name"]
        hostile = target != "body" and data.draw(st.booleans(), label=f"{name} hostile")
        if param["in"] == "path":
            # Never empty: "/api/rooms/" is another URL (a redirect), not this route's input.
            value = data.draw(param_value(name, valid, hostile), label=name) or "%20"
            url = url.replace(f"{{{name}}}", value)
        elif param["in"] == "query" and (hostile or data.draw(st.booleans(), label=f"{name}?")):
            query.append(f"{name}={data.draw(param_value(name, valid, hostile), label=name)}")
    if query:
        url += "?" + "&".join(query)
    schema = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if schema is None:
        return url, None
    if target == "params":
        return url, dump(valid_object(_resolve(schema["schema"]), valid))
    return url, dump(data.draw(body_value(schema["schema"], valid), label="body"))


# Requests go out in concurrent batches: the in-process server answers each ~40 ms late (its
# listening socket lacks TCP_NODELAY under the test's asyncio loop), one by one that would be
# slow. Concurrency is no harm here: races must not be a 500 either.
BATCH = 6


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
@given(data=st.data())
@settings(
    max_examples=8,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
async def test_hostile_input_never_gets_a_server_error(
    http: httpx.AsyncClient,
    valid: dict[str, Any],
    method: str,
    path: str,
    data: st.DataObject,
) -> None:
    batch = [draw_request(data, method, path, valid) for _ in range(BATCH)]
    json_type = {"Content-Type": "application/json"}
    with no_error_logs():
        responses = await asyncio.gather(
            *(
                http.request(method, url, content=body, headers=json_type if body else {})
                for url, body in batch
            )
        )
    for response in responses:
        check_answer(response, method, path)


# -- every field of every route, each canonical bad value, on an otherwise valid request --

UNSTORABLE_TEXT = [NUL, LONE_SURROGATE]
BAD_NUMBERS = [2**70, -(2**63) - 1, float("nan"), float("inf")]


def build_url(path: str, operation: dict[str, Any], params: dict[str, str]) -> str:
    """The path with its parameters, and the query: valid values unless given in `params`."""
    url, query = path, []
    for param in operation.get("parameters", ()):
        name = param["name"]
        if param["in"] == "path":
            url = url.replace(f"{{{name}}}", params[name])
        elif param["in"] == "query" and name in params:
            query.append(f"{name}={params[name]}")
    return url + ("?" + "&".join(query) if query else "")


def sweep(method: str, path: str, valid: dict[str, Any]) -> list[tuple[str, str | None, str, Any]]:
    """(url, body, field, value) for each parameter and body field (and the fields of a nested
    object) with each canonical bad value, everything else valid."""
    operation = SPEC["paths"][path][method.lower()]
    params = {
        p["name"]: url_text(valid.get(p["name"], 1))
        for p in operation.get("parameters", ())
        if p["in"] == "path"
    }
    cases: list[tuple[str, str | None, str, Any]] = []
    for param in operation.get("parameters", ()):
        for value in [*UNSTORABLE_TEXT, *BAD_NUMBERS]:
            url = build_url(path, operation, {**params, param["name"]: url_text(value)})
            cases.append((url, None, f"{param['in']}.{param['name']}", value))
    schema = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if schema is None:
        return cases
    url = build_url(path, operation, params)
    resolved = _resolve(schema["schema"])
    base = valid_object(resolved, valid)
    for name, sub in resolved.get("properties", {}).items():
        for value in [*UNSTORABLE_TEXT, *BAD_NUMBERS, [NUL], {"k": NUL}, {NUL: 1}]:
            cases.append((url, dump({**base, name: value}), name, value))
        nested = _resolve(sub)
        for inner in nested.get("properties", {}):
            for value in [*UNSTORABLE_TEXT, 2**70]:
                body = {**base, name: {**valid_object(nested, valid), inner: value}}
                cases.append((url, dump(body), f"{name}.{inner}", value))
    return cases


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
async def test_every_field_refuses_unstorable_values(
    http: httpx.AsyncClient, valid: dict[str, Any], method: str, path: str
) -> None:
    cases = sweep(method, path, valid)
    json_type = {"Content-Type": "application/json"}
    with no_error_logs():
        responses = await asyncio.gather(
            *(
                http.request(method, url, content=body, headers=json_type if body else {})
                for url, body, _, _ in cases
            )
        )
    for (_, body, field, value), response in zip(cases, responses, strict=True):
        check_answer(response, method, path)
        # Text a column cannot hold, sent as JSON text: refused, naming the field. (In a URL a
        # lone surrogate is invalid UTF-8, which decodes to U+FFFD: harmless text.)
        if value == NUL or (value == LONE_SURROGATE and body is not None):
            where = f"{method} {path} {field}={value!r} → {response.status_code} {response.text}"
            assert response.status_code == 422, where
            error = response.json()["error"]
            assert error["code"] == "invalid_input", where
            assert f"{field.removeprefix('path.')}: " in error["message"], where


def test_every_route_family_is_walked() -> None:
    paths = {path for _, path in OPERATIONS}
    for prefix in ("/api/auth/", "/api/users", "/api/rooms", "/api/messages/", "/api/orders"):
        assert any(p.startswith(prefix) for p in paths), prefix
    assert any(p.startswith("/api/server/") for p in paths)
    assert len(OPERATIONS) >= 40, OPERATIONS
