"""One HTTP/1.1 request on the gateway's port, for the HTTP transports: read it, then answer
it whole or stream the answer.

The HeadGuard hands the connection over once the request head has ended (see upgrade.py).
The body is read up to its Content-Length (bounded); then ``handler`` gets the request. A
plain answer (``respond``) closes the connection after it; a streamed one (``start_stream``,
``write``, ``end``) goes out in chunks until either side ends it. Every answer carries
``Connection: close``: the streams hold their connection anyway, and an emulation POST is
cheap to open, so there is no keep-alive state to get wrong.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Protocol

from syncline.core.emulation import LAST_CHUNK, chunked, error_body
from syncline.core.http_head import HeadError, RequestHead, parse_head
from syncline.logs import get_logger

log = get_logger(__name__)

_END_OF_HEAD = b"\r\n\r\n"
# After refusing a request whose body is still coming, how long the rest is read and dropped.
LINGER_S = 2.0
_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}
# Centrifuge's streaming handlers send these so that no proxy or browser caches or buffers.
STREAM_HEADERS = {
    "Cache-Control": "private, no-cache, no-store, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expire": "0",
    "X-Accel-Buffering": "no",
}


class StreamListener(Protocol):
    """Who hears of a streamed answer's flow control and end (the session's transport)."""

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...

    def connection_lost(self) -> None: ...


Handler = Callable[["HttpExchange", RequestHead, bytes], None]


class HttpExchange(asyncio.BufferedProtocol):
    """The connection of one request to an HTTP transport's path."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_body: int,
        body_timeout: float,
        on_lost: Callable[[HttpExchange], None] | None = None,
    ) -> None:
        self._handler = handler
        self._on_lost = on_lost
        self._max_body = max_body
        self._body_timeout = body_timeout
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self._buffer = bytearray(4096)
        self._data = bytearray()
        self._head: RequestHead | None = None
        self._length = -1  # the body's, once the head is parsed
        self._dispatched = False
        self._timer: asyncio.TimerHandle | None = None
        self.listener: StreamListener | None = None
        self.streaming = False
        self.closed = False

    # -- asyncio callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else ""
        self._timer = asyncio.get_running_loop().call_later(self._body_timeout, self._too_slow)

    def get_buffer(self, sizehint: int) -> memoryview | bytearray:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self._dispatched:
            return  # a client has nothing more to say once its request is whole
        self._data += self._buffer[:nbytes]
        if self._head is None:
            end = self._data.find(_END_OF_HEAD)
            if end < 0:
                return  # the guard only hands over a whole head; this is defensive
            try:
                self._head = parse_head(bytes(self._data[:end]))
                self._length = self._head.content_length(self._max_body)
            except HeadError as err:
                self.respond(err.status, error_body(err.message))
                return
            del self._data[: end + len(_END_OF_HEAD)]
        if len(self._data) >= self._length:
            self._dispatch()

    def _dispatch(self) -> None:
        assert self._head is not None
        self._dispatched = True
        if self._timer is not None:
            self._timer.cancel()
        body = bytes(self._data[: self._length])
        self._data = bytearray()
        self._buffer = bytearray(256)  # whatever still comes is discarded
        self._handler(self, self._head, body)

    def _too_slow(self) -> None:
        if not self._dispatched and not self.closed:
            self.respond(408, error_body("the request took too long to arrive"))

    def eof_received(self) -> bool | None:
        # The client closed its side: for a stream, the only sign that it has gone (it sends
        # nothing else), as Go's server treats it. Close, so the session ends now.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._on_lost is not None:
            self._on_lost(self)
        if self.listener is not None:
            self.listener.connection_lost()

    def pause_writing(self) -> None:
        if self.listener is not None:
            self.listener.pause_writing()

    def resume_writing(self) -> None:
        if self.listener is not None:
            self.listener.resume_writing()

    # -- answers ----------------------------------------------------------------------------

    @property
    def head(self) -> RequestHead | None:
        return self._head

    def respond(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """A whole answer, then the connection closes."""
        if self.transport is None or self.closed or self.streaming:
            return
        fields = dict(headers or {})
        if body:
            fields["Content-Type"] = content_type
        fields["Content-Length"] = str(len(body))
        self._write_head(status, fields)
        self.transport.write(body)
        self._finish()

    def start_stream(self, content_type: str, headers: Mapping[str, str] | None = None) -> None:
        """A 200 whose body follows in chunks (``write``) until ``end``."""
        assert self.transport is not None
        self.streaming = True
        fields = {**STREAM_HEADERS, **(headers or {})}
        fields["Content-Type"] = content_type
        fields["Transfer-Encoding"] = "chunked"
        self._write_head(200, fields)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed and data:
            self.transport.write(chunked(data))

    def end(self, *, abort: bool = False) -> None:
        """End a streamed answer: cleanly (the last chunk, then close after what is
        buffered), or at once (``abort``: a client that does not read)."""
        if self.transport is None or self.closed:
            return
        if abort:
            self.transport.abort()
            return
        self.transport.write(LAST_CHUNK)
        self._finish()

    def abort(self) -> None:
        """Drop the connection now (the gateway stops)."""
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def _write_head(self, status: int, fields: Mapping[str, str]) -> None:
        assert self.transport is not None
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}"]
        lines += [f"{name}: {value}" for name, value in fields.items()]
        lines.append("Connection: close")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def _finish(self) -> None:
        assert self.transport is not None
        if self._timer is not None:
            self._timer.cancel()
        if not self._dispatched:
            # Refused before the request was whole: closing with input unread would reset
            # the connection and lose the answer. Half-close, discard what still comes, and
            # drop the connection after LINGER_S.
            self._dispatched = True
            self._buffer = bytearray(64 * 1024)
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self._timer = asyncio.get_running_loop().call_later(LINGER_S, self.transport.abort)
            return
        # close() sends what is buffered first; a client that never reads it is cut off by
        # the write-buffer limits of whoever streams (or by the kernel's timeouts).
        self.transport.close()
