"""Wires the chat into a running gateway: RPC methods and last-seen tracking."""

from __future__ import annotations

from typing import TYPE_CHECKING

from psycopg_pool import AsyncConnectionPool

from syncline.apps.chat.presence import LastSeenTracker, is_online
from syncline.apps.chat.rpc import register_chat_rpc
from syncline.apps.chat.service import ChatService
from syncline.rpc import RpcRegistry

if TYPE_CHECKING:
    from syncline.gateway.server import Gateway


class ChatRealtime:
    """The chat's parts that live next to the gateway; close() before the pool closes."""

    def __init__(self, registry: RpcRegistry, gateway: Gateway, pool: AsyncConnectionPool):
        service = ChatService(pool, lambda user_id: is_online(gateway, user_id))
        register_chat_rpc(registry, service, gateway)
        self.last_seen = LastSeenTracker(gateway, pool)

    async def close(self) -> None:
        await self.last_seen.close()
