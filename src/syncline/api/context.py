"""What routes may use from the running system, handed to them as typed dependencies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from psycopg_pool import AsyncConnectionPool

from syncline.health import Readiness
from syncline.settings import Settings

if TYPE_CHECKING:
    from syncline.engine.base import ChannelLog
    from syncline.gateway.server import Gateway


@dataclass
class AppContext:
    """The running system as the HTTP API sees it."""

    settings: Settings
    pool: AsyncConnectionPool
    readiness: Readiness = field(default_factory=Readiness)
    websocket_url: str = ""
    # Signs access tokens; the gateway verifies them with the same secret.
    jwt_secret: str = ""
    # The running gateway and channel log (server API: presence, history, disconnect).
    gateway: Gateway | None = None
    engine: ChannelLog | None = None


def get_context(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


Context = Annotated[AppContext, Depends(get_context)]
