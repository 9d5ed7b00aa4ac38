"""RFC 6455 conformance of the gateway, from the cases of the Autobahn suite's categories 1-7
(framing, pings, reserved bits, opcodes, fragmentation, UTF-8, closing) and the opening
handshake, with a client that writes exact bytes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio

from helpers.hostile import no_error_logs
from helpers.live_server import LiveServer, start_live_server, stop_live_server
from helpers.raw_ws import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    RawClient,
    close_payload,
    encode_frame,
    http_exchange,
    upgrade_request,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

PROTOCOL_ERROR, INVALID_TEXT, MESSAGE_TOO_BIG = 1002, 1007, 1009


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(migrated_url: str) -> AsyncIterator[LiveServer]:
    live = await start_live_server(migrated_url, connects_per_ip_per_second=100_000)
    try:
        yield live
        gateway = live.runtime.gateway
        assert gateway is not None
        # Every connection a case opened, failed or closed is gone: none is left half-closed.
        async with asyncio.timeout(10):
            while gateway.connections:
                await asyncio.sleep(0.05)
    finally:
        await stop_live_server(live)


@pytest_asyncio.fixture(loop_scope="module")
async def client(server: LiveServer) -> AsyncIterator[RawClient]:
    raw = await RawClient.connect(server.ws_url)
    try:
        yield raw
    finally:
        await raw.close()


def connect_command(server: LiveServer, cid: int = 1, **extra: Any) -> bytes:
    command = {"id": cid, "connect": {"token": server.token("1"), **extra}}
    return json.dumps(command, ensure_ascii=False).encode()


async def reply(client: RawClient, cid: int = 1) -> dict[str, Any]:
    """The reply with this id; a close frame or a pong instead fails the test."""
    while True:
        got = await client.recv()
        assert got is not None and got.opcode == TEXT, got
        for line in got.payload.splitlines():
            message: dict[str, Any] = orjson.loads(line)
            if message.get("id") == cid:
                return message


async def connected(server: LiveServer, client: RawClient) -> None:
    await client.send_frame(TEXT, connect_command(server))
    assert "connect" in await reply(client)


async def fails_with(client: RawClient, code: int) -> None:
    """The server sends a close frame with this code, nothing before it, then closes TCP."""
    frames, close = await client.frames_until_close()
    assert frames == [], frames
    assert close.close_code == code, (close.close_code, close.close_reason)
    await client.eof()


# -- opening handshake -----------------------------------------------------------------------


async def test_version_8_is_refused_with_426_naming_13(server: LiveServer) -> None:
    response = await http_exchange(server.ws_url, upgrade_request(server.ws_url, version="8"))
    assert response.status == 426
    assert response.headers.get("Sec-WebSocket-Version") == "13"


async def test_a_missing_version_is_a_bad_request(server: LiveServer) -> None:
    request = upgrade_request(server.ws_url).replace(b"Sec-WebSocket-Version: 13\r\n", b"")
    assert (await http_exchange(server.ws_url, request)).status == 400


async def test_a_100_kb_request_header_is_refused_with_431(server: LiveServer) -> None:
    request = upgrade_request(server.ws_url, extra=[("Cookie", "a=" + "x" * 100_000)])
    response = await http_exchange(server.ws_url, request)
    assert response.status == 431


async def test_a_request_head_just_under_the_limit_is_upgraded(server: LiveServer) -> None:
    head = upgrade_request(server.ws_url)
    cookie = "a=" + "x" * (16 * 1024 - len(head) - 20)
    request = upgrade_request(server.ws_url, extra=[("Cookie", cookie)])
    assert len(request) < 16 * 1024
    reader, writer = await asyncio.open_connection(*client_address(server))
    try:
        writer.write(request + encode_frame(TEXT, connect_command(server)))
        status = await reader.readuntil(b"\r\n")
        assert status.startswith(b"HTTP/1.1 101"), status
        await reader.readuntil(b"\r\n\r\n")
        assert "connect" in await reply(RawClient(reader, writer))
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_request_head_in_pieces_is_upgraded(server: LiveServer) -> None:
    """The end of the head split across reads (the blank line in two, then one byte)."""
    request = upgrade_request(server.ws_url)
    reader, writer = await asyncio.open_connection(*client_address(server))
    try:
        for piece in (request[:-3], request[-3:-1], request[-1:]):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.05)
        status = await reader.readuntil(b"\r\n")
        assert status.startswith(b"HTTP/1.1 101"), status
    finally:
        writer.close()
        await writer.wait_closed()


def client_address(server: LiveServer) -> tuple[str, int]:
    host, port = server.ws_url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    return host, int(port)


# -- framing (Autobahn 1.x, 3.x, 4.x) ----------------------------------------------------------


@pytest.mark.parametrize("size", [125, 126, 127, 65535, 65536])
async def test_every_payload_length_encoding_is_read(
    server: LiveServer, client: RawClient, size: int
) -> None:
    command = connect_command(server)
    await client.send_frame(TEXT, command + b" " * (size - len(command)))
    assert "connect" in await reply(client)


async def test_a_non_minimal_length_is_a_protocol_error(client: RawClient) -> None:
    await client.send(encode_frame(TEXT, b"{}", length=16))
    await fails_with(client, PROTOCOL_ERROR)


async def test_an_unmasked_client_frame_is_a_protocol_error(
    server: LiveServer, client: RawClient
) -> None:
    await client.send_frame(TEXT, connect_command(server), mask=False)
    await fails_with(client, PROTOCOL_ERROR)


@pytest.mark.parametrize("rsv", range(1, 8))
async def test_reserved_bits_are_a_protocol_error(
    server: LiveServer, client: RawClient, rsv: int
) -> None:
    """No extension is negotiated, so no reserved bit may be set (RSV1 is 4 here)."""
    await client.send_frame(TEXT, connect_command(server), rsv=rsv)
    await fails_with(client, PROTOCOL_ERROR)


@pytest.mark.parametrize("opcode", [PING, CLOSE])
async def test_reserved_bits_on_a_control_frame_fail_before_answering(
    client: RawClient, opcode: int
) -> None:
    payload = b"ping" if opcode == PING else close_payload(1000)
    await client.send_frame(opcode, payload, rsv=4)
    await fails_with(client, PROTOCOL_ERROR)  # no pong, no close echo first


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
async def test_reserved_opcodes_are_a_protocol_error(client: RawClient, opcode: int) -> None:
    await client.send_frame(opcode, b"x")
    await fails_with(client, PROTOCOL_ERROR)


# -- control frames (Autobahn 2.x) -------------------------------------------------------------


@pytest.mark.parametrize(
    "payload", [b"", b"hello", b"\x00\xff\xfe" + os.urandom(60), b"*" * 125], ids=len
)
async def test_a_ping_is_answered_with_its_payload(client: RawClient, payload: bytes) -> None:
    await client.send_frame(PING, payload)
    pong = await client.recv()
    assert pong is not None and (pong.opcode, pong.payload, pong.fin) == (PONG, payload, True)
    assert not pong.masked


async def test_ten_pings_get_ten_pongs_in_order(client: RawClient) -> None:
    await client.send(b"".join(encode_frame(PING, b"ping %d" % n) for n in range(10)))
    pongs = [await client.recv() for _ in range(10)]
    assert [(p.opcode, p.payload) for p in pongs if p] == [
        (PONG, b"ping %d" % n) for n in range(10)
    ]


async def test_a_ping_over_125_bytes_is_a_protocol_error(client: RawClient) -> None:
    await client.send_frame(PING, b"*" * 126)
    await fails_with(client, PROTOCOL_ERROR)


async def test_a_fragmented_ping_is_a_protocol_error(client: RawClient) -> None:
    await client.send_frame(PING, b"frag", fin=False)
    await fails_with(client, PROTOCOL_ERROR)


async def test_an_unsolicited_pong_is_ignored(server: LiveServer, client: RawClient) -> None:
    await client.send_frame(PONG, b"unsolicited")
    await connected(server, client)


# -- fragmentation (Autobahn 5.x) --------------------------------------------------------------


async def test_a_fragmented_text_message_is_reassembled(
    server: LiveServer, client: RawClient
) -> None:
    command = connect_command(server)
    await client.send_frame(TEXT, command[:5], fin=False)
    await client.send_frame(CONTINUATION, command[5:20], fin=False)
    await client.send_frame(CONTINUATION, command[20:])
    assert "connect" in await reply(client)


async def test_empty_fragments_are_allowed(server: LiveServer, client: RawClient) -> None:
    await client.send_frame(TEXT, b"", fin=False)
    await client.send_frame(CONTINUATION, connect_command(server), fin=False)
    await client.send_frame(CONTINUATION, b"")
    assert "connect" in await reply(client)


async def test_control_frames_between_fragments_are_answered(
    server: LiveServer, client: RawClient
) -> None:
    command = connect_command(server)
    await client.send_frame(TEXT, command[:10], fin=False)
    await client.send_frame(PING, b"between")
    await client.send_frame(PONG, b"unsolicited")
    await client.send_frame(CONTINUATION, command[10:])
    pong = await client.recv()
    assert pong is not None and (pong.opcode, pong.payload) == (PONG, b"between")
    assert "connect" in await reply(client)


async def test_a_character_split_across_fragments_is_accepted(
    server: LiveServer, client: RawClient
) -> None:
    command = connect_command(server, name="κόσμε 𝄞")
    cut = command.index("𝄞".encode()) + 2  # inside the four bytes of U+1D11E
    await client.send_frame(TEXT, command[:cut], fin=False)
    await client.send_frame(CONTINUATION, command[cut:])
    assert "connect" in await reply(client)


@pytest.mark.parametrize("fin", [True, False])
async def test_a_continuation_without_a_message_is_a_protocol_error(
    server: LiveServer, client: RawClient, fin: bool
) -> None:
    await client.send_frame(CONTINUATION, connect_command(server), fin=fin)
    await fails_with(client, PROTOCOL_ERROR)


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
async def test_a_new_message_inside_a_fragmented_one_is_a_protocol_error(
    server: LiveServer, client: RawClient, opcode: int
) -> None:
    command = connect_command(server)
    await client.send_frame(TEXT, command[:10], fin=False)
    await client.send_frame(opcode, command)
    await fails_with(client, PROTOCOL_ERROR)


async def test_a_fragmented_message_over_the_frame_limit_is_too_big(
    server: LiveServer, client: RawClient
) -> None:
    limit = server.runtime.settings.max_frame_size
    await client.send_frame(TEXT, b" " * (limit // 2 + 1), fin=False)
    await client.send_frame(CONTINUATION, b" " * (limit // 2 + 1))
    await fails_with(client, MESSAGE_TOO_BIG)


# -- UTF-8 (Autobahn 6.x) ----------------------------------------------------------------------

INVALID_UTF8 = {
    "surrogate": b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
    "overlong": b"\xc0\xaf",
    "over-max": b"\xf4\x90\x80\x80",
    "truncated": b'{"id": 1}\xce',
    "lone-continuation": b"\x80",
    "invalid-byte": b"\xfe",
}


@pytest.mark.parametrize("payload", INVALID_UTF8.values(), ids=INVALID_UTF8.keys())
async def test_invalid_utf8_in_a_text_message_is_1007(client: RawClient, payload: bytes) -> None:
    await client.send_frame(TEXT, payload)
    await fails_with(client, INVALID_TEXT)


async def test_invalid_utf8_fails_at_its_fragment(client: RawClient) -> None:
    """Fail fast: the message need not be finished for the connection to fail."""
    await client.send_frame(TEXT, b'{"id": 1, "x": "\xed\xa0\x80', fin=False)
    await fails_with(client, INVALID_TEXT)


async def test_utf8_of_every_length_is_accepted(server: LiveServer, client: RawClient) -> None:
    await client.send_frame(TEXT, connect_command(server, name="aé€𝄞\U0010ffff"))
    assert "connect" in await reply(client)


async def test_a_binary_message_is_not_checked_as_utf8(client: RawClient) -> None:
    """Binary frames carry no text: invalid UTF-8 there is the protocol's bad request."""
    await client.send_frame(BINARY, b"\xff\xfe")
    await fails_with(client, 3501)


