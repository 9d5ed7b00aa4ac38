"""The HTTP side of the opening handshake that picows leaves out: 426 and 431 refusals, and
the format (JSON or Protobuf) a client asks for."""

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
) -> Callable[[], HeadGuard]:
    """What picows's ws_create_server builds for each connection, behind a HeadGuard.

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
            )
        )

    return make


class HeadGuard(asyncio.BufferedProtocol):
    """Stands in front of picows's protocol until the request head has ended, and answers
    431 for a head of MAX_REQUEST_HEAD bytes or more; then steps aside (no cost per frame)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner  # picows's WSProtocol, a BufferedProtocol
        self._transport: asyncio.Transport | None = None
        self._view: memoryview | None = None
        self._seen = 0  # bytes of the request so far
        self._tail = b""  # its last three bytes: the blank line may straddle two reads
        self._refused: bytearray | None = None  # where the rest goes after a 431
        self._linger: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self._transport = transport  # type: ignore[assignment]
        self._inner.connection_made(transport)

    def get_buffer(self, sizehint: int) -> memoryview | bytearray:
        if self._refused is not None:
            return self._refused
        self._view = self._inner.get_buffer(sizehint)
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        if self._refused is not None:
            return
        assert self._view is not None and self._transport is not None
        chunk = self._tail + bytes(self._view[:nbytes])
        self._view = None
        end = chunk.find(_END_OF_HEAD)
        head = self._seen - len(self._tail) + (end if end >= 0 else len(chunk))
        if head >= MAX_REQUEST_HEAD:
            self._refuse()
            return
        if end >= 0:
            # picows reads every later byte itself.
            self._transport.set_protocol(self._inner)
        else:
            self._seen += nbytes
            self._tail = chunk[-3:]
        self._inner.buffer_updated(nbytes)

    def _refuse(self) -> None:
        assert self._transport is not None
        transport = self._transport
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
        if self._refused is not None:
            return False  # close
        result: bool | None = self._inner.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()
