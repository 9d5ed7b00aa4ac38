"""Every error answer is JSON: {"error": {"code", "message"}} with the right status."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from syncline.apps.inputs import describe
from syncline.logs import get_logger

log = get_logger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answer raised by a route: status, machine code, human message."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def _describe(errors: Sequence[Any]) -> str:
    # Only the leading "body" is FastAPI's: a field may be called body too (a message's).
    return "; ".join(describe(err, skip=("body",)) for err in errors[:3]) or "invalid input"


# What a 503 for an unreachable database tells clients to wait before retrying.
DATABASE_RETRY_AFTER_S = 2


def database_unavailable(path: str, exc: psycopg.OperationalError) -> JSONResponse:
    """503 for an unreachable database: the request was fine, so a hint when to retry."""
    log.warning("database unavailable", path=path, error=str(exc).strip())
    return error_response(
        503,
        "database_unavailable",
        "the database is unavailable; try again shortly",
        {"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map framework and application errors to the JSON error shape; hide internals on 500."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_input", _describe(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(psycopg.OperationalError)
    async def _database_down(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        # The database is unreachable (restarting, a pool that found no live connection in
        # time): the client's request was fine, so 503 and a hint when to retry, not a 500.
        return database_unavailable(request.url.path, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", path=request.url.path, exc_info=exc)
        return error_response(500, "internal", "internal error")