# -- closing handshake (Autobahn 7.x) ----------------------------------------------------------


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999])
async def test_a_close_is_echoed_and_the_server_closes_tcp(client: RawClient, code: int) -> None:
    await client.send_frame(CLOSE, close_payload(code, b"bye"))
    await fails_with(client, code)


async def test_an_empty_close_is_answered_with_1000(client: RawClient) -> None:
    await client.send_frame(CLOSE)
    await fails_with(client, 1000)


@pytest.mark.parametrize(
    "code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
)
async def test_an_invalid_close_code_is_a_protocol_error(client: RawClient, code: int) -> None:
    await client.send_frame(CLOSE, close_payload(code))
    await fails_with(client, PROTOCOL_ERROR)


async def test_a_one_byte_close_payload_is_a_protocol_error(client: RawClient) -> None:
    await client.send_frame(CLOSE, b"\x03")
    await fails_with(client, PROTOCOL_ERROR)


async def test_a_close_over_125_bytes_is_a_protocol_error(client: RawClient) -> None:
    await client.send_frame(CLOSE, close_payload(1000, b"r" * 124))
    await fails_with(client, PROTOCOL_ERROR)


async def test_a_close_reason_of_invalid_utf8_is_1007(client: RawClient) -> None:
    await client.send_frame(CLOSE, close_payload(1000, b"\xce\xba\xed\xa0\x80"))
    await fails_with(client, INVALID_TEXT)


