"""Chat rooms over REST: list, create, direct rooms, invites, join, leave, read receipts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from syncline.api.auth_deps import CurrentUser
from syncline.api.services import Chat
from syncline.apps.chat.models import (
    MAX_ID,
    AddMember,
    CreateRoom,
    Invite,
    JoinByInvite,
    MarkRead,
    Member,
    OpenDirect,
    RenameRoom,
    Room,
    RoomDetail,
)

router = APIRouter(prefix="/api/rooms", tags=["chat"])
RoomId = Annotated[int, Path(ge=1, le=MAX_ID, description="room id")]


@router.get("", summary="The caller's rooms (the global room included), most recent first")
async def list_rooms(user: CurrentUser, chat: Chat) -> list[Room]:
    return await chat.list_rooms(user.user_id)


@router.post("", status_code=201, summary="Create a group room; the caller owns it")
async def create_room(body: CreateRoom, user: CurrentUser, chat: Chat) -> RoomDetail:
    return await chat.create_room(user.user_id, body.name)


@router.post("/direct", summary="The direct room with a user, made on first use")
async def open_direct(body: OpenDirect, user: CurrentUser, chat: Chat) -> RoomDetail:
    return await chat.open_direct(user.user_id, body.user_id)


@router.post("/join", summary="Join a group room with an invite token")
async def join(body: JoinByInvite, user: CurrentUser, chat: Chat) -> RoomDetail:
    return await chat.join(body.token, user.user_id)


@router.get("/{room_id}", summary="A room and its members (404 for non-members)")
async def get_room(room_id: RoomId, user: CurrentUser, chat: Chat) -> RoomDetail:
    return await chat.room(room_id, user.user_id)


@router.patch("/{room_id}", summary="Rename a group room (owner only)")
async def rename_room(
    room_id: RoomId, body: RenameRoom, user: CurrentUser, chat: Chat
) -> RoomDetail:
    return await chat.rename(room_id, user.user_id, body.name)


@router.post("/{room_id}/members", status_code=201, summary="Add a user to a group room")
async def add_member(room_id: RoomId, body: AddMember, user: CurrentUser, chat: Chat) -> Member:
    return await chat.add_member(room_id, user.user_id, body.user_id)


@router.post("/{room_id}/invites", status_code=201, summary="A join-by-invite token (7 days)")
async def create_invite(room_id: RoomId, user: CurrentUser, chat: Chat) -> Invite:
    return await chat.create_invite(room_id, user.user_id)


@router.delete("/{room_id}/members/me", status_code=204, summary="Leave a room")
async def leave(room_id: RoomId, user: CurrentUser, chat: Chat) -> Response:
    await chat.leave(room_id, user.user_id)
    return Response(status_code=204)


@router.post("/{room_id}/read", status_code=204, summary="Move the read receipt forward")
async def mark_read(room_id: RoomId, body: MarkRead, user: CurrentUser, chat: Chat) -> Response:
    await chat.mark_read(room_id, user.user_id, body.message_id)
    return Response(status_code=204)
