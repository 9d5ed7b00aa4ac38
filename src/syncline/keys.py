"""Secrets Syncline needs: the JWT signing key, generated in embedded mode, required otherwise."""

from __future__ import annotations

import os
import secrets
import warnings
from pathlib import Path

from jwt.warnings import InsecureKeyLengthWarning

from syncline.errors import ConfigError
from syncline.settings import MIN_SECRET_BYTES, Settings

JWT_KEY_FILE = "jwt.key"
API_KEY_FILE = "api.key"


def jwt_secret(settings: Settings) -> str:
    """The configured key; in embedded mode the one kept in the data dir, made on first start."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    if not settings.embedded:
        raise ConfigError(
            "SYNCLINE_JWT_SECRET is required when DATABASE_URL is set "
            f"(at least {MIN_SECRET_BYTES} bytes, e.g. `openssl rand -base64 48`)"
        )
    return _load_or_create(settings.data_dir / JWT_KEY_FILE)


def _load_or_create(path: Path) -> str:
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise ConfigError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
        key = path.read_text().strip()
        if len(key.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(f"{path} holds a key shorter than {MIN_SECRET_BYTES} bytes")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def api_key(settings: Settings) -> str | None:
    """The server API key: configured, or in embedded mode kept in the data dir; else off."""
    if settings.api_key is not None:
        return settings.api_key.get_secret_value()
    if not settings.embedded:
        return None
    return _load_or_create(settings.data_dir / API_KEY_FILE)


def allow_short_keys() -> None:
    """The development mode ``insecure_short_keys``: PyJWT's warning on every token signed or
    verified with a short key would bury the logs; the start-up warning said it once."""
    warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)
