"""The HTTP transports on the gateway's port without an SDK: Centrifugo's unidirectional
SSE and HTTP-streaming with a plain HTTP client, the bad inputs every endpoint refuses with a
4xx JSON, the limits WebSocket has (per-IP connections, the slow consumer)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from cent import AsyncClient, SubscribeRequest

from syncline import metrics
from syncline.bench.http_clients import connect_frame, request_bytes
from syncline.core import control, emulation
from syncline.core.codes import DisconnectCode

from helpers.live_server import LiveServer, start_live_server, stop_live_server
from helpers.sdk_js import insert_order
from helpers.waiting import eventually

API_KEY = "http-transports-api-key-" + "k" * 20
ORIGIN = "http://app.example"
UNI_NOT_AN_OBJECT = "connect request must be a JSON object"


@pytest.fixture
async def server(schema_url: str) -> AsyncIterator[LiveServer]:
    live = await start_live_server(
        schema_url, api_key=API_KEY, cors_origins=[ORIGIN], connects_per_ip_per_second=100_000
    )
    try:
        yield live
    finally:
        await stop_live_server(live)


def base_url(server: LiveServer) -> str:
    parts = urlsplit(server.ws_url)
    return f"http://{parts.netloc}"


async def sse_data(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, object]]:
    """The JSON of each SSE event's data (one ``data:`` line an event from this server)."""
    async for line in lines:
        if line.startswith("data: "):
            yield orjson.loads(line[len("data: ") :])


async def json_lines(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, object]]:
    async for line in lines:
        if line.strip():
            yield orjson.loads(line)


async def next_with(messages: AsyncIterator[dict[str, object]], key: str) -> dict[str, object]:
    async with asyncio.timeout(10):
        async for message in messages:
            if key in message:
                return message
    raise AssertionError(f"the stream ended before a {key!r} message")


@pytest.mark.parametrize("kind", ["uni_http_stream", "uni_sse"])
async def test_a_unidirectional_client_receives_a_captured_row(
    server: LiveServer, kind: str
) -> None:
    url = f"{base_url(server)}/connection/{kind}"
    connect = json.dumps({"token": server.token("1")})
    async with httpx.AsyncClient(timeout=10) as http:
        if kind == "uni_sse":
            request = http.stream("GET", url, params={"cf_connect": connect})
        else:
            request = http.stream("POST", url, content=connect)
        async with request as response:
            assert response.status_code == 200
            sse = kind == "uni_sse"
            expected = "text/event-stream" if sse else "application/json"
            assert response.headers["content-type"].startswith(expected)
            lines = response.aiter_lines()
            messages = sse_data(lines) if sse else json_lines(lines)
            connected = await next_with(messages, "connect")
            client = connected["connect"]["client"]  # type: ignore[index]
            assert client
            # Unidirectional clients get their channels from the server (the server API).
            async with AsyncClient(f"{server.http_url}/api", API_KEY) as cent:
                await cent.subscribe(SubscribeRequest(user="1", channel="orders"))
            subscribed = await next_with(messages, "subscribe")
            assert subscribed["channel"] == "orders"
            await insert_order(server, "uni")
            pub = await next_with(messages, "pub")
            assert pub["channel"] == "orders"
            data = pub["pub"]["data"]  # type: ignore[index]
            assert (data["op"], data["row"]["product_name"]) == ("insert", "uni")


async def test_a_unidirectional_connect_with_an_expired_token_ends_with_a_disconnect(
    server: LiveServer,
) -> None:
    connect = json.dumps({"token": server.token("1", ttl=-10)})
    url = f"{base_url(server)}/connection/uni_http_stream"
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(url, content=connect)
    messages = [orjson.loads(line) for line in response.text.splitlines() if line.strip()]
    expired = DisconnectCode.EXPIRED
    assert messages == [{"disconnect": {"code": expired, "reason": expired.reason}}]


