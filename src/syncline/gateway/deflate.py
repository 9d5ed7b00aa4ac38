"""permessage-deflate (RFC 7692): the offer a client makes, and compressing and inflating
messages; picows 2.3 has no extension support of its own, only the RSV1 bit."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from multidict import MultiMapping

EXTENSION = "permessage-deflate"
_TAIL = b"\x00\x00\xff\xff"  # the empty stored block a sync flush ends with (§7.2.1)
# The window we ask a client to compress with, when its offer lets us choose: what it sends
# is small (commands), and an inflater with context takeover keeps 2**bits bytes of window
# per connection (15 bits: 32 KiB, more than the whole idle connection's 16.6 KiB).
CLIENT_WINDOW_BITS = 12
# zlib cannot deflate with a 256-byte window (it uses 512 bytes), so 8 is declined (§7.1.2).
_MIN_BITS, _MAX_BITS = 9, 15
# A compressor per connection (context takeover) uses a 1 KiB window and memLevel 2: 12 KiB
# per connection instead of zlib's default 262 KiB (15 bits, memLevel 8), for 0.19 of the bytes
# of small publications instead of 0.12, at a quarter of the CPU (docs/benchmarks.md).
TAKEOVER_BITS, TAKEOVER_MEM_LEVEL = 10, 2
# Below this, compressing does not pay: deflate's own framing eats what it saves.
MIN_SIZE = 128
# Compressed parts kept for the next connections that send the same frame (a fan-out), in
# bytes of plain and compressed parts together; a larger part (a recovery reply, unique to
# its connection) is compressed without being kept.
_CACHE_BYTES = 1 << 20
_CACHE_PART = 64 * 1024


@dataclass(frozen=True, slots=True)
class Agreement:
    """What was negotiated. Without server context takeover, one compressor serves every
    connection (Deflater); with it, each connection has its own (Takeover)."""

    server_bits: int  # the window our compressor uses
    client_bits: int  # the window the client compresses with
    client_takeover: bool  # the client keeps its context between messages
    server_takeover: bool = False  # we keep ours (websocket_compression_context)

    def header(self, server_bits_offered: bool, client_bits_offered: bool) -> str:
        words = [EXTENSION]
        if not self.server_takeover:
            words.append("server_no_context_takeover")
        if not self.client_takeover:
            words.append("client_no_context_takeover")
        if server_bits_offered:
            words.append(f"server_max_window_bits={self.server_bits}")
        if client_bits_offered:
            words.append(f"client_max_window_bits={self.client_bits}")
        return "; ".join(words)


class _Declined(Exception):
    """An offer with a parameter we cannot honour or that breaks §7.1's grammar."""


def _bits(value: str | None) -> int:
    if value is None or not value.isdigit() or len(value) > 2:
        raise _Declined
    bits = int(value)
    if not _MIN_BITS <= bits <= _MAX_BITS:
        raise _Declined
    return bits


def _accept(params: list[str], takeover: bool) -> tuple[Agreement, str]:
    seen: dict[str, str | None] = {}
    for param in params:
        name, eq, value = param.partition("=")
        name = name.strip().lower()
        val = value.strip().strip('"') if eq else None
        if not name or name in seen:
            raise _Declined  # each parameter at most once (§7.1)
        seen[name] = val
    server_bits = _MAX_BITS
    client_bits = _MAX_BITS
    client_takeover = True
    for name, val in seen.items():
        if name == "server_no_context_takeover" or name == "client_no_context_takeover":
            if val is not None:
                raise _Declined
            if name == "client_no_context_takeover":
                client_takeover = False
            else:
                takeover = False
        elif name == "server_max_window_bits":
            server_bits = _bits(val)
        elif name == "client_max_window_bits":
            # Without a value the client only says it understands the parameter.
            offered = _MAX_BITS if val is None else _bits(val)
            client_bits = min(offered, CLIENT_WINDOW_BITS)
        else:
            raise _Declined
    if takeover:
        server_bits = min(server_bits, TAKEOVER_BITS)
    agreement = Agreement(server_bits, client_bits, client_takeover, takeover)
    header = agreement.header("server_max_window_bits" in seen, "client_max_window_bits" in seen)
    return agreement, header


def negotiate(
    headers: MultiMapping[str], *, takeover: bool = False
) -> tuple[Agreement, str] | None:
    """The first permessage-deflate offer we can honour, and the header value accepting it;
    None (no extension, the upgrade goes on) for no offer, or only ones we must decline.
    ``takeover``: keep a compressor per connection, unless the client asks us not to."""
    for value in headers.getall("Sec-WebSocket-Extensions", []):
        for offer in value.split(","):
            name, *params = offer.split(";")
            if name.strip().lower() != EXTENSION:
                continue
            try:
                return _accept(params, takeover)
            except _Declined:
                continue
    return None


