"""ChatService: the chat's use cases over the connection pool, shared by REST and RPC."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from syncline.apps.chat import messages, policy, receipts, rooms
from syncline.apps.chat.models import (
    Invite,
    Member,
    Message,
    PublicUser,
    Room,
    RoomDetail,
)
from syncline.apps.chat.sending import SendBatcher
from syncline.apps.errors import not_found
from syncline.apps.sql import Row, fetch_one

# The subset of the given users online now (the chat asks presence; tests may not).
OnlineCheck = Callable[[Collection[int]], Awaitable[set[int]]]


async def _offline(_: Collection[int]) -> set[int]:
    return set()


def visible(row: Row | dict[str, Any]) -> Row | dict[str, Any]:
    """A message row as clients see it: a deleted one has an empty body, whoever wrote it."""
    if row.get("deleted_at") is not None and row["body"]:
        return {**row, "body": ""}
    return row


def message_model(row: Row | dict[str, Any]) -> Message:
    """A message as clients see it (`visible`)."""
    return Message.model_validate(visible(row))


class ChatService:
    """Every chat write is one PostgreSQL transaction; clients learn of it through capture
    (and syncline.publish in the same transaction), never from a publish made here."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        online: OnlineCheck = _offline,
        sender: SendBatcher | None = None,
    ) -> None:
        self.pool = pool
        self.online = online
        # The process's group commit for sends; None: each send is its own statement.
        self.sender = sender

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncConnection[Any]]:
        async with self.pool.connection() as conn, conn.transaction():
            yield conn

    # -- rooms ------------------------------------------------------------------------------

    async def _rooms(self, rows: list[Row]) -> list[Room]:
        """Rooms from their rows, with the peers of direct rooms marked online in one ask."""
        online = await self.online([int(r["peer_id"]) for r in rows if r["peer_id"] is not None])
        return [self._room(row, online) for row in rows]

    def _room(self, row: Row, online: set[int]) -> Room:
        peer = None
        name = row["name"]
        if row["peer_id"] is not None:
            peer = PublicUser(
                id=row["peer_id"],
                username=row["peer_username"],
                display_name=row["peer_display_name"],
                online=int(row["peer_id"]) in online,
                last_seen_at=row["peer_last_seen_at"],
            )
            # A direct room has no name of its own: it is called after the other person.
            name = name or peer.display_name or peer.username
        last = row["last_message"]
        return Room(
            id=row["id"],
            kind=row["kind"],
            name=name,
            role=row["role"],
            unread_count=row["unread_count"],
            last_read_message_id=row["last_read_message_id"],
            last_message=message_model(last) if last is not None else None,
            activity_at=row["activity_at"],
            member_count=row["member_count"],
            peer=peer,
        )

    async def _detail(self, conn: AsyncConnection[Any], room_id: int, user_id: int) -> RoomDetail:
        row = await rooms.room_summary(conn, room_id, user_id)
        if row is None:
            raise not_found()
        listed = [Member.model_validate(m) for m in await rooms.members(conn, room_id)]
        (room,) = await self._rooms([row])
        return RoomDetail(**room.model_dump(), members=listed)

    async def list_rooms(self, user_id: int) -> list[Room]:
        async with self.pool.connection() as conn:
            rows = await rooms.list_rooms(conn, user_id)
        return await self._rooms(rows)

    async def room(self, room_id: int, user_id: int) -> RoomDetail:
        async with self._tx() as conn:
            return await self._detail(conn, room_id, user_id)

    async def create_room(self, user_id: int, name: str) -> RoomDetail:
        async with self._tx() as conn:
            room_id = await rooms.create_group(conn, user_id, name)
            return await self._detail(conn, room_id, user_id)

    async def open_direct(self, user_id: int, peer_id: int) -> RoomDetail:
        async with self._tx() as conn:
            room_id = await rooms.open_direct(conn, user_id, peer_id)
            return await self._detail(conn, room_id, user_id)

    async def rename(self, room_id: int, user_id: int, name: str) -> RoomDetail:
        async with self._tx() as conn:
            await rooms.rename(conn, room_id, user_id, name)
            return await self._detail(conn, room_id, user_id)

    async def add_member(self, room_id: int, user_id: int, new_member: int) -> Member:
        async with self._tx() as conn:
            row = await rooms.invite_member(conn, room_id, user_id, new_member)
            return Member.model_validate(row)

    async def create_invite(self, room_id: int, user_id: int) -> Invite:
        async with self._tx() as conn:
            token, expires_at = await rooms.create_invite(conn, room_id, user_id)
            return Invite(token=token, expires_at=expires_at)

    async def join(self, token: str, user_id: int) -> RoomDetail:
        async with self._tx() as conn:
            room_id = await rooms.redeem_invite(conn, token, user_id)
            return await self._detail(conn, room_id, user_id)

    async def leave(self, room_id: int, user_id: int) -> None:
        async with self._tx() as conn:
            await rooms.leave(conn, room_id, user_id)

    # -- messages ---------------------------------------------------------------------------

    async def history(
        self, room_id: int, user_id: int, before: int | None, after: int | None, limit: int | None
    ) -> bytes:
        """A page of history as the JSON of a MessagePage, written by PostgreSQL."""
        page = policy.page(before, after, limit)
        # No transaction: one statement in the common case (autocommit pool).
        async with self.pool.connection() as conn:
            messages_json, has_more = await messages.history(conn, room_id, user_id, page)
        return b'{"messages":%s,"has_more":%s}' % (
            messages_json,
            b"true" if has_more else b"false",
        )

    async def send(
        self, room_id: int, user_id: int, body: str, client_msg_id: str | None = None
    ) -> tuple[Message, bool]:
        """(message, True if it was stored now; False for a repeated client_msg_id)."""
        if self.sender is not None:
            row = await self.sender.send(room_id, user_id, body, client_msg_id)
        else:
            async with self.pool.connection() as conn:
                row = await messages.send_if_member(conn, room_id, user_id, body, client_msg_id)
        if row is not None:
            return message_model(row), True
        async with self._tx() as conn:
            row, created = await messages.send(conn, room_id, user_id, body, client_msg_id)
        return message_model(row), created

    async def edit(self, message_id: int, user_id: int, body: str) -> Message:
        async with self._tx() as conn:
            return message_model(await messages.edit(conn, message_id, user_id, body))

    async def delete(self, message_id: int, user_id: int) -> Message:
        async with self._tx() as conn:
            return message_model(await messages.delete(conn, message_id, user_id))

    async def mark_read(self, room_id: int, user_id: int, message_id: int) -> bool:
        async with self._tx() as conn:
            return await receipts.mark_read(conn, room_id, user_id, message_id)

    async def typist(self, room_id: int, user_id: int) -> str:
        """The username shown in a typing event; 404 unless the user is in the room."""
        async with self.pool.connection() as conn:
            row = await fetch_one(
                conn,
                "SELECT u.username FROM room_members m JOIN users u ON u.id = m.user_id"
                " WHERE m.room_id = %s AND m.user_id = %s",
                (room_id, user_id),
            )
        if row is None:
            raise not_found()
        return str(row["username"])
