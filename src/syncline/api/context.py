"""What routes may use from the running system, handed to them as typed dependencies."""

from __future__ import annotations

import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from psycopg_pool import AsyncConnectionPool

from syncline.health import Readiness
from syncline.settings import Settings

if TYPE_CHECKING:
    from syncline.apps.auth.session_guard import SessionGuard
    from syncline.control.base import ControlBus
    from syncline.engine.base import ChannelLog
    from syncline.gateway.server import Gateway


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
    # The running gateway and channel log (server API: presence, history, disconnect).
    gateway: Gateway | None = None
    engine: ChannelLog | None = None
    # Commands to every process (revocations, disconnects); None: this process only.
    control: ControlBus | None = None
    # The process's one session-liveness cache, shared with the gateway; None: the auth
    # service makes its own.
    session_guard: SessionGuard | None = None
    # The server API's key; None turns the server API off.
    api_key: str | None = None
    node_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    node_name: str = field(default_factory=socket.gethostname)
    started_at: float = field(default_factory=time.time)


def get_context(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


Context = Annotated[AppContext, Depends(get_context)]
