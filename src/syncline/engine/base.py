"""The channel log engine interface, shared by the memory and Redis engines.

Semantics live in ``syncline.core.log`` (offsets, epochs, recovery, history); an engine adds
storage, atomic offset assignment across its callers, and fan-out of every appended
publication to the gateway.

Fan-out contract
----------------
The gateway registers a ``FanoutHandler``. For every channel, the engine calls
``on_publication`` once per publication, in offset order, right after the append that
assigned the offset. Handlers are synchronous and must not block: they only put the
already-encoded publication into each subscriber's bounded send buffer, and the gateway
disconnects a subscriber whose buffer is full (design.md: slow consumers are disconnected,
not waited for). A synchronous call is what keeps the order without a sequencer: the memory
engine assigns the offset and calls the handlers in one step, with no ``await`` in between,
so no other append of that channel can come in between and no queue or task hop adds latency.

An engine that receives publications from elsewhere (Redis pub/sub) must hand them over
through a bounded buffer of its own, and must never skip silently: when that buffer
overflows, or its connection drops and messages may have been lost, it discards what it
cannot deliver and calls ``on_gap`` for the channels concerned (``None``: possibly all). The
gateway then makes the affected subscribers resubscribe and recover from their offset
(unsubscribe push 2500, centrifuge-protocol.md §5.5). ``on_gap`` is also called for a channel
whose ``on_publication`` raised, since that handler may have delivered it to nobody.

Every handler call carries the stream's epoch. A stream can be lost and created again with a
new epoch (engine restart, an idle stream dropped, a full engine evicting its least used
stream); the offsets then start again at 1, and the epoch is how the gateway tells that from
a continuation. Ephemeral publications carry offset 0 and an empty epoch.

Subscribing to a channel
------------------------
The gateway calls ``listen(channel)`` before it reads the position or recovers (so no live
publication can fall between the two; it drops the live ones it already sent in the reply,
by offset), and ``unlisten(channel)`` when it no longer has subscribers there. Calls are
counted, so each ``listen`` needs one ``unlisten``. The Redis engine subscribes to the
channel's pub/sub topic on the first, returns only once Redis has confirmed it (so the
position read next cannot miss a publication), and delivers only listened channels; the memory
engine delivers every channel anyway and only uses the count to keep a listened-to stream from
being dropped as idle. A ``listen`` that raises ``EngineUnavailableError`` still counts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

from syncline.core.changes import CommitPosition
from syncline.core.log import (
    ClientInfo,
    HistoryResult,
    Publication,
    RecoveryResult,
    StreamPosition,
)


class EngineClosedError(RuntimeError):
    """The engine was closed; no further appends or reads."""


class EngineUnavailableError(ConnectionError):
    """The engine's store (Redis) cannot be reached or did not answer in time.

    An append that raises this may or may not have happened: a caller may retry one that
    carries a commit position (a repeat is dropped), and should not blindly retry one without.
    The memory engine never raises it.
    """


class AppendRequest(NamedTuple):
    """One item of ``append_batch``; the same fields as the arguments of ``append``.

    A named tuple rather than a frozen dataclass because batches are built on the hot path and
    a tuple is about twice as fast to create; it is just as immutable.
    """

    channel: str
    data: bytes
    history_size: int
    history_ttl_s: float
    info: ClientInfo | None = None
    position: CommitPosition | None = None


class FanoutHandler(Protocol):
    """Receives every publication of every (listened) channel; the module docstring has the rest."""

    def on_publication(self, channel: str, epoch: str, pub: Publication, /) -> None:
        """Deliver ``pub`` of ``channel``; called in offset order per channel, never blocking."""

    def on_gap(self, channel: str | None, /) -> None:
        """Publications of ``channel`` (None: of any channel) may have been lost in fan-out."""


class PresenceHandler(Protocol):
    """Receives the join and leave events of every listened channel, from every process."""

    def on_presence(self, channel: str, info: ClientInfo, joined: bool, /) -> None:
        """``info``'s client joined (or left) ``channel``; never blocking."""


class ChannelLog(Protocol):
    """An engine: per-channel streams with atomic offsets, bounded history and fan-out.

    All methods except ``subscribe_fanout`` are coroutines, because the Redis engine does I/O
    in each; the memory engine's never suspend. ``history`` raises ``LogError`` (codes 107 and
    112) exactly as ``ChannelStream.history`` does; every method raises ``EngineClosedError``
    after ``close``.
    """

    async def append(
        self,
        channel: str,
        data: bytes,
        *,
        info: ClientInfo | None = None,
        position: CommitPosition | None = None,
        history_size: int,
        history_ttl_s: float,
    ) -> Publication | None:
        """Give ``data`` the channel's next offset, keep it in history and fan it out.

        Offsets are assigned atomically among all callers (of all processes, for Redis).
        Returns None, and does nothing, when ``position`` is not after the last position
        appended to the channel: the change was appended before a crash and read again.
        """
        ...

    async def append_batch(self, items: Sequence[AppendRequest]) -> list[Publication | None]:
        """Append many items in one call; results, and fan-out, follow the order of ``items``."""
        ...

    async def publish_ephemeral(
        self, channel: str, data: bytes, info: ClientInfo | None = None
    ) -> Publication:
        """Fan out ``data`` with offset 0: it takes no offset and never enters history."""
        ...

    async def publish_presence(self, channel: str, info: ClientInfo, joined: bool) -> None:
        """Fan out a join (or leave) of ``info``'s client to the channel's subscribers in every
        process: like an ephemeral publication, no offset and no history."""
        ...

    def subscribe_presence(self, handler: PresenceHandler) -> Callable[[], None]:
        """Register ``handler`` for joins and leaves; returns the function that unregisters it."""
        ...

    async def position(self, channel: str) -> StreamPosition:
        """The channel's current top; creates the stream (and its epoch) if there is none."""
        ...

    async def recover(self, channel: str, since: StreamPosition) -> RecoveryResult:
        """Exactly the publications after ``since``, or ``recovered=False`` with none."""
        ...

    async def history(
        self,
        channel: str,
        limit: int = 0,
        since: StreamPosition | None = None,
        reverse: bool = False,
    ) -> HistoryResult:
        """A history page (centrifuge-protocol.md §2.7), capped by the engine's max limit."""
        ...

    async def remove_history(self, channel: str) -> None:
        """Drop the channel's history, keeping its epoch and top offset (``ChannelStream.clear``):
        the server API's ``history_remove``. A channel with no stream is left without one."""
        ...

    async def listen(self, channel: str) -> None:
        """This process has subscribers in ``channel``; counted, see the module docstring."""
        ...

    async def unlisten(self, channel: str) -> None:
        """Undo one ``listen``."""
        ...

    def subscribe_fanout(self, handler: FanoutHandler) -> Callable[[], None]:
        """Register ``handler`` for all channels; returns the function that unregisters it."""
        ...

    async def close(self) -> None:
        """Release everything; later calls raise ``EngineClosedError``. Idempotent."""
        ...
