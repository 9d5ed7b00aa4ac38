"""Rooms and memberships in SQL: list, detail, create, direct rooms, invites, join, leave."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from syncline.apps.chat import policy
from syncline.apps.errors import AppError, not_found
from syncline.apps.sql import Row, fetch_all, fetch_one, publish

Conn = AsyncConnection[Any]

INVITE_TTL = timedelta(days=7)
# A room's detail lists this many members (the global room has everyone); member_count is
# always the full number.
MAX_LISTED_MEMBERS = 500

# Every room the user is in, with what the room list shows. The unread count stops at
# UNREAD_COUNT_CAP; the peer of a direct room comes from its key, so it is shown even after
# the peer left. activity_at orders the list: the newest message, or when the user joined (a
# room just made or joined tops the list before its first message).
_SUMMARY = f"""
SELECT r.id, r.kind, r.name, m.role, m.last_read_message_id,
    greatest(m.joined_at, (SELECT created_at FROM messages WHERE room_id = r.id
        ORDER BY id DESC LIMIT 1)) AS activity_at,
    (SELECT count(*) FROM room_members c WHERE c.room_id = r.id) AS member_count,
    (SELECT count(*) FROM (
        SELECT 1 FROM messages u
        WHERE u.room_id = r.id AND u.id > coalesce(m.last_read_message_id, 0)
          AND u.user_id <> m.user_id AND u.deleted_at IS NULL
        LIMIT {policy.UNREAD_COUNT_CAP}) unread) AS unread_count,
    (SELECT to_jsonb(lm) FROM (
        SELECT id, room_id, user_id, body, client_msg_id, created_at, edited_at, deleted_at
        FROM messages WHERE room_id = r.id ORDER BY id DESC LIMIT 1) lm) AS last_message,
    p.id AS peer_id, p.username AS peer_username, p.display_name AS peer_display_name,
    p.last_seen_at AS peer_last_seen_at
FROM room_members m
JOIN rooms r ON r.id = m.room_id
LEFT JOIN users p ON r.kind = 'direct' AND p.id = (
    CASE WHEN split_part(r.direct_key, ':', 1)::bigint = m.user_id
         THEN split_part(r.direct_key, ':', 2) ELSE split_part(r.direct_key, ':', 1) END
    )::bigint
WHERE m.user_id = %(user_id)s
"""


async def membership(conn: Conn, room_id: int, user_id: int, *, lock: bool = False) -> Row | None:
    """The room's kind and the user's role in it, or None for a non-member.

    With `lock`, the membership row is held (FOR SHARE) until the transaction ends, so a
    concurrent leave can't slip between this check and the write it guards.
    """
    query = (
        "SELECT r.kind, m.role, m.last_read_message_id FROM room_members m"
        " JOIN rooms r ON r.id = m.room_id WHERE m.room_id = %s AND m.user_id = %s"
    )
    if lock:
        query += " FOR SHARE OF m"
    return await fetch_one(conn, query, (room_id, user_id))


async def require_member(conn: Conn, room_id: int, user_id: int, *, lock: bool = False) -> Row:
    """The membership, or 404: a non-member learns nothing about the room, not even that it
    exists."""
    found = await membership(conn, room_id, user_id, lock=lock)
    if found is None:
        raise not_found()
    return found


async def list_rooms(conn: Conn, user_id: int) -> list[Row]:
    """The user's rooms, the most recently active first."""
    query = f"SELECT * FROM ({_SUMMARY}) s ORDER BY s.activity_at DESC, s.id"
    return await fetch_all(conn, query, {"user_id": user_id})


async def room_summary(conn: Conn, room_id: int, user_id: int) -> Row | None:
    query = _SUMMARY + " AND m.room_id = %(room_id)s"
    return await fetch_one(conn, query, {"user_id": user_id, "room_id": room_id})


async def members(conn: Conn, room_id: int) -> list[Row]:
    return await fetch_all(
        conn,
        "SELECT m.user_id, u.username, u.display_name, m.role, m.last_read_message_id,"
        " m.joined_at FROM room_members m JOIN users u ON u.id = m.user_id"
        " WHERE m.room_id = %s ORDER BY m.joined_at, m.user_id LIMIT %s",
        (room_id, MAX_LISTED_MEMBERS),
    )


async def create_group(conn: Conn, user_id: int, name: str) -> int:
    """A group room with its creator as owner (in the caller's transaction)."""
    row = await fetch_one(
        conn,
        "INSERT INTO rooms (kind, name, created_by) VALUES ('group', %s, %s) RETURNING id",
        (name, user_id),
    )
    assert row is not None
    await add_member(conn, row["id"], user_id, role="owner")
    return int(row["id"])


