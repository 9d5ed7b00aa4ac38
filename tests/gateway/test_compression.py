"""permessage-deflate (RFC 7692) with `websocket_compression` on: the negotiation, compressed
messages both ways with a client that writes exact bytes, decompression bombs, and the real
SDKs (centrifuge-js over `ws`, centrifuge-python over `websockets`) that offer it."""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio
from centrifuge import Client, PublicationContext, SubscriptionEventHandler

from syncline.gateway.connection import Connection
from syncline.gateway.deflate import MIN_SIZE, Deflater
from syncline.gateway.websocket import WebSocketTransport

from helpers.live_server import LiveServer, start_live_server, stop_live_server
from helpers.node import JS_DIR, NodeProcess, node_binary
from helpers.raw_ws import (
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    RawClient,
    encode_frame,
    http_exchange,
    upgrade_request,
)
from helpers.waiting import eventually

PROTOCOL_ERROR, INVALID_DATA, MESSAGE_TOO_BIG = 1002, 1007, 1009
RSV1 = 4
TAIL = b"\x00\x00\xff\xff"
OFFER = ("Sec-WebSocket-Extensions", "permessage-deflate")
LONG = "a long product name, repeated " * 20  # publications well over MIN_SIZE
NOISE = os.urandom(150).hex()  # compresses to half alone, to nothing after the same once


@pytest_asyncio.fixture
async def server(schema_url: str) -> AsyncIterator[LiveServer]:
    live = await start_live_server(
        schema_url, websocket_compression=True, connects_per_ip_per_second=100_000
    )
    try:
        yield live
    finally:
        await stop_live_server(live)


@pytest_asyncio.fixture
async def takeover_server(schema_url: str) -> AsyncIterator[LiveServer]:
    live = await start_live_server(
        schema_url, websocket_compression=True, websocket_compression_context=True
    )
    try:
        yield live
    finally:
        await stop_live_server(live)


def websocket_of(conn: Connection) -> WebSocketTransport:
    assert isinstance(conn.transport, WebSocketTransport)
    return conn.transport


def deflate(data: bytes, compressor: Any = None) -> bytes:
    """One message compressed as a client does (a sync flush, its tail stripped)."""
    c = compressor or zlib.compressobj(6, zlib.DEFLATED, -15)
    out: bytes = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def inflate(payload: bytes) -> bytes:
    """A server message: each one on its own (server_no_context_takeover)."""
    return zlib.decompressobj(-15).decompress(payload + TAIL)


def command(cid: int, **body: Any) -> bytes:
    return json.dumps({"id": cid, **body}).encode()


async def reply(client: RawClient, cid: int) -> tuple[dict[str, Any], bool]:
    """The reply with this id, and whether its frame was compressed."""
    while True:
        got = await client.recv()
        if got is not None and got.opcode == PONG:
            continue
        assert got is not None and got.opcode == TEXT, got
        payload = inflate(got.payload) if got.rsv & RSV1 else got.payload
        for line in payload.splitlines():
            message: dict[str, Any] = orjson.loads(line)
            if message.get("id") == cid:
                return message, bool(got.rsv & RSV1)


async def negotiated(server: LiveServer, offer: str) -> str | None:
    request = upgrade_request(server.ws_url, extra=[("Sec-WebSocket-Extensions", offer)])
    response = await http_exchange(server.ws_url, request)
    assert response.status == 101  # whatever the offer, the upgrade goes on
    return response.headers.get("Sec-WebSocket-Extensions")


async def fails_with(client: RawClient, code: int) -> None:
    _, close = await client.frames_until_close()
    assert close.close_code == code, (close.close_code, close.close_reason)
    await client.eof()


