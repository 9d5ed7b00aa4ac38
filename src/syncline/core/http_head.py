"""An HTTP/1.1 request head, parsed strictly: what the gateway port's HTTP transports read.

The gateway's port speaks WebSocket through picows; requests for the HTTP transports
(/connection/http_stream, /connection/sse, /emulation, the unidirectional ones) are read
here instead. Only what those endpoints need is accepted: a request line with an
origin-form target, HTTP/1.0 or 1.1, ``name: value`` header lines (no obsolete line
folding), and a body given by Content-Length (a chunked body, which browsers never send for
these requests, is refused with 411). Anything else is a ``HeadError`` with its 4xx status.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

# Header names are tokens (RFC 9110 §5.6.2).
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_METHODS = frozenset({"GET", "POST", "OPTIONS", "HEAD", "PUT", "DELETE", "PATCH"})
MAX_HEADERS = 100


class HeadError(ValueError):
    """A request head answered with ``status`` (400, 405, 411, 413 …) and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    path: str  # without the query
    query: str
    version: str  # "HTTP/1.1" or "HTTP/1.0"
    headers: dict[str, str]  # lower-case names; repeated ones joined with ", "

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def param(self, name: str) -> str | None:
        """The last value of query parameter ``name`` (percent-decoded), or None."""
        values = parse_qs(self.query, keep_blank_values=True).get(name)
        return values[-1] if values else None

    @property
    def keep_alive(self) -> bool:
        connection = (self.headers.get("connection") or "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection

    def content_length(self, limit: int) -> int:
        """The body's length; HeadError 411 for a chunked body, 413 over ``limit``, 400 if
        malformed."""
        if "transfer-encoding" in self.headers:
            raise HeadError(411, "send the body with a Content-Length, not chunked")
        raw = self.headers.get("content-length")
        if raw is None:
            return 0
        if not raw.isdigit() or len(raw) > 12:
            raise HeadError(400, "malformed Content-Length")
        length = int(raw)
        if length > limit:
            raise HeadError(413, f"request body over {limit} bytes")
        return length


def request_path(head: bytes) -> str | None:
    """The path (no query) of the request line at the start of ``head``; None if there is no
    well-formed request line. Cheap: the gateway calls it for every new connection."""
    line_end = head.find(b"\r\n")
    parts = head[: line_end if line_end >= 0 else len(head)].split(b" ")
    if len(parts) != 3 or not parts[1].startswith(b"/"):
        return None
    return parts[1].split(b"?", 1)[0].decode("latin-1")


def parse_head(head: bytes) -> RequestHead:
    """The request head (up to, not including, the blank line); HeadError(400) if malformed."""
    lines = head.split(b"\r\n")
    try:
        request_line = lines[0].decode("ascii")
    except UnicodeDecodeError:
        raise HeadError(400, "malformed request line") from None
    parts = request_line.split(" ")
    if len(parts) != 3:
        raise HeadError(400, "malformed request line")
    method, target, version = parts
    if method not in _METHODS:
        raise HeadError(405, f"method {method[:16]!r} not allowed")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HeadError(400, "only HTTP/1.0 and HTTP/1.1 are spoken here")
    if not target.startswith("/"):
        raise HeadError(400, "the request target must be a path")
    path, _, query = target.partition("?")
    headers: dict[str, str] = {}
    if len(lines) - 1 > MAX_HEADERS:
        raise HeadError(431, f"more than {MAX_HEADERS} header lines")
    for raw in lines[1:]:
        if not raw:
            continue
        name, colon, value = raw.partition(b":")
        if not colon or not name or not all(c in _TOKEN for c in name):
            raise HeadError(400, "malformed header line")
        if any(c < 0x20 and c != 0x09 for c in value) or 0x7F in value:
            raise HeadError(400, "control character in a header value")
        key = name.decode("ascii").lower()
        text = value.strip(b" \t").decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    if version == "HTTP/1.1" and "host" not in headers:
        raise HeadError(400, "HTTP/1.1 request without Host")
    return RequestHead(method, path, query, version, headers)
