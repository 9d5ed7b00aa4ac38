"""Hostile input for the no-500 tests: strategies, a raw RPC socket that sends any JSON text,
and a guard that fails when anything is logged at ERROR."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import structlog
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect

NUL = "a\u0000b"
LONE_SURROGATE = "a\ud800b"
HUGE_INTS = [2**63, 2**64, 2**70, -(2**63) - 1, -(2**70), 10**30]

# Any code point, surrogates and controls included (st.text() alone leaves surrogates out).
_ANY_CHAR = st.characters(codec=None, categories=None)
# Text no PostgreSQL column can hold: most hostile text is such, as that is what breaks.
unstorable_text = st.builds(
    lambda head, bad, tail: head + bad + tail,
    st.text(max_size=8),
    st.sampled_from(["\x00", "\x00", "\ud800", "\udc00"]),  # NUL twice as likely
    st.text(max_size=8),
)
hostile_text = st.one_of(
    unstorable_text,
    st.sampled_from(["\x01\x1f\x7f", "\u2028", "\ufeff", " ", "", "1", "x" * 5000]),
    st.text(_ANY_CHAR, max_size=40),
)
hostile_number = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from(HUGE_INTS),
    st.floats(allow_nan=True, allow_infinity=True),
)
hostile_scalar = st.one_of(hostile_text, hostile_number, st.booleans(), st.none())
hostile_value = st.recursive(
    hostile_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
    max_leaves=8,
)


def dump(value: Any) -> str:
    """JSON text of any generated value: integers of any size, lone surrogates escaped."""
    # ensure_ascii writes a lone surrogate as \\udXXX, which json.loads on the server takes;
    # allow_nan writes NaN/Infinity, which Python's json (Starlette's) accepts too.
    return json.dumps(value, ensure_ascii=True, allow_nan=True)


_ERROR_LEVELS = {"error", "critical", "exception"}


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


@contextmanager
def no_error_logs() -> Iterator[None]:
    """Fail if anything is logged at ERROR or above inside, through structlog or stdlib."""
    handler = _Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with structlog.testing.capture_logs() as captured:
            yield
    finally:
        root.removeHandler(handler)
    errors = [e for e in captured if e.get("log_level") in _ERROR_LEVELS]
    assert not errors and not handler.lines, (errors, handler.lines)


class RawSocket:
    """A protocol client that sends RPC data as raw JSON text (what the SDKs cannot encode)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 1

    @classmethod
    async def open(cls, ws_url: str, origin: str, token: str) -> RawSocket:
        sock = cls(await connect(ws_url, origin=origin))  # type: ignore[arg-type]
        reply = await sock.command(f'"connect": {{"token": {json.dumps(token)}}}')
        assert "connect" in reply, reply
        return sock

    async def command(self, body: str) -> dict[str, Any]:
        """Send `{"id": N, <body>}` and return the reply with that id (pushes are skipped)."""
        cid = self.next_id
        self.next_id += 1
        await self.ws.send(f'{{"id": {cid}, {body}}}')
        while True:
            # Split on "\n" only: str.splitlines() also splits inside strings (at U+0085, ...).
            for line in str(await asyncio.wait_for(self.ws.recv(), 10)).split("\n"):
                message = orjson.loads(line)
                if message.get("id") == cid:
                    return dict(message)

    async def rpc(self, method: str, data_json: str) -> dict[str, Any]:
        return await self.command(f'"rpc": {{"method": {json.dumps(method)}, "data": {data_json}}}')

    async def close(self) -> None:
        await self.ws.close()
