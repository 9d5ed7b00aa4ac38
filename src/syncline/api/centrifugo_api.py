"""The server API's methods as Centrifugo's executor runs them (internal/api/api.go, v6).

Each method takes the decoded JSON body and returns its result object, or raises
``MethodError`` with Centrifugo's code (100 internal, 102 unknown channel, 104 not found,
107 bad request, 108 not available, 112 unrecoverable position). Results carry Centrifugo's
fields with its zero values: what Go's encoder writes for that struct and those ``json`` tags.
The HTTP layer (routes/centrifugo.py) wraps them, and ``batch`` runs them in order.
See docs/topics/server-api.md.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
import psycopg
from pydantic import BaseModel, ValidationError

from syncline.api.centrifugo_models import (
    MAX_BATCH_COMMANDS,
    BatchBody,
    BroadcastBody,
    ChannelBody,
    ChannelsBody,
    DisconnectBody,
    HistoryBody,
    InfoBody,
    PublishBody,
    PublishOptions,
    RefreshBody,
    SubscribeBody,
    UnsubscribeBody,
)
from syncline.api.context import AppContext
from syncline.api.server_models import MAX_CHANNEL_LENGTH
from syncline.apps.inputs import describe
from syncline.core.codes import DisconnectCode, check_close_reason
from syncline.core.control import (
    ControlCommand,
    DisconnectUser,
    RefreshUser,
    SubscribeUser,
    UnsubscribeUser,
)
from syncline.core.log import ClientInfo, LogError, StreamPosition
from syncline.core.namespaces import Deny, Namespace
from syncline.logs import get_logger

log = get_logger(__name__)

# Centrifugo's server API error codes (internal/apiproto/errors.go), with their messages.
INTERNAL = 100
UNKNOWN_CHANNEL = 102
NOT_FOUND = 104
BAD_REQUEST = 107
NOT_AVAILABLE = 108
UNRECOVERABLE_POSITION = 112
MESSAGES = {
    INTERNAL: "internal server error",
    UNKNOWN_CHANNEL: "unknown channel",
    NOT_FOUND: "not found",
    BAD_REQUEST: "bad request",
    NOT_AVAILABLE: "not available",
    UNRECOVERABLE_POSITION: "unrecoverable position",
}
# Centrifugo's bound on a parallel batch's concurrency (batchRequestMaxConcurrency).
BATCH_MAX_CONCURRENCY = 1024

_PUBLISH = "SELECT syncline.publish(%s, %s::jsonb)"
# What syncline.publish() raises for bad input (limits): the caller's mistake, a 107.
_INPUT_ERRORS = (psycopg.errors.InvalidParameterValue, psycopg.errors.ProgramLimitExceeded)
# Pydantic error types that Go's JSON decoder would also fail on (a string where a number
# goes…): the whole request is then a 400, as Centrifugo's unmarshal error is.
_TYPE_ERROR_SUFFIXES = ("_type", "_parsing")


class MethodError(Exception):
    """A method's error reply: ``{"error": {"code": …, "message": …}}`` with HTTP 200."""

    def __init__(self, code: int, detail: str = "") -> None:
        message = MESSAGES.get(code, "error")
        super().__init__(f"{message}: {detail}" if detail else message)
        self.code = code
        self.message = str(self)

    def reply(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


class BadBody(Exception):
    """A body Go's decoder could not read: Centrifugo answers HTTP 400, so does Syncline."""


M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def parse(model: type[M], params: object) -> M:
    """Validate ``params``; a wrong type is a ``BadBody``, a wrong value a 107."""
    try:
        return model.model_validate(params)
    except ValidationError as err:
        errors = err.errors(include_url=False)
        detail = "; ".join(describe(e) for e in errors[:3])
        if any(str(e["type"]).endswith(_TYPE_ERROR_SUFFIXES) for e in errors):
            raise BadBody(detail) from None
        raise MethodError(BAD_REQUEST, detail) from None


def _running(part: T | None, what: str) -> T:
    if part is None:
        raise MethodError(INTERNAL, f"{what} is not running in this process")
    return part


def _namespace(context: AppContext, channel: str) -> Namespace:
    """The channel's namespace; 107 for a malformed name, 102 for one no namespace serves."""
    if not channel:
        raise MethodError(BAD_REQUEST, "channel is required")
    if len(channel) > MAX_CHANNEL_LENGTH or any(c.isspace() for c in channel):
        raise MethodError(
            BAD_REQUEST, f"a channel is 1-{MAX_CHANNEL_LENGTH} characters without whitespace"
        )
    namespace = _running(context.namespaces, "the gateway").resolve(channel)
    if isinstance(namespace, Deny):
        raise MethodError(UNKNOWN_CHANNEL)
    return namespace


def _has_history(namespace: Namespace) -> None:
    # Centrifugo: history needs both history_size and history_ttl, else "not available".
    if namespace.history_size <= 0 or namespace.history_ttl <= 0:
        raise MethodError(NOT_AVAILABLE, "the channel's namespace keeps no history")


def _has_presence(namespace: Namespace) -> None:
    if not namespace.presence:
        raise MethodError(NOT_AVAILABLE, "the channel's namespace has no presence")


def _unsupported(body: BaseModel, *names: str) -> None:
    """Refuse fields Syncline knows but cannot honour, rather than drop them silently."""
    for name in names:
        if name in body.model_fields_set and getattr(body, name) not in (None, "", False, 0, {}):
            raise MethodError(BAD_REQUEST, f"{name} is not supported by Syncline")


def _json_text(value: Any) -> str:
    return "" if value is None else orjson.dumps(value).decode()


def _check_publish_options(body: PublishOptions) -> None:
    _unsupported(body, "b64data", "skip_history", "tags", "idempotency_key", "delta", "version")
    if "data" not in body.model_fields_set:
        raise MethodError(BAD_REQUEST, "data is required")


async def _publish_all(context: AppContext, channels: list[str], data: Any) -> None:
    """Publish in one transaction through syncline.publish(): after commit, ordered, durable."""
    text = orjson.dumps(data).decode()
    try:
        async with context.pool.connection() as conn, conn.transaction():
            for channel in channels:
                await conn.execute(_PUBLISH, (channel, text))
    except _INPUT_ERRORS as err:
        raise MethodError(BAD_REQUEST, err.diag.message_primary or str(err)) from None
    except psycopg.OperationalError as err:
        log.warning("server API publish failed", error=str(err).strip())
        raise MethodError(INTERNAL, "the database is unavailable") from None


async def _command(context: AppContext, command: ControlCommand) -> None:
    """To every node's gateway over the control bus; 100 when the bus cannot take it."""
    try:
        await _running(context.control, "the control bus").publish(command)
    except ConnectionError as err:
        raise MethodError(INTERNAL, f"the control bus is unavailable: {err}") from None


def _client_info(info: ClientInfo) -> dict[str, Any]:
    # Go: user and client always, conn_info and chan_info only when set.
    out: dict[str, Any] = {"user": info.user, "client": info.client}
    if info.conn_info:
        out["conn_info"] = orjson.Fragment(info.conn_info)
    if info.chan_info:
        out["chan_info"] = orjson.Fragment(info.chan_info)
    return out


# -- the methods ---------------------------------------------------------------------------


async def publish(context: AppContext, params: object) -> dict[str, Any]:
    body = parse(PublishBody, params)
    _check_publish_options(body)
    _namespace(context, body.channel)
    await _publish_all(context, [body.channel], body.data)
    # Centrifugo returns the offset and epoch the broker gave; Syncline's publication takes
    # its offset when its transaction is captured, after this reply: both are left out, as Go
    # leaves them out for a channel without history (omitempty).
    return {}


async def broadcast(context: AppContext, params: object) -> dict[str, Any]:
    body = parse(BroadcastBody, params)
    _check_publish_options(body)
    if not body.channels:
        raise MethodError(BAD_REQUEST, "channels are required")
    # Each channel is answered on its own, as Centrifugo does; those that pass are published
    # together, in one transaction.
    replies: list[dict[str, Any]] = []
    good: list[str] = []
    for channel in body.channels:
        try:
            _namespace(context, channel)
        except MethodError as err:
            replies.append({"error": err.reply()})
        else:
            replies.append({"result": {}})
            good.append(channel)
    if good:
        try:
            await _publish_all(context, good, body.data)
        except MethodError as err:
            replies = [{"error": err.reply()} if "result" in r else r for r in replies]
    return {"responses": replies}


async def subscribe(context: AppContext, params: object) -> dict[str, Any]:
    body = parse(SubscribeBody, params)
    _unsupported(body, "b64info", "b64data", "session", "override")
    _namespace(context, body.channel)
    since = body.recover_since
    if since is not None and not since.epoch:
        raise MethodError(BAD_REQUEST, "recover_since needs the epoch")
    await _command(
        context,
        SubscribeUser(
            body.user,
            body.channel,
            body.client,
            _json_text(body.info),
            _json_text(body.data),
            body.expire_at,
            since.offset if since else 0,
            since.epoch if since else "",
        ),
    )
    return {}


async def unsubscribe(context: AppContext, params: object) -> dict[str, Any]:
    body = parse(UnsubscribeBody, params)
    _unsupported(body, "session")
    if body.channel:  # none: every channel of the user, as in Centrifugo
        _namespace(context, body.channel)
    await _command(context, UnsubscribeUser(body.user, body.channel, body.client))
    return {}


async def disconnect(context: AppContext, params: object) -> dict[str, Any]:
    body = parse(DisconnectBody, params)
    _unsupported(body, "session", "whitelist")
    code, reason = int(DisconnectCode.FORCE_DISCONNECT), ""
    if body.disconnect is not None:
        code, reason = body.disconnect.code, body.disconnect.reason
        # The code goes into a WebSocket close frame: 3000-4999 are the application's.
        if not 3000 <= code <= 4999:
            raise MethodError(BAD_REQUEST, "disconnect.code must be in 3000-4999")
        if reason:
            try:
                check_close_reason(reason)
            except ValueError as err:
                raise MethodError(BAD_REQUEST, f"disconnect.reason: {err}") from None
    await _command(context, DisconnectUser(body.user, code, reason, body.client))
    return {}


async def refresh(context: AppContext, params: object) -> dict[str, Any]:
    body = parse(RefreshBody, params)
    _unsupported(body, "session")
    await _command(
        context,
        RefreshUser(body.user, body.client, body.expired, body.expire_at, _json_text(body.info)),
    )
    return {}


async def presence(context: AppContext, params: object) -> dict[str, Any]:
    body = parse(ChannelBody, params)
    _has_presence(_namespace(context, body.channel))
    try:
        clients = await _running(context.presence, "presence").clients(body.channel)
    except ConnectionError as err:
        raise MethodError(INTERNAL, f"presence is unavailable: {err}") from None
    return {"presence": {cid: _client_info(info) for cid, info in clients.items()}}


async def presence_stats(context: AppContext, params: object) -> dict[str, Any]:
    body = parse(ChannelBody, params)
    _has_presence(_namespace(context, body.channel))
    try:
        clients, users = await _running(context.presence, "presence").stats(body.channel)
    except ConnectionError as err:
        raise MethodError(INTERNAL, f"presence is unavailable: {err}") from None
    return {"num_clients": clients, "num_users": users}


async def history(context: AppContext, params: object) -> dict[str, Any]:
    body = parse(HistoryBody, params)
    _has_history(_namespace(context, body.channel))
    since = StreamPosition(body.since.offset, body.since.epoch) if body.since else None
    engine = _running(context.engine, "the channel log")
    try:
        page = await engine.history(body.channel, body.limit, since, body.reverse)
    except LogError as err:
        code = UNRECOVERABLE_POSITION if err.code == UNRECOVERABLE_POSITION else BAD_REQUEST
        raise MethodError(code) from None
    except ConnectionError as err:
        raise MethodError(INTERNAL, f"the channel log is unavailable: {err}") from None
    publications = []
    for pub in page.publications:
        item: dict[str, Any] = {"data": orjson.Fragment(pub.data)}
        if pub.info is not None:
            item["info"] = _client_info(pub.info)
        if pub.offset:
            item["offset"] = pub.offset
        publications.append(item)
    # No omitempty on these three in Centrifugo's HistoryResult: always present.
    return {
        "publications": publications,
        "epoch": page.position.epoch,
        "offset": page.position.offset,
    }


async def history_remove(context: AppContext, params: object) -> dict[str, Any]:
    body = parse(ChannelBody, params)
    _has_history(_namespace(context, body.channel))
    try:
        await _running(context.engine, "the channel log").remove_history(body.channel)
    except ConnectionError as err:
        raise MethodError(INTERNAL, f"the channel log is unavailable: {err}") from None
    return {}


async def channels(context: AppContext, params: object) -> dict[str, Any]:
    body = parse(ChannelsBody, params)
    try:
        counts = await _running(context.nodes, "the node directory").channels()
    except ConnectionError as err:
        raise MethodError(INTERNAL, f"the node directory is unavailable: {err}") from None
    # ChannelInfo.num_clients is omitempty in Go.
    return {
        "channels": {
            name: ({"num_clients": count} if count else {})
            for name, count in counts.items()
            if not body.pattern or fnmatch.fnmatchcase(name, body.pattern)
        }
    }


async def info(context: AppContext, params: object) -> dict[str, Any]:
    parse(InfoBody, params)
    try:
        nodes = await _running(context.nodes, "the node directory").nodes()
    except ConnectionError as err:
        raise MethodError(INTERNAL, f"the node directory is unavailable: {err}") from None
    # NodeResult: uptime, metrics and process are omitempty, the counts are not.
    return {"nodes": [{k: v for k, v in n.items() if k != "uptime" or v} for n in nodes]}


Method = Callable[[AppContext, object], Awaitable[dict[str, Any]]]

# In the order Centrifugo's batch looks for a command's method (api.go, processCmd).
METHODS: dict[str, Method] = {
    "publish": publish,
    "broadcast": broadcast,
    "subscribe": subscribe,
    "unsubscribe": unsubscribe,
    "disconnect": disconnect,
    "history": history,
    "history_remove": history_remove,
    "presence": presence,
    "presence_stats": presence_stats,
    "info": info,
    "refresh": refresh,
    "channels": channels,
}


async def run_command(context: AppContext, command: dict[str, Any] | None) -> dict[str, Any]:
    """One batch command ``{"<method>": {params}}`` → its reply ``{"<method>": result}`` or
    ``{"error": …}``; a command no method of which is known is a 104, as in Centrifugo."""
    if command is None:
        return {"error": MethodError(BAD_REQUEST, "a command is an object").reply()}
    for name, method in METHODS.items():
        if name in command:
            try:
                return {name: await method(context, command[name])}
            except BadBody as err:
                return {"error": MethodError(BAD_REQUEST, str(err)).reply()}
            except MethodError as err:
                return {"error": err.reply()}
    return {"error": MethodError(NOT_FOUND).reply()}


async def batch(context: AppContext, params: object) -> dict[str, Any]:
    """Commands in order (or concurrently with ``parallel``), replies in the commands' order."""
    body = parse(BatchBody, params)
    if not body.parallel:
        return {"replies": [await run_command(context, command) for command in body.commands]}
    limit = asyncio.Semaphore(BATCH_MAX_CONCURRENCY)

    async def bounded(command: dict[str, Any] | None) -> dict[str, Any]:
        async with limit:
            return await run_command(context, command)

    return {"replies": list(await asyncio.gather(*(bounded(c) for c in body.commands)))}


# -- the single-endpoint API of Centrifugo before v5, which v6 still serves ----------------

# Command.MethodType of that API (internal/api/handler_legacy.go): the number or the name.
LEGACY_METHODS = {
    0: "publish",
    1: "broadcast",
    2: "unsubscribe",
    3: "disconnect",
    4: "presence",
    5: "presence_stats",
    6: "history",
    7: "history_remove",
    8: "channels",
    9: "info",
    11: "subscribe",
    12: "refresh",
}
_LEGACY_NAMES = {name.upper(): number for number, name in LEGACY_METHODS.items()}
# The names of that API's other methods (rpc, connections, user status…): known, not served.
_LEGACY_OTHER = {"RPC": 10, "CONNECTIONS": 14}
_MAX_UINT32 = 2**32 - 1


def _legacy_commands(text: str) -> list[dict[str, Any]]:
    """The JSON objects of a body, one after the other (Go's json.Decoder over the stream)."""
    decoder = json.JSONDecoder()
    commands: list[dict[str, Any]] = []
    at, end = 0, len(text)
    while True:
        while at < end and text[at] in " \t\r\n":
            at += 1
        if at == end:
            return commands
        try:
            command, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError as err:
            raise BadBody(f"command {len(commands) + 1} is not JSON: {err}") from None
        if not isinstance(command, dict):
            raise BadBody(f"command {len(commands) + 1} is not a JSON object")
        if len(commands) >= MAX_BATCH_COMMANDS:
            raise BadBody(f"at most {MAX_BATCH_COMMANDS} commands in one request")
        commands.append(command)


def _legacy_method(command: dict[str, Any]) -> int:
    method = command.get("method", 0)  # Go's zero value: PUBLISH
    if isinstance(method, str):
        number = _LEGACY_NAMES.get(method.upper(), _LEGACY_OTHER.get(method.upper()))
        if number is None:
            raise BadBody(f"unknown method {method!r}")
        return number
    if isinstance(method, int) and not isinstance(method, bool) and 0 <= method <= _MAX_UINT32:
        return method
    raise BadBody("method must be a method name or number")


async def run_legacy(context: AppContext, text: str) -> list[dict[str, Any]]:
    """Each ``{"id", "method", "params"}`` of the body, in order → ``{"id", "result"}`` or
    ``{"id", "error"}`` (``id`` left out when 0, as Go's omitempty does)."""
    commands = _legacy_commands(text)
    parsed = []
    for command in commands:
        command_id = command.get("id", 0)
        if (
            not isinstance(command_id, int)
            or isinstance(command_id, bool)
            or not 0 <= command_id <= _MAX_UINT32
        ):
            raise BadBody("id must be an integer in 0-4294967295")
        parsed.append((command_id, _legacy_method(command), command.get("params")))
    replies: list[dict[str, Any]] = []
    for command_id, number, params in parsed:
        reply: dict[str, Any] = {"id": command_id} if command_id else {}
        name = LEGACY_METHODS.get(number)
        try:
            if name is None:
                raise MethodError(NOT_FOUND)
            if name == "info" and params is None:
                params = {}  # Centrifugo's legacy info reads no params
            reply["result"] = await METHODS[name](context, params)
        except BadBody as err:
            reply["error"] = MethodError(BAD_REQUEST, str(err)).reply()
        except MethodError as err:
            reply["error"] = err.reply()
        replies.append(reply)
    return replies
