"""The chat's hottest routes (send a message, read a page of history) without FastAPI's layers.

FastAPI's routing, dependency solving and response handling took about 40 % of the process on
POST /api/rooms/{id}/messages under load; the middleware stack around the routes (FastAPI's
telemetry and body-limit layers, Starlette's error middleware, ours) another 9 %. The app is a
`FastPathApp`: its ChatFastPath sees every HTTP request before any of those layers and answers
the ordinary requests of those two routes itself, with the same checks and the same answers:
the same bearer-token check (authenticate), the same body model (SendMessage), the same
ChatService, the same security headers and request counter (SecurityHeadersMiddleware's).
Anything out of the ordinary (a body that is not JSON or not valid, an odd room id or query, a
chunked or oversized body, another content type, a cross-origin request when CORS is on) is
handed to the whole FastAPI app unchanged, body included, so that every error answer stays the
route's own; the routes stay in FastAPI for the OpenAPI document.
tests/api/test_fast_path.py sends the same requests both ways and compares.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson
import psycopg
from fastapi import FastAPI
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syncline import metrics
from syncline.api.auth_deps import authenticate
from syncline.api.context import AppContext
from syncline.api.errors import ApiError, database_unavailable, error_response
from syncline.api.headers import CSP, SECURITY_HEADERS, SecurityHeadersMiddleware
from syncline.apps.auth.service import AuthService
from syncline.apps.chat.models import MAX_ID, SendMessage
from syncline.apps.chat.policy import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from syncline.apps.chat.presence import OnlineStatus
from syncline.apps.chat.service import ChatService
from syncline.apps.errors import AppError
from syncline.logs import get_logger

log = get_logger(__name__)

ROUTE_PATH = "/api/rooms/{room_id}/messages"
# Only canonical ids: "01", "+1" or 2^63 are left to the route (its 422s, its parsing).
_PATH = re.compile(r"/api/rooms/([1-9][0-9]{0,18})/messages")
_NUMBER = re.compile(rb"[0-9]{1,19}")
# What the route's answer carries: its content type, and the security headers
# SecurityHeadersMiddleware adds (CSP included: these paths are not exempt).
_HEADERS = [
    (b"content-type", b"application/json"),
    *SECURITY_HEADERS,
    (b"content-security-policy", CSP),
]


@dataclass(frozen=True, slots=True)
class RouteLabel:
    """Stands in for the route in scope["route"]: the request counter labels by its path."""

    path: str = ROUTE_PATH


class _Defer(Exception):
    """Not an ordinary request: the FastAPI route answers it."""


def _query(raw: bytes) -> tuple[int | None, int | None, int]:
    """before, after, limit from a plain query string; _Defer for anything else."""
    found: dict[bytes, int] = {}
    for pair in raw.split(b"&") if raw else ():
        key, sep, value = pair.partition(b"=")
        if not sep or key in found or not _NUMBER.fullmatch(value):
            raise _Defer
        number = int(value)
        if key == b"limit":
            if not 1 <= number <= MAX_PAGE_SIZE:
                raise _Defer
        elif key in (b"before", b"after"):
            if number > MAX_ID:
                raise _Defer
        else:
            raise _Defer  # the route ignores unknown parameters; it may as well do so itself
        found[key] = number
    return found.get(b"before"), found.get(b"after"), found.get(b"limit", DEFAULT_PAGE_SIZE)


def _json_media(value: bytes) -> bool:
    return value.split(b";", 1)[0].strip().lower() == b"application/json"


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _Defer  # the client left: let the route see the disconnect as it would
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the already read body once, then the client's own messages."""
    pending = [body]

    async def replay() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return await receive()

    return replay


