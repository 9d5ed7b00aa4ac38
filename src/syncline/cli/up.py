"""The `syncline` command: up, migrate, config, psql."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import psycopg
import typer
from rich.console import Console

from syncline import __version__
from syncline.db.embedded import (
    IMMEDIATE_STOP_TIMEOUT_S,
    START_TIMEOUT_S,
    EmbeddedPostgres,
    ServerInfo,
    pg_binary,
)
from syncline.db.migrate_child import upgrade_in_child
from syncline.db.supervisor import PostgresSupervisor
from syncline.errors import SynclineError
from syncline.keys import api_key, jwt_secret
from syncline.logs import configure_logging, get_logger
from syncline.settings import CaptureMode, LogLevel, Settings, load_settings, mask_url, masked
from syncline.workers import worker_count

app = typer.Typer(
    name="syncline",
    help="Real-time sync from PostgreSQL to WebSocket clients (Centrifuge protocol).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err_console = Console(stderr=True)
log = get_logger(__name__)
T = TypeVar("T")
# The embedded server's fast stop (a checkpoint) gets at least this even when shutdown_timeout
# is spent; past it, an immediate stop (crash recovery on the next start, nothing lost).
MIN_FAST_STOP_S = 0.1
# The interpreter's own exit after everything stopped (0.3 s measured).
EXIT_RESERVE_S = 0.5
# Of shutdown_timeout, what `up` keeps for stopping the embedded server after everything else,
# and exiting (at most half of it): the whole shutdown fits in shutdown_timeout whatever the
# server does.
EMBEDDED_STOP_RESERVE_S = 0.5 + IMMEDIATE_STOP_TIMEOUT_S + EXIT_RESERVE_S

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="syncline.toml to read", show_default=False)
]
LogLevelOption = Annotated[
    LogLevel | None, typer.Option("--log-level", help="debug, info, warning or error")
]
DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="embedded PostgreSQL data and keys [.syncline]")
]


def _fail(message: str, code: int = 1) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _guarded(fn: Callable[[], T]) -> T:
    """Run a command body; a SynclineError becomes one line on stderr and a non-zero exit."""
    try:
        return fn()
    except SynclineError as err:
        _fail(str(err), err.exit_code)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    raise AssertionError("unreachable")


def _settings(config: Path | None, **overrides: Any) -> Settings:
    settings = load_settings(config, **overrides)
    configure_logging(settings.log_level)
    return settings


@contextmanager
def _data_dir_lock(data_dir: Path) -> Iterator[None]:
    """One Syncline per data dir: a second one would fight over the embedded server."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        handle = (data_dir / "syncline.lock").open("a+")
    except OSError as err:
        raise SynclineError(f"data dir {data_dir} is not writable: {err.strerror}") from None
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


def _check_database(url: str) -> None:
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise SynclineError(f"cannot reach PostgreSQL at {mask_url(url)}: {reason}") from None


@contextmanager
def _database(
    settings: Settings, stop_within: Callable[[], float] = lambda: START_TIMEOUT_S
) -> Iterator[tuple[str, ServerInfo | None]]:
    """The database URL to use: DATABASE_URL, or an embedded server started for the block
    and stopped after it within `stop_within()` seconds (fast, else immediately)."""
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        _check_database(url)
        yield url, None
        return
    with _data_dir_lock(settings.data_dir):
        server = EmbeddedPostgres(settings.data_dir)
        info = server.start()
        try:
            yield info.url(), info
        finally:
            fast = stop_within() - IMMEDIATE_STOP_TIMEOUT_S - EXIT_RESERVE_S
            server.stop(timeout=max(fast, MIN_FAST_STOP_S))


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", help="print the version and exit")] = False,
) -> None:
    if version:
        out.print(f"syncline {__version__}")
        raise typer.Exit()


