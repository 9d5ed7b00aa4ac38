"""Presence of one process: clients per channel in dicts, users counted, entries expiring."""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from syncline.core.log import ClientInfo
from syncline.presence.base import DEFAULT_PRESENCE_TTL_S


@dataclass(slots=True)
class _Entry:
    info: ClientInfo
    ttl_s: float


@dataclass(slots=True)
class _Channel:
    entries: dict[str, _Entry] = field(default_factory=dict)
    # Distinct users, so that stats need not scan: each present client counts once for its user.
    users: Counter[str] = field(default_factory=Counter)
    # Per TTL, client → expire-at in the order the entries were last added. The clock only
    # moves forward, so each queue is also in expiry order: a sweep pops from the front and
    # stops at the first live entry, O(1) amortized. A channel sees one TTL or a very few
    # (the gateway uses one), so there are as few queues.
    expiries: dict[float, OrderedDict[str, float]] = field(default_factory=dict)


class MemoryPresenceStore:
    """A ``PresenceStore`` for a single process; add and remove are O(1), nothing runs on its own.

    ``clock`` (seconds, never going backwards; ``time.monotonic`` by default) decides expiry,
    so tests can move time by hand. Expired entries are dropped when their channel is next
    read or written, and from every channel on each ``add_many`` (the periodic refresh), so
    a channel nobody touches again is still emptied within one refresh period.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._channels: dict[str, _Channel] = {}
        self._closed = False

    async def add(
        self, channel: str, info: ClientInfo, ttl_s: float = DEFAULT_PRESENCE_TTL_S
    ) -> None:
        self._check_open()
        now = self._clock()
        self._add(channel, info, ttl_s, now)

    async def add_many(
        self, entries: Sequence[tuple[str, ClientInfo]], ttl_s: float = DEFAULT_PRESENCE_TTL_S
    ) -> None:
        self._check_open()
        now = self._clock()
        for channel, info in entries:
            self._add(channel, info, ttl_s, now)
        for channel in list(self._channels):
            self._sweep(channel, now)

    async def remove(self, channel: str, client: str) -> None:
        self._check_open()
        state = self._channels.get(channel)
        if state is None:
            return
        entry = state.entries.get(client)
        if entry is not None:
            self._drop(state, client, entry)
            _unqueue(state, client, entry.ttl_s)
        self._sweep(channel, self._clock())

    async def clients(self, channel: str) -> dict[str, ClientInfo]:
        self._check_open()
        state = self._sweep(channel, self._clock())
        if state is None:
            return {}
        return {client: entry.info for client, entry in state.entries.items()}

    async def stats(self, channel: str) -> tuple[int, int]:
        self._check_open()
        state = self._sweep(channel, self._clock())
        if state is None:
            return 0, 0
        return len(state.entries), len(state.users)

    async def close(self) -> None:
        self._closed = True
        self._channels.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the presence store is closed")

    def _add(self, channel: str, info: ClientInfo, ttl_s: float, now: float) -> None:
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel()
        client = info.client
        old = state.entries.get(client)
        if old is None:
            state.users[info.user] += 1
        else:
            if old.info.user != info.user:
                _uncount(state.users, old.info.user)
                state.users[info.user] += 1
            if old.ttl_s != ttl_s:
                _unqueue(state, client, old.ttl_s)
        state.entries[client] = _Entry(info, ttl_s)
        queue = state.expiries.get(ttl_s)
        if queue is None:
            queue = state.expiries[ttl_s] = OrderedDict()
        queue[client] = now + ttl_s
        queue.move_to_end(client)

    def _sweep(self, channel: str, now: float) -> _Channel | None:
        """Drop the expired entries of ``channel``; its state, or None once it is empty."""
        state = self._channels.get(channel)
        if state is None:
            return None
        for ttl_s, queue in list(state.expiries.items()):
            while queue:
                client, expire_at = next(iter(queue.items()))
                if expire_at > now:
                    break
                queue.popitem(last=False)
                self._drop(state, client, state.entries[client])
            if not queue:
                del state.expiries[ttl_s]
        if not state.entries:
            del self._channels[channel]
            return None
        return state

    @staticmethod
    def _drop(state: _Channel, client: str, entry: _Entry) -> None:
        del state.entries[client]
        _uncount(state.users, entry.info.user)


def _uncount(users: Counter[str], user: str) -> None:
    users[user] -= 1
    if users[user] <= 0:
        del users[user]


def _unqueue(state: _Channel, client: str, ttl_s: float) -> None:
    queue = state.expiries[ttl_s]
    del queue[client]
    if not queue:
        del state.expiries[ttl_s]
