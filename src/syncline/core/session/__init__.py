"""The client session, sans I/O: the Centrifuge protocol's state and rules, fed commands and time.

``Session`` holds what a client connection is (connected, subscriptions and their stream
positions, expiries, ping and pong timers, the bounded output) and decides what the protocol
says (replies, pushes, close codes, continuity, expiry); the gateway's ``Connection`` does
the awaiting (tokens, sign-in sessions, membership, the engine, presence, RPC) and feeds the
results back. docs/topics/sans-io-session.md has the design.
"""

from syncline.core.session.limits import (
    MAX_PENDING_COMMANDS,
    MAX_REFRESH_TTL_S,
    NEVER,
    SESSION_REVOKED_REASON,
    SessionLimits,
    earliest,
)
from syncline.core.session.session import Session
from syncline.core.session.subscription import Pending, Subscription

__all__ = [
    "MAX_PENDING_COMMANDS",
    "MAX_REFRESH_TTL_S",
    "NEVER",
    "SESSION_REVOKED_REASON",
    "Pending",
    "Session",
    "SessionLimits",
    "Subscription",
    "earliest",
]