class Deflater:
    """Compresses outgoing messages, one compressor per window size for all connections.

    Every message is compressed on its own (server_no_context_takeover): a full flush after
    each part resets the compressor, so no message refers to an earlier one and the same
    compressor serves every connection. A message is its parts compressed one by one and
    concatenated (a deflate stream may be cut and joined at flush points), so a publication
    fanned out to a thousand subscribers is compressed once, not a thousand times.
    """

    def __init__(self) -> None:
        self._compressors: dict[int, zlib._Compress] = {}
        self._cache: dict[tuple[int, bytes], bytes] = {}
        self._cached = 0  # bytes the cache holds
        self._views: dict[int, Shared] = {}
        self.sent = 0  # messages compressed (and sent so) since the start

    @property
    def cache_bytes(self) -> int:
        """Bytes of plain and compressed parts kept for the next connections."""
        return self._cached

    def shared(self, bits: int) -> Shared:
        """What a connection without server context takeover compresses with."""
        view = self._views.get(bits)
        if view is None:
            view = self._views[bits] = Shared(self, bits)
        return view

    def _part(self, bits: int, part: bytes) -> bytes:
        key = (bits, part)
        done = self._cache.get(key)
        if done is None:
            compressor = self._compressors.get(bits)
            if compressor is None:
                compressor = zlib.compressobj(6, zlib.DEFLATED, -bits, 8)
                self._compressors[bits] = compressor
            done = compressor.compress(part) + compressor.flush(zlib.Z_FULL_FLUSH)
            if len(part) <= _CACHE_PART:
                self._cached += len(part) + len(done)
                while self._cached > _CACHE_BYTES and self._cache:
                    # Dicts keep insertion order: drop the oldest entries.
                    oldest = next(iter(self._cache))
                    self._cached -= len(oldest[1]) + len(self._cache.pop(oldest))
                self._cache[key] = done
        return done

    def message(self, bits: int, parts: list[bytes], separator: bytes) -> bytes | None:
        """The compressed payload of ``parts`` joined by ``separator``; None when it is not
        smaller than the plain message (send that, with RSV1 clear)."""
        size = sum(map(len, parts)) + len(separator) * (len(parts) - 1)
        if size < MIN_SIZE:
            return None
        chunks: list[bytes] = []
        for i, part in enumerate(parts):
            if i and separator:
                chunks.append(self._part(bits, separator))
            chunks.append(self._part(bits, part))
        out = b"".join(chunks)[: -len(_TAIL)]  # every chunk ends with the tail
        if len(out) >= size:
            return None
        self.sent += 1
        return out


class Shared:
    """The Deflater at one window size, as a connection sees it."""

    __slots__ = ("_bits", "_deflater")

    def __init__(self, deflater: Deflater, bits: int) -> None:
        self._deflater = deflater
        self._bits = bits

    def message(self, parts: list[bytes], separator: bytes) -> bytes | None:
        return self._deflater.message(self._bits, parts, separator)


class Takeover:
    """One connection's own compressor (context takeover): each message may refer to the
    earlier ones, which is what makes small publications small; made on the first message."""

    __slots__ = ("_bits", "_compressor")

    def __init__(self, bits: int) -> None:
        self._bits = bits
        self._compressor: zlib._Compress | None = None

    def message(self, parts: list[bytes], separator: bytes) -> bytes | None:
        message = parts[0] if len(parts) == 1 else separator.join(parts)
        if len(message) < MIN_SIZE:
            return None
        if self._compressor is None:
            self._compressor = zlib.compressobj(6, zlib.DEFLATED, -self._bits, TAKEOVER_MEM_LEVEL)
        c = self._compressor
        # Sent even when not smaller: the peer's context must hold every message we compress.
        return (c.compress(message) + c.flush(zlib.Z_SYNC_FLUSH))[: -len(_TAIL)]


class Inflater:
    """Inflates a client's compressed messages, with its context kept between them unless the
    client agreed to client_no_context_takeover; made on the first compressed message."""

    __slots__ = ("_bits", "_inflater", "_takeover")

    def __init__(self, agreement: Agreement) -> None:
        self._bits = agreement.client_bits
        self._takeover = agreement.client_takeover
        self._inflater: zlib._Decompress | None = None

    def inflate(self, payload: bytes, max_size: int) -> bytes | None:
        """The message, or None if it inflates to more than ``max_size`` bytes (it stops
        there: a decompression bomb allocates no more). Raises zlib.error for bad data."""
        inflater = self._inflater or zlib.decompressobj(-self._bits)
        data = inflater.decompress(payload + _TAIL, max_size + 1)
        if len(data) > max_size:
            return None
        # A client that ended its stream (BFINAL, §7.2.3.4) starts a new one next time.
        self._inflater = inflater if self._takeover and not inflater.eof else None
        return data
