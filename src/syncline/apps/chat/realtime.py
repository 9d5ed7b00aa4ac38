"""Wires the chat into a running Syncline through its ports: RPC methods, online status and
last-seen tracking (never through the gateway object itself)."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from syncline.apps.chat.presence import LastSeenTracker, OnlineStatus
from syncline.apps.chat.rpc import register_chat_rpc
from syncline.apps.chat.sending import SendBatcher
from syncline.apps.chat.service import ChatService
from syncline.core.namespaces import NamespaceRegistry
from syncline.engine.base import ChannelLog
from syncline.presence import PresenceStore
from syncline.rpc import RpcRegistry


class ChatRealtime:
    """The chat's real-time parts; `last_seen.user_disconnected` is the gateway's disconnect
    listener (the composition root wires it); close() before the pool closes."""

    def __init__(
        self,
        registry: RpcRegistry,
        engine: ChannelLog,
        namespaces: NamespaceRegistry,
        presence: PresenceStore,
        pool: AsyncConnectionPool,
    ) -> None:
        status = OnlineStatus(presence)
        # One group commit for the process: REST's sends join the RPC's (AppContext.chat_sender).
        self.sender = SendBatcher(pool)
        service = ChatService(pool, status.online, self.sender)
        register_chat_rpc(registry, service, engine, namespaces)
        self.last_seen = LastSeenTracker(status, pool)

    async def close(self) -> None:
        await self.sender.close()
        await self.last_seen.close()
