"""The client protocol's two formats, JSON and Protobuf, behind one interface chosen per connection.

A connection picks its codec once, from the WebSocket subprotocol (``centrifuge-protobuf``,
what centrifuge-js and centrifuge-python send) or the ``format=protobuf`` query parameter, and
then parses and encodes through it. ``PubFrames`` holds one publication's push encoded at
most once per format, so a fan-out to subscribers of both formats encodes it twice, not once
per subscriber.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncline.core import pb_protocol, pb_wire, protocol, wire
from syncline.core.log import ClientInfo, Publication
from syncline.core.protocol import Command, JsonValue

# The subprotocol the SDKs ask for when set to Protobuf (JSON clients ask for none).
PROTOBUF_SUBPROTOCOL = "centrifuge-protobuf"


class Format(enum.StrEnum):
    JSON = "json"
    PROTOBUF = "protobuf"


@dataclass(frozen=True, slots=True, eq=False)
class Codec:
    """One format's parser and encoders; ``binary``: frames go out as binary, not text."""

    format: Format
    binary: bool
    ping: bytes
    parse_frame: Callable[..., list[Command]]
    join: Callable[[Sequence[bytes]], bytes]
    encode_reply: Callable[[int, str, Mapping[str, Any] | None], bytes]
    encode_error: Callable[..., bytes]
    encode_push: Callable[[str, str, Mapping[str, Any]], bytes]
    encode_pub_push: Callable[..., bytes]
    encode_join_push: Callable[[str, ClientInfo], bytes]
    encode_leave_push: Callable[[str, ClientInfo], bytes]
    encode_unsubscribe_push: Callable[..., bytes]
    encode_disconnect_push: Callable[..., bytes]
    encode_message_push: Callable[[JsonValue], bytes]
    encode_subscribe_push: Callable[[str, Mapping[str, Any]], bytes]


JSON = Codec(
    format=Format.JSON,
    binary=False,
    ping=wire.PING,
    parse_frame=protocol.parse_frame,
    join=wire.join_lines,
    encode_reply=wire.encode_reply,
    encode_error=wire.encode_error,
    encode_push=wire.encode_push,
    encode_pub_push=wire.encode_pub_push,
    encode_join_push=wire.encode_join_push,
    encode_leave_push=wire.encode_leave_push,
    encode_unsubscribe_push=wire.encode_unsubscribe_push,
    encode_disconnect_push=wire.encode_disconnect_push,
    encode_message_push=wire.encode_message_push,
    encode_subscribe_push=wire.encode_subscribe_push,
)

PROTOBUF = Codec(
    format=Format.PROTOBUF,
    binary=True,
    ping=pb_wire.PING,
    parse_frame=pb_protocol.parse_frame,
    join=pb_wire.join,
    encode_reply=pb_wire.encode_reply,
    encode_error=pb_wire.encode_error,
    encode_push=pb_wire.encode_push,
    encode_pub_push=pb_wire.encode_pub_push,
    encode_join_push=pb_wire.encode_join_push,
    encode_leave_push=pb_wire.encode_leave_push,
    encode_unsubscribe_push=pb_wire.encode_unsubscribe_push,
    encode_disconnect_push=pb_wire.encode_disconnect_push,
    encode_message_push=pb_wire.encode_message_push,
    encode_subscribe_push=pb_wire.encode_subscribe_push,
)


def choose(subprotocols: Sequence[str], format_param: str | None) -> Codec | None:
    """The codec a WebSocket upgrade asks for; None for an unknown ``format`` value.

    The subprotocol wins, as it is what the SDKs send; the query parameter serves clients
    that cannot set one.
    """
    if PROTOBUF_SUBPROTOCOL in subprotocols:
        return PROTOBUF
    if format_param is None or format_param == Format.JSON:
        return JSON
    if format_param == Format.PROTOBUF:
        return PROTOBUF
    return None


class PubFrames:
    """One publication's ``pub`` push, encoded at most once per format, for its fan-out."""

    __slots__ = ("_channel", "_frames", "_pub")

    def __init__(self, channel: str, pub: Publication) -> None:
        self._channel = channel
        self._pub = pub
        self._frames: dict[Format, bytes] = {}

    def get(self, codec: Codec) -> bytes:
        frame = self._frames.get(codec.format)
        if frame is None:
            pub = self._pub
            frame = codec.encode_pub_push(self._channel, pub.data, pub.offset, pub.info)
            self._frames[codec.format] = frame
        return frame

    @property
    def encodings(self) -> int:
        """How many formats were encoded so far (for tests and metrics)."""
        return len(self._frames)
