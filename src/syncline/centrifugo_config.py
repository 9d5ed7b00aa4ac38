"""A Centrifugo config file (v5 or v6 layout, JSON or TOML) read as Syncline settings.

What carries over: the channel namespaces (with the default namespace's options), the HMAC
token key, the server API key, anonymous connections without a token and the personal channel.
Each becomes the Syncline setting of the same meaning, unless that setting is given in
syncline.toml or the environment. The namespace options are translated, or refused, by
core/centrifugo_options.py; docs/topics/centrifugo-config.md has the table.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from syncline.core.centrifugo_options import CENTRIFUGO_ONLY
from syncline.core.namespaces import DEFAULT_NAMESPACE_KEY, USER_BOUNDARY, Namespace
from syncline.errors import ConfigError

# Every name a Centrifugo channel option may have (v5 puts the default namespace's at the top
# level, among the other settings).
CHANNEL_OPTION_NAMES = frozenset(CENTRIFUGO_ONLY | set(Namespace.model_fields) - {"name"})


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read the Centrifugo config {path}: {err.strerror}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        kind = "TOML" if path.suffix == ".toml" else "JSON"
        raise ConfigError(f"the Centrifugo config {path} is not valid {kind}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"the Centrifugo config {path} is not an object")
    return data


def _table(data: Mapping[str, Any], *path: str) -> Mapping[str, Any]:
    for key in path:
        value = data.get(key)
        if not isinstance(value, Mapping):
            return {}
        data = value
    return data


def centrifugo_settings(path: Path) -> dict[str, Any]:
    """Syncline settings from a Centrifugo config: namespaces, jwt_secret, api_key,
    allow_anonymous, personal_channel (only those the file says something about)."""
    data = _read(path)
    v6 = "channel" in data or "client" in data or "http_api" in data
    out: dict[str, Any] = {}
    if v6:
        channel, client = _table(data, "channel"), _table(data, "client")
        namespaces = channel.get("namespaces") or []
        default = dict(_table(channel, "without_namespace"))
        key = _table(client, "token").get("hmac_secret_key")
        api_key = _table(data, "http_api").get("key")
        anonymous = client.get("allow_anonymous_connect_without_token")
        personal = _table(client, "subscribe_to_user_personal_channel")
        personal_on, personal_ns = (
            personal.get("enabled"),
            personal.get("personal_channel_namespace"),
        )
    else:
        namespaces = data.get("namespaces") or []
        default = {k: v for k, v in data.items() if k in CHANNEL_OPTION_NAMES}
        key, api_key = data.get("token_hmac_secret_key"), data.get("api_key")
        anonymous = data.get("allow_anonymous_connect_without_token")
        personal_on = data.get("user_subscribe_to_personal")
        personal_ns = data.get("user_personal_channel_namespace")
    if not isinstance(namespaces, list):
        raise ConfigError(f"the Centrifugo config {path}: namespaces must be a list")
    if default:
        namespaces = [*namespaces, {"name": DEFAULT_NAMESPACE_KEY, **default}]
    if namespaces:
        out["namespaces"] = namespaces
    if key:
        out["jwt_secret"] = key
    if api_key:
        out["api_key"] = api_key
    if anonymous is not None:
        out["allow_anonymous"] = anonymous
    if personal_on:
        prefix = f"{personal_ns}:" if personal_ns else ""
        out["personal_channel"] = f"{prefix}{USER_BOUNDARY}{{sub}}"
    return out
