"""RFC 6455 rules that picows leaves to the application: fragments, UTF-8, close codes, logs,
and writing a text or binary frame safely."""

from __future__ import annotations

import codecs
import logging
from typing import Any

from picows import WSCloseCode, WSMsgType, WSTransport

from syncline.gateway.deflate import Shared, Takeover

# Close codes a peer may send (RFC 6455 §7.4.1 and the IANA registry): 1004-1006 and 1015 are
# reserved for local use and never go on the wire, 1016-2999 are unassigned.
_RECEIVABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})

# picows's own messages for frames a client got wrong, which it logs at ERROR.
_CLIENT_FAULTS = ("WS parser error",)
# picows copies a message up to this size into the frame it writes; above it, see send_message.
_PICOWS_COPIES = 8192
# picows writes a frame's header (at most 14 bytes) into the room left in front of a message.
_HEADROOM = 14


def send_text(transport: WSTransport, parts: list[bytes]) -> None:
    """Send ``parts`` as one text frame, separated by newlines (the JSON format)."""
    send_message(transport, parts, binary=False)


def send_message(
    transport: WSTransport,
    parts: list[bytes],
    *,
    binary: bool,
    deflate: Shared | Takeover | None = None,
) -> None:
    """Send ``parts`` as one frame: text separated by newlines (JSON), or binary and simply
    concatenated (Protobuf, whose messages carry their own lengths).

    Not transport.send() for a message over 8 KiB: picows then hands the transport a view of
    its header buffer, which the next frame reuses. While the socket is backed up, uvloop (and
    asyncio's writelines from 3.12) keep that view until the kernel takes the bytes, so a
    frame sent meanwhile (the close frame, typically) overwrote the header and the client read
    garbage. Such a message gets the header in front of its own copy instead. Smaller ones,
    nearly all of them, take picows's path, which copies them whole.

    ``deflate``: the compressor of a connection that negotiated permessage-deflate; the
    message goes compressed (RSV1 set) unless it says that does not pay.
    """
    kind = WSMsgType.BINARY if binary else WSMsgType.TEXT
    separator = b"" if binary else b"\n"
    compressed = None if deflate is None else deflate.message(parts, separator)
    if compressed is not None:
        message = compressed
    else:
        message = parts[0] if len(parts) == 1 else separator.join(parts)
    rsv1 = compressed is not None
    if len(message) <= _PICOWS_COPIES:
        transport.send(kind, message, rsv1=rsv1)
        return
    buf = bytearray(_HEADROOM)
    buf += message
    transport.send_reuse_external_bytearray(kind, buf, _HEADROOM, rsv1=rsv1)


class FrameError(Exception):
    """A client frame that fails the WebSocket connection with ``code``."""

    def __init__(self, code: WSCloseCode, why: str) -> None:
        super().__init__(why)
        self.code = code
        self.why = why


def valid_close_code(code: int) -> bool:
    return code in _RECEIVABLE_CLOSE_CODES or 3000 <= code <= 4999


def check_utf8(data: bytes) -> None:
    try:
        data.decode()
    except UnicodeDecodeError:
        raise FrameError(WSCloseCode.INVALID_TEXT, "invalid UTF-8 in a text message") from None


class Fragments:
    """A fragmented message being put together; browsers never fragment, so this is rare."""

    __slots__ = ("_decoder", "_parts", "_size", "compressed", "text")

    def __init__(self, text: bool, *, compressed: bool = False) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self.text = text
        self.compressed = compressed  # RSV1 on the first frame: inflated once whole
        # Text is checked fragment by fragment, so bad UTF-8 fails before the message ends
        # (a compressed one only once inflated).
        decoder = text and not compressed
        self._decoder = codecs.getincrementaldecoder("utf-8")() if decoder else None

    def add(self, payload: bytes, *, fin: bool, max_size: int) -> bytes | None:
        """Add a fragment; the whole message once ``fin`` is set."""
        self._size += len(payload)
        if self._size > max_size:
            raise FrameError(WSCloseCode.MESSAGE_TOO_BIG, f"message over {max_size} bytes")
        if self._decoder is not None:
            try:
                self._decoder.decode(payload, final=fin)
            except UnicodeDecodeError:
                raise FrameError(
                    WSCloseCode.INVALID_TEXT, "invalid UTF-8 in a text message"
                ) from None
        self._parts.append(payload)
        return b"".join(self._parts) if fin else None


class PicowsLog(logging.LoggerAdapter[logging.Logger]):
    """picows's logger, with the frame errors of clients at INFO instead of ERROR.

    A client that sends garbage is not the operator's problem: one fuzzing client filled the
    error log. Failures of our own (exceptions in callbacks) stay at ERROR.
    """

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if level >= logging.ERROR and isinstance(msg, str) and msg.startswith(_CLIENT_FAULTS):
            level = logging.INFO
        super().log(level, msg, *args, **kwargs)
