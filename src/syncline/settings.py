"""Every setting in one place: defaults, then syncline.toml, then SYNCLINE_* and DATABASE_URL."""

from __future__ import annotations

import ipaddress
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from limits import parse_many
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from syncline.errors import ConfigError

DEFAULT_CONFIG_FILE = Path("syncline.toml")
# A JWT HMAC key shorter than this is guessable offline from one captured token.
MIN_SECRET_BYTES = 32
SHORT_KEYS_HINT = "set insecure_short_keys = true to allow a short key in development"

# More processes than this on one machine is a configuration mistake, not a plan.
MAX_WORKERS = 64
CaptureMode = Literal["auto", "logical", "trigger", "poll"]
LogLevel = Literal["debug", "info", "warning", "error"]

_toml_data: ContextVar[dict[str, Any] | None] = ContextVar("syncline_toml_data", default=None)


class _TomlSource(PydanticBaseSettingsSource):
    """Feeds the already-parsed syncline.toml into the settings, below the environment."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return (_toml_data.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_toml_data.get() or {})


class Settings(BaseSettings):
    """Syncline's settings; see `syncline config` for the effective values."""

    model_config = SettingsConfigDict(
        env_prefix="SYNCLINE_", extra="forbid", populate_by_name=True, validate_default=True
    )

    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("database_url", "SYNCLINE_DATABASE_URL", "DATABASE_URL"),
        description="PostgreSQL to use; unset: start the embedded PostgreSQL",
    )
    data_dir: Path = Field(Path(".syncline"), description="embedded PostgreSQL data and keys")
    host: str = Field("127.0.0.1", description="HTTP API and UI listen address")
    port: int = Field(8000, ge=0, le=65535, description="HTTP API and UI port")
    gateway_host: str | None = Field(None, description="WebSocket gateway address (default: host)")
    gateway_port: int = Field(8001, ge=0, le=65535, description="WebSocket gateway port")
    public_ws_url: str | None = Field(
        None, description="WebSocket URL clients are told to use (behind a proxy)"
    )
    log_level: LogLevel = "info"
    # Before the keys: their validator reads it.
    insecure_short_keys: bool = Field(
        False,
        description="development only: accept a jwt_secret and api_key shorter than"
        f" {MIN_SECRET_BYTES} bytes (such as Centrifugo examples' 'secret'); warned at start",
    )
    jwt_secret: SecretStr | None = Field(
        None, description="HS256 key for access tokens; generated in embedded mode"
    )
    api_key: SecretStr | None = Field(None, description="server API key; unset: server API off")
    server_api_prefix: str = Field(
        "/api",
        max_length=64,
        pattern=r"^(/[A-Za-z0-9._~-]+)*$",
        description="where the server API answers in Centrifugo's layout (POST PREFIX/publish …);"
        " '' for the root, as Centrifugo's http_api.handler_prefix",
    )
    engine: str = Field(
        "memory",
        description="channel log, presence and control bus: 'memory' (one process) or a"
        " redis:// or rediss:// URL (shared by every process; ?cluster=true for Redis Cluster)",
    )
    workers: Annotated[int, Field(ge=1, le=MAX_WORKERS)] | Literal["auto"] = Field(
        1,
        description="processes serving HTTP and WebSocket on the same ports ('auto': one per"
        " core); more than one needs a shared engine (a private redis-server if none is set)",
    )
    node_name: str | None = Field(
        None,
        max_length=128,
        description="this node's name in the server API's info and the X-Syncline-Node"
        " header (default: the host name; workers add -w<n>)",
    )
    presence_ttl: float = Field(
        30.0,
        ge=1,
        le=3600,
        description="seconds a presence or online entry lives unless its node refreshes it:"
        " the users of a node that died leave within it",
    )
    capture: CaptureMode = "auto"
    poll_interval: float = Field(0.25, gt=0, le=60, description="poll capture interval, seconds")
    slot_name: str = Field("syncline", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    publication_name: str = Field("syncline", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    # 20, as the Node peer's pg pool: side by side at ~500 POST/s each, a pool of 20 answered
    # more than one of 10 in 6 rounds of 6, for 2-10 % less CPU a request (docs/benchmarks.md).
    db_pool_size: int = Field(20, ge=1, le=200)
    shutdown_timeout: float = Field(10.0, gt=0, le=300, description="seconds to drain on stop")
    cors_origins: list[str] = Field(default_factory=list)
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For"
        " is believed; none by default, so no local process can pose as another client",
    )
    allow_anonymous: bool = Field(False, description="accept connections without a token")
    personal_channel: str = Field(
        "user:{sub}", description="server-side subscription of every connection ('' for none)"
    )
    ping_interval: int = Field(25, ge=1, le=3600, description="server ping every N seconds")
    pong_timeout: int = Field(10, ge=1, le=3600, description="close if no pong within N seconds")
    connect_timeout: float = Field(10.0, gt=0, le=600, description="seconds to send connect")
    max_frame_size: int = Field(65536, ge=1024, le=16 * 1024 * 1024)
    websocket_compression: bool = Field(
        False,
        description="negotiate permessage-deflate with clients that offer it"
        " (RFC 7692; see docs/topics/compression.md)",
    )
    websocket_compression_context: bool = Field(
        False,
        description="with websocket_compression: a compressor per connection (context"
        " takeover), ~4x fewer bytes for small publications, 12 KiB and ~4 µs per delivery more",
    )
    max_commands_per_frame: int = Field(128, ge=1, le=10_000)
    max_subscriptions: int = Field(256, ge=1, le=100_000, description="per connection")
    max_connections_per_ip: int = Field(2000, ge=1, le=10_000_000)
    connects_per_ip_per_second: int = Field(200, ge=1, le=1_000_000)
    send_buffer: int = Field(
        1024 * 1024, ge=4096, le=1 << 30, description="bytes queued to a client before 'slow'"
    )
    centrifugo_config: Path | None = Field(
        None,
        description="a Centrifugo config file (v5 or v6, JSON or TOML) to take the namespaces,"
        " token HMAC key, API key, anonymous access and personal channel from, where"
        " syncline.toml and the environment don't set them",
    )
    # [namespaces.NAME] tables, or Centrifugo's layout: [[namespaces]] with a name each.
    namespaces: dict[str, dict[str, Any]] | list[dict[str, Any]] = Field(default_factory=dict)
    rules: list[dict[str, Any]] = Field(default_factory=list)
    # [[shapes]] tables: which tables clients may open live queries on (docs/topics/shapes.md).
    shapes: list[dict[str, Any]] = Field(default_factory=list)
    max_shapes: int = Field(10_000, ge=1, le=1_000_000, description="shapes open on this server")
    max_shapes_per_connection: int = Field(100, ge=1, le=10_000, description="per connection")
    shape_idle_timeout: float = Field(
        60.0,
        ge=0,
        le=86_400,
        description="seconds a shape nobody holds or follows is kept (a reload reuses it)",
    )
    # Accounts (syncline.apps.auth): links in mails, SMTP, rate limits, request size.
    public_url: str | None = Field(
        None, description="URL users open (behind a proxy); used in mailed links"
    )
    smtp_host: str | None = Field(
        None, description="SMTP server for account mails; unset: mails stay in `syncline mail`"
    )
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = Field("syncline@localhost", max_length=254, description="mails' From")
    smtp_starttls: bool = Field(True, description="require STARTTLS on the SMTP connection")
    rate_limit_login_ip: str = Field("30/minute", description="sign-ins per client IP ('' off)")
    rate_limit_login_account: str = Field("10/minute", description="sign-ins per account")
    rate_limit_register_ip: str = Field("5/minute", description="registrations per client IP")
    rate_limit_reset_ip: str = Field("10/hour", description="mails requested per client IP")
    rate_limit_reset_account: str = Field("3/hour", description="mails per account and kind")
    session_check_ttl: float = Field(
        2.0,
        ge=0,
        le=60,
        description="seconds a session found live is trusted without asking PostgreSQL again"
        " (a revocation by another process takes effect within it; 0: ask every time)",
    )
    refresh_reuse_grace: float = Field(
        30.0,
        ge=0,
        le=300,
        description="seconds after its rotation a refresh token may be presented once more"
        " if the new one was never used (a reply lost to a reload or a dropped connection);"
        " outside it, a rotated token revokes its session (0: never)",
    )
    max_request_body: int = Field(
        64 * 1024, ge=1024, le=64 * 1024 * 1024, description="bytes; larger requests get 413"
    )

    @field_validator("database_url")
    @classmethod
    def _url_is_postgres(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError("must start with postgresql://")
        return value

    @field_validator("jwt_secret", "api_key")
    @classmethod
    def _secret_is_strong(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None:
            return value
        size = len(value.get_secret_value().encode())
        if size == 0:
            raise ValueError("must not be empty")
        if size < MIN_SECRET_BYTES and not info.data.get("insecure_short_keys"):
            raise ValueError(f"must be at least {MIN_SECRET_BYTES} bytes ({SHORT_KEYS_HINT})")
        return value

    @field_validator(
        "rate_limit_login_ip",
        "rate_limit_login_account",
        "rate_limit_register_ip",
        "rate_limit_reset_ip",
        "rate_limit_reset_account",
    )
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        if value.strip():
            try:
                parse_many(value)
            except ValueError:
                raise ValueError(
                    "must be like '10/minute' or '5/minute;100/hour' ('' for no limit)"
                ) from None
        return value.strip()

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address or CIDR network") from None
        return values

    @field_validator("engine")
    @classmethod
    def _engine_url(cls, value: str) -> str:
        if value != "memory" and not value.startswith(("redis://", "rediss://")):
            raise ValueError("must be 'memory' or a redis:// or rediss:// URL")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url_is_http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value is not None else None

    @property
    def embedded(self) -> bool:
        """True when Syncline starts its own PostgreSQL."""
        return self.database_url is None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))


def short_key_warnings(settings: Settings, keys: dict[str, str | None]) -> list[str]:
    """The loud start-up warnings of the development mode ``insecure_short_keys``: one line
    for the mode, one for each key in use (``keys``: name to value) that is short."""
    if not settings.insecure_short_keys:
        return []
    lines = [
        "INSECURE: insecure_short_keys = true is for development only: a short HMAC key is"
        " guessable offline from one captured token"
    ]
    for name, key in keys.items():
        if key is not None and len(key.encode()) < MIN_SECRET_BYTES:
            lines.append(
                f"INSECURE: {name} is {len(key.encode())} bytes (at least {MIN_SECRET_BYTES}"
                " outside development)"
            )
    return lines


def read_config_file(path: Path | None) -> dict[str, Any]:
    """Parse syncline.toml (the given path, or ./syncline.toml if present)."""
    explicit = path is not None
    path = path if path is not None else DEFAULT_CONFIG_FILE
    if not path.exists():
        if explicit:
            raise ConfigError(f"config file {path} does not exist")
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from None
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from None


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the effective settings; CLI overrides (non-None) win over everything."""
    data = read_config_file(config_file)
    token = _toml_data.set(data)
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = Settings(**given)
        if settings.centrifugo_config is not None:
            settings = _with_centrifugo_config(settings, given)
        return settings
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise ConfigError(f"invalid setting {where}: {first['msg']}{more}") from None
    finally:
        _toml_data.reset(token)


def _with_centrifugo_config(settings: Settings, given: dict[str, Any]) -> Settings:
    """The settings again, with what the Centrifugo config says where nothing else did."""
    from syncline.centrifugo_config import centrifugo_settings

    assert settings.centrifugo_config is not None
    taken = centrifugo_settings(settings.centrifugo_config)
    if "namespaces" in taken and "namespaces" in settings.model_fields_set:
        raise ConfigError(
            "namespaces come from one place: syncline.toml (or SYNCLINE_NAMESPACES) or the"
            f" Centrifugo config {settings.centrifugo_config}, not both"
        )
    unset = {k: v for k, v in taken.items() if k not in settings.model_fields_set}
    return Settings(**given, **unset)


def masked(settings: Settings) -> dict[str, Any]:
    """The settings as plain data, with every secret (and a URL's password) masked."""
    out: dict[str, Any] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if name == "database_url" and value is not None:
            out[name] = mask_url(value.get_secret_value())
        elif isinstance(value, SecretStr):
            out[name] = "********"
        elif isinstance(value, Path):
            out[name] = str(value)
        else:
            out[name] = value
    return out


def mask_url(url: str) -> str:
    """postgresql://user:secret@host/db → postgresql://user:***@host/db."""
    scheme, sep, rest = url.partition("://")
    creds, at, hostpart = rest.rpartition("@")
    if not sep or not at or ":" not in creds:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hostpart}"
