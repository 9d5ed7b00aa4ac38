"""Whether an access token's session is still live: one cached answer for REST and the gateway.

The same `SessionGuard` serves every request of the HTTP API and every command of the
gateway in a process, so a revocation that forgets its cache is seen by both at once. Other
processes learn of a revocation from the control bus (`SessionsRevoked`), which makes them
forget too and close the session's connections (docs/topics/auth.md, "Revocation").
"""

from __future__ import annotations

import time
import uuid

from psycopg_pool import AsyncConnectionPool

from syncline.apps.auth.live_sessions import LiveSessionCache
from syncline.core.control import ControlCommand, SessionsRevoked

# A `sub` that can name a users row (a bigint).
_MAX_ID_DIGITS = 18


class SessionGuard:
    """Session liveness with a short cache, over the shared pool."""

    def __init__(self, pool: AsyncConnectionPool, cache: LiveSessionCache) -> None:
        self._pool = pool
        self.cache = cache

    async def expiry(self, session_id: uuid.UUID, user_id: int) -> int | None:
        """The live session's expiry (Unix seconds), or None if revoked, expired or unknown."""
        cache = self.cache
        cached = cache.expiry(session_id, user_id)
        if cached is not None:
            return cached if cached > time.time() else None
        generation = cache.generation
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT extract(epoch FROM expires_at)::bigint FROM auth_sessions"
                " WHERE id = %s AND user_id = %s AND revoked_at IS NULL AND expires_at > now()",
                (session_id, user_id),
            )
            row = await cur.fetchone()
        if row is None:
            return None
        expires_at = int(row[0])
        cache.remember(session_id, user_id, generation, expires_at)
        return expires_at

    async def is_live(self, session_id: uuid.UUID, user_id: int) -> bool:
        return await self.expiry(session_id, user_id) is not None

    async def token_session_expiry(self, user: str, session: str) -> int | None:
        """For the gateway: a token's `sub` and `sid` claims; None when they name no live
        session (a malformed sid or sub names none)."""
        if not user.isdigit() or len(user) > _MAX_ID_DIGITS:
            return None
        try:
            session_id = uuid.UUID(session)
        except ValueError:
            return None
        return await self.expiry(session_id, int(user))

    def on_control(self, command: ControlCommand) -> None:
        """Control-bus handler: a revocation anywhere forgets this process's live answers."""
        if isinstance(command, SessionsRevoked):
            self.cache.revoked()
