"""Messages in SQL: send (idempotent by client_msg_id), edit, soft delete, history pages."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from syncline.apps.chat import policy
from syncline.apps.chat.rooms import require_member
from syncline.apps.errors import AppError, not_found
from syncline.apps.sql import Row, fetch_one

Conn = AsyncConnection[Any]

COLUMNS = "id, room_id, user_id, body, client_msg_id, created_at, edited_at, deleted_at"


# The common case in one statement (one round trip, its own transaction): insert if the author
# is a member, holding the membership row (FOR SHARE) so a concurrent leave waits for it.
_SEND_IF_MEMBER = f"""
WITH member AS (
    SELECT 1 FROM room_members WHERE room_id = %(room_id)s AND user_id = %(user_id)s FOR SHARE
)
INSERT INTO messages (room_id, user_id, body, client_msg_id)
SELECT %(room_id)s, %(user_id)s, %(body)s, %(client_msg_id)s WHERE EXISTS (SELECT FROM member)
ON CONFLICT (user_id, client_msg_id) WHERE client_msg_id IS NOT NULL DO NOTHING
RETURNING {COLUMNS}
"""


async def send_if_member(
    conn: Conn, room_id: int, user_id: int, body: str, client_msg_id: str | None
) -> Row | None:
    """The new message; None when the author is not a member or client_msg_id repeats (the
    caller then takes `send`, which tells the two apart)."""
    params = {"room_id": room_id, "user_id": user_id, "body": body}
    return await fetch_one(conn, _SEND_IF_MEMBER, {**params, "client_msg_id": client_msg_id})


async def send(
    conn: Conn, room_id: int, user_id: int, body: str, client_msg_id: str | None
) -> tuple[Row, bool]:
    """Store a message (in the caller's transaction); (message, True if new).

    A repeated client_msg_id of the same author returns the message it made the first time:
    a client that lost the reply may retry without posting twice.
    """
    await require_member(conn, room_id, user_id, lock=True)
    row = await fetch_one(
        conn,
        f"INSERT INTO messages (room_id, user_id, body, client_msg_id) VALUES (%s, %s, %s, %s)"
        f" ON CONFLICT (user_id, client_msg_id) WHERE client_msg_id IS NOT NULL DO NOTHING"
        f" RETURNING {COLUMNS}",
        (room_id, user_id, body, client_msg_id),
    )
    if row is not None:
        return row, True
    existing = await fetch_one(
        conn,
        f"SELECT {COLUMNS} FROM messages WHERE user_id = %s AND client_msg_id = %s",
        (user_id, client_msg_id),
    )
    assert existing is not None
    if existing["room_id"] != room_id:
        raise AppError(
            409, "client_msg_id_conflict", "client_msg_id was already used in another room"
        )
    return existing, False


async def _target(conn: Conn, message_id: int, user_id: int) -> tuple[Row, Row]:
    """The message (locked for the change) and the caller's membership of its room; 404 for a
    message in a room the caller is not in."""
    message = await fetch_one(
        conn, f"SELECT {COLUMNS} FROM messages WHERE id = %s FOR UPDATE", (message_id,)
    )
    if message is None:
        raise not_found("message")
    try:
        member = await require_member(conn, int(message["room_id"]), user_id)
    except AppError:
        raise not_found("message") from None
    return message, member


async def edit(conn: Conn, message_id: int, user_id: int, body: str) -> Row:
    message, _ = await _target(conn, message_id, user_id)
    if not policy.can_edit(author_id=int(message["user_id"]), user_id=user_id):
        raise AppError(403, "forbidden", "only the author edits a message")
    if message["deleted_at"] is not None:
        raise AppError(409, "message_deleted", "the message was deleted")
    row = await fetch_one(
        conn,
        f"UPDATE messages SET body = %s, edited_at = now() WHERE id = %s RETURNING {COLUMNS}",
        (body, message_id),
    )
    assert row is not None
    return row


async def delete(conn: Conn, message_id: int, user_id: int) -> Row:
    """Soft delete: the row stays as a tombstone (empty body, deleted_at), which capture
    publishes so that every client removes the text; deleting twice changes nothing."""
    message, member = await _target(conn, message_id, user_id)
    allowed = policy.can_delete(
        author_id=int(message["user_id"]),
        user_id=user_id,
        role=member["role"],
        kind=member["kind"],
    )
    if not allowed:
        raise AppError(403, "forbidden", "only the author (or the group's owner) deletes it")
    if message["deleted_at"] is not None:
        return message
    row = await fetch_one(
        conn,
        f"UPDATE messages SET body = '', deleted_at = now() WHERE id = %s RETURNING {COLUMNS}",
        (message_id,),
    )
    assert row is not None
    return row


# A time as to_jsonb() writes a timestamptz in UTC (apps/times.py's rfc3339), whatever the
# session's TimeZone and DateStyle: to_json() of a timestamp is always ISO 8601.
_TIME = "(to_json({0} AT TIME ZONE 'UTC') #>> '{{}}') || '+00:00'"
# A message as clients see it (service.visible: a deleted one has an empty body), in the
# fields and order of the Message model.
_MESSAGE_JSON = (
    "json_build_object('id', id, 'room_id', room_id, 'user_id', user_id, 'body', body,"
    " 'client_msg_id', client_msg_id, 'created_at', {created}, 'edited_at', {edited},"
    " 'deleted_at', {deleted})"
).format(
    created=_TIME.format("created_at"),
    edited=_TIME.format("edited_at"),
    deleted=_TIME.format("deleted_at"),
)
_VISIBLE_COLUMNS = (
    "id, room_id, user_id, CASE WHEN deleted_at IS NULL THEN body ELSE '' END AS body,"
    " client_msg_id, created_at, edited_at, deleted_at"
)


async def history(conn: Conn, room_id: int, user_id: int, page: policy.Page) -> tuple[bytes, bool]:
    """A page of the room's messages in ascending id order as a JSON array, and whether more
    lie beyond it (after it when reading forward from `after`, before it otherwise).

    One statement, membership included (a one-time filter): any row returned proves it. Only
    an empty page asks again, to tell an empty page (or room) from a room the caller is not in.
    PostgreSQL writes the JSON: building 50 rows into dicts, models and JSON again in Python
    was most of the request's own CPU (docs/benchmarks.md, issue 19).
    """
    where = [
        "room_id = %s",
        "EXISTS (SELECT FROM room_members WHERE room_id = %s AND user_id = %s)",
    ]
    # In the order of the placeholders: the FILTER's page size comes first in the text.
    params: list[Any] = [page.limit, room_id, room_id, user_id]
    if page.after is not None:
        where.append("id > %s")
        params.append(page.after)
    if page.before is not None:
        where.append("id < %s")
        params.append(page.before)
    order = "ASC" if page.ascending else "DESC"
    # One more row than the page tells whether more lie beyond it; it is the last in the
    # reading order and is left out of the array.
    params.append(page.limit + 1)
    query = (
        f"SELECT count(*), coalesce(json_agg({_MESSAGE_JSON} ORDER BY id)"
        " FILTER (WHERE n <= %s), '[]')::text"
        f" FROM (SELECT *, row_number() OVER (ORDER BY id {order}) AS n"
        f" FROM (SELECT {_VISIBLE_COLUMNS} FROM messages WHERE {' AND '.join(where)}"
        f" ORDER BY id {order} LIMIT %s) AS page) AS numbered"
    )
    cur = await conn.execute(query, params)
    found, array = await cur.fetchone() or (0, "[]")
    if not found:
        await require_member(conn, room_id, user_id)
    return str(array).encode(), int(found) > page.limit
