"""Typing indicators: ephemeral events, rate-limited per user and room, never stored."""

from __future__ import annotations

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

# One typing event per user per room every two seconds: clients repeat "typing" while the
# user types, and others show it for a few seconds, so more would only be load.
TYPING_EVENTS = 1
TYPING_WINDOW_S = 2


class TypingLimiter:
    """Whether a user may send a typing event to a room now (a moving window, in memory:
    typing is per gateway process and never needs to survive it)."""

    def __init__(self, events: int = TYPING_EVENTS, window_s: int = TYPING_WINDOW_S) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._item = RateLimitItemPerSecond(events, window_s)

    def allow(self, user_id: int, room_id: int) -> bool:
        return self._limiter.hit(self._item, "typing", str(user_id), str(room_id))


def typing_channel(room_id: int) -> str:
    return f"typing:{room_id}"
