"""Python client for Syncline (Centrifuge protocol v2, JSON) on asyncio and picows."""

from syncline.client.client import SynclineClient
from syncline.client.codec import (
    ClientInfo,
    CodecError,
    HistoryResult,
    PresenceStats,
    Publication,
)
from syncline.client.events import (
    CLIENT_CLOSED,
    QUEUE_OVERFLOW,
    UNSUBSCRIBE_CALLED,
    ClientError,
    ConnectionLost,
    Disconnected,
    Event,
    Join,
    Leave,
    ReplyError,
    Subscribed,
    Unsubscribed,
)
from syncline.client.subscription import ServerEvent, Subscription

__all__ = [
    "CLIENT_CLOSED",
    "QUEUE_OVERFLOW",
    "UNSUBSCRIBE_CALLED",
    "ClientError",
    "ClientInfo",
    "CodecError",
    "ConnectionLost",
    "Disconnected",
    "Event",
    "HistoryResult",
    "Join",
    "Leave",
    "PresenceStats",
    "Publication",
    "ReplyError",
    "ServerEvent",
    "Subscribed",
    "Subscription",
    "SynclineClient",
    "Unsubscribed",
]
