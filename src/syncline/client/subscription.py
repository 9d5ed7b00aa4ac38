"""Subscriptions: client-side ones with their position and bounded event queue, server-side ones."""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from syncline.client import codec
from syncline.client.codec import ClientInfo, HistoryResult, PresenceStats, Publication, Reply
from syncline.client.events import (
    QUEUE_OVERFLOW,
    UNSUBSCRIBE_CALLED,
    ConnectionLost,
    Event,
    Join,
    Leave,
    ReplyError,
    Subscribed,
    Unsubscribed,
)
from syncline.core.codes import ErrorCode, UnsubscribeCode, unsubscribe_resubscribes

if TYPE_CHECKING:
    from syncline.client.client import SynclineClient


T = TypeVar("T")


class EventQueue(Generic[T]):
    """A bounded single-consumer queue: a deque and one waiter future, no task per event.

    ``put`` returns False when ``maxsize`` items are waiting; the owner then decides what to
    do (a subscription ends itself). ``finish`` appends a last item past the bound and ends
    the iteration after it.
    """

    __slots__ = ("_finished", "_items", "_on_overflow", "_waiter", "maxsize")

    def __init__(self, maxsize: int, on_overflow: Callable[[], None]) -> None:
        if maxsize < 1:
            raise ValueError("the event queue needs room for at least one event")
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._finished = False
        self._on_overflow = on_overflow

    def __len__(self) -> int:
        return len(self._items)

    @property
    def finished(self) -> bool:
        return self._finished

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def put(self, item: T) -> None:
        if self._finished:
            return
        if len(self._items) >= self.maxsize:
            self._on_overflow()
            return
        self._items.append(item)
        self._wake()

    def finish(self, last: T | None = None) -> None:
        if self._finished:
            return
        if last is not None:
            self._items.append(last)
        self._finished = True
        self._wake()

    async def __aiter__(self) -> AsyncIterator[T]:
        items = self._items
        while True:
            while items:
                yield items.popleft()
            if self._finished:
                return
            if self._waiter is not None:
                raise RuntimeError("events() has one reader at a time")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


class State(enum.Enum):
    SUBSCRIBING = "subscribing"
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"


