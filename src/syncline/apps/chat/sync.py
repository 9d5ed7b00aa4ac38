"""The chat's channels and sync rules, registered with Syncline at start (the core knows none)."""

from __future__ import annotations

from typing import Any

from syncline.core.namespaces import Namespace
from syncline.core.rules import Rule

ROOM_MEMBERSHIP_QUERY = (
    "SELECT 1 FROM public.room_members WHERE room_id = %(room_id)s AND user_id = %(user)s"
)
MESSAGE_COLUMNS: tuple[str, ...] = ("id", "room_id", "user_id", "body", "client_msg_id")
MESSAGE_COLUMNS += ("created_at", "edited_at", "deleted_at")
ROOM_MEMBER_COLUMNS = ("room_id", "user_id", "role", "last_read_message_id", "joined_at")


def chat_namespaces() -> list[Namespace]:
    """room:{room_id} (members, presence), user:{sub} (personal), typing:{room_id}."""
    recoverable = {"recover": True, "allow_history": True}
    members = {"subscribe": "membership", "membership_query": ROOM_MEMBERSHIP_QUERY}
    presence = {"presence": True, "allow_presence": True, "join_leave": True}
    configs: list[dict[str, Any]] = [
        {"name": "room", "channel_pattern": "room:{room_id}", **members, **presence}
        | {"history_size": 1000, "history_ttl": 86400}
        | recoverable,
        {"name": "user", "subscribe": "personal", "history_size": 300, "history_ttl": 86400}
        | recoverable,
        # Typing indicators: published by clients, never stored, room members only.
        {"name": "typing", "channel_pattern": "typing:{room_id}", "allow_publish": True} | members,
    ]
    return [Namespace.model_validate(config) for config in configs]


def chat_rules() -> list[Rule]:
    """Messages and memberships to their room; memberships to their user too."""
    return [
        Rule(table="messages", channel="room:{room_id}", columns=MESSAGE_COLUMNS),
        Rule(table="room_members", channel="room:{room_id}", columns=ROOM_MEMBER_COLUMNS),
        Rule(table="room_members", channel="user:{user_id}", columns=ROOM_MEMBER_COLUMNS),
    ]
