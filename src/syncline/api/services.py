"""The application services as route dependencies, and their errors as JSON answers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from syncline.api.context import AppContext, get_context
from syncline.api.errors import error_response
from syncline.apps.chat.presence import OnlineStatus
from syncline.apps.chat.service import ChatService
from syncline.apps.errors import AppError
from syncline.apps.orders.service import OrderService


async def chat_service(context: Annotated[AppContext, Depends(get_context)]) -> ChatService:
    return ChatService(context.pool, OnlineStatus(context.presence).online, context.chat_sender)


async def order_service(context: Annotated[AppContext, Depends(get_context)]) -> OrderService:
    return OrderService(context.pool)


Chat = Annotated[ChatService, Depends(chat_service)]
Orders = Annotated[OrderService, Depends(order_service)]


def install_app_errors(app: FastAPI) -> None:
    """A service's AppError becomes {"error": {"code", "message"}} with its status."""

    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)
