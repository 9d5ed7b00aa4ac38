"""The settings a session obeys, and the protocol's fixed limits."""

from __future__ import annotations

from typing import Protocol

# A command list waiting to run: a client that floods commands is closed, not buffered.
MAX_PENDING_COMMANDS = 1024
# The furthest a server-side refresh moves a connection's expiry: a year, as centrifuge's.
MAX_REFRESH_TTL_S = 365 * 24 * 3600
# The close reason (with 3500) when the token's sign-in session was revoked or has ended.
SESSION_REVOKED_REASON = "session revoked"
# A session expiry that never comes (a gateway without a session checker): no limit.
NEVER = 2**62


class SessionLimits(Protocol):
    """What a session reads of the settings (syncline.settings.Settings has them all)."""

    @property
    def allow_anonymous(self) -> bool: ...
    @property
    def ping_interval(self) -> int: ...
    @property
    def pong_timeout(self) -> int: ...
    @property
    def connect_timeout(self) -> float: ...
    @property
    def max_frame_size(self) -> int: ...
    @property
    def max_commands_per_frame(self) -> int: ...
    @property
    def max_subscriptions(self) -> int: ...
    @property
    def send_buffer(self) -> int: ...


def earliest(expires_at: int | None, session_expiry: int) -> int | None:
    """A connection lasts no longer than its token nor its sign-in session."""
    if session_expiry >= NEVER:
        return expires_at
    return session_expiry if expires_at is None else min(expires_at, session_expiry)
