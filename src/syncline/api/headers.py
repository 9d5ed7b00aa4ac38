"""Security headers and the request counter, as a pure ASGI middleware.

Starlette's `@app.middleware("http")` (BaseHTTPMiddleware) runs every request through an extra
task and a response stream; on the chat's POST path that was a large share of the CPU. This
middleware only edits the response's start message.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syncline import metrics

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
# /docs loads Swagger UI's inline bootstrap; everything else is same-origin only, but for the
# connections to the gateway, another origin (its own port): WebSocket, or the HTTP transports'
# fetch and EventSource (`?transport=http_stream|sse`). The page may already open a WebSocket to
# any host, so letting it fetch from any host opens no new way out.
CSP = (
    b"default-src 'self'; connect-src 'self' ws: wss: http: https:; img-src 'self' data:;"
    b" frame-ancestors 'none'"
)
_CSP_EXEMPT = ("/docs", "/redoc")


class SecurityHeadersMiddleware:
    """Adds the security headers (unless a route set its own) and counts the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client sees if the app fails before answering
        wanted = SECURITY_HEADERS
        if not str(scope.get("path", "")).startswith(_CSP_EXEMPT):
            wanted = (*SECURITY_HEADERS, (b"content-security-policy", CSP))

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(item for item in wanted if item[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            # Label by route template (/api/rooms/{id}), not the raw path: bounded cardinality.
            route = getattr(scope.get("route"), "path", "unmatched")
            metrics.HTTP_REQUESTS.labels(scope.get("method", ""), route, str(status)).inc()
