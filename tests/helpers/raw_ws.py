"""A WebSocket client that writes and reads exact bytes, for conformance and slow-client tests."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from multidict import CIMultiDict

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
WAIT = 5.0  # seconds any single server answer may take before the test fails


class TruncatedStream(AssertionError):
    """The server's byte stream ended inside a frame."""


@dataclass(frozen=True)
class Frame:
    """One frame as the server sent it."""

    fin: bool
    rsv: int  # the three reserved bits, RSV1 = 4
    opcode: int
    payload: bytes
    masked: bool = False

    @property
    def close_code(self) -> int | None:
        assert self.opcode == CLOSE
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self) -> str:
        assert self.opcode == CLOSE
        return self.payload[2:].decode()


def encode_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    length: int | None = None,
) -> bytes:
    """A client frame; ``length`` forces a (non-minimal) length encoding: 7, 16 or 64 bits."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    size = len(payload)
    bits = length or (7 if size < 126 else 16 if size < 65536 else 64)
    mask_bit = 0x80 if mask else 0
    if bits == 7:
        head += bytes([mask_bit | size])
    elif bits == 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def upgrade_request(
    url: str, *, version: str = "13", extra: list[tuple[str, str]] | None = None
) -> bytes:
    parts = urlsplit(url)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {parts.path or '/'} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        f"Sec-WebSocket-Version: {version}",
        *(f"{name}: {value}" for name, value in extra or []),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class HttpResponse:
    """The server's answer to an upgrade request."""

    status: int
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    body: bytes = b""


async def _open(url: str, rcvbuf: int | None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        # Before connect: the window scale is agreed in the SYN, so a small buffer set later
        # would still leave a large window.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


async def _read_head(reader: asyncio.StreamReader) -> HttpResponse:
    async with asyncio.timeout(WAIT):
        head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    response = HttpResponse(int(status_line.split(" ", 2)[1]))
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            response.headers.add(name.strip(), value.strip())
    return response


async def http_exchange(url: str, request: bytes) -> HttpResponse:
    """Send raw request bytes; the server's response (and its body, read until the server
    closes, unless it is a 101)."""
    reader, writer = await _open(url, None)
    try:
        writer.write(request)
        response = await _read_head(reader)
        if response.status != 101:  # a refusal ends with the connection
            async with asyncio.timeout(WAIT):
                response.body = await reader.read()
        return response
    finally:
        writer.close()


class RawClient:
    """One WebSocket connection driven frame by frame."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        response: HttpResponse | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.response = response or HttpResponse(101)  # the server's 101

    @classmethod
    async def connect(
        cls, url: str, *, rcvbuf: int | None = None, extra: list[tuple[str, str]] | None = None
    ) -> RawClient:
        reader, writer = await _open(url, rcvbuf)
        writer.write(upgrade_request(url, extra=extra))
        response = await _read_head(reader)
        assert response.status == 101, response
        return cls(reader, writer, response)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_frame(self, opcode: int, payload: bytes = b"", **options: object) -> None:
        await self.send(encode_frame(opcode, payload, **options))  # type: ignore[arg-type]

    async def send_text(self, text: str) -> None:
        await self.send_frame(TEXT, text.encode())

    async def recv(self, timeout: float = WAIT) -> Frame | None:
        """The next frame; None when the server closed TCP at a frame boundary."""
        async with asyncio.timeout(timeout):
            head = await self._exactly(2, first=True)
            if head is None:
                return None
            size = head[1] & 0x7F
            if size == 126:
                size = struct.unpack("!H", await self._exactly(2) or b"")[0]
            elif size == 127:
                size = struct.unpack("!Q", await self._exactly(8) or b"")[0]
            masked = bool(head[1] & 0x80)
            key = await self._exactly(4) if masked else None
            payload = await self._exactly(size) if size else b""
            assert payload is not None
            if key:
                payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            return Frame(bool(head[0] & 0x80), (head[0] >> 4) & 7, head[0] & 0xF, payload, masked)

    async def _exactly(self, n: int, *, first: bool = False) -> bytes | None:
        try:
            return await self.reader.readexactly(n)
        except asyncio.IncompleteReadError as err:
            if first and not err.partial:
                return None
            raise TruncatedStream(f"stream ended inside a frame ({len(err.partial)}/{n})") from None
        except ConnectionResetError:
            raise TruncatedStream("connection reset") from None

    async def frames_until_close(self, timeout: float = WAIT) -> tuple[list[Frame], Frame]:
        """Every frame up to the server's close frame, and the close frame."""
        frames: list[Frame] = []
        async with asyncio.timeout(timeout):
            while True:
                got = await self.recv(timeout)
                assert got is not None, "the server closed TCP without a close frame"
                if got.opcode == CLOSE:
                    return frames, got
                frames.append(got)

    async def close_frame(self, timeout: float = WAIT) -> Frame:
        """Skip data frames; the server's close frame (it must come, TCP must not just end)."""
        return (await self.frames_until_close(timeout))[1]

    async def eof(self, timeout: float = WAIT) -> None:
        """After the close frame: the server closes TCP and sends nothing else."""
        async with asyncio.timeout(timeout):
            rest = await self.reader.read()
        assert rest == b"", rest

    def pause_reading(self) -> None:
        self.writer.transport.pause_reading()  # type: ignore[attr-defined]

    def resume_reading(self) -> None:
        self.writer.transport.resume_reading()  # type: ignore[attr-defined]

    def abort(self) -> None:
        self.writer.transport.abort()

    async def close(self) -> None:
        """Drop the connection (no close handshake: tests that want one send the frames)."""
        self.writer.transport.abort()
        await asyncio.sleep(0)  # let the transport's connection_lost run