class Subscription:
    """Made by ``SynclineClient.subscribe``; read it with ``async for event in sub.events()``.

    Events wait in a bounded queue (``queue_size``). If the application falls that far behind,
    the subscription is dropped rather than let memory grow: the client unsubscribes, and
    ``events()`` yields what was queued, then ``Unsubscribed(2, "event queue overflow")``, then
    ends. Subscribe again (with a fresh position, or use ``history``) to continue.
    """

    def __init__(
        self,
        client: SynclineClient,
        channel: str,
        recoverable: bool,
        join_leave: bool,
        queue_size: int,
    ) -> None:
        self.client = client
        self.channel = channel
        self.recoverable = recoverable
        self.join_leave = join_leave
        self.state = State.SUBSCRIBING
        self.epoch = ""
        self.offset = 0
        self._recover = False
        self._queue: EventQueue[Event] = EventQueue(queue_size, self._overflow)
        self._first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._retry: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._attempt = 0

    @property
    def position(self) -> tuple[str, int]:
        """(epoch, offset) of the last event delivered to the queue."""
        return self.epoch, self.offset

    def events(self) -> AsyncIterator[Event]:
        """Subscribed, Publication, Join, Leave … and a last Unsubscribed; one reader at a time."""
        return self._queue.__aiter__()

    async def publish(self, data: Any) -> None:
        await self.client._request(lambda i: codec.publish_command(i, self.channel, data))

    async def presence(self) -> dict[str, ClientInfo]:
        result = await self.client._request(lambda i: codec.presence_command(i, self.channel))
        return codec.presence_result(result)

    async def presence_stats(self) -> PresenceStats:
        result = await self.client._request(lambda i: codec.presence_stats_command(i, self.channel))
        return codec.presence_stats_result(result)

    async def history(
        self, *, limit: int = 0, since: tuple[int, str] | None = None, reverse: bool = False
    ) -> HistoryResult:
        """``limit`` -1 for all, 0 for only the position; ``since`` is (offset, epoch)."""
        result = await self.client._request(
            lambda i: codec.history_command(
                i, self.channel, limit=limit, since=since, reverse=reverse
            )
        )
        return codec.history_result(result)

    async def unsubscribe(self) -> None:
        """Leave the channel; ``events()`` ends with Unsubscribed(0)."""
        # While subscribing too: the server may be about to accept the subscribe in flight.
        was_live = self.state is not State.UNSUBSCRIBED and self.client.connected
        self._end(Unsubscribed(UNSUBSCRIBE_CALLED, "unsubscribe called"))
        if was_live:
            try:
                await self.client._request(lambda i: codec.unsubscribe_command(i, self.channel))
            except ConnectionLost:
                pass
            except (ReplyError, TimeoutError):
                # As the SDKs do: the server's state is unknown, so start over.
                self.client._close_transport(4, "unsubscribe error")  # SDK code 4

    # -- driven by the client --------------------------------------------------------------

    def _send_subscribe(self) -> None:
        if self.state is State.UNSUBSCRIBED or not self.client.connected:
            return
        self._cancel_timers()
        self.state = State.SUBSCRIBING
        command_id = self.client._send(
            lambda i: codec.subscribe_command(
                i,
                self.channel,
                recoverable=self.recoverable,
                positioned=self.recoverable,
                join_leave=self.join_leave,
                recover=self._recover,
                offset=self.offset,
                epoch=self.epoch,
            ),
            self._on_subscribe_reply,
        )
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.client.timeout, self._subscribe_timeout, command_id)

    def _subscribe_timeout(self, command_id: int) -> None:
        # The server may have subscribed; a retry would get 105, so reconnect (as the SDKs do).
        if self.client._pending.pop(command_id, None) is not None:
            self.client._close_transport(3, "subscribe timeout")  # SDK code 3

    def _on_subscribe_reply(self, reply: Reply | BaseException) -> None:
        self._cancel_timers()
        if isinstance(reply, BaseException) or self.state is not State.SUBSCRIBING:
            return  # resubscribed after the reconnect
        error = reply.error
        if error is not None:
            if error.temporary or error.code == ErrorCode.TOKEN_EXPIRED:
                delay = min(10.0, self.client.min_reconnect_delay * 2**self._attempt)
                self._attempt = min(self._attempt + 1, 30)
                self._retry = asyncio.get_running_loop().call_later(delay, self._send_subscribe)
                return
            if not self._first.done():
                self._first.set_exception(ReplyError(error.code, error.message, error.temporary))
            self._end(Unsubscribed(error.code, error.message))
            return
        result = codec.subscribe_result(reply.result)
        self._attempt = 0
        self.state = State.SUBSCRIBED
        if result.recoverable or result.positioned:
            self.epoch, self.offset = result.epoch, result.offset
            self._recover = self.recoverable and result.recoverable
        self._queue.put(
            Subscribed(
                result.recovered, result.was_recovering, result.epoch, result.offset, result.data
            )
        )
        if not self._first.done():
            self._first.set_result(None)
        for pub in result.publications:
            self._on_publication(pub)

    def _on_publication(self, pub: Publication) -> None:
        if self.state is not State.SUBSCRIBED:
            return
        if pub.offset:
            self.offset = pub.offset
        self._queue.put(pub)

    def _on_push(self, msg: codec.JoinPush | codec.LeavePush | codec.UnsubscribePush) -> None:
        if self.state is not State.SUBSCRIBED:
            return  # belongs to a previous subscription
        if isinstance(msg, codec.JoinPush):
            self._queue.put(Join(msg.info))
        elif isinstance(msg, codec.LeavePush):
            self._queue.put(Leave(msg.info))
        elif unsubscribe_resubscribes(msg.code):
            if msg.code == UnsubscribeCode.STATE_INVALIDATED:
                self._reset_position()
            self.state = State.SUBSCRIBING
            self._send_subscribe()
        else:
            self._end(Unsubscribed(msg.code, msg.reason))

    def _on_disconnect(self) -> None:
        self._cancel_timers()
        if self.state is State.SUBSCRIBED:
            self.state = State.SUBSCRIBING

    def _resume_from(self, epoch: str, offset: int) -> None:
        self.epoch, self.offset, self._recover = epoch, offset, self.recoverable

    def _reset_position(self) -> None:
        self.epoch, self.offset, self._recover = "", 0, False

    def _cancel_timers(self) -> None:
        for timer in (self._retry, self._timer):
            if timer is not None:
                timer.cancel()
        self._retry = self._timer = None

    def _end(self, last: Unsubscribed) -> None:
        """Terminal: no more events, no resubscribe, and the client forgets the channel."""
        if self.state is State.UNSUBSCRIBED:
            return
        self.state = State.UNSUBSCRIBED
        self._cancel_timers()
        if self.client._subs.get(self.channel) is self:
            del self.client._subs[self.channel]
        if not self._first.done():
            self._first.set_exception(ReplyError(last.code, last.reason))
            self._first.exception()  # retrieved: nobody may be waiting any more
        self._queue.finish(last)

    def _overflow(self) -> None:
        live = self.state is State.SUBSCRIBED and self.client.connected
        self._end(Unsubscribed(QUEUE_OVERFLOW, "event queue overflow"))
        if live:
            self.client._send(lambda i: codec.unsubscribe_command(i, self.channel), _ignore)