async def test_without_a_token_an_invalid_token_disconnect(server: LiveServer) -> None:
    url = f"{base_url(server)}/connection/uni_sse"
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(url, params={"cf_connect": '{"token":"not-a-jwt"}'})
    events = [orjson.loads(line[6:]) for line in response.text.splitlines() if line[:6] == "data: "]
    assert events[-1]["disconnect"]["code"] == 3500


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "error"),
    [
        ("GET", "/emulation", None, {}, 405, "GET not allowed here; use POST"),
        ("PUT", "/connection/http_stream", b"{}", {}, 405, "PUT not allowed here; use POST"),
        ("POST", "/emulation", b"nope", {}, 400, "emulation request is not JSON"),
        (
            "POST",
            "/emulation",
            b'{"session":"s","node":"NODE","data":"{}"}',
            {},
            404,
            "no such session (closed, or on another node)",
        ),
        (
            "POST",
            "/emulation",
            b"x" * (emulation.MAX_BODY + 1),
            {},
            413,
            f"request body over {emulation.MAX_BODY} bytes",
        ),
        ("GET", "/connection/sse", None, {}, 400, "no connect command: send it in cf_connect"),
        ("POST", "/connection/http_stream", b"", {}, 400, "no connect command in the body"),
        (
            "POST",
            "/connection/uni_http_stream",
            b"[1]",
            {},
            400,
            "connect request must be a JSON object",
        ),
        (
            "POST",
            "/emulation",
            b"{}",
            {"Origin": "http://evil.example"},
            403,
            "origin not allowed",
        ),
    ],
)
async def test_bad_requests_get_a_4xx_json(
    server: LiveServer,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    status: int,
    error: str,
) -> None:
    if body is not None:  # a session of this very node: not one to forward to another
        assert server.runtime.gateway is not None
        body = body.replace(b"NODE", server.runtime.gateway.node_name.encode())
    async with httpx.AsyncClient(timeout=10) as http:
        url = base_url(server) + path
        response = await http.request(method, url, content=body, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": error}


async def test_a_browser_preflight_is_answered_for_allowed_origins(server: LiveServer) -> None:
    headers = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.options(f"{base_url(server)}/emulation", headers=headers)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["access-control-allow-methods"] == "POST, OPTIONS"
    assert response.headers["access-control-allow-headers"] == "Content-Type"


async def test_other_paths_still_go_to_the_websocket_server(server: LiveServer) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{base_url(server)}/connection/nothing")
    assert response.status_code == 404


async def test_the_per_ip_connection_limit_applies(schema_url: str) -> None:
    live = await start_live_server(schema_url, max_connections_per_ip=1)
    try:
        url = f"{base_url(live)}/connection/uni_http_stream"
        connect = json.dumps({"token": live.token("1")})
        async with (
            httpx.AsyncClient(timeout=10) as http,
            http.stream("POST", url, content=connect) as first,
        ):
            await next_with(json_lines(first.aiter_lines()), "connect")
            second = await http.post(url, content=connect)
        refused = [orjson.loads(x) for x in second.text.splitlines() if x.strip()]
        limit = DisconnectCode.CONNECTION_LIMIT
        assert refused == [{"disconnect": {"code": limit, "reason": limit.reason}}]
    finally:
        await stop_live_server(live)


async def test_a_stream_that_is_not_read_is_closed_as_slow(schema_url: str) -> None:
    live = await start_live_server(schema_url, send_buffer=65536)
    try:
        gateway = live.runtime.gateway
        assert gateway is not None
        # A small receive buffer (set before connecting, so the window is small too).
        reader, writer = await open_http_stream(live, rcvbuf=4096)
        await read_reply(reader, 2)
        slow_before = metrics.SLOW_DISCONNECTS._value.get()
        # Stop reading: rows of 20 KB pile up until the session gives up on the client.
        for n in range(200):
            if metrics.SLOW_DISCONNECTS._value.get() > slow_before:
                break
            await live.sql(
                "INSERT INTO orders (customer_name, product_name) SELECT 'c', unnest(%s::text[])",
                ([f"{n}" + "x" * 20_000] * 10,),
            )
            await asyncio.sleep(0.02)
        await eventually(lambda: metrics.SLOW_DISCONNECTS._value.get() == slow_before + 1)
        await eventually(lambda: not gateway.connections)
        writer.close()
    finally:
        await stop_live_server(live)


async def open_http_stream(
    server: LiveServer, *, rcvbuf: int = 0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw http_stream session of user 1 subscribed to orders (the bench's request)."""
    parts = urlsplit(server.ws_url)
    assert parts.hostname is not None and parts.port is not None
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    frame = connect_frame(server.token("1"), "orders")
    writer.write(request_bytes("http_stream", parts.netloc, frame))
    return reader, writer


async def read_reply(reader: asyncio.StreamReader, command_id: int) -> dict[str, object]:
    """The reply to ``command_id`` in a chunked http_stream body (chunk sizes skipped)."""
    async with asyncio.timeout(10):
        while True:
            line = (await reader.readline()).strip()
            if line.startswith(b"{") and orjson.loads(line).get("id") == command_id:
                return orjson.loads(line)  # type: ignore[no-any-return]


async def test_emulation_for_another_node_goes_over_the_control_bus(server: LiveServer) -> None:
    """A POST for a session this process does not hold, naming another node, is accepted (204)
    and published on the control bus; the process whose node it names hands the commands to
    its session."""
    gateway = server.runtime.gateway
    assert gateway is not None
    reader, writer = await open_http_stream(server)
    try:
        connect = await read_reply(reader, 1)
        session = connect["connect"]["session"]  # type: ignore[index]
        assert connect["connect"]["node"] == gateway.node_name  # type: ignore[index]
        seen: list[control.ControlCommand] = []
        unsubscribe = server.runtime.control.subscribe(seen.append)
        try:
            data = b'{"id":3,"presence_stats":{"channel":"orders"}}'
            request = emulation.EmulationRequest("elsewhere", "not-here", data)
            async with httpx.AsyncClient(timeout=10) as http:
                response = await http.post(
                    f"{base_url(server)}/emulation",
                    content=emulation.encode_emulation(request, protobuf=False),
                )
            assert response.status_code == 204
            await eventually(lambda: seen == [control.Emulate("elsewhere", "not-here", data)])
        finally:
            unsubscribe()
        # The owner's side: a command naming this node and its session runs in the session.
        await server.runtime.control.publish(
            control.Emulate(gateway.node_name, session, b'{"id":4,"history":{"channel":"orders"}}')
        )
        reply = await read_reply(reader, 4)
        assert "history" in reply
    finally:
        writer.close()
