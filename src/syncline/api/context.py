"""What routes may use from the running system, handed to them as typed dependencies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from psycopg_pool import AsyncConnectionPool

from syncline.health import Readiness
from syncline.settings import Settings

if TYPE_CHECKING:
    from syncline.apps.auth.session_guard import SessionGuard
    from syncline.apps.chat.sending import SendBatcher
    from syncline.control.base import ControlBus
    from syncline.core.namespaces import NamespaceRegistry
    from syncline.engine.base import ChannelLog
    from syncline.nodes import NodeDirectory
    from syncline.presence import PresenceStore


@dataclass
class AppContext:
    """The running system as the HTTP API sees it."""

    settings: Settings
    pool: AsyncConnectionPool
    readiness: Readiness = field(default_factory=Readiness)
    websocket_url: str = ""
    # Where this server's HTTP API listens (links in mails use settings.public_url first).
    http_url: str = ""
    # Signs access tokens; the gateway verifies them with the same secret.
    jwt_secret: str = ""
    # The ports of the running system (server API: history, presence, channels, info; the
    # chat: online status). None: that part is not running here (503 where it is needed).
    engine: ChannelLog | None = None
    namespaces: NamespaceRegistry | None = None
    presence: PresenceStore | None = None
    nodes: NodeDirectory | None = None
    # Commands to every process (revocations, disconnects); None: this process only.
    control: ControlBus | None = None
    # The process's one session-liveness cache, shared with the gateway; None: the auth
    # service makes its own.
    session_guard: SessionGuard | None = None
    # This node's name, and which capture role it has ("leader", "standby"…), for /readyz.
    node_name: str = ""
    capture_role: Callable[[], str] | None = None
    # The chat's group commit, shared with the RPC send; None: each send its own statement.
    chat_sender: SendBatcher | None = None
    # The server API's key; None turns the server API off.
    api_key: str | None = None


# Every dependency is `async def`: FastAPI runs a plain `def` one in a worker thread, a
# thread hop per dependency per request (a tenth of the chat POST's time, measured).
async def get_context(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


Context = Annotated[AppContext, Depends(get_context)]
