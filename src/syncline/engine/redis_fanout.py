"""Fan-out from Redis pub/sub: counted topic subscriptions, a bounded hand-over, gaps reported.

One pub/sub connection per Redis server that owns listened topics (one in all for a standalone
Redis; one per primary with sharded pub/sub in a cluster), each read by its own task. The
readers put messages into one bounded buffer and a dispatcher task calls the fan-out handlers
synchronously from it, in arrival order, which is offset order per channel: Redis delivers
the messages of one topic in the order the append scripts published them.

Nothing is skipped silently. When the buffer is full the message is dropped and the channel
owes a gap, reported in order before anything later of that channel; when a connection drops,
every channel that was subscribed on it owes a gap, reported as soon as the subscription is
sent again on a new connection (reporting it while Redis is down would only make clients
recover against a server that cannot answer).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import structlog
from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot
from redis.exceptions import RedisError

from syncline.core.log import ClientInfo
from syncline.engine.base import (
    EngineClosedError,
    EngineUnavailableError,
    FanoutHandler,
    PresenceHandler,
)
from syncline.engine.redis_scripts import decode_message, decode_presence_message

logger = structlog.get_logger(__name__)

# Messages waiting between the pub/sub readers and the dispatcher. The dispatcher empties the
# buffer in slices of DISPATCH_SLICE per event-loop turn, and a reader adds at most what one
# socket read returned before the dispatcher runs again, so the buffer only fills when the
# event loop cannot keep up with Redis; then dropping (and reporting a gap) is what bounds
# memory, at ~300 bytes a publication about 3 MiB.
FANOUT_BUFFER_SIZE = 10_000

# Publications delivered per event-loop turn: between slices the loop flushes the sockets the
# handlers wrote to and reads more from Redis, so one burst cannot hold it for long.
DISPATCH_SLICE = 500

# How long ``listen`` waits for Redis to confirm a subscription before it gives up.
LISTEN_TIMEOUT_S = 5.0

# A PING on every pub/sub connection this often; one that has received nothing for
# PING_DEAD_AFTER pings is treated as dead, since a half-open TCP connection looks just like
# a quiet one.
PING_INTERVAL_S = 5.0
PING_DEAD_AFTER = 3

# Reconnection backoff, doubling from the first to the last.
RECONNECT_MIN_S = 0.05
RECONNECT_MAX_S = 2.0

# Topics per SUBSCRIBE command when a connection resubscribes everything.
SUBSCRIBE_CHUNK = 500


class Router(Protocol):
    """Where a topic's subscription goes: the one server, or the cluster node of its slot."""

    sharded: bool

    def address(self, topic: bytes) -> str:
        """The server that owns ``topic``."""
        ...

    async def connect(self, address: str) -> AbstractConnection:
        """A new RESP2 connection to ``address`` with no read timeout."""
        ...

    async def refresh(self) -> None:
        """Learn the cluster's slots again (after a failover or a slot migration)."""
        ...


