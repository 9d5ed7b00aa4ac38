"""The FastAPI application: routes, error shape, security headers."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from syncline import __version__
from syncline.api.auth_deps import build_auth_service
from syncline.api.context import AppContext
from syncline.api.errors import install_error_handlers
from syncline.api.fast import FastPathApp
from syncline.api.headers import SecurityHeadersMiddleware
from syncline.api.limits import BodyLimitMiddleware
from syncline.api.routes import auth, centrifugo, health, info, server, users
from syncline.api.routes import messages as chat_messages
from syncline.api.routes import orders as order_routes
from syncline.api.routes import rooms as chat_rooms
from syncline.api.routes.docs import install_docs
from syncline.api.services import install_app_errors

# The web UI (index.html, app.js and its modules, styles.css, syncline-client.js): static files
# shipped in the package, no build step. index.html is served at / so the hash routes work.
WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def create_app(context: AppContext) -> FastAPI:
    """Build the HTTP application around a running system's context."""
    app = FastPathApp(
        title="Syncline",
        version=__version__,
        description="Real-time sync from PostgreSQL to WebSocket clients.",
        # Served by install_docs from packaged assets: FastAPI's own pages load from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.context = context
    install_error_handlers(app)
    install_app_errors(app)
    app.state.auth = build_auth_service(context)
    # In front of everything: sending and reading messages skip FastAPI's middleware and
    # routing (the fast path applies the size limit, CORS and security headers itself, or
    # passes the request on); SYNCLINE_FAST_PATH=0 leaves them to FastAPI (the benchmarks'
    # before and after).
    if os.environ.get("SYNCLINE_FAST_PATH", "1") != "0":
        app.install_fast_path(context, app.state.auth)
    # The innermost of the middlewares: a 413 still gets the CORS and security headers.
    app.add_middleware(BodyLimitMiddleware, max_bytes=context.settings.max_request_body)
    if context.settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=context.settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )

    # Outermost: every answer, errors and CORS preflights included, gets the headers.
    app.add_middleware(SecurityHeadersMiddleware)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        # no-cache: a new release's index.html (and so its module URLs) is picked up at once.
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")
    install_docs(app)

    app.include_router(health.router)
    app.include_router(info.router)
    app.include_router(server.router)
    # Centrifugo's layout, POST only: `GET /api/info` above stays the chat's.
    app.include_router(centrifugo.build_router(context.settings.server_api_prefix))
    app.include_router(chat_rooms.router)
    app.include_router(chat_messages.router)
    app.include_router(order_routes.router)
    app.include_router(auth.router)
    app.include_router(users.router)
    return app
