"""A live shape in the Python client: a local copy of "rows of T where …", kept up to date.

``LiveShape.open`` asks the server for the shape (RPC ``shape.open``, then ``shape.page`` for
the rest of a large state), subscribes to its channel from the position the rows stand at,
and applies every publication after it. A reconnect recovers the missed publications; when
that is impossible (history gone, shape closed, a ``reset`` publication) it opens the shape
again, so the copy is never partial (docs/topics/shapes.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from syncline.client.client import SynclineClient
from syncline.client.codec import Publication
from syncline.client.events import (
    UNSUBSCRIBE_CALLED,
    ClientError,
    Disconnected,
    ReplyError,
    Subscribed,
    Unsubscribed,
)
from syncline.client.subscription import Subscription
from syncline.core.shapes.stream import apply_event

__all__ = ["LiveShape"]

# Reopening after a failure waits this long, doubling up to the maximum.
REOPEN_MIN_S = 0.1
REOPEN_MAX_S = 5.0
# Errors that opening again will not cure: a bad filter, a table not open to shapes, a limit.
_PERMANENT = frozenset({400, 403, 404, 106, 107})

Key = tuple[Any, ...]


class LiveShape:
    """Rows of a shape by primary key (a tuple in the order of ``key``); read ``rows``."""

    def __init__(
        self,
        client: SynclineClient,
        table: str,
        where: str | None = None,
        columns: list[str] | None = None,
    ) -> None:
        self.client = client
        self.request: dict[str, Any] = {"table": table}
        if where is not None:
            self.request["where"] = where
        if columns is not None:
            self.request["columns"] = columns
        self.rows: dict[Key, dict[str, Any]] = {}
        self.key: tuple[str, ...] = ()
        self.columns: tuple[str, ...] = ()
        self.channel = ""
        self.opened = 0  # how many times the shape was (re)opened
        self.error: ReplyError | None = None  # why the shape stopped, if it did
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self._closed = False

    async def open(self) -> LiveShape:
        """Load the rows and start following the shape; raises ReplyError if refused."""
        await self._open()
        self._task = asyncio.create_task(self._follow(), name=f"shape {self.request['table']}")
        return self

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sub is not None:
            with contextlib.suppress(ClientError):
                await self._sub.unsubscribe()
        if self.channel and self.client.connected:
            with contextlib.suppress(ClientError, TimeoutError):
                await self.client.rpc("shape.close", {"channel": self.channel})

    async def until(self, predicate: Callable[[dict[Key, dict[str, Any]]], bool]) -> None:
        """Wait until ``predicate(rows)`` holds (bound it with ``asyncio.timeout``)."""
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self.rows))

    async def _open(self) -> None:
        reply = await self.client.rpc("shape.open", self.request)
        self.key = tuple(reply["key"])
        self.columns = tuple(reply["columns"])
        rows: dict[Key, dict[str, Any]] = {}
        self._load(rows, reply["rows"])
        cursor = reply.get("cursor")
        while cursor:
            page = await self.client.rpc("shape.page", {"cursor": cursor})
            self._load(rows, page["rows"])
            cursor = page.get("cursor")
        if self._sub is not None:
            with contextlib.suppress(ClientError):
                await self._sub.unsubscribe()
        self.channel = reply["channel"]
        self._sub = await self.client.subscribe(
            self.channel, since=(reply["epoch"], int(reply["offset"]))
        )
        self.rows = rows
        self.opened += 1
        await self._notify()

    def _load(self, rows: dict[Key, dict[str, Any]], batch: list[dict[str, Any]]) -> None:
        for row in batch:
            rows[tuple(row[name] for name in self.key)] = row

    async def _follow(self) -> None:
        delay = REOPEN_MIN_S
        while not self._closed:
            sub = self._sub
            reopen = False
            if sub is not None:
                async for event in sub.events():
                    if isinstance(event, Publication):
                        if not self._apply(event.data):
                            reopen = True
                            break
                        await self._notify()
                    elif isinstance(event, Subscribed):
                        # A resubscribe after a reconnect that could not recover: gap.
                        if event.was_recovering and not event.recovered:
                            reopen = True
                            break
                    elif isinstance(event, Unsubscribed) and event.code != UNSUBSCRIBE_CALLED:
                        reopen = True
            if self._closed or not reopen:
                return
            try:
                await self._open()
                delay = REOPEN_MIN_S
            except ReplyError as err:
                if err.code in _PERMANENT:
                    self.error = err
                    await self._notify()
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, REOPEN_MAX_S)
            except Disconnected:
                return
            except (ClientError, TimeoutError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, REOPEN_MAX_S)

    def _apply(self, body: Any) -> bool:
        """Apply one publication; False when the stream ended (a reset): open again."""
        return apply_event(self.rows, self.key, body)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
