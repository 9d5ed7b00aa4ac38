"""The server HTTP API (`/api/server/*`): publish, presence, history, disconnect — for backends.

Request and reply shapes follow Centrifugo's server API for the same methods (`{"result": …}`),
so its snippets and tools carry over; errors keep Syncline's `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

import fnmatch
import hmac
from typing import Annotated, Any, TypeVar

import orjson
import psycopg
from fastapi import APIRouter, Depends, Request, Response

from syncline.api.context import AppContext, Context, get_context
from syncline.api.errors import ApiError
from syncline.api.server_models import (
    BroadcastRequest,
    ChannelRequest,
    ChannelsRequest,
    DisconnectRequest,
    HistoryRequest,
    PublishRequest,
    UnsubscribeRequest,
)
from syncline.core.codes import DisconnectCode, check_close_reason
from syncline.core.control import ControlCommand, DisconnectUser, UnsubscribeUser
from syncline.core.log import ClientInfo, LogError, StreamPosition
from syncline.core.namespaces import Deny

_PUBLISH = "SELECT syncline.publish(%s, %s::jsonb)"
# SQL errors syncline.publish() raises for bad input (limits, empty channel): the caller's
# mistake, answered 400 with PostgreSQL's message.
_INPUT_ERRORS = (psycopg.errors.InvalidParameterValue, psycopg.errors.ProgramLimitExceeded)


async def require_api_key(
    request: Request, context: Annotated[AppContext, Depends(get_context)]
) -> None:
    """X-API-Key (or Centrifugo's `Authorization: apikey KEY`), compared in constant time."""
    expected = context.api_key
    if not expected:
        raise ApiError(
            404, "server_api_off", "the server API is off: configure SYNCLINE_API_KEY to enable it"
        )
    given = request.headers.get("x-api-key")
    if given is None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        given = value.strip() if scheme.lower() == "apikey" else None
    if not given:
        raise ApiError(401, "unauthorized", "missing API key: send it in the X-API-Key header")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(401, "unauthorized", "wrong API key")


router = APIRouter(
    prefix="/api/server", tags=["server API"], dependencies=[Depends(require_api_key)]
)


def _reply(result: dict[str, Any]) -> Response:
    # orjson.Fragment embeds JSON the channel log already holds without decoding it.
    return Response(orjson.dumps({"result": result}), media_type="application/json")


T = TypeVar("T")


def _running(part: T | None) -> T:
    if part is None:
        raise ApiError(503, "unavailable", "the gateway is not running")
    return part


async def _command(context: AppContext, command: ControlCommand) -> None:
    """Send a command to every node; 503 when the bus cannot take it (no false success)."""
    try:
        await _running(context.control).publish(command)
    except ConnectionError as err:
        raise ApiError(503, "unavailable", f"the control bus is unavailable: {err}") from None


def _check_channel(context: AppContext, channel: str) -> None:
    if isinstance(_running(context.namespaces).resolve(channel), Deny):
        raise ApiError(400, "unknown_channel", f"no namespace serves channel {channel!r}")


async def _publish_all(context: AppContext, items: list[tuple[str, Any]]) -> None:
    """Publish in one transaction: all or none, in this order, through syncline.publish()."""
    try:
        async with context.pool.connection() as conn, conn.transaction():
            for channel, data in items:
                await conn.execute(_PUBLISH, (channel, orjson.dumps(data).decode()))
    except _INPUT_ERRORS as err:
        message = err.diag.message_primary or str(err)
        raise ApiError(400, "invalid_publication", message) from None


@router.post("/publish", summary="Publish data to a channel (after commit, durable, ordered)")
async def publish(body: PublishRequest, context: Context) -> Response:
    _check_channel(context, body.channel)
    await _publish_all(context, [(body.channel, body.data)])
    return _reply({})


@router.post("/broadcast", summary="Publish the same data to several channels atomically")
async def broadcast(body: BroadcastRequest, context: Context) -> Response:
    for channel in body.channels:
        _check_channel(context, channel)
    await _publish_all(context, [(channel, body.data) for channel in body.channels])
    return _reply({"responses": [{"result": {}} for _ in body.channels]})


@router.post("/history", summary="A page of a channel's history")
async def history(body: HistoryRequest, context: Context) -> Response:
    _check_channel(context, body.channel)
    since = StreamPosition(body.since.offset, body.since.epoch) if body.since else None
    try:
        page = await _running(context.engine).history(body.channel, body.limit, since, body.reverse)
    except LogError as err:
        raise ApiError(400, "history_unavailable", err.message) from None
    except ConnectionError as err:
        raise ApiError(503, "unavailable", f"the channel log is unavailable: {err}") from None
    publications = []
    for pub in page.publications:
        item: dict[str, Any] = {"data": orjson.Fragment(pub.data), "offset": pub.offset}
        if pub.info is not None:
            item["info"] = _client_info(pub.info)
        publications.append(item)
    return _reply(
        {
            "publications": publications,
            "offset": page.position.offset,
            "epoch": page.position.epoch,
        }
    )


def _client_info(info: ClientInfo) -> dict[str, Any]:
    out: dict[str, Any] = {"client": info.client, "user": info.user}
    if info.conn_info is not None:
        out["conn_info"] = orjson.Fragment(info.conn_info)
    if info.chan_info is not None:
        out["chan_info"] = orjson.Fragment(info.chan_info)
    return out


@router.post("/presence", summary="Who is subscribed to a channel right now")
async def presence(body: ChannelRequest, context: Context) -> Response:
    _check_channel(context, body.channel)
    try:
        clients = await _running(context.presence).clients(body.channel)
    except ConnectionError as err:
        raise ApiError(503, "unavailable", f"presence is unavailable: {err}") from None
    return _reply({"presence": {cid: _client_info(info) for cid, info in clients.items()}})


@router.post("/presence_stats", summary="How many clients and distinct users are present")
async def presence_stats(body: ChannelRequest, context: Context) -> Response:
    _check_channel(context, body.channel)
    try:
        clients, users = await _running(context.presence).stats(body.channel)
    except ConnectionError as err:
        raise ApiError(503, "unavailable", f"presence is unavailable: {err}") from None
    return _reply({"num_clients": clients, "num_users": users})


@router.post("/channels", summary="Active channels (with subscribers) and their client counts")
async def channels(body: ChannelsRequest, context: Context) -> Response:
    found = {
        name: {"num_clients": count}
        for name, count in (await _running(context.nodes).channels()).items()
        if not body.pattern or fnmatch.fnmatchcase(name, body.pattern)
    }
    return _reply({"channels": found})


@router.post("/unsubscribe", summary="Unsubscribe a user's clients from a channel")
async def unsubscribe(body: UnsubscribeRequest, context: Context) -> Response:
    # Over the control bus: every process unsubscribes its own connections of the user.
    await _command(context, UnsubscribeUser(body.user, body.channel, body.client or ""))
    return _reply({})


@router.post("/disconnect", summary="Close every connection of a user (or one client)")
async def disconnect(body: DisconnectRequest, context: Context) -> Response:
    code = (
        DisconnectCode(body.disconnect.code) if body.disconnect else DisconnectCode.FORCE_DISCONNECT
    )
    reason = body.disconnect.reason if body.disconnect else ""
    if reason:
        try:
            check_close_reason(reason)
        except ValueError as err:
            raise ApiError(422, "invalid_input", f"disconnect.reason: {err}") from None
    await _command(context, DisconnectUser(body.user, int(code), reason, body.client or ""))
    return _reply({})


@router.post("/info", summary="The nodes: connections, users, channels, subscriptions")
async def info(context: Context) -> Response:
    return _reply({"nodes": await _running(context.nodes).nodes()})
