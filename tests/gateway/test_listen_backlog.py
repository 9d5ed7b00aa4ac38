"""The gateway port's accept queue: a burst of connects completes while the loop is busy."""

from __future__ import annotations

import asyncio
import select
import socket
import time
from urllib.parse import urlsplit

from helpers.live_server import LiveServer

# More than asyncio's default backlog (100), which create_server would set if not told.
BURST = 400


def _handshakes_done(port: int, count: int, within_s: float) -> tuple[int, list[socket.socket]]:
    """Start ``count`` connects and wait, without running the event loop, until the kernel
    has completed them; a full accept queue drops SYNs, whose retry comes only after 1 s."""
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        socks.append(sock)
    pending = set(socks)
    deadline = time.monotonic() + within_s
    while pending and (left := deadline - time.monotonic()) > 0:
        _, writable, _ = select.select([], list(pending), [], left)
        pending -= set(writable)
    return count - len(pending), socks


async def test_a_burst_of_connects_is_queued_while_the_loop_is_busy(
    live_server: LiveServer,
) -> None:
    """Every HTTP-transport client POSTs its pong on a new connection, all at the ping: with
    asyncio's default backlog most of a 1,000-client burst waited on SYN retries past the pong
    deadline (3012). The runtime's 2,048 must be what the gateway listens with."""
    port = urlsplit(live_server.ws_url).port
    assert port is not None
    # The test's own loop runs the gateway: nothing is accepted until this call returns.
    done, socks = _handshakes_done(port, BURST, within_s=0.8)
    try:
        assert done == BURST
    finally:
        for sock in socks:
            sock.close()
        await asyncio.sleep(0.2)  # let the gateway see them go
