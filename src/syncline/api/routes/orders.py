"""Orders over REST for any signed-in user; changes reach the `orders` channel by capture."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from syncline.api.auth_deps import CurrentUser
from syncline.api.services import Orders
from syncline.apps.chat.models import MAX_ID
from syncline.apps.orders.models import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    CreateOrder,
    Order,
    OrderPage,
    Status,
    UpdateOrder,
)
from syncline.apps.orders.service import MAX_OFFSET

router = APIRouter(prefix="/api/orders", tags=["orders"])
OrderId = Annotated[int, Path(ge=1, le=MAX_ID, description="order id")]


@router.get("", summary="Orders, newest first, with the total for the filter")
async def list_orders(
    _: CurrentUser,
    orders: Orders,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> OrderPage:
    return await orders.list(status, limit, offset)


@router.post("", status_code=201, summary="Create an order")
async def create_order(body: CreateOrder, _: CurrentUser, orders: Orders) -> Order:
    return await orders.create(body)


@router.get("/{order_id}", summary="One order")
async def get_order(order_id: OrderId, _: CurrentUser, orders: Orders) -> Order:
    return await orders.get(order_id)


@router.patch("/{order_id}", summary="Change an order's names or status")
async def update_order(
    order_id: OrderId, body: UpdateOrder, _: CurrentUser, orders: Orders
) -> Order:
    return await orders.update(order_id, body)


@router.delete("/{order_id}", status_code=204, summary="Delete an order")
async def delete_order(order_id: OrderId, _: CurrentUser, orders: Orders) -> Response:
    await orders.delete(order_id)
    return Response(status_code=204)