# -- negotiation (RFC 7692 §5, §7.1) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("offer", "answer"),
    [
        ("permessage-deflate", "permessage-deflate; server_no_context_takeover"),
        (
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=12",
        ),
        (
            "permessage-deflate; client_max_window_bits=10; server_max_window_bits=11",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=11;"
            " client_max_window_bits=10",
        ),
        (
            'permessage-deflate; client_no_context_takeover; server_max_window_bits="15"',
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
            " server_max_window_bits=15",
        ),
        # The first offer has a parameter we cannot honour: the second one is taken.
        (
            "permessage-deflate; server_max_window_bits=8, permessage-deflate",
            "permessage-deflate; server_no_context_takeover",
        ),
        (
            "x-webkit-deflate-frame, permessage-deflate",
            "permessage-deflate; server_no_context_takeover",
        ),
        # Declined, the upgrade goes on without the extension.
        ("permessage-deflate; server_max_window_bits=8", None),
        ("permessage-deflate; server_max_window_bits", None),
        ("permessage-deflate; client_max_window_bits=16", None),
        ("permessage-deflate; server_max_window_bits=abc", None),
        ("permessage-deflate; mystery=1", None),
        ("permessage-deflate; client_no_context_takeover=1", None),
        ("permessage-deflate; client_max_window_bits; client_max_window_bits", None),
        (";;,,=; ,", None),
        ("x-webkit-deflate-frame", None),
    ],
)
async def test_an_offer_is_accepted_or_declined(
    server: LiveServer, offer: str, answer: str | None
) -> None:
    assert await negotiated(server, offer) == answer


@pytest.mark.parametrize(
    ("offer", "answer"),
    [
        ("permessage-deflate", "permessage-deflate"),
        (
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=12",
        ),
        (
            "permessage-deflate; server_max_window_bits=9",
            "permessage-deflate; server_max_window_bits=9",
        ),
        # A client may still ask us to compress each message on its own.
        (
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover",
        ),
    ],
)
async def test_with_context_takeover_the_server_keeps_its_context(
    takeover_server: LiveServer, offer: str, answer: str
) -> None:
    assert await negotiated(takeover_server, offer) == answer


async def test_with_context_takeover_publications_refer_to_earlier_ones(
    takeover_server: LiveServer,
) -> None:
    client = await RawClient.connect(takeover_server.ws_url, extra=[OFFER])
    inflater = zlib.decompressobj(-15)  # one for the connection: the server's context

    async def message() -> dict[str, Any]:
        got = await client.recv()
        assert got is not None and got.opcode == TEXT
        payload = inflater.decompress(got.payload + TAIL) if got.rsv == RSV1 else got.payload
        sizes.append(len(got.payload))
        decoded: dict[str, Any] = orjson.loads(payload)
        return decoded

    sizes: list[int] = []
    try:
        await client.send_frame(TEXT, command(1, connect={"token": takeover_server.token("1")}))
        assert "connect" in await message()
        await client.send_frame(TEXT, command(2, subscribe={"channel": "orders"}))
        assert "subscribe" in await message()
        sizes.clear()
        for n in range(3):
            await takeover_server.sql(
                "INSERT INTO orders (customer_name, product_name) VALUES ('ann', %s)",
                (f"{n} {NOISE}",),
            )
            push = (await message())["push"]
            assert push["pub"]["data"]["row"]["product_name"] == f"{n} {NOISE}"
        # The second publication is mostly a reference to the first.
        assert sizes[1] < sizes[0] / 2, sizes
    finally:
        await client.close()


async def test_off_by_default_nothing_is_negotiated(schema_url: str) -> None:
    live = await start_live_server(schema_url)
    try:
        assert await negotiated(live, "permessage-deflate") is None
        client = await RawClient.connect(live.ws_url, extra=[OFFER])
        try:
            await client.send_frame(TEXT, deflate(command(1, connect={})), rsv=RSV1)
            await fails_with(client, PROTOCOL_ERROR)
        finally:
            await client.close()
    finally:
        await stop_live_server(live)


# -- compressed messages ---------------------------------------------------------------------


async def subscribed_client(server: LiveServer) -> tuple[RawClient, Any]:
    """A client that negotiated with context takeover and subscribed to orders, sending
    compressed commands that refer to each other (one compressor for both)."""
    client = await RawClient.connect(server.ws_url, extra=[OFFER])
    assert client.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    connect = command(1, connect={"token": server.token("1"), "name": "compressed " * 10})
    await client.send_frame(TEXT, deflate(connect, compressor), rsv=RSV1)
    assert "connect" in (await reply(client, 1))[0]
    subscribe = command(2, subscribe={"channel": "orders"})
    await client.send_frame(TEXT, deflate(subscribe, compressor), rsv=RSV1)
    assert "subscribe" in (await reply(client, 2))[0]
    return client, compressor


