"""SynclineClient: an asyncio Centrifuge v2 client on picows, with reconnect and recovery."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from syncline.client import codec
from syncline.client.codec import PONG, Reply
from syncline.client.events import (
    CLIENT_CLOSED,
    ConnectionLost,
    Disconnected,
    ReplyError,
    Unsubscribed,
)
from syncline.client.subscription import ServerEvent, ServerSubscriptions, Subscription
from syncline.core.codes import DisconnectCode, ErrorCode, disconnect_reconnects

log = logging.getLogger("syncline.client")

# After the announced ping interval, how long to wait for a ping before calling the server dead.
MAX_SERVER_PING_DELAY = 10.0
# Client-made close code (as in the SDKs; below 3000 means "transport", so reconnect).
NO_PING = BAD_PROTOCOL = 2
_Callback = Callable[[Reply | BaseException], None]


def _settle(fut: asyncio.Future[Reply], reply: Reply | BaseException) -> None:
    if fut.done():
        return
    if isinstance(reply, BaseException):
        fut.set_exception(reply)
    else:
        fut.set_result(reply)


class _Listener(WSListener):
    """Forwards text frames to the client and records how the connection ended."""

    def __init__(self, client: SynclineClient) -> None:
        super().__init__()
        self.client = client
        self.close_code = 1006
        self.close_reason = "transport closed"
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.TEXT:
            self.client._on_frame(self, frame.get_payload_as_bytes())
        elif kind == WSMsgType.CLOSE:
            self.close_code = frame.get_close_code().value
            self.close_reason = frame.get_close_reason() or ""
            with contextlib.suppress(Exception):
                transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.done.done():
            self.done.set_result(None)


class SynclineClient:
    """One logical connection that reconnects (and resubscribes with recovery) until closed."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        get_token: Callable[[], Awaitable[str]] | None = None,
        name: str = "syncline-py",
        min_reconnect_delay: float = 0.2,
        max_reconnect_delay: float = 20.0,
        timeout: float = 10.0,
        server_queue_size: int = 1024,
    ) -> None:
        self.url, self.name, self.timeout = url, name, timeout
        self._token, self._get_token = token, get_token
        self.min_reconnect_delay = min_reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.client_id = ""
        self._ids = itertools.count(1)
        self._pending: dict[int, _Callback] = {}
        self._subs: dict[str, Subscription] = {}
        self._server = ServerSubscriptions(server_queue_size)
        self._transport: WSTransport | None = None
        self._listener: _Listener | None = None
        self._connected = asyncio.Event()
        self._stopped: Disconnected | ReplyError | None = None
        self._stop_waiter: asyncio.Future[None] | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ping_timer: asyncio.TimerHandle | None = None
        self._refresh_timer: asyncio.TimerHandle | None = None
        self._ping_wait = 0.0
        self._pong = False

    # -- public API ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def connect(self) -> None:
        """Return once connected; raise ReplyError/Disconnected if refused, TimeoutError if slow."""
        if self._run_task is None and self._stopped is None:
            loop = asyncio.get_running_loop()
            self._stop_waiter = loop.create_future()
            self._run_task = loop.create_task(self._run())
        await self._ready()

    async def _ready(self) -> None:
        """Wait (up to ``timeout``) for the connected state; raise if stopped meanwhile."""
        if not self.connected and self._stopped is None and self._stop_waiter is not None:
            connected = asyncio.get_running_loop().create_task(self._connected.wait())
            waits: set[asyncio.Future[Any]] = {connected, self._stop_waiter}
            try:
                await asyncio.wait(waits, timeout=self.timeout, return_when="FIRST_COMPLETED")
            finally:
                connected.cancel()
        if self._stopped is not None:
            raise self._stopped
        if not self.connected:
            raise TimeoutError(f"not connected to {self.url} within {self.timeout} s")

    async def close(self) -> None:
        """Disconnect for good; every subscription's ``events()`` ends with Unsubscribed(1)."""
        self._stop(Disconnected(DisconnectCode.CONNECTION_CLOSED, "client closed"))
        if self._run_task is not None:
            # The loop ends by itself once the socket is closed; cancel it if that takes long.
            await asyncio.wait({self._run_task}, timeout=1.0)
            self._run_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._run_task
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def subscribe(
        self,
        channel: str,
        *,
        recoverable: bool = True,
        join_leave: bool = False,
        queue_size: int = 4096,
        since: tuple[str, int] | None = None,
    ) -> Subscription:
        """Subscribe and wait for the server's answer; raises ReplyError if refused.

        ``since`` is an (epoch, offset) kept from an earlier ``Subscription.position``, e.g.
        of a previous run: the server replays what was published after it, and the
        ``Subscribed`` event's ``recovered`` says whether it could (if not, reload over REST).
        """
        if channel in self._subs:
            raise ValueError(f"already subscribed to {channel!r}")
        sub = Subscription(self, channel, recoverable, join_leave, queue_size)
        if since is not None:
            sub._resume_from(*since)
        self._subs[channel] = sub
        if self.connected:
            sub._send_subscribe()
        try:
            await asyncio.wait_for(asyncio.shield(sub._first), self.timeout)
        except BaseException:
            if not sub._first.done():
                sub._end(Unsubscribed(CLIENT_CLOSED, "subscribe did not complete"))
            raise
        return sub

    async def rpc(self, method: str, data: Any = None) -> Any:
        """Call a server RPC handler; returns its ``data``."""
        result = await self._request(lambda i: codec.rpc_command(i, method, data))
        return result.get("data")

    async def server_events(self) -> AsyncIterator[ServerEvent]:
        """(channel, event) of server-side subscriptions such as ``user:{sub}``.

        The queue holds ``server_queue_size`` events; past that, server-side events stop and
        the iteration ends with (channel, Unsubscribed(2, ...)).
        """
        async for item in self._server.queue:
            yield item

    def _send(self, build: Callable[[int], bytes], callback: _Callback) -> int:
        command_id = next(self._ids)
        line = build(command_id)
        assert self._transport is not None
        self._pending[command_id] = callback
        self._transport.send(WSMsgType.TEXT, line)
        return command_id

    async def _request(self, build: Callable[[int], bytes]) -> dict[str, Any]:
        """Send one command when connected and return its result; raise ReplyError on error."""
        await self._ready()
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        command_id = self._send(build, functools.partial(_settle, fut))
        try:
            reply = await asyncio.wait_for(fut, self.timeout)
        finally:
            self._pending.pop(command_id, None)
        if reply.error is not None:
            e = reply.error
            raise ReplyError(e.code, e.message, e.temporary)
        return dict(reply.result)

    # -- connection loop -------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while self._stopped is None:
            try:
                if await self._session():
                    attempt = 0
            except Exception as err:  # OSError, TimeoutError, picows handshake errors, …
                log.debug("connection attempt failed: %r", err)
            if self._stopped is not None:
                break
            cap = min(self.max_reconnect_delay, self.min_reconnect_delay * 2**attempt)
            attempt = min(attempt + 1, 30)
            low = self.min_reconnect_delay
            await asyncio.sleep(random.uniform(low, max(cap, low)))  # noqa: S311  (jitter)

    async def _session(self) -> bool:
        """One connection, from handshake to close; True if it reached the connected state."""
        if not self._token and self._get_token is not None:
            self._token = await asyncio.wait_for(self._get_token(), self.timeout)
        listener = _Listener(self)
        transport, _ = await ws_connect(
            lambda: listener, self.url, websocket_handshake_timeout=self.timeout
        )
        self._transport, self._listener = transport, listener
        reached = False
        try:
            fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
            subs = self._server.positions()
            token = self._token or ""
            self._send(
                lambda i: codec.connect_command(i, token=token, name=self.name, subs=subs),
                functools.partial(_settle, fut),
            )
            waits: set[asyncio.Future[Any]] = {fut, listener.done}
            await asyncio.wait(waits, timeout=self.timeout, return_when="FIRST_COMPLETED")
            if not fut.done():
                raise ConnectionLost("no connect reply")
            reply = fut.result()
            if reply.error is not None:
                self._connect_refused(reply.error)
                return False
            self._on_connected(codec.connect_result(reply.result))
            reached = True
            await listener.done
        finally:
            self._teardown()
            transport.disconnect()
        code, reason = listener.close_code, listener.close_reason
        if not disconnect_reconnects(code):
            self._stop(Disconnected(code, reason))
        elif code == DisconnectCode.STATE_INVALIDATED:
            if self._get_token is not None:
                self._token = None
            self._server.known.clear()
            for sub in self._subs.values():
                sub._reset_position()
        return reached

    def _connect_refused(self, error: codec.ErrorInfo) -> None:
        if error.code == ErrorCode.TOKEN_EXPIRED and self._get_token is not None:
            self._token = None  # fetched again before the next attempt
        elif not error.temporary:
            self._stop(ReplyError(error.code, error.message))

    def _on_connected(self, result: codec.ConnectResult) -> None:
        loop = asyncio.get_running_loop()
        self.client_id, self._pong = result.client, result.pong
        if result.ping:
            self._ping_wait = result.ping + MAX_SERVER_PING_DELAY
            self._ping_timer = loop.call_later(self._ping_wait, self._no_ping)
        if result.expires:
            self._schedule_refresh(result.ttl)
        for channel, sub_result in result.subs.items():
            self._server.subscribed(channel, sub_result)
        self._connected.set()
        for sub in list(self._subs.values()):
            sub._send_subscribe()

    def _teardown(self) -> None:
        self._connected.clear()
        for timer in (self._ping_timer, self._refresh_timer):
            if timer is not None:
                timer.cancel()
        self._ping_timer = self._refresh_timer = self._transport = None
        pending, self._pending = self._pending, {}
        for callback in pending.values():
            callback(ConnectionLost("connection closed"))
        for sub in self._subs.values():
            sub._on_disconnect()

    def _stop(self, why: Disconnected | ReplyError) -> None:
        if self._stopped is not None:
            return
        self._stopped = why
        if self._transport is not None:
            with contextlib.suppress(Exception):
                self._transport.send_close(WSCloseCode.OK)
                self._transport.disconnect()
        for sub in list(self._subs.values()):
            sub._end(Unsubscribed(CLIENT_CLOSED, f"client stopped: {why}"))
        self._server.queue.finish()
        if self._stop_waiter is not None and not self._stop_waiter.done():
            self._stop_waiter.set_result(None)

    def _close_transport(self, code: int, reason: str) -> None:
        """Drop the connection from this side; the loop then reconnects (code < 3000)."""
        if self._listener is not None and self._transport is not None:
            self._listener.close_code, self._listener.close_reason = code, reason
            self._transport.disconnect(graceful=False)

    def _no_ping(self) -> None:
        self._close_transport(NO_PING, "no ping")

    def _schedule_refresh(self, ttl: float) -> None:
        if self._get_token is None:
            return
        delay = max(ttl - 5.0, ttl * 0.75)  # the ttl is whole seconds, rounded down
        loop = asyncio.get_running_loop()
        self._refresh_timer = loop.call_later(delay, self._start_refresh)

    def _start_refresh(self) -> None:
        task = asyncio.get_running_loop().create_task(self._refresh())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh(self) -> None:
        assert self._get_token is not None
        try:
            token = await asyncio.wait_for(self._get_token(), self.timeout)
            self._token = token
            result = await self._request(lambda i: codec.refresh_command(i, token))
        except ReplyError as err:
            if not err.temporary:
                return self._stop(Disconnected(err.code, err.message))
            return self._schedule_refresh(10.0)  # retried in 7.5 s
        except (ConnectionLost, Disconnected, TimeoutError, OSError):
            return None  # a reconnect sends a fresh token anyway
        except Exception:
            log.exception("get_token failed; retrying")
            return self._schedule_refresh(10.0)
        refreshed = codec.refresh_result(result)
        if refreshed.expires and self.connected:
            self._schedule_refresh(refreshed.ttl)

    def _on_frame(self, listener: _Listener, data: bytes) -> None:
        if listener is not self._listener:
            return
        try:
            messages = codec.decode_frame(data)
        except codec.CodecError as err:
            log.warning("bad data from the server: %s", err)
            self._close_transport(BAD_PROTOCOL, "bad protocol")
            return
        subs = self._subs
        for msg in messages:
            if type(msg) is codec.PubPush:
                sub = subs.get(msg.channel)
                if sub is not None:
                    sub._on_publication(msg.pub)
                else:
                    self._server.publication(msg.channel, msg.pub)
            elif type(msg) is Reply:
                callback = self._pending.pop(msg.id, None)
                if callback is not None:
                    callback(msg)
            elif type(msg) is codec.Ping:
                self._on_ping()
            else:
                self._on_push(msg)

    def _on_ping(self) -> None:
        if self._pong and self._transport is not None:
            self._transport.send(WSMsgType.TEXT, PONG)
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = asyncio.get_running_loop().call_later(self._ping_wait, self._no_ping)

    def _on_push(self, msg: codec.ServerMessage) -> None:
        if isinstance(msg, codec.DisconnectPush):
            self._close_transport(msg.code, msg.reason)
        elif isinstance(msg, codec.SubscribePush):
            self._server.subscribed(msg.channel, msg.result)
        elif isinstance(msg, codec.JoinPush | codec.LeavePush | codec.UnsubscribePush):
            sub = self._subs.get(msg.channel)
            if sub is not None:
                sub._on_push(msg)
            else:
                self._server.on_push(msg)