async def test_frames_after_the_close_are_ignored(server: LiveServer, client: RawClient) -> None:
    await client.send(
        encode_frame(CLOSE, close_payload(1000)) + encode_frame(TEXT, connect_command(server))
    )
    await fails_with(client, 1000)  # the close echo and nothing else: no connect reply


async def test_after_its_own_close_the_server_closes_tcp_at_once(
    server: LiveServer, client: RawClient
) -> None:
    """Nothing was ahead of the close frame: no reason to wait for the client's answer."""
    gateway = server.runtime.gateway
    assert gateway is not None
    await connected(server, client)
    conn = next(c for c in gateway.connections if c.connected and not c.closing)
    await client.send_frame(TEXT, b"{not json")
    await fails_with(client, 3501)
    async with asyncio.timeout(1):  # well before the grace period would cut it off
        while conn in gateway.connections:
            await asyncio.sleep(0.01)


# -- logs ------------------------------------------------------------------------------------

MALFORMED = [
    encode_frame(TEXT, b"{}", mask=False),
    encode_frame(TEXT, b"{}", rsv=4),
    encode_frame(5, b"x"),
    encode_frame(PING, b"*" * 126),
    encode_frame(PING, b"x", fin=False),
    encode_frame(CONTINUATION, b"x"),
    encode_frame(TEXT, b"{", fin=False) + encode_frame(TEXT, b"{}"),
    encode_frame(TEXT, b"\xc0\xaf"),
    encode_frame(CLOSE, b"\x03"),
    encode_frame(CLOSE, close_payload(1005)),
    encode_frame(CLOSE, close_payload(5000)),
    encode_frame(CLOSE, close_payload(1000, b"\xed\xa0\x80")),
    encode_frame(TEXT, b"{}", length=64),
    b"\xff" * 64,
]


async def test_client_protocol_errors_are_not_logged_as_errors(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="picows")
    with no_error_logs():
        for data in MALFORMED:
            raw = await RawClient.connect(server.ws_url)
            try:
                await raw.send(data)
                close = await raw.close_frame()
                assert close.close_code in (PROTOCOL_ERROR, INVALID_TEXT), data
            finally:
                await raw.close()
    # Still there for whoever debugs a client, one level down.
    assert any(
        r.levelno == logging.INFO and "parser error" in r.getMessage() for r in caplog.records
    )
