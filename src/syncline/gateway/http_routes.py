"""The gateway port's HTTP routes: the HTTP-streaming and SSE transports (bidirectional and
unidirectional) and ``/emulation``, next to the WebSocket endpoint.

Paths, methods and formats are Centrifugo's: ``POST /connection/http_stream`` (JSON, or
Protobuf with ``Content-Type: application/octet-stream``), ``GET /connection/sse?cf_connect=``
(or POST), ``POST /emulation``, ``POST /connection/uni_http_stream`` and ``GET
/connection/uni_sse?cf_connect=`` (or POST). Every refusal is a 4xx with a one-line JSON
body; browsers get CORS headers for the origins the WebSocket endpoint accepts.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

from syncline.core import emulation
from syncline.core.codecs import JSON, PROTOBUF
from syncline.core.control import Emulate
from syncline.core.emulation import BadRequest, error_body
from syncline.core.http_head import RequestHead, request_path
from syncline.gateway.connection import Connection
from syncline.gateway.http_exchange import HttpExchange
from syncline.gateway.streams import (
    StreamTransport,
    UniStreamTransport,
    http_stream_framer,
    sse_framer,
)
from syncline.logs import get_logger

if TYPE_CHECKING:
    from syncline.gateway.server import Gateway

log = get_logger(__name__)

HTTP_STREAM_PATH = "/connection/http_stream"
SSE_PATH = "/connection/sse"
EMULATION_PATH = "/emulation"
UNI_HTTP_STREAM_PATH = "/connection/uni_http_stream"
UNI_SSE_PATH = "/connection/uni_sse"
# The query parameter that carries the connect command(s) of an SSE request (a GET: browsers'
# EventSource cannot POST), as centrifuge-js and Centrifugo name it.
CONNECT_PARAM = "cf_connect"

_STREAM_METHODS = {
    HTTP_STREAM_PATH: ("POST",),
    SSE_PATH: ("GET", "POST"),
    EMULATION_PATH: ("POST",),
    UNI_HTTP_STREAM_PATH: ("POST",),
    UNI_SSE_PATH: ("GET", "POST"),
}
PATHS = frozenset(_STREAM_METHODS)
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"


class HttpRoutes:
    """Serves the HTTP transports for a Gateway, and knows the emulated sessions it holds."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        # Emulated sessions of this process by id: /emulation hands their commands in.
        self.sessions: dict[str, StreamTransport] = {}
        # Every open HTTP connection, so that stopping leaves none behind (a refused request
        # lingers a moment after its answer, see HttpExchange).
        self.exchanges: set[HttpExchange] = set()

    def take(self, head: bytes) -> HttpExchange | None:
        """The protocol for a request whose head is ``head``, if it is for an HTTP transport
        (else None: picows answers it, as a WebSocket upgrade or a 404)."""
        if request_path(head) not in PATHS:
            return None
        exchange = HttpExchange(
            self.handle,
            max_body=emulation.MAX_BODY,
            body_timeout=self.gw.settings.connect_timeout,
            on_lost=self.exchanges.discard,
        )
        self.exchanges.add(exchange)
        return exchange

    def close(self) -> None:
        """Drop every HTTP connection still open (after the sessions were closed)."""
        for exchange in list(self.exchanges):
            exchange.abort()

    # -- requests ---------------------------------------------------------------------------

    def handle(self, exchange: HttpExchange, head: RequestHead, body: bytes) -> None:
        origin = head.header("origin")
        cors: dict[str, str] = {}
        if origin is not None:
            if not self.gw.origin_allowed(origin):
                log.info("refused an HTTP transport from a foreign origin", origin=origin)
                exchange.respond(403, error_body("origin not allowed"))
                return
            cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        methods = _STREAM_METHODS[head.path]
        if head.method == "OPTIONS":
            # A browser's preflight (a POST with Content-Type: application/json needs one).
            allowed = ", ".join((*methods, "OPTIONS"))
            exchange.respond(
                204,
                headers={
                    **cors,
                    "Access-Control-Allow-Methods": allowed,
                    "Access-Control-Allow-Headers": "Content-Type",
                    "Access-Control-Max-Age": "300",
                },
            )
            return
        if head.method not in methods:
            exchange.respond(
                405,
                error_body(f"{head.method} not allowed here; use {' or '.join(methods)}"),
                headers={**cors, "Allow": ", ".join((*methods, "OPTIONS"))},
            )
            return
        try:
            if head.path == EMULATION_PATH:
                self._emulate(head, body)
                exchange.respond(204, headers=cors)
            else:
                self._open(exchange, head, body, cors)
        except BadRequest as err:
            exchange.respond(err.status, err.body(), headers=cors)

    def _emulate(self, head: RequestHead, body: bytes) -> None:
        protobuf = emulation.is_protobuf(head.header("content-type"))
        request = emulation.decode_emulation(body, protobuf=protobuf)
        if request.node == self.gw.node_name or request.session in self.sessions:
            problem = self.emulate_here(request.session, request.data, protobuf=protobuf)
            if problem is not None:
                raise BadRequest(*problem)
            return
        # Another worker or node holds the session (the balancer sent the POST elsewhere than
        # the stream): the control bus carries it there; only that node acts on it.
        control = self.gw.control
        if control is None:
            raise BadRequest(404, "no such session (closed, or on another node)")
        command = Emulate(request.node, request.session, request.data)
        self.gw.spawn(control.publish(command))

    def emulate_here(
        self, session: str, data: bytes, *, protobuf: bool | None = None, forwarded: bool = False
    ) -> tuple[int, str] | None:
        """Hand ``data`` to this process's session ``session``; the 4xx for a request that
        cannot be (``protobuf``: the request's format, None when forwarded: the session's)."""
        stream = self.sessions.get(session)
        if stream is None or stream.conn is None:
            if forwarded:
                log.info("emulation for a session that is gone", session=session)
            return 404, "no such session (closed, or on another node)"
        if protobuf is not None and stream.codec.binary != protobuf:
            return 400, f"the session speaks {stream.codec.format}"
        stream.conn.receive(data)
        return None

    def _open(
        self, exchange: HttpExchange, head: RequestHead, body: bytes, cors: Mapping[str, str]
    ) -> None:
        path = head.path
        uni = path in (UNI_HTTP_STREAM_PATH, UNI_SSE_PATH)
        sse = path in (SSE_PATH, UNI_SSE_PATH)
        if head.method == "GET":
            connect = (head.param(CONNECT_PARAM) or "").encode()
            if not connect and not uni:
                raise BadRequest(400, f"no connect command: send it in {CONNECT_PARAM}")
        else:
            connect = body
        protobuf = not sse and not uni and emulation.is_protobuf(head.header("content-type"))
        codec = PROTOBUF if protobuf else JSON
        if uni:
            # Validated before the stream starts, so a bad one is a 400, not a stream.
            connect = emulation.uni_connect_frame(connect)
        elif not connect:
            raise BadRequest(400, "no connect command in the body")
        peer = exchange.peer
        ip = self.gw.client_ip(peer, head.header("x-forwarded-for"))
        kind = path.rsplit("/", 1)[1]
        stream_class = UniStreamTransport if uni else StreamTransport
        stream = stream_class(
            exchange,
            kind=kind,
            codec=codec,
            ip=ip,
            frame=sse_framer if sse else http_stream_framer(codec),
            session=uuid.uuid4().hex,
            node=self.gw.node_name,
            on_gone=self._gone,
        )
        content_type = SSE_CONTENT_TYPE if sse else _stream_content_type(protobuf)
        exchange.start_stream(content_type, {**cors, **self.gw.node_headers})
        if sse:
            exchange.write(emulation.SSE_PREAMBLE)
        exchange.listener = stream
        conn = Connection(self.gw, stream)
        stream.conn = conn
        if not uni:
            self.sessions[stream.session] = stream
        if conn.open():
            conn.receive(connect)

    def _gone(self, stream: StreamTransport) -> None:
        if self.sessions.get(stream.session) is stream:
            del self.sessions[stream.session]


def _stream_content_type(protobuf: bool) -> str:
    return emulation.PROTOBUF_CONTENT_TYPE if protobuf else "application/json"
