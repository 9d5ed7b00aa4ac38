"""`syncline tail`: a channel's publications on a running Syncline, live."""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import jwt
import typer
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
from rich.markup import escape

from syncline.cli.base import ConfigOption, err, guarded, out, settings_for
from syncline.core import wire
from syncline.core.protocol import Method
from syncline.errors import SynclineError
from syncline.keys import JWT_KEY_FILE, jwt_secret
from syncline.settings import Settings


class _Listener(WSListener):
    """Hands every text frame (or None on disconnect) to a queue."""

    def __init__(self, queue: asyncio.Queue[str | None]) -> None:
        super().__init__()
        self.queue = queue

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            self.queue.put_nowait(frame.get_payload_as_utf8_text())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.queue.put_nowait(None)


def _websocket_url(host: str, port: int) -> str:
    if host in ("0.0.0.0", "::", ""):  # noqa: S104  (a listen address, not one to connect to)
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    info_url = f"http://{host}:{port}/api/info"
    try:
        with urllib.request.urlopen(info_url, timeout=5) as response:
            ws_url = json.loads(response.read())["websocket_url"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        raise SynclineError(f"cannot reach Syncline at {info_url}: {reason}") from None
    if not isinstance(ws_url, str) or not ws_url.startswith(("ws://", "wss://")):
        raise SynclineError(f"{info_url} gave no WebSocket URL")
    return ws_url


def _tail_secret(settings: Settings) -> str:
    key_file = settings.data_dir / JWT_KEY_FILE
    if settings.jwt_secret is None and settings.embedded and not key_file.exists():
        raise SynclineError(
            f"no JWT key in {settings.data_dir}: run tail in the directory of `syncline up`,"
            " or set SYNCLINE_JWT_SECRET"
        )
    return jwt_secret(settings)


def _summary(data: Mapping[str, Any]) -> str:
    row = data.get("row") or data.get("old") or {}
    if not isinstance(row, Mapping):
        return json.dumps(row)
    text = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in row.items())
    return text if len(text) <= 160 else text[:159] + "…"


def when(data: Mapping[str, Any]) -> str:
    """A row change's commit time, else now, to the millisecond (UTC, as the server stamps)."""
    text = data.get("commit_time")
    moment = None
    if isinstance(text, str):
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            moment = None
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _print_publication(channel: str, pub: Mapping[str, Any], as_json: bool) -> None:
    data = pub.get("data")
    if as_json:
        line = {"channel": channel, "offset": pub.get("offset", 0), "data": data}
        sys.stdout.write(json.dumps(line, default=str) + "\n")
        sys.stdout.flush()
        return
    if isinstance(data, Mapping) and "op" in data:
        table = str(data.get("table", ""))
        text = f"{when(data)}  {data['op']:<8} {table}  {_summary(data)}"
    else:
        text = f"{when({})}  message  {json.dumps(data, default=str)}"
    out.print(escape(text))


