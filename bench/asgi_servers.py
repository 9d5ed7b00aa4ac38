"""The HTTP API alone (no gateway, no capture) under uvicorn (httptools, uvloop) or Granian.

Measures the HTTP server, nothing else: the same FastAPI app (fast path included) on the same
database, one process, one event loop. usage, from bench/:
  DATABASE_URL=… SYNCLINE_JWT_SECRET=… python asgi_servers.py uvicorn PORT
  DATABASE_URL=… SYNCLINE_JWT_SECRET=… granian --interface asgi --loop uvloop --workers 1 \
      --runtime-threads 1 --port PORT asgi_servers:app
then `syncline bench chat --url http://127.0.0.1:PORT --scenarios post`.
"""

from __future__ import annotations

import asyncio
import os
import sys

from psycopg_pool import AsyncConnectionPool
from starlette.types import Receive, Scope, Send

from syncline.api.app import create_app
from syncline.api.context import AppContext
from syncline.settings import load_settings

SECRET = os.environ["SYNCLINE_JWT_SECRET"]
_settings = load_settings(None, jwt_secret=SECRET, log_level="warning")
_pool = AsyncConnectionPool(
    os.environ["DATABASE_URL"], min_size=4, max_size=10, open=False, kwargs={"autocommit": True}
)
# k6's setup asks /api/info for a WebSocket URL; nothing connects to it in the post scenario.
_context = AppContext(
    settings=_settings, pool=_pool, jwt_secret=SECRET, websocket_url="ws://127.0.0.1:9/none"
)
_app = create_app(_context)
_ready: asyncio.Event | None = None


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The API, its pool opened on the server's own loop at the first request."""
    global _ready
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": f"{message['type']}.complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if _ready is None:
        _ready = asyncio.Event()
        await _pool.open(wait=True)
        _ready.set()
    elif not _ready.is_set():
        await _ready.wait()
    await _app(scope, receive, send)


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(
        app,
        port=int(sys.argv[2]),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="off",
    )
