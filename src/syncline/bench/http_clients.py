"""Bench subscribers over the HTTP transports (SSE, http_stream): plain asyncio protocols.

Each opens one streaming request whose connect frame also subscribes (the server runs every
command of the first frame), reads the chunked body, and answers the server's pings with a
POST to /emulation, as centrifuge-js does; every publication goes to the process's accounting
like a WebSocket subscriber's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

import orjson

from syncline.core import emulation

if TYPE_CHECKING:
    pass

HTTP_TRANSPORTS = ("http_stream", "sse")
_MAX_HEAD = 16 * 1024


def connect_frame(token: str, channel: str) -> bytes:
    connect = orjson.dumps({"id": 1, "connect": {"token": token, "name": "bench"}})
    subscribe = orjson.dumps({"id": 2, "subscribe": {"channel": channel}})
    return connect + b"\n" + subscribe


def request_bytes(transport: str, host: str, frame: bytes) -> bytes:
    """The streaming request that opens a session of ``transport``."""
    if transport == "sse":
        query = quote(frame.decode(), safe="")
        return (
            f"GET /connection/sse?cf_connect={query} HTTP/1.1\r\nHost: {host}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
    return (
        f"POST /connection/http_stream HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(frame)}\r\n\r\n"
    ).encode() + frame


class ChunkedBody:
    """The body of a chunked response, fed as it arrives; whole lines come out."""

    def __init__(self) -> None:
        self._raw = bytearray()
        self._text = bytearray()
        self.ended = False

    def feed(self, data: bytes) -> list[bytes]:
        raw = self._raw
        raw += data
        while raw:
            line_end = raw.find(b"\r\n")
            if line_end < 0:
                break
            size = int(raw[:line_end].split(b";", 1)[0], 16)
            if len(raw) < line_end + 2 + size + 2:
                break
            if size == 0:
                self.ended = True
                del raw[:]
                break
            self._text += raw[line_end + 2 : line_end + 2 + size]
            del raw[: line_end + 2 + size + 2]
        text = self._text
        last = text.rfind(b"\n")
        if last < 0:
            return []
        lines = bytes(text[:last]).split(b"\n")
        del text[: last + 1]
        return lines


class HttpSubscriber(asyncio.Protocol):
    """One session over ``transport``: reads its stream, hands each JSON message to
    ``on_message`` (the WebSocket subscriber's parsing), answers pings over /emulation."""

    def __init__(
        self,
        transport_name: str,
        url: str,
        frame: bytes,
        on_message: Callable[[bytes], None],
        on_bytes: Callable[[int], None],
        on_lost: Callable[[str], None],
    ) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.kind = transport_name
        self._frame = frame
        self._on_message = on_message
        self._on_bytes = on_bytes
        self._on_lost = on_lost
        self._head = bytearray()
        self._body: ChunkedBody | None = None
        self.transport: asyncio.Transport | None = None
        self.session = ""
        self.node = ""
        # The pongs in flight: the event loop keeps only weak references to tasks.
        self._posts: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        host = f"{self.host}:{self.port}"
        transport.write(request_bytes(self.kind, host, self._frame))  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self._on_bytes(len(data))
        if self._body is None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > _MAX_HEAD:
                    self._lost("no end of the response head")
                return
            status = bytes(self._head[: self._head.find(b"\r\n")])
            if b" 200 " not in status:
                self._lost(f"refused: {status.decode(errors='replace')}")
                return
            data = bytes(self._head[end + 4 :])
            self._body = ChunkedBody()
        for line in self._body.feed(data):
            message = line[6:] if line.startswith(b"data: ") else line
            if not message.strip() or line.startswith(b"event:"):
                continue
            if self.kind == "sse" and not line.startswith(b"data: "):
                continue
            self._on_message(message)
        if self._body.ended:
            self._lost("the stream ended")

    def learn(self, connect: dict[str, object]) -> None:
        """The connect reply's session and node, for the pongs."""
        self.session, self.node = str(connect.get("session", "")), str(connect.get("node", ""))

    def pong(self) -> None:
        """A pong, POSTed to /emulation on a connection of its own."""
        request = emulation.EmulationRequest(self.node, self.session, b"{}")
        body = emulation.encode_emulation(request, protobuf=False)
        head = (
            f"POST /emulation HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        task = asyncio.get_running_loop().create_task(self._post(head + body))
        self._posts.add(task)
        task.add_done_callback(self._posted)

    def _posted(self, task: asyncio.Task[None]) -> None:
        self._posts.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._lost(f"pong failed: {task.exception()}")

    async def _post(self, request: bytes) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(request)
            await reader.readline()  # the status line: the server has taken it
        finally:
            writer.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost("disconnected")

    def _lost(self, reason: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self._on_lost(reason)

    def disconnect(self) -> None:
        for task in self._posts:
            task.cancel()
        if self.transport is not None:
            self.transport.close()