async def open_direct(conn: Conn, user_id: int, peer_id: int) -> int:
    """The direct room of the pair, made on first use; both are (again) members of it."""
    key = policy.direct_key(user_id, peer_id)
    if await fetch_one(conn, "SELECT 1 FROM users WHERE id = %s", (peer_id,)) is None:
        raise not_found("user")
    row = await fetch_one(
        conn,
        "INSERT INTO rooms (kind, direct_key, created_by) VALUES ('direct', %s, %s)"
        " ON CONFLICT (direct_key) DO NOTHING RETURNING id",
        (key, user_id),
    )
    if row is None:  # it exists (perhaps made a moment ago by the peer)
        row = await fetch_one(conn, "SELECT id FROM rooms WHERE direct_key = %s", (key,))
        assert row is not None
    room_id = int(row["id"])
    for member in (user_id, peer_id):
        await add_member(conn, room_id, member)
    return room_id


async def add_member(conn: Conn, room_id: int, user_id: int, *, role: str = "member") -> bool:
    """Add a member (captured: published on room:{id} and user:{user_id}); False if already
    one."""
    row = await fetch_one(
        conn,
        "INSERT INTO room_members (room_id, user_id, role) VALUES (%s, %s, %s)"
        " ON CONFLICT DO NOTHING RETURNING user_id",
        (room_id, user_id, role),
    )
    return row is not None


async def invite_member(conn: Conn, room_id: int, inviter: int, user_id: int) -> Row:
    """Any member adds a user to a group room; 404 for an unknown user, 409 if a member."""
    found = await require_member(conn, room_id, inviter, lock=True)
    if not policy.can_invite(found["kind"]):
        raise AppError(400, "not_a_group", "members are added to group rooms only")
    if await fetch_one(conn, "SELECT 1 FROM users WHERE id = %s", (user_id,)) is None:
        raise not_found("user")
    if not await add_member(conn, room_id, user_id):
        raise AppError(409, "already_member", "the user is already a member")
    row = await fetch_one(
        conn,
        "SELECT m.user_id, u.username, u.display_name, m.role, m.last_read_message_id,"
        " m.joined_at FROM room_members m JOIN users u ON u.id = m.user_id"
        " WHERE m.room_id = %s AND m.user_id = %s",
        (room_id, user_id),
    )
    assert row is not None
    return row


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def create_invite(conn: Conn, room_id: int, user_id: int) -> tuple[str, datetime]:
    """A join link token for a group room; only its hash is stored."""
    found = await require_member(conn, room_id, user_id)
    if not policy.can_invite(found["kind"]):
        raise AppError(400, "not_a_group", "invites are for group rooms only")
    token = secrets.token_urlsafe(24)
    row = await fetch_one(
        conn,
        "INSERT INTO room_invites (token_hash, room_id, created_by, expires_at)"
        " VALUES (%s, %s, %s, now() + %s) RETURNING expires_at",
        (_hash(token), room_id, user_id, INVITE_TTL),
    )
    assert row is not None
    return token, row["expires_at"]


async def redeem_invite(conn: Conn, token: str, user_id: int) -> int:
    """Join the room of a valid invite (idempotent for a member); 404 invalid_invite."""
    row = await fetch_one(
        conn,
        "SELECT room_id FROM room_invites WHERE token_hash = %s AND expires_at > now()",
        (_hash(token),),
    )
    if row is None:
        raise AppError(404, "invalid_invite", "the invite is unknown or has expired")
    room_id = int(row["room_id"])
    await add_member(conn, room_id, user_id)
    return room_id


async def rename(conn: Conn, room_id: int, user_id: int, name: str) -> None:
    """Rename a group (owner only); the new name is published to the room with the write."""
    found = await require_member(conn, room_id, user_id, lock=True)
    if not policy.can_rename(role=found["role"], kind=found["kind"]):
        raise AppError(403, "forbidden", "only the owner of a group room renames it")
    await conn.execute(
        "UPDATE rooms SET name = %s, updated_at = now() WHERE id = %s", (name, room_id)
    )
    # rooms rows are not captured (no rule): this event is how members learn the name.
    await publish(conn, f"room:{room_id}", {"type": "room", "room_id": room_id, "name": name})


async def leave(conn: Conn, room_id: int, user_id: int) -> None:
    """Leave a room; a group's ownership passes on, and a group left empty is deleted."""
    found = await require_member(conn, room_id, user_id)
    kind = found["kind"]
    if not policy.can_leave(kind):
        raise AppError(400, "cannot_leave", "everyone stays in the global room")
    # Lock every membership of the room: two last members leaving at once both see the other.
    rows = await fetch_all(
        conn,
        "SELECT user_id, role FROM room_members WHERE room_id = %s"
        " ORDER BY joined_at, user_id FOR UPDATE",
        (room_id,),
    )
    await conn.execute(
        "DELETE FROM room_members WHERE room_id = %s AND user_id = %s", (room_id, user_id)
    )
    if kind != "group":
        return
    listed = [(int(r["user_id"]), r["role"]) for r in rows]
    if all(uid == user_id for uid, _ in listed):
        await conn.execute("DELETE FROM rooms WHERE id = %s", (room_id,))
        return
    heir = policy.next_owner(listed, user_id)
    if heir is not None:
        await conn.execute(
            "UPDATE room_members SET role = 'owner' WHERE room_id = %s AND user_id = %s",
            (room_id, heir),
        )
