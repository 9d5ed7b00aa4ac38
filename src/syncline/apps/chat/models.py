"""Request and reply shapes of the chat API (REST and RPC), with their input limits."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from syncline.apps.inputs import MAX_BIGINT, Input
from syncline.apps.times import Time

MAX_BODY_LENGTH = 4000
MAX_ROOM_NAME_LENGTH = 64
MAX_CLIENT_MSG_ID_LENGTH = 64
MAX_INVITE_TOKEN_LENGTH = 128
# Ids are PostgreSQL bigints: anything larger can't name a row (and would overflow the driver).
MAX_ID = MAX_BIGINT


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be only whitespace")
    return value


def _strip_name(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be only whitespace")
    return value


# A message body is kept as typed (leading spaces and newlines may be formatting).
Body = Annotated[str, Field(min_length=1, max_length=MAX_BODY_LENGTH), AfterValidator(_not_blank)]
RoomName = Annotated[
    str, Field(min_length=1, max_length=MAX_ROOM_NAME_LENGTH), AfterValidator(_strip_name)
]
ClientMsgId = Annotated[
    str,
    Field(min_length=1, max_length=MAX_CLIENT_MSG_ID_LENGTH, pattern=r"^[\x21-\x7e]+$"),
]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


class CreateRoom(Input):
    name: RoomName


class RenameRoom(Input):
    name: RoomName


class OpenDirect(Input):
    user_id: Id


class AddMember(Input):
    user_id: Id


class JoinByInvite(Input):
    token: Annotated[str, Field(min_length=1, max_length=MAX_INVITE_TOKEN_LENGTH)]


class SendMessage(Input):
    body: Body
    client_msg_id: ClientMsgId | None = None


class EditMessage(Input):
    body: Body


class MarkRead(Input):
    message_id: Id


# RPC payloads: the same fields, with the room or message named in the body.
class RpcSend(SendMessage):
    room_id: Id


class RpcEdit(EditMessage):
    message_id: Id


class RpcDelete(Input):
    message_id: Id


class RpcRead(MarkRead):
    room_id: Id


class RpcTyping(Input):
    room_id: Id


# -- replies ------------------------------------------------------------------------------


class Message(BaseModel):
    id: int
    room_id: int
    user_id: int
    body: str
    client_msg_id: str | None
    created_at: Time
    edited_at: Time | None
    deleted_at: Time | None


class MessagePage(BaseModel):
    messages: list[Message]
    has_more: bool


class PublicUser(BaseModel):
    id: int
    username: str
    display_name: str
    online: bool
    last_seen_at: Time | None


class Member(BaseModel):
    user_id: int
    username: str
    display_name: str
    role: Literal["owner", "member"]
    last_read_message_id: int | None
    joined_at: Time


class Room(BaseModel):
    id: int
    kind: Literal["global", "group", "direct"]
    name: str
    role: Literal["owner", "member"]
    unread_count: int
    last_read_message_id: int | None
    last_message: Message | None
    # The newest message's time, or when the user joined: the room list's order.
    activity_at: Time
    member_count: int
    peer: PublicUser | None


class RoomDetail(Room):
    members: list[Member]


class Invite(BaseModel):
    token: str
    expires_at: Time
