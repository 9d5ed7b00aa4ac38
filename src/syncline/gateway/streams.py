"""The HTTP transports' adapter of the transport seam: a Connection whose output is one
long HTTP response (http_stream, SSE, and their unidirectional versions).

Bidirectional (``http_stream``, ``sse``): the client's commands arrive as POSTs to
``/emulation`` naming the session's id, which the connect reply carries with the node's name
(centrifuge-js sends both back); replies and pushes go down the stream. Unidirectional
(``uni_http_stream``, ``uni_sse``): the client sends one connect request and only ever reads
pushes (no ``{"push":…}`` wrapper), as Centrifugo's uni transports. See
docs/topics/http-transports.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from syncline.core import emulation
from syncline.core.codecs import Codec
from syncline.gateway import sendq
from syncline.gateway.http_exchange import HttpExchange
from syncline.logs import get_logger

if TYPE_CHECKING:
    from syncline.gateway.connection import Connection

log = get_logger(__name__)


Framer = Callable[[list[bytes]], bytes]


def http_stream_framer(codec: Codec) -> Framer:
    protobuf = codec.binary

    def frame(messages: list[bytes]) -> bytes:
        return emulation.stream_chunk(messages, protobuf=protobuf)

    return frame


def sse_framer(messages: list[bytes]) -> bytes:
    return emulation.sse_events(messages)


class StreamTransport:
    """One streamed HTTP response carrying a Connection's messages (``ClientTransport``)."""

    __slots__ = (
        "_frame",
        "_identified",
        "_on_gone",
        "codec",
        "conn",
        "drain",
        "exchange",
        "ip",
        "kind",
        "node",
        "session",
    )

    def __init__(
        self,
        exchange: HttpExchange,
        *,
        kind: str,
        codec: Codec,
        ip: str,
        frame: Framer,
        session: str,
        node: str,
        on_gone: Callable[[StreamTransport], None],
    ) -> None:
        self.exchange = exchange
        self.kind = kind  # http_stream, sse, uni_http_stream, uni_sse (for logs and metrics)
        self.codec = codec
        self.ip = ip
        self._frame = frame
        self.session = session
        self.node = node
        self._on_gone = on_gone
        # Until the connect reply went out with the session's id and node in it.
        self._identified = False
        self.conn: Connection | None = None
        self.drain = sendq.CloseDrain()

    # -- ClientTransport --------------------------------------------------------------------

    def send(self, messages: list[bytes]) -> None:
        if not self._identified:
            messages = self._identify(messages)
        self.exchange.write(self._frame(messages))

    def _identify(self, messages: list[bytes]) -> list[bytes]:
        out = list(messages)
        for i, message in enumerate(out):
            found = emulation.with_session(
                message, self.session, self.node, protobuf=self.codec.binary
            )
            if found is not None:
                out[i] = found
                self._identified = True
                break
        return out

    def close(self, code: int, reason: str) -> None:
        """A disconnect push, then the end of the stream, as Centrifuge closes an emulated
        session (the SDK reads the code and reason from the push; the stream's end alone
        would be a transport error, which it retries)."""
        push = self._disconnect_push(code, reason)
        if push:
            self.exchange.write(self._frame([push]))
        transport = self.exchange.transport
        self.exchange.end()
        self.drain.start(sendq.unsent(transport) if transport is not None else 0, time.monotonic())

    def _disconnect_push(self, code: int, reason: str) -> bytes | None:
        try:
            return self.codec.encode_disconnect_push(code, reason or None)
        except ValueError:
            return None  # a WebSocket code (1xxx) has no push; the stream's end says it

    def linger(self, now: float) -> None:
        transport = self.exchange.transport
        if transport is None or not self.drain.since or self.exchange.closed:
            return
        if self.drain.stalled(sendq.unsent(transport), now):
            self.exchange.end(abort=True)

    # -- the exchange's flow control and end (StreamListener) -------------------------------

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.conn.pause_writing()

    def resume_writing(self) -> None:
        if self.conn is not None:
            self.conn.resume_writing()

    def connection_lost(self) -> None:
        self._on_gone(self)
        if self.conn is not None:
            self.conn.disconnected()


class UniStreamTransport(StreamTransport):
    """The unidirectional kind: pushes only, unwrapped; a connect error ends the session with
    a disconnect; pings are answered here, since the client has no way to answer them."""

    __slots__ = ()

    def send(self, messages: list[bytes]) -> None:
        out: list[bytes] = []
        for message in messages:
            converted = emulation.uni_message(message)
            if converted is not None:
                out.append(converted)
                if converted == self.codec.ping and self.conn is not None:
                    # Written to the socket is all a unidirectional client can show; one that
                    # stops reading is caught by the slow-consumer rule instead.
                    self.conn.receive(self.codec.ping)
                continue
            code = emulation.uni_connect_error(message)
            if code is not None and self.conn is not None:
                if out:
                    self.exchange.write(self._frame(out))
                self.conn.close(code)
                return
        if out:
            self.exchange.write(self._frame(out))

    def _disconnect_push(self, code: int, reason: str) -> bytes | None:
        push = super()._disconnect_push(code, reason)
        return emulation.uni_message(push) if push is not None else None