@dataclass
class _Tail:
    """One tail session: connect (the channel may come with it, server-side), else subscribe."""

    channel: str
    table: str | None
    as_json: bool
    user: str
    secret: str
    subscribed: bool = field(default=False)

    def wanted(self, data: object) -> bool:
        if self.table is None:
            return True
        if not isinstance(data, Mapping):
            return False
        name = str(data.get("table", ""))
        return self.table in (name, f"public.{name}", name.removeprefix("public."))

    def commands(self) -> bytes:
        """The connect command, as the user tail connects as."""
        token = jwt.encode({"sub": self.user}, self.secret, algorithm="HS256")
        connect = {"token": token, "name": "syncline-tail"}
        return wire.dumps({"id": 1, Method.CONNECT.value: connect})

    def _subscribe(self, transport: WSTransport) -> None:
        # A subscription token signed with the server's key: tail is the operator's, who holds
        # that key and so may read any channel (personal and membership ones included).
        claims = {"sub": self.user, "channel": self.channel}
        token = jwt.encode(claims, self.secret, algorithm="HS256")
        command = {"id": 2, Method.SUBSCRIBE.value: {"channel": self.channel, "token": token}}
        transport.send(WSMsgType.TEXT, wire.dumps(command))

    def _started(self, result: Mapping[str, Any], how: str) -> None:
        self.subscribed = True
        err.print(f"tailing {escape(self.channel)}{how} (Ctrl+C to stop)")
        for pub in result.get("publications", []):
            if self.wanted(pub.get("data")):
                _print_publication(self.channel, pub, self.as_json)

    def handle(self, obj: Mapping[str, Any], transport: WSTransport) -> None:
        if not obj:  # a ping
            transport.send(WSMsgType.TEXT, wire.PING)
            return
        if "error" in obj:
            error = obj["error"]
            what = "connect" if obj.get("id") == 1 else f"subscribe to {self.channel}"
            raise SynclineError(f"{what} refused: {error.get('message', error)}")
        if obj.get("id") == 1:
            # The server subscribes a connection to some channels itself (the user's personal
            # one): subscribing again would be refused as "already subscribed".
            server_side = obj.get(Method.CONNECT.value, {}).get("subs", {})
            if self.channel in server_side:
                how = f" (server-side subscription of user {self.user})"
                self._started(server_side[self.channel], escape(how))
            else:
                self._subscribe(transport)
            return
        if obj.get("id") == 2:
            self._started(obj.get(Method.SUBSCRIBE.value, {}), "")
            return
        push = obj.get("push")
        if not isinstance(push, Mapping):
            return
        if "disconnect" in push:
            reason = push["disconnect"].get("reason", "")
            raise SynclineError(f"disconnected by the server: {reason}")
        if "unsubscribe" in push and push.get("channel") == self.channel:
            reason = push["unsubscribe"].get("reason", "")
            raise SynclineError(f"unsubscribed from {self.channel} by the server: {reason}")
        pub = push.get("pub")
        channel = push.get("channel")
        if isinstance(pub, Mapping) and channel == self.channel and self.wanted(pub.get("data")):
            _print_publication(self.channel, pub, self.as_json)


async def _run_tail(ws_url: str, tail: _Tail) -> None:
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    try:
        transport, _ = await ws_connect(lambda: _Listener(queue), ws_url)
    except (TimeoutError, OSError, RuntimeError) as error:
        raise SynclineError(f"cannot connect to {ws_url}: {error}") from None
    try:
        transport.send(WSMsgType.TEXT, tail.commands())
        while (frame := await queue.get()) is not None:
            for line in frame.split("\n"):
                if line.strip():
                    tail.handle(json.loads(line), transport)
        raise SynclineError("the server closed the connection")
    finally:
        transport.disconnect()


@dataclass
class _TailArgs:
    channel: str
    table: str | None
    as_json: bool
    user: str
    host: str | None
    port: int | None
    config: Path | None


def _tail(args: _TailArgs) -> None:
    settings = settings_for(args.config, quiet=True, host=args.host, port=args.port)
    secret = _tail_secret(settings)
    ws_url = _websocket_url(settings.host, settings.port)
    tail = _Tail(args.channel, args.table, args.as_json, args.user, secret)
    try:
        asyncio.run(_run_tail(ws_url, tail))
    except KeyboardInterrupt:
        return


def tail(
    channel: Annotated[str, typer.Argument(help="channel to subscribe to")] = "orders",
    table: Annotated[str | None, typer.Option(help="only changes of this table")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
    user: Annotated[
        str, typer.Option(help="connect as this user (token sub): their server-side channels too")
    ] = "syncline-tail",
    host: Annotated[str | None, typer.Option(help="Syncline's HTTP address [settings]")] = None,
    port: Annotated[int | None, typer.Option(help="Syncline's HTTP port [settings]")] = None,
    config: ConfigOption = None,
) -> None:
    """Print what is published on a channel of a running Syncline, live (any channel: tail
    signs with the server's key)."""
    guarded(lambda: _tail(_TailArgs(channel, table, as_json, user, host, port, config)))
