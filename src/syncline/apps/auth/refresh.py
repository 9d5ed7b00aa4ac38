"""Opaque tokens (refresh, mailed) and the rule for what presenting a refresh token does."""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

REFRESH_TOKEN_TTL = timedelta(days=30)
# A token is 32 random bytes, base64url: 43 characters. Anything much longer is not ours.
MAX_OPAQUE_TOKEN_LENGTH = 128


def new_token() -> str:
    """A fresh opaque token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    """What the database stores of a token: its sha256 (a stolen table grants nothing).

    A plain hash is enough (no salt, no slow hash): the token is 256 random bits, so there
    is nothing to guess, and the lookup by hash stays one primary-key probe.
    """
    return hashlib.sha256(token.encode()).digest()


class RefreshOutcome(enum.Enum):
    """What presenting a refresh token leads to."""

    ROTATE = "rotate"  # valid: rotate it, issue a new pair
    # Rotated moments ago and its successor never used: the reply that carried the successor
    # was lost (a page reloaded or a connection dropped mid-refresh). Replace the successor.
    REISSUE = "reissue"
    UNKNOWN = "invalid_refresh_token"  # never issued (or its session is gone)
    REUSED = "token_reused"  # already rotated: stolen or replayed; revoke the family
    REVOKED = "session_revoked"  # the session was signed out, revoked or has expired


@dataclass(frozen=True, slots=True)
class StoredRefresh:
    """A refresh token's row joined with its session's."""

    rotated_at: datetime | None
    created_at: datetime
    session_revoked_at: datetime | None
    session_expires_at: datetime
    # When the session's live token was issued (None: read only for rotated tokens). The token
    # that rotated this one was issued in the same transaction, so equal times mean the
    # successor is still the one this token's rotation issued, unused.
    successor_created_at: datetime | None = None


def decide_refresh(
    stored: StoredRefresh | None, now: datetime, grace: timedelta = timedelta(0)
) -> RefreshOutcome:
    """The outcome of presenting a token whose stored state is `stored` (None: not found).

    `grace`: how long after its rotation a token may be presented again, once, when its
    successor was never used (0: never).
    """
    if stored is None:
        return RefreshOutcome.UNKNOWN
    if stored.session_revoked_at is not None or stored.session_expires_at <= now:
        return RefreshOutcome.REVOKED
    if stored.rotated_at is not None:
        if now - stored.rotated_at <= grace and stored.successor_created_at == stored.rotated_at:
            return RefreshOutcome.REISSUE
        # Only one party can hold the newest token of a family; a rotated one presented again
        # means a copy exists somewhere. We cannot tell thief from owner, so both lose it.
        return RefreshOutcome.REUSED
    if stored.created_at + REFRESH_TOKEN_TTL <= now:
        return RefreshOutcome.REVOKED
    return RefreshOutcome.ROTATE
