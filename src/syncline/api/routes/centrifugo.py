"""The server API in Centrifugo's layout: `POST <server_api_prefix>/<method>` (default `/api`).

Centrifugo's HTTP contract (internal/api/handler.go, internal/middleware/auth.go): the key in
`X-API-Key`, `Authorization: apikey <key>` or the `api_key` query parameter, else 401; a body
that does not decode is a 400; anything else is HTTP 200 with `{"result": …}` or
`{"error": {"code": N, "message": …}}`, and `batch` answers `{"replies": […]}`. Only POST is
served, so the chat's `GET /api/info` and the server API's `POST /api/info` share a path
without meeting. `POST /api` itself is Centrifugo's older single-endpoint API (commands
`{"id", "method", "params"}`, one a line, replies likewise), which v6 still serves. The 401
and 400 bodies are Syncline's usual `{"error": {"code", "message"}}` (Centrifugo sends none;
its clients read only the status). See docs/topics/server-api.md.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response

from syncline.api import centrifugo_api as api
from syncline.api.context import AppContext, Context, get_context
from syncline.api.errors import ApiError

_SUMMARIES = {
    "publish": "Publish data into a channel (after commit, durable, ordered)",
    "broadcast": "Publish the same data into many channels",
    "subscribe": "Subscribe a user's connections to a channel, server-side",
    "unsubscribe": "Unsubscribe a user's connections from a channel (or from all)",
    "disconnect": "Disconnect a user's connections (or one client)",
    "refresh": "Extend or end a user's connections (expire_at, expired)",
    "presence": "Who is in a channel",
    "presence_stats": "How many clients and users are in a channel",
    "history": "A page of a channel's history and its position",
    "history_remove": "Remove a channel's history (its position stays)",
    "channels": "Active channels and their client counts",
    "info": "The nodes: clients, users, channels, subscriptions",
    "batch": "Many commands in one request, replies in order",
}


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


async def require_key(
    request: Request, context: Annotated[AppContext, Depends(get_context)]
) -> None:
    """Centrifugo's APIKeyAuth: X-API-Key, then `Authorization: apikey KEY`, then ?api_key=."""
    expected = context.api_key
    if not expected:
        raise ApiError(
            401, "unauthorized", "the server API is off: configure SYNCLINE_API_KEY to enable it"
        )
    header = request.headers.get("x-api-key")
    if header:
        valid = _same(header, expected)
    else:
        parts = request.headers.get("authorization", "").split()
        valid = len(parts) == 2 and parts[0].lower() == "apikey" and _same(parts[1], expected)
    query = request.query_params.get("api_key")
    if not valid and query:
        valid = _same(query, expected)
    if not valid:
        given = header or request.headers.get("authorization") or query
        message = "wrong API key" if given else "missing API key: send it in the X-API-Key header"
        raise ApiError(401, "unauthorized", message)


def _json(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


async def _params(request: Request) -> object:
    raw = await request.body()
    if not raw.strip():
        return {}  # Centrifugo's info and channels need no fields; neither needs a body here
    try:
        params = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise ApiError(400, "bad_request", f"the body is not JSON: {err}") from None
    if not isinstance(params, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    return params


def _endpoint(
    name: str, method: Callable[[AppContext, object], Awaitable[dict[str, Any]]]
) -> Callable[[Request, AppContext], Awaitable[Response]]:
    async def endpoint(request: Request, context: Context) -> Response:
        params = await _params(request)
        try:
            result = await method(context, params)
        except api.BadBody as err:
            raise ApiError(400, "bad_request", str(err)) from None
        except api.MethodError as err:
            return _json({"error": err.reply()})
        # Batch's reply is {"replies": …} itself, not wrapped in a result (BatchResponse).
        return _json(result if name == "batch" else {"result": result})

    endpoint.__name__ = f"centrifugo_{name}"
    return endpoint


def build_router(prefix: str) -> APIRouter:
    """The routes under ``prefix`` ('' for the root), each POST only, each behind the key."""
    router = APIRouter(
        prefix=prefix,
        tags=["server API (Centrifugo layout)"],
        dependencies=[Depends(require_key)],
    )
    for name, method in {**api.METHODS, "batch": api.batch}.items():
        router.add_api_route(
            f"/{name}",
            _endpoint(name, method),
            methods=["POST"],
            summary=_SUMMARIES[name],
            response_class=Response,
            openapi_extra={
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        )
    # Centrifugo's API before v5 (still served by v6 at the bare prefix): old clients, cent 4.x
    # among them, send newline-separated {"method", "params"} commands there.
    router.add_api_route(
        "" if prefix else "/",
        _legacy,
        methods=["POST"],
        summary="Centrifugo's single-endpoint API: {id, method, params} commands, one a line",
        response_class=Response,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    )
    return router


async def _legacy(request: Request, context: Context) -> Response:
    raw = await request.body()
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise ApiError(400, "bad_request", "the body is not UTF-8") from None
    if not text.strip():
        raise ApiError(400, "bad_request", "no command in the body")
    try:
        replies = await api.run_legacy(context, text)
    except api.BadBody as err:
        raise ApiError(400, "bad_request", str(err)) from None
    return Response(b"\n".join(orjson.dumps(r) for r in replies), media_type="application/json")
