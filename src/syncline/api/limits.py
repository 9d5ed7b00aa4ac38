"""Request body size limit for the whole API: 413 with the JSON error shape."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syncline.api.errors import error_response


class BodyLimitMiddleware:
    """Refuse request bodies over `max_bytes`, declared (Content-Length) or streamed (chunked).

    A declared size is refused before anything is read. A chunked body is counted as it
    arrives; going over raises HTTPException(413) inside the route's body read, which the
    JSON error handlers answer (FastAPI re-raises HTTPExceptions from body reading).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.isdigit():
                response = error_response(400, "bad_request", "invalid Content-Length")
                await response(scope, receive, send)
                return
            if int(declared) > self.max_bytes:
                await self._too_large()(scope, receive, send)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, counting_receive, send)

    def _message(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes"

    def _too_large(self) -> ASGIApp:
        return error_response(413, "payload_too_large", self._message())
