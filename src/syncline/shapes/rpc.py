"""The RPC methods of shapes: shape.open, shape.page and shape.close (docs/protocol.md)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from syncline.apps.inputs import Input
from syncline.apps.inputs import rpc_args as _parse
from syncline.core.codes import ErrorCode
from syncline.core.shapes import ShapeRequest
from syncline.rpc import RpcContext, RpcError, RpcRegistry
from syncline.shapes.service import ShapeOpenError, ShapeService

__all__ = ["SHAPE_INPUTS", "register_shape_rpc"]

# What one request may name: a shape UI selects a handful of columns; a filter's own limits
# (4,096 characters, 64 comparisons) are the parser's.
MAX_REQUEST_COLUMNS = 256


class _Open(Input):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    table: str = Field(min_length=1, max_length=200)
    where: str | None = Field(default=None, max_length=4096)
    columns: list[str] | None = Field(default=None, max_length=MAX_REQUEST_COLUMNS)


class _Page(Input):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    cursor: str = Field(min_length=1, max_length=64)


class _Close(Input):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    channel: str = Field(min_length=1, max_length=255)


# Each method's argument model (the RPC input tests try every field of each).
SHAPE_INPUTS: dict[str, type[Input]] = {
    "shape.open": _Open,
    "shape.page": _Page,
    "shape.close": _Close,
}


def _signed_in(ctx: RpcContext) -> str:
    if not ctx.user:
        raise RpcError(ErrorCode.PERMISSION_DENIED, "shapes are for signed-in users")
    return ctx.user


def register_shape_rpc(registry: RpcRegistry, service: ShapeService) -> None:
    """Register the shape.* methods on the runtime's RPC registry."""

    async def shape_open(ctx: RpcContext, data: Any) -> Any:
        user = _signed_in(ctx)
        asked = _parse(_Open, data)
        columns = None if asked.columns is None else tuple(asked.columns)
        request = ShapeRequest(table=asked.table, where=asked.where, columns=columns)
        try:
            view = await service.open(ctx.client, user, request)
        except ShapeOpenError as err:
            raise RpcError(err.code, err.message) from None
        return {
            "channel": view.channel,
            "key": list(view.shape.primary_key),
            "columns": list(view.shape.columns),
            "where": view.shape.where,
            "offset": view.position.offset,
            "epoch": view.position.epoch,
            "rows": view.rows,
            "total": view.total,
            "cursor": view.cursor,
        }

    async def shape_page(ctx: RpcContext, data: Any) -> Any:
        _signed_in(ctx)
        asked = _parse(_Page, data)
        try:
            rows, cursor = service.page(ctx.client, asked.cursor)
        except ShapeOpenError as err:
            raise RpcError(err.code, err.message) from None
        return {"rows": rows, "cursor": cursor}

    async def shape_close(ctx: RpcContext, data: Any) -> Any:
        _signed_in(ctx)
        service.close(ctx.client, _parse(_Close, data).channel)
        return {}

    registry.register("shape.open", shape_open)
    registry.register("shape.page", shape_page)
    registry.register("shape.close", shape_close)
