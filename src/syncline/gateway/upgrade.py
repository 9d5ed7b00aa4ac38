"""The HTTP side of the opening handshake that picows leaves out: 426 and 431 refusals, the
format (JSON or Protobuf) a client asks for, and the routing of the HTTP transports' requests
(HTTP-streaming, SSE, emulation) away from picows, on the same port."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from picows import (
    WSAutoPingStrategy,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
)
from picows.picows import WSProtocol  # type: ignore[attr-defined]

from syncline.core.codecs import PROTOBUF, PROTOBUF_SUBPROTOCOL, Codec, choose
from syncline.logs import get_logger

log = get_logger(__name__)

WEBSOCKET_VERSION = "13"
# picows drops a connection whose request head reaches 16 KiB without answering; the guard
# answers 431 at the same size, before picows sees it.
MAX_REQUEST_HEAD = 16 * 1024
# After a 431, how long the rest of the oversized request is read and discarded (below).
LINGER_S = 2.0
_END_OF_HEAD = b"\r\n\r\n"
# What the guard reads at a time while the head is incomplete (most heads are one read).
_READ_SIZE = 4096


def refuse_version(request: WSUpgradeRequest) -> WSUpgradeResponseWithListener | None:
    """426 naming version 13 for a client asking for another (RFC 6455 §4.4).

    A request without the header is not a WebSocket request: picows answers it with 400.
    """
    version = request.headers.get("Sec-WebSocket-Version")
    if version is None or version.strip() == WEBSOCKET_VERSION:
        return None
    log.info("refused a WebSocket of another version", version=version)
    response = WSUpgradeResponse.create_error_response(
        426,
        b"only WebSocket version 13 is supported",
        extra_headers={"Sec-WebSocket-Version": WEBSOCKET_VERSION, "Upgrade": "websocket"},
    )
    return WSUpgradeResponseWithListener(response, None)


def requested_codec(request: WSUpgradeRequest) -> tuple[Codec | None, dict[str, str]]:
    """The codec a client asks for, and the headers the 101 must carry for it.

    The SDKs ask for Protobuf with the ``centrifuge-protobuf`` subprotocol, which the 101 must
    then name (a browser fails a handshake that offered subprotocols and got none back); a
    client that cannot set one may use ``?format=protobuf``. None: an unknown ``format``.
    """
    offered = [
        name.strip()
        for value in request.headers.getall("Sec-WebSocket-Protocol", [])
        for name in value.split(",")
    ]
    query = request.path.partition(b"?")[2].decode("latin-1")
    formats = parse_qs(query, keep_blank_values=True).get("format")
    codec = choose(offered, formats[-1] if formats else None)
    if codec is PROTOBUF and PROTOBUF_SUBPROTOCOL in offered:
        return codec, {"Sec-WebSocket-Protocol": PROTOBUF_SUBPROTOCOL}
    return codec, {}


def protocol_factory(
    route: Callable[[WSUpgradeRequest], Any],
    *,
    logger: logging.LoggerAdapter[logging.Logger],
    handshake_timeout: float,
    max_frame_size: int,
    read_buffer_init_size: int,
    take_http: Callable[[bytes], asyncio.BufferedProtocol | None] | None = None,
) -> Callable[[], HeadGuard]:
    """What picows's ws_create_server builds for each connection, behind a HeadGuard
    (``take_http``: whom a request for an HTTP transport's path goes to instead).

    Keyword arguments: a picows release that changes them fails at the first connection
    instead of passing values to the wrong parameters.
    """

    def make() -> HeadGuard:
        return HeadGuard(
            WSProtocol(
                host_port=None,
                ws_path=None,
                is_client_side=False,
                ws_listener_factory=route,
                logger=logger,
                disconnect_on_exception=True,
                websocket_handshake_timeout=handshake_timeout,
                enable_auto_ping=False,
                auto_ping_idle_timeout=20,
                auto_ping_reply_timeout=20,
                auto_ping_strategy=WSAutoPingStrategy.PING_WHEN_IDLE,
                # Connection answers pings itself, after checking the frame's reserved bits.
                enable_auto_pong=False,
                max_frame_size=max_frame_size,
                extra_headers=None,
                read_buffer_init_size=read_buffer_init_size,
            ),
            take_http,
            handshake_timeout,
        )

    return make


class HeadGuard(asyncio.BufferedProtocol):
    """Stands in front of picows's protocol until the request head has ended: answers 431 for
    a head of MAX_REQUEST_HEAD bytes or more, hands a request for an HTTP transport's path
    (``take_http``, e.g. /connection/sse) to that protocol instead, and otherwise gives the
    connection to picows; then steps aside (no cost per frame).

    picows only learns of the connection once its head is whole (so a connection taken for
    HTTP never had a WebSocket protocol); until then ``head_timeout`` bounds a slow head.
    """

    def __init__(
        self,
        inner: Any,
        take_http: Callable[[bytes], asyncio.BufferedProtocol | None] | None = None,
        head_timeout: float = 0.0,
    ) -> None:
        self._inner = inner  # picows's WSProtocol, a BufferedProtocol
        self._take_http = take_http
        self._head_timeout = head_timeout
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray(_READ_SIZE)
        self._head = bytearray()  # the request so far, until its head ends
        self._refused: bytearray | None = None  # where the rest goes after a 431
        self._linger: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._handed: Any = None  # whom the connection went to once the head ended

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self._transport = transport  # type: ignore[assignment]
        if self._head_timeout > 0:
            self._timer = asyncio.get_running_loop().call_later(
                self._head_timeout,
                transport.abort,  # type: ignore[attr-defined]
            )

    def get_buffer(self, sizehint: int) -> memoryview | bytearray:
        if self._refused is not None:
            return self._refused
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self._refused is not None:
            return
        assert self._transport is not None
        start = max(len(self._head) - 3, 0)  # the blank line may straddle two reads
        self._head += self._buffer[:nbytes]
        end = self._head.find(_END_OF_HEAD, start)
        if (end if end >= 0 else len(self._head)) >= MAX_REQUEST_HEAD:
            self._refuse()
            return
        if end >= 0:
            self._hand_over(bytes(self._head))

    def _hand_over(self, data: bytes) -> None:
        assert self._transport is not None
        transport = self._transport
        if self._timer is not None:
            self._timer.cancel()
        taker = self._take_http(data) if self._take_http is not None else None
        target = taker if taker is not None else self._inner
        self._handed = target
        self._head = bytearray()
        target.connection_made(transport)
        transport.set_protocol(target)
        # Everything read so far goes to the new owner as if it had read it itself.
        view = memoryview(data)
        while view and not transport.is_closing():
            buffer = memoryview(target.get_buffer(len(view)))
            n = min(len(buffer), len(view))
            buffer[:n] = view[:n]
            target.buffer_updated(n)
            view = view[n:]

    def _refuse(self) -> None:
        assert self._transport is not None
        transport = self._transport
        if self._timer is not None:
            self._timer.cancel()
        peer = transport.get_extra_info("peername")
        log.info("refused an oversized request head", ip=str(peer[0]) if peer else "")
        response = WSUpgradeResponse.create_error_response(
            431, b"request header fields too large", extra_headers={"Connection": "close"}
        )
        transport.write(bytes(response.to_bytes()))
        # Closing with the rest of the request unread would reset the connection, and the
        # client would see the reset instead of the 431: half-close, then read and discard
        # what it still sends until it closes, for LINGER_S at most.
        self._refused = bytearray(64 * 1024)
        if transport.can_write_eof():
            transport.write_eof()
        self._linger = asyncio.get_running_loop().call_later(LINGER_S, transport.abort)

    def eof_received(self) -> bool | None:
        return False  # the head never ended (or was refused): close

    def connection_lost(self, exc: Exception | None) -> None:
        # Only while the head is incomplete or refused: after the hand-over the new owner
        # is the transport's protocol and hears of the loss itself.
        for handle in (self._linger, self._timer):
            if handle is not None:
                handle.cancel()

    def pause_writing(self) -> None:
        pass  # nothing is written before the hand-over but a 431

    def resume_writing(self) -> None:
        pass
