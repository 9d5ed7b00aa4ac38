"""What every command shares: consoles, options, errors as one line, settings, the database."""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import psycopg
import typer
from rich.console import Console
from rich.markup import escape

from syncline.db.embedded import (
    IMMEDIATE_STOP_TIMEOUT_S,
    START_TIMEOUT_S,
    EmbeddedPostgres,
    ServerInfo,
)
from syncline.errors import SynclineError
from syncline.keys import allow_short_keys
from syncline.logs import configure_logging
from syncline.settings import LogLevel, Settings, load_settings, mask_url

T = TypeVar("T")
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
# The embedded server's fast stop (a checkpoint) gets at least this even when shutdown_timeout
# is spent; past it, an immediate stop (crash recovery on the next start, nothing lost).
MIN_FAST_STOP_S = 0.1
# The interpreter's own exit after everything stopped (0.3 s measured).
EXIT_RESERVE_S = 0.5

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="syncline.toml to read", show_default=False)
]
LogLevelOption = Annotated[
    LogLevel | None, typer.Option("--log-level", help="debug, info, warning or error")
]
DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="embedded PostgreSQL data and keys [.syncline]")
]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON")]


def fail(message: str, code: int = 1) -> None:
    """Print one error line on stderr and exit with `code`."""
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def guarded(fn: Callable[[], T]) -> T:
    """Run a command body; a SynclineError becomes one line on stderr and a non-zero exit."""
    try:
        return fn()
    except SynclineError as error:
        fail(str(error), error.exit_code)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    raise AssertionError("unreachable")


def settings_for(config: Path | None, *, quiet: bool = False, **overrides: Any) -> Settings:
    """The effective settings, with logging set up at their level; `quiet` for the commands
    that report on their own: their libraries' info lines (Alembic's, capture setup's) would
    only repeat or bury the report, so they log warnings and errors (debug still logs all)."""
    settings = load_settings(config, **overrides)
    level = settings.log_level
    configure_logging("warning" if quiet and level == "info" else level)
    if settings.insecure_short_keys:  # `tail` signs tokens with the key too
        allow_short_keys()
    return settings


def reason(error: BaseException) -> str:
    """The last line of an error's text: psycopg's first lines repeat the connection string."""
    text = str(error).strip()
    return text.splitlines()[-1] if text else type(error).__name__


def unreachable(url: str, error: BaseException) -> SynclineError:
    """The one-line error for a database that cannot be reached (its password masked)."""
    return SynclineError(f"cannot reach PostgreSQL at {mask_url(url)}: {reason(error)}")


def embedded_url(data_dir: Path) -> str | None:
    """The URL of the embedded server running in `data_dir` (it remembers its port and
    password there), or None when none runs."""
    if not EmbeddedPostgres(data_dir).is_running():
        return None
    try:
        password = (data_dir / "postgres.password").read_text().strip()
        port = int((data_dir / "postgres.port").read_text().strip())
    except (OSError, ValueError):
        return None
    return ServerInfo("127.0.0.1", port, password).url()


def running_url(settings: Settings) -> str | None:
    """The database of a running Syncline, without starting anything; None: nothing running
    (the data dir lock is held by `syncline up`, so its server can't be started here)."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return embedded_url(settings.data_dir)


async def connect(url: str) -> psycopg.AsyncConnection[Any]:
    """An autocommit connection, or a SynclineError naming the (masked) URL."""
    try:
        return await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.Error as error:
        raise SynclineError(
            f"cannot reach PostgreSQL at {mask_url(url)}: {reason(error)}"
        ) from None


@contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """One Syncline per data dir: a second one would fight over the embedded server."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        handle = (data_dir / "syncline.lock").open("a+")
    except OSError as error:
        raise SynclineError(f"data dir {data_dir} is not writable: {error.strerror}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise SynclineError(
            f"another syncline is already running with data dir {data_dir}"
        ) from None
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def check_database(url: str) -> None:
    """Fail with one line when the database cannot be reached."""
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        raise SynclineError(
            f"cannot reach PostgreSQL at {mask_url(url)}: {reason(error)}"
        ) from None


@contextmanager
def database(
    settings: Settings, stop_within: Callable[[], float] = lambda: START_TIMEOUT_S
) -> Iterator[tuple[str, ServerInfo | None]]:
    """The database URL to use: DATABASE_URL, or an embedded server started for the block
    and stopped after it within `stop_within()` seconds (fast, else immediately)."""
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        check_database(url)
        yield url, None
        return
    with data_dir_lock(settings.data_dir):
        server = EmbeddedPostgres(settings.data_dir)
        info = server.start()
        try:
            yield info.url(), info
        finally:
            fast = stop_within() - IMMEDIATE_STOP_TIMEOUT_S - EXIT_RESERVE_S
            server.stop(timeout=max(fast, MIN_FAST_STOP_S))
