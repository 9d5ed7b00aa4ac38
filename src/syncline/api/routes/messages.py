"""Chat messages over REST: history pages, send (idempotent), edit, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from syncline.api.auth_deps import CurrentUser
from syncline.api.services import Chat
from syncline.apps.chat.models import MAX_ID, EditMessage, Message, MessagePage, SendMessage
from syncline.apps.chat.policy import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

router = APIRouter(prefix="/api", tags=["chat"])
RoomId = Annotated[int, Path(ge=1, le=MAX_ID, description="room id")]
MessageId = Annotated[int, Path(ge=1, le=MAX_ID, description="message id")]
Cursor = Annotated[int | None, Query(ge=0, le=MAX_ID)]


@router.get(
    "/rooms/{room_id}/messages",
    summary="A page of history, ascending by id",
    description="Without cursors: the newest `limit`. `before=ID`: the `limit` before ID. "
    "`after=ID`: the `limit` after ID, oldest first (catching up). `has_more` says whether "
    "more lie beyond the page in the direction read.",
    response_model=MessagePage,
)
async def history(
    room_id: RoomId,
    user: CurrentUser,
    chat: Chat,
    before: Cursor = None,
    after: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
) -> Response:
    # The page's JSON comes whole from PostgreSQL (ChatService.history): nothing to validate.
    page = await chat.history(room_id, user.user_id, before, after, limit)
    return Response(page, media_type="application/json")


@router.post(
    "/rooms/{room_id}/messages",
    status_code=201,
    summary="Send a message (201; 200 with the first one when client_msg_id repeats)",
)
async def send(
    room_id: RoomId, body: SendMessage, user: CurrentUser, chat: Chat, response: Response
) -> Message:
    message, created = await chat.send(room_id, user.user_id, body.body, body.client_msg_id)
    if not created:
        response.status_code = 200
    return message


@router.patch("/messages/{message_id}", summary="Edit a message (author only)")
async def edit(message_id: MessageId, body: EditMessage, user: CurrentUser, chat: Chat) -> Message:
    return await chat.edit(message_id, user.user_id, body.body)


@router.delete(
    "/messages/{message_id}",
    summary="Delete a message (author, or a group's owner); returns the tombstone",
)
async def delete(message_id: MessageId, user: CurrentUser, chat: Chat) -> Message:
    return await chat.delete(message_id, user.user_id)
