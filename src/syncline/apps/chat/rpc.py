"""The chat's RPC methods on the gateway: chat.send, chat.edit, chat.delete, chat.read and
chat.typing, calling the same ChatService as the REST routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel

from syncline.apps.chat.models import RpcDelete, RpcEdit, RpcRead, RpcSend, RpcTyping
from syncline.apps.chat.presence import user_id_of
from syncline.apps.chat.service import ChatService
from syncline.apps.chat.typing import TypingLimiter, typing_channel
from syncline.apps.errors import AppError
from syncline.apps.inputs import rpc_args
from syncline.core.log import ClientInfo
from syncline.core.namespaces import Deny, NamespaceRegistry
from syncline.engine.base import ChannelLog
from syncline.rpc import RpcContext, RpcError, RpcRegistry

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[RpcContext, Any], Awaitable[Any]]


def _fail(err: AppError) -> RpcError:
    # The RPC error code is the HTTP status of the same refusal over REST; the message starts
    # with the REST error code, so clients can tell e.g. not_found from invalid_invite.
    return RpcError(err.status, f"{err.code}: {err.message}")


_parse = rpc_args


def _caller(ctx: RpcContext) -> int:
    user_id = user_id_of(ctx.user)
    if user_id is None:
        raise RpcError(401, "unauthorized: sign in with an access token first")
    return user_id


def register_chat_rpc(
    registry: RpcRegistry,
    service: ChatService,
    engine: ChannelLog,
    namespaces: NamespaceRegistry,
    limiter: TypingLimiter | None = None,
) -> None:
    """Register the chat.* methods on the runtime's RPC registry."""
    typing_limiter = limiter or TypingLimiter()

    def method(name: str, run: Handler) -> None:
        async def handler(ctx: RpcContext, data: Any) -> Any:
            try:
                return await run(ctx, data)
            except AppError as err:
                raise _fail(err) from None

        registry.register(name, handler)

    async def send(ctx: RpcContext, data: Any) -> Any:
        user_id = _caller(ctx)
        args = _parse(RpcSend, data)
        message, _ = await service.send(args.room_id, user_id, args.body, args.client_msg_id)
        return message.model_dump(mode="json")

    async def edit(ctx: RpcContext, data: Any) -> Any:
        user_id = _caller(ctx)
        args = _parse(RpcEdit, data)
        return (await service.edit(args.message_id, user_id, args.body)).model_dump(mode="json")

    async def delete(ctx: RpcContext, data: Any) -> Any:
        user_id = _caller(ctx)
        args = _parse(RpcDelete, data)
        return (await service.delete(args.message_id, user_id)).model_dump(mode="json")

    async def read(ctx: RpcContext, data: Any) -> Any:
        user_id = _caller(ctx)
        args = _parse(RpcRead, data)
        moved = await service.mark_read(args.room_id, user_id, args.message_id)
        return {"moved": moved}

    async def typing(ctx: RpcContext, data: Any) -> Any:
        user_id = _caller(ctx)
        args = _parse(RpcTyping, data)
        channel = typing_channel(args.room_id)
        if isinstance(namespaces.resolve(channel), Deny):
            raise RpcError(404, "not_found: typing channels are not configured")
        if not typing_limiter.allow(user_id, args.room_id):
            raise RpcError(429, "rate_limited: one typing event per room every 2 seconds")
        username = await service.typist(args.room_id, user_id)
        event = {"type": "typing", "user_id": user_id, "username": username}
        # The same road as a client's publish into a typing channel: fanned out to the
        # room's typing subscribers, no offset, no history, nothing in PostgreSQL.
        info = ClientInfo(ctx.user, ctx.client, ctx.conn_info)
        await engine.publish_ephemeral(channel, orjson.dumps(event), info)
        return {}

    method("chat.send", send)
    method("chat.edit", edit)
    method("chat.delete", delete)
    method("chat.read", read)
    method("chat.typing", typing)
