"""The seam between a client connection and the transport that carries its bytes (transport seam).

A ``Connection`` (gateway/connection.py) runs one client's Centrifuge session whatever carries
it: it parses commands, talks to the engine, presence, auth and the database, and queues
encoded replies and pushes. A transport adapter moves bytes and nothing else: WebSocket frames
(gateway/websocket.py, over picows), and any other carrier (HTTP streaming, SSE, the
emulation endpoint) written the same way.

How to write a new transport adapter
------------------------------------
1. Implement ``ClientTransport`` below: ``codec`` (negotiated before the connection exists:
   JSON or Protobuf), ``ip`` (the client's address after ``Gateway.client_ip`` applied the
   trusted proxies' ``X-Forwarded-For``), ``send``, ``close`` and ``linger``.
2. Once the carrier is open, make ``conn = Connection(gateway, transport)`` and call
   ``conn.open()``: it registers the connection with the gateway (per-IP limits, connect rate)
   and returns False after closing it (``transport.close``) when it is refused.
3. Feed it input: ``conn.receive(data)`` with one complete client message (a frame in JSON
   lines, or varint-delimited Protobuf commands), as many times as messages come. Limits
   (frame size, commands per frame, pending commands) are enforced by the connection; an
   adapter only bounds what it buffers before a message is whole.
4. Report back-pressure: ``conn.pause_writing()`` when the carrier's write buffer passes its
   high-water mark, ``conn.resume_writing()`` when it drains. While paused, output waits in
   the connection's bounded queue; if that overflows too, the client is slow and is closed
   with 3008 (the queue is dropped, whole messages already handed to ``send`` stay).
5. When the peer closes or the carrier fails: ``conn.closed_by_client()`` as soon as the
   peer starts closing (nothing more is sent), and ``conn.disconnected()`` once the carrier is
   gone (subscriptions, presence and the per-IP slot are released; call it exactly once).

Everything the gateway and hub do with connections (fan-out deliveries, revocations, server-side
subscribe and refresh, membership re-checks, timers) goes through ``Connection`` and so works
for every transport. ``send`` is on the fan-out's hot path: at most one call per event-loop
turn per connection, with every message queued in that turn; keep it free of awaits.
"""

from __future__ import annotations

from typing import Protocol

from syncline.core.codecs import Codec


class ClientTransport(Protocol):
    """What a connection needs of the carrier of its bytes."""

    @property
    def codec(self) -> Codec:
        """The format negotiated when the carrier opened; fixed for the connection's life."""
        ...

    @property
    def ip(self) -> str:
        """The client's address, as per-IP limits and logs count it."""
        ...

    def send(self, messages: list[bytes]) -> None:
        """Write encoded messages (replies, pushes), in order, as soon as the carrier can.

        The adapter frames them as its carrier needs: one WebSocket frame of newline-separated
        JSON or concatenated Protobuf (``codec.binary`` says which), one SSE event each, one
        length-delimited chunk each... Never called after ``close``.
        """
        ...

    def close(self, code: int, reason: str) -> None:
        """Close with a protocol code (3xxx, 4xxx) or a WebSocket one (1xxx) and its reason.

        Called once. What was sent before must reach the client ahead of the close; a client
        that does not read its way there is cut off by ``linger``.
        """
        ...

    def linger(self, now: float) -> None:
        """Called every tick (``now``: monotonic seconds) after ``close``: drop the carrier of a
        client that stopped reading before it got to the close."""
        ...
