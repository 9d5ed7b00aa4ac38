"""Sessions recently found live, so that not every authenticated request asks PostgreSQL.

Measured on the chat's POST path: the per-request session lookup (a pool checkout and a query)
cost a quarter of the throughput. A session found live is trusted for `ttl_s`. A revocation
this process makes on a user's behalf (sign-out, revoking a session, password change or reset,
refresh-token reuse) forgets every entry once committed, and a lookup that raced it is not
remembered (the generation it started in is gone). A revocation by another process reaches
this one over the control bus and forgets everything the same way; only a revocation made by
hand in SQL takes effect within `ttl_s`.

Each entry also keeps the session's own expiry (Unix seconds), so the gateway can close a
connection when its session ends even if the access token would outlive it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

DEFAULT_TTL_S = 2.0
MAX_ENTRIES = 100_000

Key = tuple[uuid.UUID, int]


class LiveSessionCache:
    """(session id, user id) → until when it counts as live; sans-I/O."""

    def __init__(
        self,
        ttl_s: float = DEFAULT_TTL_S,
        *,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._clock = clock
        # (until when the entry counts, the session's expiry in Unix seconds)
        self._until: dict[Key, tuple[float, int]] = {}
        self.generation = 0

    def is_live(self, session_id: uuid.UUID, user_id: int) -> bool:
        return self.expiry(session_id, user_id) is not None

    def expiry(self, session_id: uuid.UUID, user_id: int) -> int | None:
        """The cached session's expiry (Unix seconds), or None when not cached as live."""
        entry = self._until.get((session_id, user_id))
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def remember(
        self, session_id: uuid.UUID, user_id: int, generation: int, expires_at: int = 2**62
    ) -> None:
        """Record a live answer read during `generation` (unless a revocation came since)."""
        if generation != self.generation or self._ttl <= 0:
            return
        if len(self._until) >= self._max:
            now = self._clock()
            self._until = {key: e for key, e in self._until.items() if e[0] > now}
            if len(self._until) >= self._max:
                self._until.clear()
        self._until[(session_id, user_id)] = (self._clock() + self._ttl, expires_at)

    def revoked(self) -> None:
        """Some session was revoked (committed): forget everything, refuse in-flight answers."""
        self.generation += 1
        self._until.clear()
