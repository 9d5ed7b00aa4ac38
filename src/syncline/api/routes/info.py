"""What a client needs to know to connect: version and the WebSocket URL."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from syncline import __version__
from syncline.api.context import Context

router = APIRouter(prefix="/api", tags=["info"])


class ServerInfo(BaseModel):
    version: str
    websocket_url: str


@router.get("/info", summary="Server version and WebSocket URL")
async def info(context: Context) -> ServerInfo:
    return ServerInfo(version=__version__, websocket_url=context.websocket_url)