class Fanout:
    """Listen counts, the pub/sub links, and the buffer between them and the handlers."""

    def __init__(self, router: Router) -> None:
        self.router = router
        sharded = router.sharded
        self._subscribe = b"SSUBSCRIBE" if sharded else b"SUBSCRIBE"
        self._unsubscribe = b"SUNSUBSCRIBE" if sharded else b"UNSUBSCRIBE"
        self._counts: dict[str, int] = {}
        self._channel_of: dict[bytes, str] = {}
        self._topic_of: dict[str, bytes] = {}
        self._link_of: dict[bytes, _Link] = {}
        self._links: dict[str, _Link] = {}
        self._confirmed: set[bytes] = set()
        self._waiters: dict[bytes, asyncio.Future[None]] = {}
        # Topics whose messages may have been lost with a connection: a gap is due.
        self._owed: set[bytes] = set()
        # (channel, message), or (channel, None) for a gap to report at that point.
        self._buffer: deque[tuple[str, bytes | None]] = deque()
        # Channels that lost a message to a full buffer and whose gap is not queued yet;
        # insertion-ordered, and never larger than the listened channels.
        self._lost: dict[str, None] = {}
        self._handlers: tuple[FanoutHandler, ...] = ()
        self._presence_handlers: tuple[PresenceHandler, ...] = ()
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.dropped = 0

    # -- handlers --------------------------------------------------------------------------

    def subscribe(self, handler: FanoutHandler) -> Callable[[], None]:
        self._handlers = (*self._handlers, handler)

        def unsubscribe() -> None:
            self._handlers = tuple(h for h in self._handlers if h is not handler)

        return unsubscribe

    def subscribe_presence(self, handler: PresenceHandler) -> Callable[[], None]:
        self._presence_handlers = (*self._presence_handlers, handler)

        def unsubscribe() -> None:
            self._presence_handlers = tuple(h for h in self._presence_handlers if h is not handler)

        return unsubscribe

    # -- listening -------------------------------------------------------------------------

    async def listen(self, channel: str, topic: bytes) -> None:
        """Count a listener; return once Redis has confirmed the channel's subscription."""
        if self._closed:
            raise EngineClosedError("the redis engine is closed")
        if self._dispatcher is None:
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch_loop())
        count = self._counts.get(channel, 0)
        if count == 0:
            link = self._link(self.router.address(topic))  # may raise: before any change
            self._counts[channel] = 1
            self._channel_of[topic] = channel
            self._topic_of[channel] = topic
            self._link_of[topic] = link
            await link.subscribe(topic)
        else:
            self._counts[channel] = count + 1
        await self._wait(self._topic_of[channel])

    async def unlisten(self, channel: str) -> None:
        count = self._counts.get(channel, 0)
        if count > 1:
            self._counts[channel] = count - 1
            return
        if count == 0:
            return
        del self._counts[channel]
        topic = self._topic_of.pop(channel)
        del self._channel_of[topic]
        self._confirmed.discard(topic)
        self._owed.discard(topic)
        link = self._link_of.pop(topic)
        await link.unsubscribe(topic)

    def listening(self) -> dict[str, int]:
        """Listened channels and their counts (a copy, for tests and diagnostics)."""
        return dict(self._counts)

    async def _wait(self, topic: bytes) -> None:
        if topic in self._confirmed:
            return
        future = self._waiters.get(topic)
        if future is None:
            future = self._waiters[topic] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(LISTEN_TIMEOUT_S):
                await asyncio.shield(future)
        except TimeoutError:
            # The subscription stays requested (and counted): it goes through when Redis
            # is back, and the caller's unlisten undoes it as usual.
            raise EngineUnavailableError("redis did not confirm a subscription") from None

    def _confirm(self, topic: bytes, link: _Link) -> None:
        if self._link_of.get(topic) is not link:
            return
        self._confirmed.add(topic)
        future = self._waiters.pop(topic, None)
        if future is not None and not future.done():
            future.set_result(None)

    def _link(self, address: str) -> _Link:
        link = self._links.get(address)
        if link is None:
            link = self._links[address] = _Link(self, address)
        return link

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _rehome(self, link: _Link) -> None:
        """Move the topics of ``link`` that the cluster now keeps elsewhere."""
        try:
            await self.router.refresh()
        except (RedisError, OSError) as err:
            logger.warning("redis_topology_refresh_failed", error=str(err))
            return
        for topic in list(link.topics):
            address = self.router.address(topic)
            if address != link.address:
                link.topics.discard(topic)
                target = self._link(address)
                self._link_of[topic] = target
                await target.subscribe(topic)
        if not link.topics and link.address not in {
            self.router.address(t) for t in self._channel_of
        }:
            self._links.pop(link.address, None)
            link.stop()

    # -- the buffer ------------------------------------------------------------------------

    def _push(self, topic: bytes, message: bytes) -> None:
        channel = self._channel_of.get(topic)
        if channel is None:
            return  # unlistened while the message was on its way
        buffer = self._buffer
        if len(buffer) >= FANOUT_BUFFER_SIZE:
            self.dropped += 1
            if channel not in self._lost:
                self._lost[channel] = None
                logger.warning("fanout_buffer_full", channel=channel, size=FANOUT_BUFFER_SIZE)
            return
        if self._lost and channel in self._lost:
            # The gap goes in before anything later of that channel.
            del self._lost[channel]
            buffer.append((channel, None))
        buffer.append((channel, message))
        self._wake.set()

    def _pay_gaps(self, topics: list[bytes]) -> None:
        """The subscriptions of ``topics`` are sent again: report the gaps they owe."""
        if not self._owed:
            return
        for topic in topics:
            if topic in self._owed:
                self._owed.discard(topic)
                channel = self._channel_of.get(topic)
                if channel is not None:
                    self._buffer.append((channel, None))
                    self._wake.set()

    async def _dispatch_loop(self) -> None:
        wake = self._wake
        while True:
            await wake.wait()
            wake.clear()
            try:
                while self._buffer:
                    self._dispatch(DISPATCH_SLICE)
                    if self._buffer:
                        await asyncio.sleep(0)
            except Exception:
                # A bug here must not stop fan-out for good: whatever was being delivered
                # may be lost, so every channel gets a gap, and the loop goes on.
                logger.exception("fanout_dispatch_failed")
                self._buffer.clear()
                self._lost.update(dict.fromkeys(self._counts))
            if self._lost:
                # Nothing later of these channels came in: report their gaps now.
                lost, self._lost = self._lost, {}
                for channel in lost:
                    self._gap(channel)

    def _dispatch(self, limit: int) -> None:
        buffer = self._buffer
        for _ in range(min(limit, len(buffer))):
            channel, message = buffer.popleft()
            if message is None:
                self._gap(channel)
                continue
            try:
                presence = decode_presence_message(message)
                if presence is not None:
                    self._presence(channel, *presence)
                    continue
                epoch, pub = decode_message(message)
            except ValueError:
                logger.exception("redis_message_malformed", channel=channel)
                self._gap(channel)
                continue
            for handler in self._handlers:
                try:
                    handler.on_publication(channel, epoch, pub)
                except Exception:
                    logger.exception("fanout_handler_failed", channel=channel, offset=pub.offset)
                    _report_gap(handler, channel)

    def _presence(self, channel: str, info: ClientInfo, joined: bool) -> None:
        # A lost join or leave is not a gap: presence is read from the store, these only
        # tell subscribers who came and went (as Centrifugo's are best effort too).
        for handler in self._presence_handlers:
            try:
                handler.on_presence(channel, info, joined)
            except Exception:
                logger.exception("presence_handler_failed", channel=channel)

    def _gap(self, channel: str) -> None:
        for handler in self._handlers:
            _report_gap(handler, channel)

    # -- closing ---------------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._handlers = ()
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(EngineClosedError("the redis engine is closed"))
                future.exception()  # retrieved: a waiter may already have timed out
        self._waiters.clear()
        tasks = [*self._tasks]
        if self._dispatcher is not None:
            tasks.append(self._dispatcher)
        for link in self._links.values():
            tasks.append(link.stop())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._links.clear()


