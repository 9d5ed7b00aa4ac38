"""The control bus over Redis pub/sub: one topic, every process subscribed, itself included.

Every process publishes ``syncline.core.control.encode(command)`` with PUBLISH on one topic
(``<prefix>:control``) and reads that topic on a connection of its own, so a command reaches
this process's handlers the same way it reaches the others' (one path, one order: the order
Redis received the commands in). ``publish`` returns when Redis has taken the command; the
loopback to this process's handlers arrives later, through the reader task.

The reader calls the handlers synchronously, in order, from the socket: handlers never block
(the port says so), so no buffer sits between them and the socket. When the connection drops
the reader reconnects with a doubling backoff and subscribes again; commands published
meanwhile are lost to this process (at most once), which the database checks make good.

In a Redis Cluster classic PUBLISH reaches subscribers on every node, which is what a
command to every process needs; the traffic is a few commands a minute, so its cluster-wide
broadcast costs nothing worth sharding.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import cast

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from syncline.control.base import ControlHandler
from syncline.core import control
from syncline.core.control import ControlCommand, ControlDecodeError
from syncline.logs import get_logger

log = get_logger(__name__)

DEFAULT_PREFIX = "syncline"

# Reconnection backoff of the reader, doubling from the first to the last.
RECONNECT_MIN_S = 0.05
RECONNECT_MAX_S = 2.0

# While Redis stays unreachable the reader retries every RECONNECT_MAX_S; it logs the first
# failure and then at most one line per this many seconds (with the count), not one a retry.
RECONNECT_LOG_EVERY_S = 60.0

# A PING on the subscription this often; a connection that has received nothing for
# PING_DEAD_AFTER pings is treated as dead, since a half-open TCP connection looks just like
# a quiet one, and control traffic is mostly quiet.
PING_INTERVAL_S = 5.0
PING_DEAD_AFTER = 3

# How long a PUBLISH, and connecting for one, may take before the publisher is told the bus
# is unavailable.
PUBLISH_TIMEOUT_S = 5.0

# How long ``wait_subscribed`` waits by default (``open_control_bus`` uses it at start-up).
SUBSCRIBE_TIMEOUT_S = 5.0

# Never retried by the client library: a PUBLISH whose reply was lost may have been
# delivered, and a repeat would break at-most-once.
_NO_RETRY = Retry(NoBackoff(), 0)


class ControlBusUnavailableError(ConnectionError):
    """Redis did not take a published command (it may or may not have been delivered)."""


class RedisControlBus:
    """A ``ControlBus`` over Redis pub/sub, standalone or cluster; see the module docstring."""

    def __init__(self, url: str, *, cluster: bool = False, prefix: str = DEFAULT_PREFIX) -> None:
        """Start subscribing to ``url`` (redis-py's URL syntax, ``redis://`` or ``rediss://``).

        Must be called with an event loop running; the reader task starts at once.
        """
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError("the key prefix must be non-empty and free of braces")
        self.topic = f"{prefix}:control".encode()
        self._client: Redis | RedisCluster
        self._pool: ConnectionPool | None = None
        if cluster:
            self._client = RedisCluster.from_url(
                url, retry=_NO_RETRY, socket_timeout=PUBLISH_TIMEOUT_S
            )
        else:
            self._client = Redis.from_url(
                url,
                retry=_NO_RETRY,
                socket_timeout=PUBLISH_TIMEOUT_S,
                socket_connect_timeout=PUBLISH_TIMEOUT_S,
            )
            # RESP2, so pub/sub messages come back as plain replies; no read timeout, since a
            # quiet subscription is normal (the PING finds dead connections).
            self._pool = ConnectionPool.from_url(
                url,
                protocol=2,
                socket_timeout=None,
                socket_connect_timeout=PUBLISH_TIMEOUT_S,
                socket_keepalive=True,
                retry=_NO_RETRY,
            )
        self._handlers: tuple[ControlHandler, ...] = ()
        self._publish_lock = asyncio.Lock()
        self._closed = False
        self._received = 0
        self._subscribed = asyncio.Event()
        # Reconnection state: the current backoff, and the outage (if any) being retried.
        self._delay = RECONNECT_MIN_S
        self._down_since: float | None = None
        self._failures = 0
        self._logged_at = 0.0
        # Counters for tests and diagnostics: live subscriptions lost, undecodable commands.
        self.reconnects = 0
        self.dropped = 0
        self._reader = asyncio.get_running_loop().create_task(self._run())

    async def publish(self, command: ControlCommand) -> None:
        """Hand ``command`` to Redis; raises ControlBusUnavailableError if Redis did not take it.

        This process's own handlers get it through the subscription, after this returns.
        """
        if self._closed:
            return
        payload = control.encode(command)
        try:
            # One at a time, in call order (asyncio.Lock is FIFO): concurrent publishes would
            # take different pooled connections and could reach Redis in any order.
            async with self._publish_lock:
                await self._client.publish(self.topic, payload)
        except (RedisError, RedisClusterException, OSError) as err:
            raise ControlBusUnavailableError(f"control command not published: {err}") from err

    def subscribe(self, handler: ControlHandler) -> Callable[[], None]:
        self._handlers = (*self._handlers, handler)

        def unsubscribe() -> None:
            self._handlers = tuple(h for h in self._handlers if h is not handler)

        return unsubscribe

    async def wait_subscribed(self, timeout_s: float = SUBSCRIBE_TIMEOUT_S) -> None:
        """Return once the subscription is live (commands published from now on arrive).

        Raises ControlBusUnavailableError after ``timeout_s``; the reader keeps trying.
        """
        try:
            async with asyncio.timeout(timeout_s):
                await self._subscribed.wait()
        except TimeoutError:
            raise ControlBusUnavailableError("redis did not confirm the subscription") from None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._handlers = ()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._client.aclose()
        if self._pool is not None:
            await self._pool.disconnect()

    # -- the reader ------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            conn: AbstractConnection | None = None
            pinger: asyncio.Task[None] | None = None
            try:
                conn = await self._connect()
                await conn.send_command("SUBSCRIBE", self.topic, check_health=False)
                pinger = asyncio.get_running_loop().create_task(self._ping(conn))
                await self._read(conn)
            except Exception as err:
                # Connection errors above all, but anything (a cluster with no node left
                # raises RedisClusterException) must not end the reader: it retries, logged.
                self._failed(err)
            finally:
                if pinger is not None:
                    pinger.cancel()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.disconnect(nowait=True)
            await asyncio.sleep(self._delay)
            self._delay = min(self._delay * 2, RECONNECT_MAX_S)

    def _failed(self, err: Exception) -> None:
        now = time.monotonic()
        if self._subscribed.is_set():
            # It was live until now: a new outage starts.
            self._subscribed.clear()
            self.reconnects += 1
            self._down_since = None
        if self._down_since is None:
            self._down_since, self._failures = now, 0
        self._failures += 1
        if self._failures == 1 or now - self._logged_at >= RECONNECT_LOG_EVERY_S:
            self._logged_at = now
            log.warning(
                "control_bus_disconnected",
                error=str(err) or type(err).__name__,
                attempts=self._failures,
                down_s=round(now - self._down_since, 1),
            )

    def _live(self) -> None:
        """Redis confirmed the subscription: commands published from now on arrive."""
        self._subscribed.set()
        self._delay = RECONNECT_MIN_S
        if self._down_since is not None:
            log.info(
                "control_bus_reconnected",
                attempts=self._failures,
                down_s=round(time.monotonic() - self._down_since, 1),
            )
            self._down_since, self._failures = None, 0

    async def _connect(self) -> AbstractConnection:
        if self._pool is not None:
            conn: AbstractConnection = self._pool.make_connection()  # type: ignore[no-untyped-call]
        else:
            client = self._client
            assert isinstance(client, RedisCluster)
            if client.nodes_manager.slots_cache:
                # Reconnecting: a failover may have changed the nodes, learn them again.
                await client.nodes_manager.initialize()
            else:
                await client.initialize()
            # Classic pub/sub in a cluster is broadcast to every node: any node will do; the
            # owner of the topic's slot is simply a stable choice.
            node = client.get_node_from_key(self.topic)  # type: ignore[arg-type]
            if node is None:
                node = client.get_random_node()
            kwargs = {**node.connection_kwargs, "protocol": 2, "socket_timeout": None}
            kwargs["retry"] = _NO_RETRY
            conn = cast(AbstractConnection, node.connection_class(**kwargs))
        await conn.connect()  # type: ignore[no-untyped-call]
        return conn

    async def _read(self, conn: AbstractConnection) -> None:
        topic = self.topic
        while True:
            reply = await conn.read_response(disconnect_on_error=True)
            self._received += 1
            if not isinstance(reply, list) or len(reply) < 2:
                continue
            kind = reply[0]
            if kind == b"message" and reply[1] == topic:
                self._deliver(reply[2])
            elif kind == b"subscribe" and reply[1] == topic:
                self._live()

    def _deliver(self, payload: bytes) -> None:
        try:
            command = control.decode(payload)
        except ControlDecodeError as err:
            self.dropped += 1
            log.warning("control_command_undecodable", error=str(err), size=len(payload))
            return
        for handler in self._handlers:
            try:
                handler(command)
            except Exception:
                log.exception("control handler failed", command=type(command).__name__)

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
                    log.warning("control_bus_silent", after_s=PING_INTERVAL_S * quiet)
                    await conn.disconnect(nowait=True)
                    return
            try:
                await conn.send_command("PING", check_health=False)
            except (RedisError, OSError):
                return  # the reader sees the same broken connection and starts over
