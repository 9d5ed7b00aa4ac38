"""The in-process channel log engine: one ChannelStream per channel, fan-out by direct call.

For a single gateway process (``syncline up``). Everything is lost when the process ends, and
the new process gives every stream a new epoch, so clients resuming with an old position get
``recovered: false`` and reload: the contract holds across restarts, only history does not.

It is meant for one asyncio event loop and is not thread-safe. No method ever awaits, so each
call runs to completion before another starts: that is what makes offset assignment atomic
and keeps fan-out in offset order without a lock.

There is no timer. Expired history is trimmed when a stream is used, and a sweep that runs on
the way into any call, at most once per ``SWEEP_INTERVAL_S``, drops idle streams. Streams are
kept in least-recently-used order, so the sweep only looks at the idle end.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

import structlog

from syncline.core.changes import CommitPosition
from syncline.core.log import (
    DEFAULT_HISTORY_MAX_LIMIT,
    ChannelStream,
    ClientInfo,
    HistoryResult,
    Publication,
    RecoveryResult,
    StreamPosition,
    new_epoch,
)
from syncline.engine.base import (
    AppendRequest,
    EngineClosedError,
    FanoutHandler,
    PresenceHandler,
)

logger = structlog.get_logger(__name__)

# A stream nobody has used for this long, with no history left and no listener, is dropped;
# if it is used again it starts over with a new epoch. A day is far longer than any history
# TTL worth having and than any time a capture source takes to re-read unacknowledged changes,
# and short enough that channels used once (a user's personal channel after they leave)
# do not pile up. Dropping a stream without history loses nothing a client could recover,
# except a resume exactly at the top, which then turns into a reload.
DEFAULT_IDLE_STREAM_TTL_S = 24 * 3600.0

# A hard bound on the number of streams. Beyond it the least recently used stream without a
# listener is evicted, history and all; its clients get ``recovered: false`` and reload, which
# is correct, only costly. An empty stream measured 1 KiB (mostly the deque's first block),
# so the bound caps the streams themselves near 100 MiB; history comes on top, bounded per
# channel by its history size. A deployment with more live channels should run Redis.
DEFAULT_MAX_STREAMS = 100_000

# How often the idle sweep may run, and how many streams one sweep may look at, so that a
# sweep never holds the event loop for long: a full sweep of 1000 streams measured 2 ms.
SWEEP_INTERVAL_S = 1.0
SWEEP_BUDGET = 1000


class MemoryEngine:
    """A ``ChannelLog`` held in this process's memory."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        epoch_factory: Callable[[], str] = new_epoch,
        history_max_limit: int = DEFAULT_HISTORY_MAX_LIMIT,
        idle_stream_ttl_s: float = DEFAULT_IDLE_STREAM_TTL_S,
        max_streams: int = DEFAULT_MAX_STREAMS,
    ) -> None:
        if max_streams < 1:
            raise ValueError("max_streams must be at least 1")
        self._clock = clock
        self._epoch_factory = epoch_factory
        self._history_max_limit = history_max_limit
        self._idle_ms = round(idle_stream_ttl_s * 1000)
        self._max_streams = max_streams
        # Least recently used first: every use moves a stream to the end.
        self._streams: OrderedDict[str, ChannelStream] = OrderedDict()
        self._listeners: dict[str, int] = {}
        # Replaced, never mutated, so a handler may unsubscribe while fan-out iterates.
        self._handlers: tuple[FanoutHandler, ...] = ()
        self._presence_handlers: tuple[PresenceHandler, ...] = ()
        self._next_sweep_ms = 0
        self._closed = False

    def __len__(self) -> int:
        """How many streams the engine holds."""
        return len(self._streams)

    # -- writing ---------------------------------------------------------------------------

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
        now_ms = self._now_ms()
        return self._append(channel, data, info, position, history_size, history_ttl_s, now_ms)

    async def append_batch(self, items: Sequence[AppendRequest]) -> list[Publication | None]:
        now_ms = self._now_ms()
        append = self._append
        return [
            append(c, data, info, pos, size, ttl, now_ms) for c, data, size, ttl, info, pos in items
        ]

    async def publish_ephemeral(
        self, channel: str, data: bytes, info: ClientInfo | None = None
    ) -> Publication:
        pub = Publication(0, data, info, self._now_ms())
        self._fanout(channel, "", pub)
        return pub

    async def publish_presence(self, channel: str, info: ClientInfo, joined: bool) -> None:
        self._check_open()
        for handler in self._presence_handlers:
            try:
                handler.on_presence(channel, info, joined)
            except Exception:
                logger.exception("presence_handler_failed", channel=channel)

    def subscribe_presence(self, handler: PresenceHandler) -> Callable[[], None]:
        self._check_open()
        self._presence_handlers = (*self._presence_handlers, handler)

        def unsubscribe() -> None:
            self._presence_handlers = tuple(h for h in self._presence_handlers if h is not handler)

        return unsubscribe

    def _append(
        self,
        channel: str,
        data: bytes,
        info: ClientInfo | None,
        position: CommitPosition | None,
        history_size: int,
        history_ttl_s: float,
        now_ms: int,
    ) -> Publication | None:
        stream = self._stream(channel, now_ms)
        if stream.history_size != history_size or stream.history_ttl_s != history_ttl_s:
            stream.set_bounds(history_size, history_ttl_s)
        pub = stream.append(data, info, now_ms, position)
        if pub is not None:
            self._fanout(channel, stream.epoch, pub)
        return pub

    def _fanout(self, channel: str, epoch: str, pub: Publication) -> None:
        for handler in self._handlers:
            try:
                handler.on_publication(channel, epoch, pub)
            except Exception:
                # The publication is in the log already; failing the append would only make
                # the capture source re-read a change that is then dropped as a duplicate.
                # Tell the handler instead, so it resyncs the channel's subscribers.
                logger.exception("fanout_handler_failed", channel=channel, offset=pub.offset)
                self._report_gap(handler, channel)

    @staticmethod
    def _report_gap(handler: FanoutHandler, channel: str) -> None:
        try:
            handler.on_gap(channel)
        except Exception:
            logger.exception("fanout_gap_handler_failed", channel=channel)

    # -- reading ---------------------------------------------------------------------------

    async def position(self, channel: str) -> StreamPosition:
        now_ms = self._now_ms()
        stream = self._stream(channel, now_ms)
        stream.touched_ms = now_ms
        return stream.position

    async def recover(self, channel: str, since: StreamPosition) -> RecoveryResult:
        now_ms = self._now_ms()
        return self._stream(channel, now_ms).recover(since, now_ms)

    async def history(
        self,
        channel: str,
        limit: int = 0,
        since: StreamPosition | None = None,
        reverse: bool = False,
    ) -> HistoryResult:
        now_ms = self._now_ms()
        stream = self._stream(channel, now_ms)
        return stream.history(limit, since, reverse, now_ms, self._history_max_limit)

    async def remove_history(self, channel: str) -> None:
        self._check_open()
        stream = self._streams.get(channel)
        if stream is not None:
            stream.clear()

    # -- fan-out registration and listeners ------------------------------------------------

    def subscribe_fanout(self, handler: FanoutHandler) -> Callable[[], None]:
        self._check_open()
        self._handlers = (*self._handlers, handler)

        def unsubscribe() -> None:
            self._handlers = tuple(h for h in self._handlers if h is not handler)

        return unsubscribe

    async def listen(self, channel: str) -> None:
        self._check_open()
        self._listeners[channel] = self._listeners.get(channel, 0) + 1

    async def unlisten(self, channel: str) -> None:
        self._check_open()
        count = self._listeners.get(channel, 0)
        if count <= 1:
            self._listeners.pop(channel, None)
        else:
            self._listeners[channel] = count - 1

    async def close(self) -> None:
        self._closed = True
        self._handlers = ()
        self._streams.clear()
        self._listeners.clear()

    # -- streams ---------------------------------------------------------------------------

    def _now_ms(self) -> int:
        if self._closed:
            raise EngineClosedError("the memory engine is closed")
        return int(self._clock() * 1000)

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosedError("the memory engine is closed")

    def _stream(self, channel: str, now_ms: int) -> ChannelStream:
        if now_ms >= self._next_sweep_ms:
            self._sweep(now_ms)
        streams = self._streams
        stream = streams.get(channel)
        if stream is not None:
            streams.move_to_end(channel)
            return stream
        if len(streams) >= self._max_streams:
            self._evict()
        # No history until an append says how much: a stream created by a subscribe or a
        # history request has nothing to keep yet.
        stream = ChannelStream(self._epoch_factory(), history_size=0, history_ttl_s=0.0)
        stream.touched_ms = now_ms
        streams[channel] = stream
        return stream

    def _sweep(self, now_ms: int) -> None:
        """Drop streams unused for the idle TTL that have no history left and no listener."""
        self._next_sweep_ms = now_ms + round(SWEEP_INTERVAL_S * 1000)
        streams = self._streams
        for _ in range(min(len(streams), SWEEP_BUDGET)):
            channel, stream = next(iter(streams.items()))
            if now_ms - stream.touched_ms < self._idle_ms:
                break  # everything behind it was used more recently
            stream.trim(now_ms)
            if len(stream) or channel in self._listeners:
                # Kept: look again one full idle period later, behind the recently used ones.
                stream.touched_ms = now_ms
                streams.move_to_end(channel)
            else:
                del streams[channel]

    def _evict(self) -> None:
        """Make room for one stream: drop the least recently used one without a listener."""
        streams = self._streams
        for _ in range(min(len(streams), SWEEP_BUDGET)):
            channel = next(iter(streams))
            if channel not in self._listeners:
                del streams[channel]
                logger.warning("stream_evicted", channel=channel, max_streams=self._max_streams)
                return
            streams.move_to_end(channel)
        # Every stream looked at has a listener: grow past the bound rather than break a
        # subscription; the gateway's own connection and channel limits bound this case.