def _report_gap(handler: FanoutHandler, channel: str) -> None:
    try:
        handler.on_gap(channel)
    except Exception:
        logger.exception("fanout_gap_handler_failed", channel=channel)


class _Link:
    """One pub/sub connection, kept open and resubscribed by its own task."""

    def __init__(self, fanout: Fanout, address: str) -> None:
        self.fanout = fanout
        self.address = address
        self.topics: set[bytes] = set()
        # Replies still to come to the SUBSCRIBE commands sent on this connection, per topic:
        # a subscription is confirmed by the reply to the last one only.
        self._inflight: dict[bytes, int] = {}
        self._conn: AbstractConnection | None = None
        self._lock = asyncio.Lock()
        self._received = 0
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> asyncio.Task[None]:
        self._task.cancel()
        return self._task

    async def subscribe(self, topic: bytes) -> None:
        self.topics.add(topic)
        await self._send(self.fanout._subscribe, [topic])

    async def unsubscribe(self, topic: bytes) -> None:
        self.topics.discard(topic)
        await self._send(self.fanout._unsubscribe, [topic])

    async def _send(self, command: bytes, topics: list[bytes]) -> None:
        """Send on the current connection; without one, the next connection sends it."""
        conn = self._conn
        if conn is None:
            return
        async with self._lock:
            if conn is not self._conn:
                return
            await self._write(conn, command, topics)

    async def _write(self, conn: AbstractConnection, command: bytes, topics: list[bytes]) -> None:
        subscribing = command == self.fanout._subscribe
        if subscribing:
            inflight = self._inflight
            for topic in topics:
                inflight[topic] = inflight.get(topic, 0) + 1
        try:
            await conn.send_packed_command(conn.pack_command(command, *topics), check_health=False)
        except (RedisError, OSError) as err:
            # The reader sees the same broken connection and starts over.
            logger.info("redis_pubsub_write_failed", address=self.address, error=str(err))
            return
        if subscribing:
            self.fanout._pay_gaps(topics)

    async def _run(self) -> None:
        fanout = self.fanout
        delay = RECONNECT_MIN_S
        while True:
            try:
                conn = await fanout.router.connect(self.address)
            except (RedisError, OSError) as err:
                logger.info("redis_pubsub_connect_failed", address=self.address, error=str(err))
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                if fanout.router.sharded:
                    await fanout._rehome(self)
                continue
            loop = asyncio.get_running_loop()
            connected_at = loop.time()
            pinger = loop.create_task(self._ping(conn))
            try:
                async with self._lock:
                    self._conn = conn
                    for chunk in self._chunks(list(self.topics)):
                        await self._write(conn, fanout._subscribe, chunk)
                await self._read(conn)
            except (RedisError, OSError) as err:
                logger.warning("redis_pubsub_lost", address=self.address, error=str(err))
            except Exception:
                # Not a network error (a reply we cannot read, a bug): start over all the same,
                # gaps included, rather than leave the subscriptions dead.
                logger.exception("redis_pubsub_reader_failed", address=self.address)
            finally:
                pinger.cancel()
                self._conn = None
                self._inflight.clear()
                for topic in self.topics:
                    if topic in fanout._confirmed:
                        fanout._confirmed.discard(topic)
                        fanout._owed.add(topic)
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)
            if fanout.router.sharded:
                await fanout._rehome(self)
            # A connection that fails at once (a server refusing our commands, say) must not
            # make this a busy loop; one that lived a while reconnects at the first delay.
            if loop.time() - connected_at > RECONNECT_MAX_S:
                delay = RECONNECT_MIN_S
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _chunks(self, topics: list[bytes]) -> list[list[bytes]]:
        """Topics to resubscribe, grouped for SUBSCRIBE (SSUBSCRIBE takes one slot at a time)."""
        if not self.fanout.router.sharded:
            return [topics[i : i + SUBSCRIBE_CHUNK] for i in range(0, len(topics), SUBSCRIBE_CHUNK)]
        slots: dict[int, list[bytes]] = {}
        for topic in topics:
            slots.setdefault(key_slot(topic), []).append(topic)
        return list(slots.values())

    async def _read(self, conn: AbstractConnection) -> None:
        fanout = self.fanout
        sharded = fanout.router.sharded
        message_kind = b"smessage" if sharded else b"message"
        subscribe_kind = b"ssubscribe" if sharded else b"subscribe"
        push = fanout._push
        inflight = self._inflight
        while True:
            reply = await conn.read_response(disconnect_on_error=True)
            self._received += 1
            if not isinstance(reply, list) or len(reply) < 2:
                continue
            kind = reply[0]
            if kind == message_kind:
                push(reply[1], reply[2])
            elif kind == subscribe_kind:
                topic = reply[1]
                left = inflight.get(topic, 0) - 1
                if left > 0:
                    inflight[topic] = left
                else:
                    inflight.pop(topic, None)
                    if topic in self.topics:
                        fanout._confirm(topic, self)
            elif kind == b"sunsubscribe" and reply[1] in self.topics and not inflight.get(reply[1]):
                # Not our doing: the topic's slot moved to another node.
                topic = reply[1]
                logger.info("redis_shard_channel_moved", topic=topic.decode(errors="replace"))
                self.topics.discard(topic)
                if topic in fanout._confirmed:
                    fanout._confirmed.discard(topic)
                    fanout._owed.add(topic)
                fanout._spawn(self._move(topic))

    async def _move(self, topic: bytes) -> None:
        fanout = self.fanout
        try:
            await fanout.router.refresh()
        except (RedisError, OSError) as err:
            logger.warning("redis_topology_refresh_failed", error=str(err))
        if fanout._link_of.get(topic) is not self:
            return  # unlistened meanwhile
        target = fanout._link(fanout.router.address(topic))
        fanout._link_of[topic] = target
        await target.subscribe(topic)

    async def _ping(self, conn: AbstractConnection) -> None:
        quiet = 0
        seen = self._received
        while True:
            await asyncio.sleep(PING_INTERVAL_S)
            if self._received != seen:
                seen, quiet = self._received, 0
            else:
                quiet += 1
                if quiet >= PING_DEAD_AFTER:
                    logger.warning("redis_pubsub_silent", address=self.address)
                    await conn.disconnect(nowait=True)
                    return
            async with self._lock:
                if self._conn is conn:
                    await self._write(conn, b"PING", [])