@app.command()
def up(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="listen address [127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port [8000]")] = None,
    gateway_port: Annotated[int | None, typer.Option(help="WebSocket port [8001]")] = None,
    data_dir: DataDirOption = None,
    capture: Annotated[CaptureMode | None, typer.Option(help="auto|logical|trigger|poll")] = None,
    engine: Annotated[
        str | None, typer.Option(help="memory, or a redis:// URL shared by every node [memory]")
    ] = None,
    workers: Annotated[
        str | None,
        typer.Option(help="processes on the same ports: a number or 'auto' (one per core) [1]"),
    ] = None,
    log_level: LogLevelOption = None,
) -> None:
    """Run everything: PostgreSQL (embedded unless DATABASE_URL), migrations, API, UI."""

    def body() -> None:
        from syncline.runtime import Runtime

        settings = _settings(
            config,
            host=host,
            port=port,
            gateway_port=gateway_port,
            data_dir=data_dir,
            capture=capture,
            engine=engine,
            workers=workers,
            log_level=log_level,
        )
        if worker_count(settings.workers) > 1:
            run_workers(settings, worker_count(settings.workers))
            return
        # Reserve the ports and check the key first: a taken port or a missing key costs nothing.
        secret = jwt_secret(settings)
        runtime = Runtime(settings, secret, api_key(settings))
        runtime.bind()
        with _database(settings, runtime.shutdown_time_left) as (url, info):
            upgrade_in_child(url)
            # Embedded: restart the server if it dies; DATABASE_URL: the pool and capture
            # reconnect by themselves when it is back.
            supervisor, reserve = None, 0.0
            if info is not None:
                supervisor = PostgresSupervisor(EmbeddedPostgres(settings.data_dir))
                reserve = min(EMBEDDED_STOP_RESERVE_S, settings.shutdown_timeout / 2)
            ready = runtime.run(
                url,
                on_ready=lambda ep: _print_banner(settings, ep, info),
                supervisor=supervisor,
                shutdown_reserve=reserve,
            )
            with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
                runner.run(ready)

    _guarded(body)


def run_workers(settings: Settings, count: int) -> None:
    """The parent of `up --workers N`: the database, migrations and Redis once, then the
    workers (syncline.workers), until SIGINT or SIGTERM."""
    from syncline.private_redis import PrivateRedis
    from syncline.runtime import Endpoints, bind_socket
    from syncline.workers import Workers

    secret, key = jwt_secret(settings), api_key(settings)
    # Reserve both ports now (bound, not listening: no connection comes to the parent), so a
    # port in use is one clear error, and port 0 becomes one port every worker shares.
    ws_host = settings.gateway_host or settings.host
    http = bind_socket(settings.host, settings.port, reuse_port=True, listen=False)
    try:
        gateway = bind_socket(ws_host, settings.gateway_port, reuse_port=True, listen=False)
    except SynclineError as err:
        http.close()
        raise SynclineError(str(err).replace("--port", "--gateway-port")) from None
    port, gateway_port = http.getsockname()[1], gateway.getsockname()[1]
    node = settings.node_name or socket.gethostname()
    needs_lock = settings.database_url is not None and settings.engine == "memory"
    with contextlib.ExitStack() as stack:
        if needs_lock:  # the private Redis lives in the data dir (embedded mode locks it too)
            stack.enter_context(_data_dir_lock(settings.data_dir))
        url, info = stack.enter_context(_database(settings))
        upgrade_in_child(url)
        engine = settings.engine
        private = None
        if engine == "memory":
            private = PrivateRedis(settings.data_dir)
            engine = private.start()
            stack.callback(private.stop)
        base = settings.model_dump(mode="json", exclude={"database_url", "jwt_secret", "api_key"})

        def worker_settings(index: int) -> dict[str, Any]:
            return {
                **base,
                "port": port,
                "gateway_port": gateway_port,
                "engine": engine,
                "workers": 1,
                "node_name": f"{node}-w{index}",
                "database_url": url,
                "jwt_secret": secret,
                "api_key": key,
            }

        group = Workers(count, worker_settings, shutdown_timeout=settings.shutdown_timeout)
        supervisor = PostgresSupervisor(EmbeddedPostgres(settings.data_dir)) if info else None

        def banner() -> None:
            host = f"[{settings.host}]" if ":" in settings.host else settings.host
            endpoints = Endpoints(
                f"http://{host}:{port}",
                settings.public_ws_url or f"ws://{host}:{gateway_port}/connection/websocket",
            )
            _print_banner(settings, endpoints, info, workers=group.pids, private=private)

        async def supervise() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, group.request_stop)
            watched = asyncio.create_task(supervisor.run()) if supervisor else None
            runner = asyncio.create_task(group.run(on_ready=banner))
            waits = {runner} if watched is None else {runner, watched}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            group.request_stop()
            await runner
            if watched is not None:
                watched.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watched
                if not watched.cancelled() and watched.exception() is not None:
                    raise watched.exception()  # type: ignore[misc]

        try:
            asyncio.run(supervise())
        finally:
            http.close()
            gateway.close()


