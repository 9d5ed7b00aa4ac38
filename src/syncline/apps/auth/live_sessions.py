"""Sessions recently found live, so that not every authenticated request asks PostgreSQL.

Measured on the chat's POST path: the per-request session lookup (a pool checkout and a query)
cost a quarter of the throughput. A session found live is trusted for `ttl_s`. A revocation
this process makes on a user's behalf (sign-out, revoking a session, password change or reset,
refresh-token reuse) forgets every entry once committed, and a lookup that raced it is not
remembered (the generation it started in is gone). Other revocations — by another process, by
hand in SQL, the eviction of a user's oldest sessions past the cap — take effect within `ttl_s`.
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
        self._until: dict[Key, float] = {}
        self.generation = 0

    def is_live(self, session_id: uuid.UUID, user_id: int) -> bool:
        until = self._until.get((session_id, user_id))
        return until is not None and until > self._clock()

    def remember(self, session_id: uuid.UUID, user_id: int, generation: int) -> None:
        """Record a live answer read during `generation` (unless a revocation came since)."""
        if generation != self.generation or self._ttl <= 0:
            return
        if len(self._until) >= self._max:
            now = self._clock()
            self._until = {key: until for key, until in self._until.items() if until > now}
            if len(self._until) >= self._max:
                self._until.clear()
        self._until[(session_id, user_id)] = self._clock() + self._ttl

    def revoked(self) -> None:
        """Some session was revoked (committed): forget everything, refuse in-flight answers."""
        self.generation += 1
        self._until.clear()
