"""A client that stops reading is closed with 3008 "slow", and reads whole frames then that
close frame once it reads again, however long the backlog takes to read."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import orjson
import pytest
import structlog

from syncline import metrics
from syncline.gateway.connection import Connection

from helpers.live_server import LiveServer, start_live_server, stop_live_server
from helpers.raw_ws import CLOSE, TEXT, RawClient, close_payload
from helpers.waiting import eventually

SEND_BUFFER = 65536
ROW = 20_000  # bytes of product name per row: a few transactions overflow the send buffer


@pytest.fixture
async def server(schema_url: str) -> AsyncIterator[LiveServer]:
    live = await start_live_server(schema_url, send_buffer=SEND_BUFFER)
    try:
        yield live
    finally:
        await stop_live_server(live)


@pytest.fixture
def short_grace(monkeypatch: pytest.MonkeyPatch) -> float:
    """A 0.5 s grace period checked every 0.1 s, so that reading past it takes little time."""
    monkeypatch.setattr("syncline.gateway.sendq.CLOSE_GRACE_S", 0.5)
    monkeypatch.setattr("syncline.gateway.server.TICK_S", 0.1)
    return 0.5


async def stalled_client(server: LiveServer) -> tuple[RawClient, Connection]:
    """A client subscribed to orders that has stopped reading, and its server side."""
    gateway = server.runtime.gateway
    assert gateway is not None
    # A small receive buffer (set before connecting, so the window is small too) fills fast.
    client = await RawClient.connect(server.ws_url, rcvbuf=4096)
    commands = [
        {"id": 1, "connect": {"token": server.token("1")}},
        {"id": 2, "subscribe": {"channel": "orders"}},
    ]
    await client.send_text("\n".join(json.dumps(c) for c in commands))
    while True:
        got = await client.recv()
        assert got is not None and got.opcode == TEXT, got
        if any(orjson.loads(line).get("id") == 2 for line in got.payload.splitlines()):
            break
    client.pause_reading()
    conn = next(c for c in gateway.connections if "orders" in c.subs)
    return client, conn


async def overflow(server: LiveServer, conn: Connection) -> int:
    """Publish big rows until the gateway gives up on the stalled connection; how many."""
    published = 0
    while not conn.closing:
        assert published < 2000, "the stalled client was never closed as slow"
        names = [f"{published + i:05d}" + "x" * ROW for i in range(10)]
        await server.sql(
            "INSERT INTO orders (customer_name, product_name) SELECT 'c', unnest(%s::text[])",
            (names,),
        )
        published += len(names)
        await asyncio.sleep(0.02)
    return published


async def read_back(client: RawClient, pause: float = 0.0) -> tuple[list[int], int | None, str]:
    """Every frame up to the close (each whole, or TruncatedStream is raised): the offsets of
    the publications, the close code and reason. ``pause``: seconds between frames."""
    offsets: list[int] = []
    while True:
        got = await client.recv(timeout=10)
        assert got is not None, "the server closed TCP without a close frame"
        if got.opcode != TEXT:
            assert got.opcode == CLOSE, got
            return offsets, got.close_code, got.close_reason
        assert got.fin, got
        for line in got.payload.splitlines():  # whole JSON lines, or orjson raises
            push = orjson.loads(line).get("push", {})
            if "pub" in push:
                offsets.append(push["pub"]["offset"])
        await asyncio.sleep(pause)


async def test_a_stalled_client_that_reads_again_gets_whole_frames_then_3008(
    server: LiveServer,
) -> None:
    gateway = server.runtime.gateway
    assert gateway is not None
    slow_before = metrics.SLOW_DISCONNECTS._value.get()
    client, conn = await stalled_client(server)
    try:
        with structlog.testing.capture_logs() as logs:
            published = await overflow(server, conn)
        assert metrics.SLOW_DISCONNECTS._value.get() == slow_before + 1
        assert any(e["event"] == "disconnecting a slow client" for e in logs)
        # What waited in the process was dropped; the transport holds whole frames only.
        assert not conn._out and conn._out_size == 0
        client.resume_reading()
        offsets, code, reason = await read_back(client)
        assert (code, reason) == (3008, "slow")
        assert offsets == list(range(1, len(offsets) + 1)), "a gap or a repeat before the close"
        assert len(offsets) < published
        await client.eof()  # the server half-closed behind its close frame
        assert conn in gateway.connections  # and waits for the client's answer
        await client.send_frame(CLOSE, close_payload(3008))
        await eventually(lambda: conn not in gateway.connections, timeout=1)
    finally:
        await client.close()


async def test_a_slow_reader_gets_to_the_3008_however_long_the_backlog_takes(
    server: LiveServer, short_grace: float
) -> None:
    """Megabytes are ahead of the close frame (the kernel's buffers): a client that reads them
    more slowly than the grace period allows is not cut off while it keeps reading."""
    client, conn = await stalled_client(server)
    try:
        await overflow(server, conn)
        client.resume_reading()
        started = asyncio.get_running_loop().time()
        offsets, code, reason = await read_back(client, pause=0.1)
        assert asyncio.get_running_loop().time() - started > 2 * short_grace
        assert (code, reason) == (3008, "slow")
        assert offsets == list(range(1, len(offsets) + 1))
        await client.eof()
    finally:
        await client.close()


async def test_a_client_that_never_reads_again_is_cut_off_after_the_grace(
    server: LiveServer, short_grace: float
) -> None:
    gateway = server.runtime.gateway
    assert gateway is not None
    client, conn = await stalled_client(server)
    try:
        await overflow(server, conn)
        assert conn in gateway.connections  # half-closed, the close frame queued
        await eventually(lambda: conn not in gateway.connections, timeout=short_grace + 1)
        assert not gateway.hub.channels.get("orders", {}).get(conn)
    finally:
        await client.close()


def test_frames_stay_whole_on_uvloop(schema_url: str) -> None:
    """Production runs on uvloop, whose transport kept a view of picows's reused header
    buffer while the socket was backed up: the close frame overwrote a data frame's header."""
    uvloop = pytest.importorskip("uvloop")

    async def stall() -> None:
        server = await start_live_server(schema_url, send_buffer=SEND_BUFFER)
        try:
            client, conn = await stalled_client(server)
            try:
                await overflow(server, conn)
                client.resume_reading()
                offsets, code, reason = await read_back(client)
                assert (code, reason) == (3008, "slow")
                assert offsets == list(range(1, len(offsets) + 1))
                await client.eof()
            finally:
                await client.close()
        finally:
            await stop_live_server(server)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(stall())
