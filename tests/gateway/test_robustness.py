"""The gateway under hostile or broken clients: malformed frames (fuzzed and table-driven), a
client that stops reading, connection limits and the Origin check."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from syncline import metrics

from helpers.live_server import LiveServer, start_live_server, stop_live_server
from helpers.waiting import eventually

PROBE_ID = 4_000_000_000  # a valid uint32 id no fuzz case reuses for a reply we wait on
WAIT = 5.0  # seconds any single server answer may take before the test fails


def frame(*commands: dict[str, Any]) -> str:
    return "\n".join(json.dumps(c) for c in commands)


def connect_cmd(server: LiveServer, cid: int = 1) -> dict[str, Any]:
    return {"id": cid, "connect": {"token": server.token("1")}}


async def reply_to(ws: ClientConnection, cid: int) -> dict[str, Any]:
    """The reply with this id (pushes and other replies in between are skipped)."""
    async with asyncio.timeout(WAIT):
        while True:
            raw = await ws.recv()
            for line in str(raw).splitlines():
                msg: dict[str, Any] = json.loads(line)
                if msg.get("id") == cid:
                    return msg


async def close_code(ws: ClientConnection) -> int:
    """Read until the server closes; the close code it sent."""

    async def read_forever() -> None:
        while True:
            await ws.recv()

    async with asyncio.timeout(WAIT):
        with pytest.raises(ConnectionClosed) as closed:
            await read_forever()
    assert closed.value.rcvd is not None, "the server dropped TCP without a close frame"
    return closed.value.rcvd.code


async def connected_client(server: LiveServer) -> ClientConnection:
    ws = await connect(server.ws_url)
    await ws.send(frame(connect_cmd(server)))
    assert "connect" in await reply_to(ws, 1)
    return ws


async def assert_fresh_client_works(server: LiveServer) -> None:
    async with await connected_client(server) as ws:
        await ws.send(frame({"id": 2, "subscribe": {"channel": "orders"}}))
        reply = await reply_to(ws, 2)
        assert "subscribe" in reply, reply


# -- fuzzing ---------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
methods = st.sampled_from(
    [
        "connect",
        "subscribe",
        "unsubscribe",
        "publish",
        "presence",
        "presence_stats",
        "history",
        "rpc",
        "send",
        "refresh",
        "sub_refresh",
        "bogus",
    ]
)
command_fields = st.sampled_from(
    ["channel", "token", "data", "recover", "offset", "epoch", "limit", "since", "reverse", "flag"]
)
ids = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    st.none(),
)
# Valid-looking commands with wrong types: a method key whose body holds random fields.
looking_valid = st.builds(
    lambda cid, method, body: {"id": cid, method: body},
    ids,
    methods,
    st.dictionaries(command_fields, json_values, max_size=4) | json_values,
)
json_texts = st.one_of(
    json_values.map(json.dumps),
    st.dictionaries(st.text(max_size=10), json_values, max_size=5).map(json.dumps),
    looking_valid.map(json.dumps),
    st.lists(looking_valid, min_size=1, max_size=4).map(
        lambda cmds: "\n".join(json.dumps(c) for c in cmds)
    ),
)
payloads: st.SearchStrategy[str | bytes] = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200),
    json_texts,
    json_texts.map(str.encode),  # the same JSON as a binary frame
)


@pytest.fixture
async def fuzz_server(schema_url: str) -> AsyncIterator[LiveServer]:
    """Syncline whose connect-rate limit is out of the way: a fuzz run opens a few hundred
    connections per second from 127.0.0.1, which the default 200/s would refuse with 3013.
    After the test, nothing the fuzzing started may be left behind."""
    server = await start_live_server(schema_url, connects_per_ip_per_second=100_000)
    # Counted from a fixture step like the teardown below: each runs in its own task, so
    # both counts include exactly one task of pytest-asyncio's.
    tasks_before = len(asyncio.all_tasks())
    try:
        yield server
        gateway = server.runtime.gateway
        assert gateway is not None
        await eventually(lambda: len(gateway.connections) == 0, timeout=5)
        # No tolerance: per-connection tasks (command workers, unlisten) end with the
        # connection, and websockets' client tasks end when its connection is closed.
        await eventually(lambda: len(asyncio.all_tasks()) == tasks_before, timeout=5)
        assert not gateway.hub.channels, gateway.hub.channels
    finally:
        await stop_live_server(server)


# Pattern: pytest-asyncio (auto mode) recognises an ``async def`` test decorated with
# ``@given`` and runs every generated example as a coroutine on the test's own event loop
# (it wraps ``test.hypothesis.inner_test``). The live server started by the fixture runs on
# that same loop, so it serves the example while the example is awaited. The fixture is set
# up once for all examples on purpose (one server, checked for leaks at teardown), hence the
# suppressed function_scoped_fixture health check.
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=payloads, connect_first=st.booleans())
async def test_malformed_frames_never_crash_or_leak(
    fuzz_server: LiveServer, payload: str | bytes, connect_first: bool
) -> None:
    server = fuzz_server
    async with connect(server.ws_url, max_size=None) as ws:
        if connect_first:
            await ws.send(frame(connect_cmd(server)))
            assert "connect" in await reply_to(ws, 1)
        # A probe after the fuzz frame: a reply to it proves the session is still working (a
        # fuzz frame that is a valid command without a reply, e.g. a pong, is fine).
        probe = (
            {"id": PROBE_ID, "unsubscribe": {"channel": "never"}}
            if connect_first
            else {"id": PROBE_ID, "connect": {"token": server.token("1")}}
        )
        closed: ConnectionClosed | None = None
        try:
            await ws.send(payload)
            await ws.send(frame(probe))
            answered = await reply_to(ws, PROBE_ID)
        except ConnectionClosed as exc:
            closed = exc
        if closed is None:
            # Answered, and not with "internal server error".
            assert "error" not in answered or answered["error"]["code"] != 100, answered
        else:
            # A protocol close (3xxx/4xxx), never 1011 or a dropped TCP connection.
            assert closed.rcvd is not None, f"closed without a close frame for {payload!r}"
            code = closed.rcvd.code
            assert 3000 <= code <= 4999, f"close code {code} for {payload!r}"
    await assert_fresh_client_works(server)


# -- table-driven protocol errors -------------------------------------------------------------


@pytest.mark.parametrize(
    ("connect_first", "payload"),
    [
        pytest.param(False, "{not json", id="invalid-json"),
        pytest.param(True, "{not json", id="invalid-json-after-connect"),
        pytest.param(
            False, frame({"id": 1, "subscribe": {"channel": "orders"}}), id="before-connect"
        ),
        pytest.param(True, "second-connect", id="second-connect"),
        pytest.param(True, frame({"id": 5, "frobnicate": {}}), id="unknown-method"),
        pytest.param(True, frame({"id": 5, "subscribe": {"channel": 12}}), id="channel-not-string"),
    ],
)
async def test_bad_frames_close_with_3501(
    live_server: LiveServer, connect_first: bool, payload: str
) -> None:
    async with connect(live_server.ws_url) as ws:
        if connect_first:
            await ws.send(frame(connect_cmd(live_server)))
            assert "connect" in await reply_to(ws, 1)
        if payload == "second-connect":
            payload = frame(connect_cmd(live_server, 2))
        await ws.send(payload)
        assert await close_code(ws) == 3501
    await assert_fresh_client_works(live_server)


async def test_a_frame_over_max_frame_size_is_refused(live_server: LiveServer) -> None:
    max_size = live_server.runtime.settings.max_frame_size
    async with await connected_client(live_server) as ws:
        big = {"id": 2, "rpc": {"method": "x", "data": "a" * max_size}}
        await ws.send(frame(big))
        # picows enforces max_frame_size itself, before the protocol layer sees the frame,
        # and answers with the WebSocket close code "message too big".
        assert await close_code(ws) == 1009
    await assert_fresh_client_works(live_server)


async def test_history_reverse_from_offset_zero_is_a_107_reply(live_server: LiveServer) -> None:
    async with await connected_client(live_server) as ws:
        await ws.send(
            frame(
                {"id": 2, "history": {"channel": "orders", "reverse": True, "since": {"offset": 0}}}
            )
        )
        reply = await reply_to(ws, 2)
        assert reply["error"]["code"] == 107
        await ws.send(frame({"id": 3, "subscribe": {"channel": "orders"}}))
        assert "subscribe" in await reply_to(ws, 3)


async def test_unsubscribing_an_unknown_channel_is_an_empty_reply(live_server: LiveServer) -> None:
    async with await connected_client(live_server) as ws:
        await ws.send(frame({"id": 2, "unsubscribe": {"channel": "orders"}}))
        assert await reply_to(ws, 2) == {"id": 2, "unsubscribe": {}}


# -- slow consumers ---------------------------------------------------------------------------


async def test_a_client_that_stops_reading_is_closed_as_slow(schema_url: str) -> None:
    server = await start_live_server(schema_url, send_buffer=65536)
    gateway = server.runtime.gateway
    assert gateway is not None
    slow_before = metrics.SLOW_DISCONNECTS._value.get()
    received: list[tuple[int, str]] = []
    try:
        # The stalled client: websockets stops reading the socket once one message waits
        # unread (max_queue=1), and a small receive buffer fills quickly.
        stalled = await connect(server.ws_url, max_queue=1, max_size=None)
        stalled.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVBUF, 4096
        )
        await stalled.send(
            frame(connect_cmd(server), {"id": 2, "subscribe": {"channel": "orders"}})
        )
        assert "subscribe" in await reply_to(stalled, 2)
        stalled_conn = next(c for c in gateway.connections if c.subs.get("orders"))

        reader = await connected_client(server)
        await reader.send(frame({"id": 2, "subscribe": {"channel": "orders"}}))
        assert "subscribe" in await reply_to(reader, 2)

        async def read_all() -> None:
            async for raw in reader:
                for line in str(raw).splitlines():
                    push = orjson.loads(line).get("push", {})
                    if "pub" in push:
                        pub = push["pub"]
                        received.append((pub["offset"], pub["data"]["row"]["product_name"]))

        reading = asyncio.create_task(read_all())
        rows, per_tx = 300, 50
        names = [f"{n:04d}" + "x" * 20_000 for n in range(rows)]
        for start in range(0, rows, per_tx):
            await server.sql(
                "INSERT INTO orders (customer_name, product_name) SELECT 'c', unnest(%s::text[])",
                (names[start : start + per_tx],),
            )
        await eventually(lambda: stalled_conn not in gateway.connections, timeout=15)
        assert stalled_conn.closing
        assert not stalled_conn._out and stalled_conn._out_size == 0
        assert all(stalled_conn not in subs for subs in gateway.hub.channels.values())
        assert metrics.SLOW_DISCONNECTS._value.get() >= slow_before + 1
        await eventually(lambda: len(received) == rows, timeout=15)
        assert [offset for offset, _ in received] == list(range(1, rows + 1))
        assert [name for _, name in received] == names
        await reader.close()
        await reading  # ends with the normal close
        # The server sent its 3008 close frame behind the data the client never read, then
        # cut the connection off after a grace period: the client's socket is dead.
        stalled.transport.abort()
    finally:
        await stop_live_server(server)


# -- admission --------------------------------------------------------------------------------


async def test_a_connection_over_the_per_ip_limit_is_closed_with_3504(schema_url: str) -> None:
    server = await start_live_server(schema_url, max_connections_per_ip=3)
    try:
        clients = [await connected_client(server) for _ in range(3)]
        async with connect(server.ws_url) as fourth:
            assert await close_code(fourth) == 3504
        for ws in clients:
            await ws.close()
        await assert_fresh_client_works(server)  # a closed connection frees its slot
    finally:
        await stop_live_server(server)


async def test_connects_over_the_rate_are_closed_with_3013(schema_url: str) -> None:
    server = await start_live_server(schema_url, connects_per_ip_per_second=2)
    try:
        first = [await connect(server.ws_url) for _ in range(2)]
        async with connect(server.ws_url) as third:
            assert await close_code(third) == 3013
        for ws in first:
            await ws.close()
    finally:
        await stop_live_server(server)


async def test_a_foreign_origin_is_refused_with_403(live_server: LiveServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(live_server.ws_url, origin="http://evil.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    own = live_server.http_url.rstrip("/")
    async with connect(live_server.ws_url, origin=own) as ws:  # type: ignore[arg-type]
        await ws.send(frame(connect_cmd(live_server)))
        assert "connect" in await reply_to(ws, 1)