async def test_compressed_commands_in_and_publications_out(server: LiveServer) -> None:
    client, _ = await subscribed_client(server)
    try:
        await server.sql(
            "INSERT INTO orders (customer_name, product_name) VALUES ('ann', %s)", (LONG,)
        )
        got = await client.recv()
        assert got is not None and got.opcode == TEXT
        assert got.rsv == RSV1  # compressed: RSV1 only
        plain = inflate(got.payload)
        push = orjson.loads(plain)["push"]
        assert push["channel"] == "orders"
        assert push["pub"]["data"]["row"]["product_name"] == LONG
        assert len(got.payload) < len(plain) / 2
    finally:
        await client.close()


async def test_a_small_reply_goes_uncompressed(server: LiveServer) -> None:
    client, compressor = await subscribed_client(server)
    try:
        small = command(3, presence_stats={"channel": "nope"})
        await client.send_frame(TEXT, deflate(small, compressor), rsv=RSV1)
        answer, compressed = await reply(client, 3)
        assert len(orjson.dumps(answer)) < MIN_SIZE
        assert not compressed
    finally:
        await client.close()


async def test_a_fragmented_compressed_message(server: LiveServer) -> None:
    client = await RawClient.connect(server.ws_url, extra=[OFFER])
    try:
        payload = deflate(command(1, connect={"token": server.token("1")}))
        half = len(payload) // 2
        await client.send_frame(TEXT, payload[:half], fin=False, rsv=RSV1)
        await client.send_frame(PING, b"between")
        await client.send_frame(CONTINUATION, payload[half:])
        assert "connect" in (await reply(client, 1))[0]
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        # A decompression bomb: 16 KiB on the wire, 16 MiB inflated; max_frame_size is 64 KiB.
        ([(TEXT, deflate(b" " * (16 << 20)), True, RSV1)], MESSAGE_TOO_BIG),
        ([(TEXT, b"\xff\xfe not deflate", True, RSV1)], INVALID_DATA),
        # Valid deflate, not UTF-8.
        ([(TEXT, deflate(b"\xff\xfe"), True, RSV1)], INVALID_DATA),
        # RSV1 belongs on the first frame of a data message only (RFC 7692 §6.1).
        (
            [(TEXT, deflate(b"{}")[:2], False, RSV1), (CONTINUATION, b"", True, RSV1)],
            PROTOCOL_ERROR,
        ),
        ([(PING, b"", True, RSV1)], PROTOCOL_ERROR),
        ([(TEXT, b"{}", True, 2)], PROTOCOL_ERROR),  # RSV2 is no one's
    ],
)
async def test_a_bad_compressed_frame_fails_the_connection(
    server: LiveServer, frames: list[tuple[int, bytes, bool, int]], code: int
) -> None:
    client = await RawClient.connect(server.ws_url, extra=[OFFER])
    try:
        await client.send(
            b"".join(encode_frame(op, data, fin=fin, rsv=rsv) for op, data, fin, rsv in frames)
        )
        await fails_with(client, code)
    finally:
        await client.close()


async def test_a_bomb_in_fragments_fails_with_1009(server: LiveServer) -> None:
    client = await RawClient.connect(server.ws_url, extra=[OFFER])
    try:
        bomb = deflate(b"[" * (8 << 20))
        await client.send_frame(TEXT, bomb[:100], fin=False, rsv=RSV1)
        await client.send_frame(CONTINUATION, bomb[100:])
        await fails_with(client, MESSAGE_TOO_BIG)
    finally:
        await client.close()


async def test_rsv1_without_negotiation_is_a_protocol_error(server: LiveServer) -> None:
    client = await RawClient.connect(server.ws_url)  # no offer
    try:
        assert "Sec-WebSocket-Extensions" not in client.response.headers
        await client.send_frame(TEXT, deflate(command(1, connect={})), rsv=RSV1)
        await fails_with(client, PROTOCOL_ERROR)
    finally:
        await client.close()