def _ignore(reply: Reply | BaseException) -> None:
    return None


ServerEvent = tuple[str, Event]


class ServerSubscriptions:
    """Channels the server subscribed the client to (``user:{sub}``), recovered on reconnect.

    Their events share one bounded queue of (channel, event). If the application does not read
    ``server_events()`` and ``queue_size`` events pile up, server-side events stop: the queue
    ends with ("", Unsubscribed(2, "server event queue full")).
    """

    def __init__(self, queue_size: int) -> None:
        self.queue: EventQueue[ServerEvent] = EventQueue(queue_size, self._overflow)
        # channel → (offset, epoch) of the last event queued
        self.known: dict[str, tuple[int, str]] = {}

    def positions(self) -> dict[str, tuple[int, str]]:
        """What to recover in the next connect command (streams with an epoch only)."""
        return {ch: pos for ch, pos in self.known.items() if pos[1]}

    def subscribed(self, channel: str, result: codec.SubscribeResult) -> None:
        self.known[channel] = (result.offset, result.epoch)
        r = result
        self.queue.put(
            (channel, Subscribed(r.recovered, r.was_recovering, r.epoch, r.offset, r.data))
        )
        for pub in result.publications:
            self.publication(channel, pub)

    def publication(self, channel: str, pub: Publication) -> None:
        position = self.known.get(channel)
        if position is None or self.queue.finished:
            return
        if pub.offset:
            self.known[channel] = (pub.offset, position[1])
        self.queue.put((channel, pub))

    def on_push(self, msg: codec.JoinPush | codec.LeavePush | codec.UnsubscribePush) -> None:
        if msg.channel not in self.known:
            return
        if isinstance(msg, codec.UnsubscribePush):
            del self.known[msg.channel]
            self.queue.put((msg.channel, Unsubscribed(msg.code, msg.reason)))
        else:
            event = Join(msg.info) if isinstance(msg, codec.JoinPush) else Leave(msg.info)
            self.queue.put((msg.channel, event))

    def _overflow(self) -> None:
        self.queue.finish(("", Unsubscribed(QUEUE_OVERFLOW, "server event queue full")))
