"""The WebSocket transport: a picows listener that carries one Connection's messages.

It does what RFC 6455 and RFC 7692 ask of the server and nothing of the protocol above: whole
messages out of frames and fragments, inflating, pings and pongs of the WebSocket itself, the
close handshake, and picows's back-pressure callbacks handed to the connection.
"""

from __future__ import annotations

import time
import zlib
from typing import TYPE_CHECKING

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from syncline.core.codecs import Codec
from syncline.gateway import sendq
from syncline.gateway.connection import Connection
from syncline.gateway.deflate import Agreement, Inflater, Shared, Takeover
from syncline.gateway.frames import (
    Fragments,
    FrameError,
    check_utf8,
    send_message,
    valid_close_code,
)
from syncline.logs import get_logger

if TYPE_CHECKING:
    from syncline.gateway.server import Gateway

log = get_logger(__name__)


class WebSocketTransport(WSListener):
    """One WebSocket (picows) carrying a Connection, in JSON or Protobuf (``codec``)."""

    # Ten thousand idle connections are ten thousand of these: no per-instance __dict__.
    __slots__ = (
        "_compressor",
        "_inflater",
        "_message",
        "codec",
        "conn",
        "deflate",
        "drain",
        "gw",
        "ip",
        "ws",
    )

    def __init__(self, gateway: Gateway, codec: Codec, deflate: Agreement | None = None) -> None:
        self.gw = gateway
        self.codec = codec  # chosen at the upgrade: every message in and out goes through it
        self.deflate = deflate  # permessage-deflate, if negotiated at the upgrade
        self._inflater: Inflater | None = None  # made on the first compressed message
        self._compressor: Shared | Takeover | None = None
        if deflate is not None:
            bits = deflate.server_bits
            self._compressor = (
                Takeover(bits) if deflate.server_takeover else gateway.deflater.shared(bits)
            )
        self.ws: WSTransport | None = None
        self.conn: Connection | None = None  # made once the handshake is done
        self.ip = ""
        self._message: Fragments | None = None  # a fragmented message being received
        self.drain = sendq.CloseDrain()  # from the close frame out (or the client's in)

    # -- picows callbacks -------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.ws = transport
        peer = transport.underlying_transport.get_extra_info("peername")
        forwarded = transport.request.headers.get("X-Forwarded-For")
        self.ip = self.gw.client_ip(str(peer[0]) if peer else "", forwarded)
        self.conn = Connection(self.gw, self)
        self.conn.open()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        conn = self.conn
        assert conn is not None
        if conn.closing:
            if frame.msg_type is WSMsgType.CLOSE:
                transport.disconnect()  # the client's answer to our close frame
            return
        try:
            data = self._message_of(transport, frame)
        except FrameError as err:
            log.info("closing on a WebSocket protocol error", client=conn.client, why=err.why)
            conn.close(err.code.value, flush=False, reason=err.why)
            return
        if data is not None:
            conn.receive(data)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.conn is not None:
            self.conn.disconnected()

    def pause_writing(self) -> None:
        """picows: the transport's buffer went over its high-water mark (64 KiB)."""
        if self.conn is not None:
            self.conn.pause_writing()

    def resume_writing(self) -> None:
        if self.conn is not None:
            self.conn.resume_writing()

    # -- input ------------------------------------------------------------------------------

    def _message_of(self, transport: WSTransport, frame: WSFrame) -> bytes | None:
        """The message this frame completes, if any; control frames are answered here.

        picows checks masking, opcodes, lengths and control frame sizes; the rest of RFC 6455
        §5 is checked here. Raises FrameError for a frame that fails the connection.
        """
        kind = frame.msg_type
        data_frame = kind is WSMsgType.TEXT or kind is WSMsgType.BINARY
        if frame.rsv2 or frame.rsv3 or (frame.rsv1 and (self.deflate is None or not data_frame)):
            # RSV1 is permessage-deflate's, on the first frame of a message only (RFC 7692
            # §6.1); no other extension is negotiated (RFC 6455 §5.2).
            raise FrameError(WSCloseCode.PROTOCOL_ERROR, "reserved bit set")
        if data_frame:
            if self._message is not None:
                raise FrameError(WSCloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")
            if frame.fin:
                data = frame.get_payload_as_bytes()
                if frame.rsv1:
                    data = self._inflate(data)
                if kind is WSMsgType.TEXT:
                    check_utf8(data)
                return data
            self._message = Fragments(text=kind is WSMsgType.TEXT, compressed=bool(frame.rsv1))
        elif kind is WSMsgType.CONTINUATION:
            if self._message is None:
                raise FrameError(WSCloseCode.PROTOCOL_ERROR, "continuation without a message")
        elif kind is WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
            return None
        elif kind is WSMsgType.CLOSE:
            self._answer_close(transport, frame)
            return None
        else:
            return None  # a pong nobody asked for
        fragments = self._message
        message = fragments.add(
            frame.get_payload_as_bytes(),
            fin=bool(frame.fin),
            max_size=self.gw.settings.max_frame_size,
        )
        if message is not None:
            self._message = None
            if fragments.compressed:
                message = self._inflate(message)
                if fragments.text:
                    check_utf8(message)
        return message

    def _inflate(self, payload: bytes) -> bytes:
        """A compressed message inflated, to max_frame_size at most (a bomb stops there)."""
        assert self.deflate is not None
        if self._inflater is None:
            self._inflater = Inflater(self.deflate)
        limit = self.gw.settings.max_frame_size
        try:
            data = self._inflater.inflate(payload, limit)
        except zlib.error:
            raise FrameError(WSCloseCode.INVALID_TEXT, "invalid compressed data") from None
        if data is None:
            raise FrameError(WSCloseCode.MESSAGE_TOO_BIG, f"message over {limit} bytes inflated")
        return data

    def _answer_close(self, transport: WSTransport, frame: WSFrame) -> None:
        """The client closes: echo its code and close TCP at once, as a server should (§7.1.1).

        picows has refused a one-byte payload, a reason that is not UTF-8 and most reserved
        codes; 0, 1006 and codes from 5000 up reach us.
        """
        code = frame.get_close_code() if frame.payload_size >= 2 else WSCloseCode.OK
        if not valid_close_code(code.value):
            raise FrameError(WSCloseCode.PROTOCOL_ERROR, f"invalid close code {code.value}")
        assert self.conn is not None
        self.conn.closed_by_client()
        self.drain.start(0, time.monotonic())
        transport.send_close(code)
        transport.disconnect()

    # -- ClientTransport --------------------------------------------------------------------

    def send(self, messages: list[bytes]) -> None:
        assert self.ws is not None
        send_message(self.ws, messages, binary=self.codec.binary, deflate=self._compressor)

    def close(self, code: int, reason: str) -> None:
        """The close frame is the last thing written. When frames the client has not read yet
        are ahead of it, the client has until it stops reading for sendq.CLOSE_GRACE_S to get to it
        (linger), however much that is."""
        transport = self.ws
        assert transport is not None
        underlying = transport.underlying_transport
        backlog = sendq.unsent(underlying)
        transport.send_close(WSCloseCode(code), reason.encode())
        if backlog and underlying.can_write_eof() and not underlying.is_closing():
            # Closing the socket with input unread (a pong, say) would reset the connection,
            # and the reset destroys what the client has not read yet, the close frame
            # included: half-close, and go on reading until the client answers.
            underlying.write_eof()
        else:
            transport.disconnect(graceful=True)
        self.drain.start(sendq.unsent(underlying), time.monotonic())

    def linger(self, now: float) -> None:
        if self.ws is None or not self.drain.since:
            return
        if self.drain.stalled(sendq.unsent(self.ws.underlying_transport), now):
            self.ws.disconnect(graceful=False)
