"""CLI over the server API: `syncline publish CHANNEL JSON` and `syncline channels [PATTERN]`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from syncline.cli.base import ConfigOption, JsonOption, guarded, out, settings_for
from syncline.errors import SynclineError
from syncline.keys import api_key
from syncline.server_api import ServerAPI, ServerAPIError
from syncline.tables import print_table

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Syncline's HTTP URL [http://HOST:PORT from settings]"),
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="SYNCLINE_API_KEY",
        help="server API key [settings, or the data dir's api.key]",
        show_default=False,
    ),
]
DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="where an embedded Syncline keeps api.key")
]


def _client(
    config: Path | None, url: str | None, key: str | None, data_dir: Path | None
) -> ServerAPI:
    overrides: dict[str, Any] = {"data_dir": data_dir} if data_dir else {}
    settings = settings_for(config, quiet=True, **overrides)
    if not key:
        key = api_key(settings)
    if not key:
        raise SynclineError(
            "no server API key: set SYNCLINE_API_KEY (the server API is off without one)"
        )
    if url is None:
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{settings.port}"
    return ServerAPI(url, key)


def _call(api: ServerAPI, method: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        with api:
            return api.call(method, body)
    except ServerAPIError as err:
        raise SynclineError(f"{method} refused: {err.message} ({err.code})") from None
    except httpx.HTTPError as err:
        raise SynclineError(f"cannot reach Syncline: {err}") from None


def publish(
    channel: Annotated[str, typer.Argument(help="channel, e.g. orders or room:1")],
    data: Annotated[str, typer.Argument(help='JSON data, e.g. \'{"text": "hi"}\'')],
    url: UrlOption = None,
    key: KeyOption = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Publish JSON to a channel through syncline.publish(): durable, ordered, after commit."""

    def body() -> None:
        try:
            value = json.loads(data)
        except json.JSONDecodeError as err:
            raise SynclineError(f"DATA is not JSON: {err.msg} at position {err.pos}") from None
        _call(_client(config, url, key, data_dir), "publish", {"channel": channel, "data": value})
        out.print(f"published to {channel}")

    guarded(body)


def channels(
    pattern: Annotated[str, typer.Argument(help="glob, e.g. 'room:*'")] = "",
    as_json: JsonOption = False,
    url: UrlOption = None,
    key: KeyOption = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Active channels (with subscribers on this node) and their client counts."""

    def body() -> None:
        request = {"pattern": pattern} if pattern else {}
        found = _call(_client(config, url, key, data_dir), "channels", request)["channels"]
        if as_json:
            out.print_json(json.dumps(found))
            return
        if not found:
            out.print("no active channels")
            return
        rows = [[name, str(found[name]["num_clients"])] for name in sorted(found)]
        print_table(None, ["channel", "clients"], rows)

    guarded(body)
