"""Read receipts and unread counts: last_read_message_id only moves forward."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from syncline.apps.chat import policy
from syncline.apps.chat.rooms import require_member
from syncline.apps.errors import not_found
from syncline.apps.sql import fetch_one, publish

Conn = AsyncConnection[Any]


async def unread_count(conn: Conn, room_id: int, user_id: int, last_read: int | None) -> int:
    """Messages of others after `last_read` that are not deleted, up to UNREAD_COUNT_CAP."""
    row = await fetch_one(
        conn,
        "SELECT count(*) AS n FROM (SELECT 1 FROM messages WHERE room_id = %s AND id > %s"
        " AND user_id <> %s AND deleted_at IS NULL LIMIT %s) unread",
        (room_id, last_read or 0, user_id, policy.UNREAD_COUNT_CAP),
    )
    assert row is not None
    return int(row["n"])


async def mark_read(conn: Conn, room_id: int, user_id: int, message_id: int) -> bool:
    """Move the reader's receipt to `message_id` (in the caller's transaction); False if it
    already was there or further.

    The room_members update is captured and published on room:{id} (the receipt others see)
    and user:{id}; with it, the reader's personal channel gets {"type": "unread", ...} so that
    the reader's other tabs and devices update their badge in the same commit.
    """
    await require_member(conn, room_id, user_id, lock=True)
    found = await fetch_one(
        conn, "SELECT 1 FROM messages WHERE id = %s AND room_id = %s", (message_id, room_id)
    )
    if found is None:
        raise not_found("message")
    moved = await fetch_one(
        conn,
        "UPDATE room_members SET last_read_message_id = %s WHERE room_id = %s AND user_id = %s"
        " AND (last_read_message_id IS NULL OR last_read_message_id < %s)"
        " RETURNING last_read_message_id",
        (message_id, room_id, user_id, message_id),
    )
    if moved is None:
        return False
    count = await unread_count(conn, room_id, user_id, message_id)
    event = {
        "type": "unread",
        "room_id": room_id,
        "unread_count": count,
        "last_read_message_id": message_id,
    }
    await publish(conn, f"user:{user_id}", event)
    return True
