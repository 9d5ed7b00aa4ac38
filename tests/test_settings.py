"""Settings: precedence, validation, masking, and the JWT key rules."""

from __future__ import annotations

import stat
from pathlib import Path

import jwt
import pytest

from syncline.cli.base import settings_for
from syncline.errors import ConfigError
from syncline.keys import jwt_secret
from syncline.settings import load_settings, mask_url, masked, short_key_warnings

STRONG = "k" * 40


def test_defaults_run_embedded_on_localhost(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.chdir(tmp_path)
    settings = load_settings()
    assert settings.embedded
    assert (settings.host, settings.port, settings.capture) == ("127.0.0.1", 8000, "auto")


def test_environment_beats_file_and_cli_beats_environment(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "syncline.toml"
    config.write_text('port = 9000\nhost = "0.0.0.0"\ncapture = "poll"\n')
    clean_env.setenv("SYNCLINE_PORT", "9100")
    settings = load_settings(config, capture="trigger")
    assert settings.port == 9100  # env over file
    assert settings.host == "0.0.0.0"  # file over default
    assert settings.capture == "trigger"  # CLI over everything


def test_database_url_is_read_from_the_standard_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DATABASE_URL", "postgresql://u:pw@db:5432/app")
    settings = load_settings()
    assert not settings.embedded
    assert masked(settings)["database_url"] == "postgresql://u:***@db:5432/app"


def test_malformed_toml_is_one_clear_error(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "syncline.toml"
    config.write_text("port = [unclosed\n")
    with pytest.raises(ConfigError, match=r"is not valid TOML"):
        load_settings(config)


def test_unknown_and_invalid_settings_are_named(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "syncline.toml"
    config.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match=r"invalid setting prot"):
        load_settings(config)
    with pytest.raises(ConfigError, match=r"invalid setting capture"):
        load_settings(None, capture="carrier-pigeon")
    with pytest.raises(ConfigError, match=r"does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_secrets_are_masked_everywhere(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SYNCLINE_JWT_SECRET", STRONG)
    clean_env.setenv("SYNCLINE_API_KEY", STRONG)
    data = masked(load_settings())
    assert STRONG not in str(data)
    assert data["jwt_secret"] == "********"


def test_short_secrets_are_refused(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SYNCLINE_JWT_SECRET", "short")
    with pytest.raises(ConfigError, match=r"jwt_secret.*at least 32 bytes"):
        load_settings()


def test_embedded_mode_generates_a_private_key_once(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = load_settings(None, data_dir=tmp_path / "data")
    first = jwt_secret(settings)
    key_file = tmp_path / "data" / "jwt.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert jwt_secret(settings) == first


def test_a_world_readable_key_file_is_refused(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = load_settings(None, data_dir=tmp_path)
    jwt_secret(settings)
    (tmp_path / "jwt.key").chmod(0o644)
    with pytest.raises(ConfigError, match=r"readable by others"):
        jwt_secret(settings)


def test_external_database_requires_a_configured_key(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DATABASE_URL", "postgresql://u@db/app")
    with pytest.raises(ConfigError, match=r"SYNCLINE_JWT_SECRET is required"):
        jwt_secret(load_settings())


def test_mask_url_leaves_passwordless_urls_alone() -> None:
    assert mask_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert mask_url("postgresql://u:p%40ss@h:1/db") == "postgresql://u:***@h:1/db"


def test_a_short_key_is_accepted_only_in_the_development_mode(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("SYNCLINE_JWT_SECRET", "secret")
    clean_env.setenv("SYNCLINE_API_KEY", "key")
    with pytest.raises(ConfigError, match=r"jwt_secret.*insecure_short_keys = true") as refused:
        load_settings()
    assert "\n" not in str(refused.value)
    clean_env.setenv("SYNCLINE_INSECURE_SHORT_KEYS", "true")
    settings = load_settings()
    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == "secret"
    warned = short_key_warnings(settings, {"jwt_secret": "secret", "api_key": "key", "x": None})
    assert warned[0].startswith("INSECURE: insecure_short_keys = true is for development only")
    assert warned[1:] == [
        "INSECURE: jwt_secret is 6 bytes (at least 32 outside development)",
        "INSECURE: api_key is 3 bytes (at least 32 outside development)",
    ]


def test_an_empty_key_is_refused_even_in_the_development_mode(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("SYNCLINE_INSECURE_SHORT_KEYS", "true")
    clean_env.setenv("SYNCLINE_API_KEY", "")
    with pytest.raises(ConfigError, match=r"api_key: .*must not be empty"):
        load_settings()


def test_long_keys_bring_no_warning(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings(None, jwt_secret=STRONG)
    assert short_key_warnings(settings, {"jwt_secret": STRONG}) == []


def test_the_development_mode_quiets_pyjwts_warning_for_cli_commands(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("SYNCLINE_JWT_SECRET", "secret")
    clean_env.setenv("SYNCLINE_INSECURE_SHORT_KEYS", "true")
    settings_for(None, quiet=True)
    # Warnings are errors here: signing as `syncline tail` does must not warn on every token.
    token = jwt.encode({"sub": "1"}, "secret", algorithm="HS256")
    assert jwt.decode(token, "secret", algorithms=["HS256"]) == {"sub": "1"}