def test_a_fanned_out_part_is_compressed_once_and_joins_into_one_stream() -> None:
    deflater = Deflater()
    parts = [orjson.dumps({"push": {"n": n, "text": LONG}}) for n in range(3)]
    first = deflater.message(15, parts, b"\n")
    assert first is not None
    assert inflate(first) == b"\n".join(parts)
    # Another connection's batch, with the same publications in another order.
    again = deflater.message(15, parts[::-1], b"\n")
    assert again is not None and inflate(again) == b"\n".join(parts[::-1])
    assert deflater.message(15, [b"{}"], b"\n") is None  # too small to pay
    assert deflater.message(15, [os.urandom(512)], b"") is None  # incompressible


def test_the_shared_cache_stays_bounded() -> None:
    deflater = Deflater()
    parts = [os.urandom(8000).hex().encode() for _ in range(100)]  # 16 KB each
    for part in parts:
        out = deflater.message(15, [part], b"\n")
        assert out is not None and inflate(out) == part
        assert deflater.cache_bytes <= 1 << 20
    huge = b"x" * 100_000  # a recovery reply: compressed, not kept
    out = deflater.message(15, [huge], b"")
    assert out is not None and inflate(out) == huge
    assert deflater.cache_bytes <= 1 << 20


# -- the SDKs (tests/js/sdk_client.js for the JS one) ----------------------------------------------


class Publications(SubscriptionEventHandler):  # type: ignore[misc]
    def __init__(self) -> None:
        self.rows: list[str] = []

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.rows.append(ctx.pub.data["row"]["product_name"])


@pytest.mark.parametrize("context", [False, True])
async def test_centrifuge_js_over_ws_negotiates_and_reads_compressed_publications(
    schema_url: str, context: bool
) -> None:
    server = await start_live_server(
        schema_url, websocket_compression=True, websocket_compression_context=context
    )
    try:
        await js_reads_compressed_publications(server, context)
    finally:
        await stop_live_server(server)


async def js_reads_compressed_publications(server: LiveServer, context: bool) -> None:
    node = node_binary(
        ["centrifuge", "ws"],
        no_node="node is not installed: run the README's test command (scripts/test.sh)",
        no_package="tests/js/node_modules/{package} is missing: `npm install` in tests/js",
    )
    env = {"URL": server.ws_url, "TOKEN": server.token("1"), "CHANNEL": "orders"}
    script = JS_DIR / "sdk_client.js"
    client = await NodeProcess.start(node, script, "subscribe", env=env, quit_line="quit")
    try:
        await client.expect_event("connected")
        await client.expect_event("subscribed", channel="orders")
        gateway = server.runtime.gateway
        assert gateway is not None
        agreements = [websocket_of(c).deflate for c in gateway.connections]
        # ws offers `permessage-deflate; client_max_window_bits` by default.
        assert len(agreements) == 1 and agreements[0] is not None
        assert agreements[0].client_bits == 12
        assert agreements[0].server_takeover is context
        for n in range(3):
            await server.sql(
                "INSERT INTO orders (customer_name, product_name) VALUES ('ann', %s)",
                (f"{n} {LONG}",),
            )
            pub = await client.expect_event("publication", channel="orders")
            assert pub["data"]["row"]["product_name"] == f"{n} {LONG}"
        if not context:
            assert gateway.deflater.sent >= 3  # the publications went compressed
    finally:
        await client.close()


async def test_centrifuge_python_over_websockets_negotiates_both_ways(server: LiveServer) -> None:
    client = Client(server.ws_url, token=server.token("1"))
    events = Publications()
    sub = client.new_subscription("orders", events=events)
    try:
        await client.connect()
        await sub.subscribe()
        gateway = server.runtime.gateway
        assert gateway is not None
        (connection,) = gateway.connections
        transport = websocket_of(connection)
        assert transport.deflate is not None
        # websockets compresses every message it sends, the commands included.
        assert transport._inflater is not None
        for n in range(3):
            await server.sql(
                "INSERT INTO orders (customer_name, product_name) VALUES ('ann', %s)",
                (f"{n} {LONG}",),
            )
        await eventually(lambda: len(events.rows) == 3)
        assert events.rows == [f"{n} {LONG}" for n in range(3)]
        assert gateway.deflater.sent >= 3
    finally:
        await client.disconnect()
