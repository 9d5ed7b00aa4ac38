"""The bench receivers' Protobuf fast path: a publication push's ``data``, read off the wire.

A Python receiver that parses each ``Reply`` with upb and walks ``reply.push.pub.data`` builds
three message wrappers per delivery; on the fan-out bench that made the Protobuf receivers
dearer per delivery than the JSON ones (orjson parses a whole JSON push in one C call: 0.9 µs
against upb's 1.8 µs here), and the receivers share the machine's two cores with the server
they measure. A publication push as any Protobuf serializer writes it (fields in number order)
begins with the same three length-delimited fields, ``Reply.push`` → ``Push.channel``,
``Push.pub`` → ``Publication.data``; this reader checks those tags and lengths and takes the
bytes (1.1 µs with the row's orjson, as the JSON receiver's 1.0 µs). Anything else, or any
other layout, gives None and the caller parses the Reply with upb: on what a serializer writes
the reader never answers differently from upb (tests/bench/test_pb_reader.py), it only declines.
"""

from __future__ import annotations

# Keys (field number << 3 | wire type 2) of client.proto's Reply.push, Push.channel, Push.pub
# and Publication.data; a push reply carries no id, so Reply.push comes first.
_PUSH = 4 << 3 | 2
_CHANNEL = 2 << 3 | 2
_PUB = 4 << 3 | 2
_DATA = 4 << 3 | 2


def _skip_length(buf: bytes, pos: int) -> int:
    """Past the length varint at ``pos``, one or two bytes; -1 for a longer one (upb's)."""
    if buf[pos] < 0x80:
        return pos + 1
    return pos + 2 if buf[pos + 1] < 0x80 else -1


def publication_data(buf: bytes, start: int, end: int) -> bytes | None:
    """``Reply.push.pub.data`` of the Reply in ``buf[start:end]``; None to leave it to upb.

    Positions only grow, and the data must end by ``end``: a Reply cut short is declined.
    """
    try:
        if buf[start] != _PUSH:
            return None
        pos = _skip_length(buf, start + 1)
        if pos < 0:
            return None
        if buf[pos] == _CHANNEL:
            size = buf[pos + 1]
            if size >= 0x80:
                return None
            pos += 2 + size
        if buf[pos] != _PUB:
            return None
        pos = _skip_length(buf, pos + 1)
        if pos < 0 or buf[pos] != _DATA:
            return None
        size = buf[pos + 1]
        if size < 0x80:
            pos += 2
        elif buf[pos + 2] < 0x80:
            size = (size & 0x7F) | buf[pos + 2] << 7
            pos += 3
        else:
            return None
    except IndexError:  # past the frame: cut short
        return None
    if pos + size > end:
        return None
    return buf[pos : pos + size]
