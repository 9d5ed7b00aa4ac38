"""Online status from the presence port (every connection of a user, on any node), and
users.last_seen_at when a user's last connection closes."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolClosed

from syncline.logs import get_logger
from syncline.presence import PresenceStore, online_key

log = get_logger(__name__)

# A `sub` that can name a users row (a bigint); other subjects (tests, tools) are skipped.
_MAX_ID_DIGITS = 18


def user_id_of(sub: str) -> int | None:
    """The users.id a connection's `sub` names, if any."""
    if not sub.isdigit() or len(sub) > _MAX_ID_DIGITS:
        return None
    return int(sub)


class OnlineStatus:
    """Which users have an open connection to any node now (the gateway keeps every open
    connection present under the user's online key; a dead node's entries expire)."""

    def __init__(self, presence: PresenceStore | None) -> None:
        self._presence = presence

    async def online(self, user_ids: Collection[int]) -> set[int]:
        """The subset of ``user_ids`` online; none when presence is unavailable."""
        presence = self._presence
        if presence is None or not user_ids:
            return set()
        ids = list(dict.fromkeys(user_ids))
        try:
            stats = await asyncio.gather(*(presence.stats(online_key(str(i))) for i in ids))
        except ConnectionError as err:
            # Online dots are informative: answer "offline" rather than fail the request.
            log.warning("presence unavailable: users shown offline", error=str(err))
            return set()
        return {user_id for user_id, (clients, _) in zip(ids, stats, strict=True) if clients}


class LastSeenTracker:
    """Sets users.last_seen_at when a user's last connection (on any node) closes."""

    def __init__(self, status: OnlineStatus, pool: AsyncConnectionPool) -> None:
        self.status = status
        self.pool = pool
        self._tasks: set[asyncio.Task[None]] = set()

    def user_disconnected(self, user: str) -> None:
        """The gateway's disconnect listener: one of ``user``'s connections closed."""
        user_id = user_id_of(user)
        if user_id is None:
            return
        task = asyncio.get_running_loop().create_task(self._record(user_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record(self, user_id: int) -> None:
        if await self.status.online([user_id]):
            return
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
