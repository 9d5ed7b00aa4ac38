"""`syncline up`: everything in one process, or a supervised group of workers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer

from syncline import __version__
from syncline.cli.base import (
    EXIT_RESERVE_S,
    ConfigOption,
    DataDirOption,
    LogLevelOption,
    data_dir_lock,
    database,
    guarded,
    settings_for,
)
from syncline.db.embedded import (
    IMMEDIATE_STOP_TIMEOUT_S,
    START_TIMEOUT_S,
    EmbeddedPostgres,
    ServerInfo,
)
from syncline.db.migrate_child import upgrade_in_child
from syncline.db.supervisor import PostgresSupervisor
from syncline.errors import SynclineError
from syncline.keys import api_key, jwt_secret
from syncline.logs import configure_logging
from syncline.settings import CaptureMode, Settings, load_settings, mask_url, short_key_warnings
from syncline.workers import worker_count

# Of shutdown_timeout, what `up` keeps for stopping the embedded server after everything else,
# and exiting (at most half of it): the whole shutdown fits in shutdown_timeout whatever the
# server does.
EMBEDDED_STOP_RESERVE_S = 0.5 + IMMEDIATE_STOP_TIMEOUT_S + EXIT_RESERVE_S
# Of shutdown_timeout, what the parent of `up --workers N` keeps for stopping its private
# redis-server after the workers (SIGTERM; with appendfsync always it exits in milliseconds).
PRIVATE_REDIS_STOP_RESERVE_S = 0.5


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

        settings = settings_for(
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
        with database(settings, runtime.shutdown_time_left) as (url, info):
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

    guarded(body)


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
    # The whole stop fits in shutdown_timeout: the workers get it less what the parent needs
    # after them (its redis-server, the embedded server, its own exit), at most half of it.
    after_workers = EMBEDDED_STOP_RESERVE_S if settings.embedded else EXIT_RESERVE_S
    if settings.engine == "memory":
        after_workers += PRIVATE_REDIS_STOP_RESERVE_S
    workers_timeout = settings.shutdown_timeout - min(after_workers, settings.shutdown_timeout / 2)
    stop_asked_at: float | None = None

    def time_left() -> float:
        """Of shutdown_timeout, what the stop asked for has not used (a failed start: as
        long as a stop takes)."""
        if stop_asked_at is None:
            return START_TIMEOUT_S
        return max(settings.shutdown_timeout - (time.monotonic() - stop_asked_at), 0.0)

    def stop_redis(private: PrivateRedis) -> None:
        later = EMBEDDED_STOP_RESERVE_S if settings.embedded else EXIT_RESERVE_S
        private.stop(timeout=max(time_left() - later, 0.1))

    with contextlib.ExitStack() as stack:
        if needs_lock:  # the private Redis lives in the data dir (embedded mode locks it too)
            stack.enter_context(data_dir_lock(settings.data_dir))
        url, info = stack.enter_context(database(settings, time_left))
        upgrade_in_child(url)
        engine = settings.engine
        private = None
        if engine == "memory":
            private = PrivateRedis(settings.data_dir)
            engine = private.start()
            stack.callback(stop_redis, private)
        # The settings already hold what a Centrifugo config gave: the workers don't read it.
        secrets_and_sources = {"database_url", "jwt_secret", "api_key", "centrifugo_config"}
        base = settings.model_dump(mode="json", exclude=secrets_and_sources)

        def worker_settings(index: int) -> dict[str, Any]:
            return {
                **base,
                "port": port,
                "gateway_port": gateway_port,
                "engine": engine,
                "workers": 1,
                "shutdown_timeout": workers_timeout,
                "node_name": f"{node}-w{index}",
                "database_url": url,
                "jwt_secret": secret,
                "api_key": key,
            }

        group = Workers(count, worker_settings, shutdown_timeout=workers_timeout)
        supervisor = PostgresSupervisor(EmbeddedPostgres(settings.data_dir)) if info else None

        def banner() -> None:
            host = f"[{settings.host}]" if ":" in settings.host else settings.host
            endpoints = Endpoints(
                f"http://{host}:{port}",
                settings.public_ws_url or f"ws://{host}:{gateway_port}/connection/websocket",
            )
            _print_banner(settings, endpoints, info, workers=group.pids, private=private)

        def request_stop() -> None:
            nonlocal stop_asked_at
            if stop_asked_at is None:
                stop_asked_at = time.monotonic()
            group.request_stop()

        async def supervise() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, request_stop)
            watched = asyncio.create_task(supervisor.run()) if supervisor else None
            runner = asyncio.create_task(group.run(on_ready=banner))
            waits = {runner} if watched is None else {runner, watched}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            request_stop()
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


def worker() -> None:
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

    guarded(body)


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
    keys = {
        name: None if secret is None else secret.get_secret_value()
        for name, secret in (("jwt_secret", settings.jwt_secret), ("api_key", settings.api_key))
    }
    lines += short_key_warnings(settings, keys)
    print("\n".join(lines), flush=True)
