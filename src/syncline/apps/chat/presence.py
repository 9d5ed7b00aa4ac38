"""Online status from the gateway's connections, and users.last_seen_at when a user's last
connection closes."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolClosed

from syncline.logs import get_logger

if TYPE_CHECKING:
    from syncline.gateway.connection import Connection
    from syncline.gateway.server import Gateway

log = get_logger(__name__)

# A `sub` that can name a users row (a bigint); other subjects (tests, tools) are skipped.
_MAX_ID_DIGITS = 18


def user_id_of(sub: str) -> int | None:
    """The users.id a connection's `sub` names, if any."""
    if not sub.isdigit() or len(sub) > _MAX_ID_DIGITS:
        return None
    return int(sub)


def is_online(gateway: Gateway | None, user_id: int) -> bool:
    """Whether the user has a connection to this gateway now.

    Every connection of a user is subscribed by the server to the user's personal channel,
    so that channel's subscriber count is the user's connection count: O(1), no scan.
    """
    if gateway is None:
        return False
    sub = str(user_id)
    channel = gateway.personal_channel(sub)
    if channel:
        return gateway.hub.subscribers(channel) > 0
    # No personal channel configured: look at the connections themselves.
    return any(c.connected and not c.closing and c.user == sub for c in gateway.connections)


class LastSeenTracker:
    """Sets users.last_seen_at when a user's last connection to the gateway closes."""

    def __init__(self, gateway: Gateway, pool: AsyncConnectionPool) -> None:
        self.gateway = gateway
        self.pool = pool
        self._tasks: set[asyncio.Task[None]] = set()
        gateway.disconnect_listeners.append(self._on_disconnect)

    def _on_disconnect(self, conn: Connection) -> None:
        user_id = user_id_of(conn.user)
        if user_id is None or is_online(self.gateway, user_id):
            return
        task = asyncio.get_running_loop().create_task(self._record(user_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record(self, user_id: int) -> None:
        try:
            async with self.pool.connection() as conn:
                await conn.execute(
                    "UPDATE users SET last_seen_at = now() WHERE id = %s", (user_id,)
                )
        except (psycopg.Error, PoolClosed) as err:
            # Last-seen is informative; a database hiccup must not disturb the gateway.
            log.warning("could not record last_seen_at", user_id=user_id, error=str(err))

    async def close(self) -> None:
        """Finish the pending updates (call before the pool closes)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
