"""A Centrifugo config file (v5 and v6 layouts) read as Syncline settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from syncline.core.namespaces import SubscribePolicy
from syncline.errors import ConfigError
from syncline.settings import load_settings
from syncline.sync_config import build_sync_config

# Centrifugo v6's layout, as `centrifugo genconfig` writes it, with a test setup's short keys.
V6 = {
    "client": {
        "token": {"hmac_secret_key": "secret"},
        "allowed_origins": ["http://localhost:3000"],
        "allow_anonymous_connect_without_token": True,
        "subscribe_to_user_personal_channel": {
            "enabled": True,
            "personal_channel_namespace": "personal",
        },
    },
    "http_api": {"key": "api-key"},
    "channel": {
        "without_namespace": {"history_size": 0, "presence": False},
        "namespaces": [
            {
                "name": "chat",
                "history_size": 50,
                "history_ttl": "300s",
                "force_recovery": True,
                "allow_subscribe_for_client": True,
                "allow_history_for_subscriber": True,
            },
            {"name": "personal", "allow_user_limited_channels": True},
        ],
    },
}

# Centrifugo v5's: everything at the top level, the default namespace's options included.
V5 = {
    "token_hmac_secret_key": "k" * 40,
    "api_key": "a" * 40,
    "presence": True,
    "allow_subscribe_for_client": True,
    "allow_presence_for_subscriber": True,
    "allowed_origins": ["*"],
    "namespaces": [
        {
            "name": "news",
            "allow_subscribe_for_client": True,
            "history_size": 10,
            "history_ttl": "1m",
            "force_recovery": True,
        }
    ],
}


def write(tmp_path: Path, data: dict[str, Any], name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_a_v6_config_gives_namespaces_keys_and_the_personal_channel(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("SYNCLINE_INSECURE_SHORT_KEYS", "true")
    settings = load_settings(None, centrifugo_config=write(tmp_path, V6))
    assert settings.jwt_secret is not None and settings.jwt_secret.get_secret_value() == "secret"
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "api-key"
    assert settings.allow_anonymous is True
    assert settings.personal_channel == "personal:#{sub}"
    registry = build_sync_config(settings).registry
    chat, personal, default = registry.get("chat"), registry.get("personal"), registry.get("")
    assert chat is not None and (chat.history_ttl, chat.recover) == (300, True)
    assert chat.subscribe is SubscribePolicy.AUTHENTICATED
    assert personal is not None and personal.subscribe is SubscribePolicy.TOKEN
    assert personal.allow_user_limited_channels
    # without_namespace: Centrifugo's defaults (token only) for channels without ':'.
    assert default is not None and default.subscribe is SubscribePolicy.TOKEN


def test_a_v5_config_and_its_top_level_channel_options(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = load_settings(None, centrifugo_config=write(tmp_path, V5))
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "a" * 40
    assert settings.personal_channel == "user:{sub}"  # Centrifugo's is off: Syncline's stays
    registry = build_sync_config(settings).registry
    default, news = registry.get(""), registry.get("news")
    assert default is not None and default.presence and default.allow_presence
    assert news is not None and news.history_ttl == 60


def test_syncline_settings_win_over_the_centrifugo_config(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("SYNCLINE_API_KEY", "e" * 40)
    (tmp_path / "syncline.toml").write_text(
        f'centrifugo_config = "{write(tmp_path, V5)}"\nallow_anonymous = false\n'
    )
    settings = load_settings(tmp_path / "syncline.toml")
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "e" * 40
    assert settings.jwt_secret is not None and settings.jwt_secret.get_secret_value() == "k" * 40


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "is not valid JSON"),
        ("[]", "is not an object"),
        (json.dumps({"namespaces": {"a": {}}}), "namespaces must be a list"),
        (json.dumps(V6), r"jwt_secret: .*insecure_short_keys = true"),
    ],
)
def test_a_bad_centrifugo_config_is_one_clear_error(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(None, centrifugo_config=path)
    assert "\n" not in str(info.value)


def test_namespaces_come_from_one_place(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="namespaces come from one place"):
        load_settings(
            None, centrifugo_config=write(tmp_path, V5), namespaces={"x": {"presence": True}}
        )
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError, match="cannot read the Centrifugo config"):
        load_settings(None, centrifugo_config=missing)


def test_a_toml_centrifugo_config(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[http_api]\nkey = "' + "t" * 40 + '"\n[[channel.namespaces]]\nname = "a"\n')
    settings = load_settings(None, centrifugo_config=path)
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "t" * 40
    assert settings.namespaces == [{"name": "a"}]