class ChatFastPath:
    """Answers ordinary GET and POST /api/rooms/{id}/messages; passes everything else on."""

    def __init__(self, app: ASGIApp, context: AppContext, auth: AuthService) -> None:
        self.app = app
        self.context = context
        self.auth = auth
        self.label = RouteLabel()
        self.max_body = context.settings.max_request_body
        # With CORS on, a request that names its origin gets CORSMiddleware's answer.
        self.cors = bool(context.settings.cors_origins)
        self._counters: dict[tuple[str, int], Counter] = {}

    def _count(self, method: str, status: int) -> None:
        """SecurityHeadersMiddleware's request counter, its labelled child kept."""
        counter = self._counters.get((method, status))
        if counter is None:
            counter = metrics.HTTP_REQUESTS.labels(method, ROUTE_PATH, str(status))
            self._counters[(method, status)] = counter
        counter.inc()

    async def _answer(self, send: Send, method: str, status: int, model: BaseModel) -> None:
        await self._answer_json(send, method, status, model.__pydantic_serializer__.to_json(model))

    async def _answer_json(self, send: Send, method: str, status: int, body: bytes) -> None:
        headers = [(b"content-length", str(len(body)).encode()), *_HEADERS]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self._count(method, status)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method")
        match = None
        if scope["type"] == "http" and method in ("GET", "POST") and not scope.get("root_path"):
            match = _PATH.fullmatch(scope["path"])
        if match is None or int(match.group(1)) > MAX_ID:
            await self.app(scope, receive, send)
            return
        room_id = int(match.group(1))
        authorization = content_type = length = b""
        crossing = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
            elif name == b"origin":
                crossing = self.cors
        body: bytes | None = None  # None: not read, the app reads it itself
        try:
            if crossing:
                raise _Defer
            if method == "GET":
                page = _query(scope["query_string"])
            else:
                # Chunked, oversized or odd-sized bodies stay with BodyLimitMiddleware (its 400
                # or 413, raised in the route's body read when chunked).
                if not length.isdigit() or int(length) > self.max_body:
                    raise _Defer
                if not _json_media(content_type):
                    raise _Defer
                body = await _read_body(receive)
                try:
                    data = orjson.loads(body)
                except orjson.JSONDecodeError:
                    raise _Defer from None
        except _Defer:
            await self.app(scope, receive if body is None else _replay(body, receive), send)
            return
        scope["route"] = self.label
        try:
            claims = await authenticate(authorization.decode("latin-1"), self.auth)
        except ApiError as err:
            error = error_response(err.status, err.code, err.message, err.headers)
            await SecurityHeadersMiddleware(error)(scope, receive, send)
            return
        context = self.context
        chat = ChatService(context.pool, OnlineStatus(context.presence).online, context.chat_sender)
        try:
            if method == "GET":
                before, after, limit = page
                history = await chat.history(room_id, claims.user_id, before, after, limit)
                await self._answer_json(send, "GET", 200, history)
                return
            try:
                sent = SendMessage.model_validate(data)
            except ValidationError:
                await self.app(scope, _replay(body or b"", receive), send)
                return
            message, created = await chat.send(
                room_id, claims.user_id, sent.body, sent.client_msg_id
            )
            await self._answer(send, "POST", 201 if created else 200, message)
        except AppError as err:
            error = error_response(err.status, err.code, err.message)
            await SecurityHeadersMiddleware(error)(scope, receive, send)
        except psycopg.OperationalError as err:
            await SecurityHeadersMiddleware(database_unavailable(scope["path"], err))(
                scope, receive, send
            )
        except Exception as exc:
            # What the app's 500 handler does (the error middleware is behind this layer).
            log.error("unhandled error", path=scope["path"], exc_info=exc)
            error = error_response(500, "internal", "internal error")
            await SecurityHeadersMiddleware(error)(scope, receive, send)


class FastPathApp(FastAPI):
    """The FastAPI app with the chat's fast path in front of all its middleware."""

    fast_path: ChatFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_path
        if fast is None or scope["type"] != "http" or self.root_path:
            await super().__call__(scope, receive, send)
        else:
            await fast(scope, receive, send)

    async def full(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The whole app, for what the fast path passes on."""
        await super().__call__(scope, receive, send)

    def install_fast_path(self, context: AppContext, auth: AuthService) -> None:
        self.fast_path = ChatFastPath(self.full, context, auth)