@app.command(name="worker", hidden=True)
def worker_command() -> None:
    """One worker of `up --workers N`: its settings come as JSON on stdin from the parent."""

    def body() -> None:
        from syncline.runtime import Runtime

        data = json.loads(sys.stdin.read())
        settings = load_settings(None, **data)
        configure_logging(settings.log_level)
        runtime = Runtime(settings, data["jwt_secret"], data["api_key"], reuse_port=True)
        runtime.bind()

        def ready(_: Any) -> None:
            print("ready", flush=True)

        url = data["database_url"]
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(runtime.run(url, on_ready=ready))

    _guarded(body)


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (Linux, macOS): the HTTP path and the gateway share one
    loop, and uvloop's is several times cheaper per request; else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _print_banner(
    settings: Settings,
    endpoints: Any,
    info: ServerInfo | None,
    *,
    workers: list[int] | None = None,
    private: Any = None,
) -> None:
    lines = [
        f"Syncline {__version__} is up",
        f"  UI         {endpoints.http_url}/",
        f"  API docs   {endpoints.http_url}/docs",
        f"  WebSocket  {endpoints.websocket_url}",
    ]
    if info is not None:
        shown = info.url().replace(f":{info.password}@", ":***@")
        lines.append(f"  Database   {shown}  (connect: syncline psql)")
        lines.append(f"  Data dir   {settings.data_dir.resolve()}")
    else:
        url = settings.database_url.get_secret_value() if settings.database_url else ""
        lines.append(f"  Database   {mask_url(url)}")
    if workers:
        lines.append(f"  Workers    {len(workers)} (pids {', '.join(map(str, workers))})")
    if private is not None:
        lines.append(
            f"  Redis      private, 127.0.0.1:{private.port}, data in {private.data_dir}/redis"
        )
    lines.append("Press Ctrl+C to stop.")
    print("\n".join(lines), flush=True)


@app.command(name="migrate")
def migrate_command(
    config: ConfigOption = None,
    sql: Annotated[bool, typer.Option("--sql", help="print the SQL instead of running it")] = False,
    data_dir: DataDirOption = None,
    log_level: LogLevelOption = None,
) -> None:
    """Upgrade the database schema to the newest version (or print its SQL)."""

    def body() -> None:
        from syncline.db import migrate

        if sql:
            sys.stdout.write(migrate.upgrade_sql())
            return
        settings = _settings(config, data_dir=data_dir, log_level=log_level)
        with _database(settings) as (url, _):
            before = migrate.current_revision(url)
            migrate.upgrade(url)
            after = migrate.current_revision(url)
        if before == after:
            out.print(f"database is up to date (revision {after})")
        else:
            out.print(f"migrated from {before or 'empty'} to {after}")

    _guarded(body)


@app.command(name="config")
def config_command(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Print the effective settings, with secrets masked."""

    def body() -> None:
        settings = load_settings(config)
        data = masked(settings)
        if as_json:
            sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
            return
        for key, value in data.items():
            out.print(f"{key} = {json.dumps(value, default=str)}", highlight=False)

    _guarded(body)


@app.command()
def psql(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Open psql on Syncline's database (the embedded one must be running)."""

    def body() -> None:
        settings = load_settings(config, data_dir=data_dir)
        if settings.database_url is not None:
            url = settings.database_url.get_secret_value()
        else:
            server = EmbeddedPostgres(settings.data_dir)
            if not server.is_running():
                raise SynclineError(
                    f"the embedded PostgreSQL in {settings.data_dir} is not running"
                )
            password = (settings.data_dir / "postgres.password").read_text().strip()
            port = int((settings.data_dir / "postgres.port").read_text().strip())
            url = ServerInfo("127.0.0.1", port, password).url()
        os.execv(str(pg_binary("psql")), ["psql", url])  # noqa: S606  (fixed argv, no shell)

    _guarded(body)


from syncline import cli_bench, cli_mail, cli_ops, cli_server  # noqa: E402  (they use the helpers above)

app.add_typer(cli_ops.sync_app, name="sync")
app.command()(cli_ops.tail)
app.command()(cli_ops.doctor)
app.add_typer(cli_bench.bench_app, name="bench")
app.command()(cli_server.publish)
app.command()(cli_server.channels)
app.command()(cli_mail.mail)


def main() -> None:
    """Console entry point."""
    app()
