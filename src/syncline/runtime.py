"""Composition root: builds the parts from settings, runs them, and stops them in order."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import uvicorn
from psycopg_pool import AsyncConnectionPool

from syncline import metrics
from syncline.api.app import create_app
from syncline.api.context import AppContext
from syncline.apps.auth.live_sessions import LiveSessionCache
from syncline.apps.auth.session_guard import SessionGuard
from syncline.apps.chat.realtime import ChatRealtime
from syncline.capture.live_rules import LiveRules, record_applied
from syncline.capture.membership import MembershipWatch
from syncline.capture.pipeline import Pipeline
from syncline.capture.service import CaptureService
from syncline.control import ControlBus, MemoryControlBus, open_control_bus
from syncline.core.shapes import ShapeRegistry
from syncline.db.head import HEAD_REVISION
from syncline.db.pool import make_pool
from syncline.db.supervisor import PostgresSupervisor
from syncline.engine import open_engine
from syncline.errors import SynclineError
from syncline.gateway.auth import TokenVerifier
from syncline.gateway.server import Gateway
from syncline.health import Readiness
from syncline.keys import allow_short_keys
from syncline.logs import get_logger
from syncline.nodes import LocalNodeDirectory, NodeDirectory, NodeIdentity
from syncline.presence import open_presence
from syncline.rpc import RpcRegistry
from syncline.settings import Settings, mask_url, short_key_warnings
from syncline.shapes.rpc import register_shape_rpc
from syncline.shapes.service import ShapeService
from syncline.shutdown import Deadline
from syncline.sync_config import build_sync_config

log = get_logger(__name__)

# How long a new pool may take to hand out its first connection before start-up fails.
POOL_OPEN_TIMEOUT_S = 10.0
# Of shutdown_timeout, what draining HTTP requests may not use: capture, the engine and the
# pool close after it (at most a quarter of the whole).
CLOSE_RESERVE_S = 1.0
# Allocations between young collections while serving (CPython: 700); see run().
GC_YOUNG_THRESHOLD = 7000


def bind_socket(
    host: str, port: int, *, reuse_port: bool = False, listen: bool = True
) -> socket.socket:
    """Bind a listening socket now: a port in use is one clear error before anything starts.

    ``reuse_port``: several processes bind the same port and the kernel spreads connections
    over them (SO_REUSEPORT, Linux): the workers of `syncline up --workers N`. ``listen=False``
    only reserves the port (the parent's socket, which takes no connection).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY on accepted sockets only when the listening
    # socket says TCP (proto 0 does not), else every small response waits for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        if err.errno in (98, 48):  # EADDRINUSE on Linux, macOS
            raise SynclineError(
                f"port {port} on {host} is already in use (choose another with --port)"
            ) from None
        raise SynclineError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    if listen:
        sock.listen(2048)
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the runtime owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Endpoints:
    """Where the running system can be reached."""

    http_url: str
    websocket_url: str


class Runtime:
    """The running Syncline: HTTP API, (later) capture and gateway, over one connection pool."""

    def __init__(
        self,
        settings: Settings,
        jwt_secret: str,
        api_key: str | None = None,
        *,
        reuse_port: bool = False,
    ) -> None:
        self.settings = settings
        self.reuse_port = reuse_port
        self.identity = NodeIdentity(name=settings.node_name or socket.gethostname())
        metrics.NODE_INFO.labels(self.identity.name).set(1)
        self.jwt_secret = jwt_secret
        if api_key is None and settings.api_key is not None:
            api_key = settings.api_key.get_secret_value()
        self.api_key = api_key
        for line in short_key_warnings(settings, {"jwt_secret": jwt_secret, "api_key": api_key}):
            log.warning(line)
        if settings.insecure_short_keys:
            allow_short_keys()
        # Invalid namespaces or rules fail here, before anything is started.
        self.sync = build_sync_config(settings)
        for note in self.sync.registry.notes:  # Centrifugo options read with a difference
            log.warning("namespace option", note=note)
        # The ports: in memory for one process, or on the Redis that `engine` names, shared
        # by every process and node (the bus connects in run(): it must be live to start).
        self.engine = open_engine(settings.engine)
        self.presence = open_presence(settings.engine)
        self.control: ControlBus = MemoryControlBus()
        self.capture: CaptureService | None = None
        self.gateway: Gateway | None = None
        self.shapes: ShapeService | None = None
        self.nodes: NodeDirectory | None = None
        self.rpc = RpcRegistry()
        self._gateway_socket: socket.socket | None = None
        self.readiness = Readiness()
        self._stop = asyncio.Event()
        self._stop_requested_at: float | None = None
        self._http_socket: socket.socket | None = None
        self._endpoints: Endpoints | None = None

    def bind(self) -> Endpoints:
        """Reserve the listening ports (fails fast and clearly if one is taken)."""
        if self._endpoints is not None:
            return self._endpoints
        reuse = self.reuse_port
        self._http_socket = bind_socket(self.settings.host, self.settings.port, reuse_port=reuse)
        ws_host = self.settings.gateway_host or self.settings.host
        try:
            self._gateway_socket = bind_socket(
                ws_host, self.settings.gateway_port, reuse_port=reuse
            )
        except SynclineError as err:
            self._http_socket.close()
            raise SynclineError(str(err).replace("--port", "--gateway-port")) from None
        port = self._http_socket.getsockname()[1]
        ws_port = self._gateway_socket.getsockname()[1]
        host = self.settings.host
        shown = f"[{host}]" if ":" in host else host
        ws_shown = f"[{ws_host}]" if ":" in ws_host else ws_host
        websocket_url = self.settings.public_ws_url or (
            f"ws://{ws_shown}:{ws_port}/connection/websocket"
        )
        self._endpoints = Endpoints(http_url=f"http://{shown}:{port}", websocket_url=websocket_url)
        return self._endpoints

    def request_stop(self) -> None:
        """Begin a graceful shutdown (safe to call from a signal handler)."""
        if self._stop_requested_at is None:
            self._stop_requested_at = time.monotonic()
        self._stop.set()

    def shutdown_time_left(self) -> float:
        """Seconds of shutdown_timeout not yet used since the stop was asked for (all of it
        if it was not): what stopping the embedded PostgreSQL may take after run() returns."""
        if self._stop_requested_at is None:
            return self.settings.shutdown_timeout
        used = time.monotonic() - self._stop_requested_at
        return max(self.settings.shutdown_timeout - used, 0.0)

    async def run(
        self,
        database_url: str,
        on_ready: Callable[[Endpoints], None] | None = None,
        *,
        supervisor: PostgresSupervisor | None = None,
        shutdown_reserve: float = 0.0,
    ) -> None:
        """Run until SIGINT/SIGTERM or request_stop(), then drain and close everything
        within shutdown_timeout, less `shutdown_reserve` kept for what the caller stops after
        (the embedded PostgreSQL). With a `supervisor`, run it too, and stop with its error if
        it gives up on the server."""
        endpoints = self.bind()
        assert self._http_socket is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)

        pool = make_pool(database_url, self.settings.db_pool_size)
        try:
            await pool.open(wait=True, timeout=POOL_OPEN_TIMEOUT_S)
        except Exception as err:
            await pool.close()
            raise SynclineError(f"cannot reach PostgreSQL: {err}") from None
        self._add_database_checks(pool)
        if self.settings.engine != "memory":
            try:
                self.control = await open_control_bus(self.settings.engine)
            except ConnectionError as err:
                await pool.close()
                raise SynclineError(
                    f"cannot reach Redis ({mask_url(self.settings.engine)}): {err}"
                ) from None
        origins = {endpoints.http_url}
        if self.settings.host in ("127.0.0.1", "localhost"):
            origins.add(endpoints.http_url.replace(self.settings.host, "localhost"))
            origins.add(endpoints.http_url.replace(self.settings.host, "127.0.0.1"))
        if self.settings.public_url:
            # The UI served behind a proxy opens its socket from the public origin.
            parts = urlsplit(self.settings.public_url)
            origins.add(f"{parts.scheme}://{parts.netloc}")
        # One session cache for the HTTP API and the gateway: a revocation here forgets both;
        # a revocation in another process reaches this one over the control bus.
        session_guard = SessionGuard(pool, LiveSessionCache(self.settings.session_check_ttl))
        unsubscribe_guard = self.control.subscribe(session_guard.on_control)
        gateway = Gateway(
            self.settings,
            self.engine,
            self.sync.registry,
            TokenVerifier(self.jwt_secret),
            pool,
            rpc=self.rpc,
            allowed_origins=origins,
            sessions=session_guard,
            control=self.control,
            presence=self.presence,
            node_name=self.identity.name,
        )
        self.gateway = gateway
        chat = ChatRealtime(self.rpc, self.engine, self.sync.registry, self.presence, pool)
        gateway.disconnect_listeners.append(chat.last_seen.user_disconnected)
        assert self._gateway_socket is not None
        await gateway.start(self._gateway_socket)

        async def gateway_check() -> str | None:
            return gateway.problem()

        self.readiness.add("gateway", gateway_check)
        shapes = ShapeService(
            self.sync.shapes,
            self.sync.registry,
            self.engine,
            pool,
            database_url,
            available=lambda: self._shapes_problem(),
            registry=ShapeRegistry(
                max_shapes=self.settings.max_shapes,
                max_per_connection=self.settings.max_shapes_per_connection,
                idle_seconds=self.settings.shape_idle_timeout,
            ),
        )
        self.shapes = shapes
        register_shape_rpc(self.rpc, shapes)
        gateway.shape_access = shapes.may_subscribe
        shapes_task = asyncio.create_task(
            shapes.run(
                lambda: {conn.client for conn in gateway.connections},
                gateway.hub.subscribers,
            ),
            name="shapes",
        )
        membership = MembershipWatch(self.sync.registry, self.control)
        live = LiveRules(self.sync.rules, self.sync.registry)

        async def rules_applied(applied: list[tuple[int, str]]) -> None:
            await record_applied(database_url, applied)

        pipeline = Pipeline(
            self.sync.rules,
            self.sync.registry,
            self.engine,
            on_routed=membership.on_routed,
            live=live,
            on_rules_applied=rules_applied,
            shapes=shapes,
        )
        self.capture = CaptureService(
            database_url,
            self.settings,
            self.sync.rules,
            pipeline,
            live=live,
            shape_tables=list(self.sync.shapes.by_table),
        )
        capture_task = asyncio.create_task(self.capture.run(), name="capture")
        capture = self.capture

        async def capture_check() -> str | None:
            if capture_task.done() and not capture_task.cancelled():
                error = capture_task.exception()
                return f"capture stopped: {error}"
            return capture.problem()

        self.readiness.add("capture", capture_check)
        watched: asyncio.Task[None] | None = None
        if supervisor is not None:
            # Back from a restart: capture reconnects now rather than after its backoff.
            supervisor.on_restart(capture.retry_now)
            watched = asyncio.create_task(supervisor.run(), name="postgres-supervisor")
            sup = supervisor

            async def postgres_check() -> str | None:
                return sup.problem()

            self.readiness.add("postgres", postgres_check)

        nodes: NodeDirectory
        redis_nodes = None
        if self.settings.engine == "memory":
            nodes = LocalNodeDirectory(self.identity, gateway)
        else:
            from syncline.nodes_redis import RedisNodeDirectory

            nodes = redis_nodes = RedisNodeDirectory(self.settings.engine, self.identity, gateway)
            redis_nodes.start()
        self.nodes = nodes
        context = AppContext(
            settings=self.settings,
            pool=pool,
            readiness=self.readiness,
            websocket_url=endpoints.websocket_url,
            http_url=endpoints.http_url,
            jwt_secret=self.jwt_secret,
            engine=self.engine,
            namespaces=self.sync.registry,
            presence=self.presence,
            nodes=nodes,
            node_name=self.identity.name,
            capture_role=lambda: capture.role,
            api_key=self.api_key,
            control=self.control,
            session_guard=session_guard,
            chat_sender=chat.sender,
        )
        reserve = min(CLOSE_RESERVE_S, (self.settings.shutdown_timeout - shutdown_reserve) / 4)
        app = create_app(context)
        # What is built by now (modules, the app and its schemas, the pools) lives as long as
        # the process: out of the collector's sight, so a full collection no longer walks it
        # (one took 0.38 s, every request waiting, in a 15 s run of 300 chat POST/s); and a
        # young collection every 7,000 allocations instead of 700 (the run's collections
        # took 0.43 s; 0.06 s after both). py-spy had the collector at 6-9 % of the POST.
        # Undone at shutdown: a process that starts Syncline again (the tests) frees it then.
        thresholds = gc.get_threshold()
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, *thresholds[1:])
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=max(
                1, int(self.settings.shutdown_timeout - shutdown_reserve - reserve)
            ),
            server_header=False,
            # uvicorn would believe X-Forwarded-For from loopback by default: then anything on
            # the machine could pick the address the per-IP limits count. Only configured
            # proxies are believed.
            proxy_headers=bool(self.settings.trusted_proxies),
            forwarded_allow_ips=list(self.settings.trusted_proxies),
        )
        server = _Server(config)
        serve = asyncio.create_task(server.serve(sockets=[self._http_socket]))
        try:
            while not server.started and not serve.done():  # noqa: ASYNC110  (uvicorn has no event)
                await asyncio.sleep(0.01)
            if serve.done():
                serve.result()
            log.info("syncline is up", http=endpoints.http_url, websocket=endpoints.websocket_url)
            if on_ready is not None:
                on_ready(endpoints)
            stop = asyncio.create_task(self._stop.wait())
            waits = {serve, stop} if watched is None else {serve, stop, watched}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            log.info("shutting down")
        finally:
            # Every step gets what is left of shutdown_timeout, whatever the database does.
            deadline = Deadline(self.settings.shutdown_timeout - shutdown_reserve)
            await deadline.step("gateway", gateway.stop())
            server.should_exit = True
            await deadline.finish("http", serve, reserve=reserve)
            await deadline.cancel("capture", capture_task)
            await deadline.cancel("shapes", shapes_task)
            if watched is not None and not watched.done():
                await deadline.cancel("postgres supervisor", watched)
            await deadline.step("membership", membership.close())
            await deadline.step("engine", self.engine.close())
            unsubscribe_guard()
            await deadline.step("control", self.control.close())
            await deadline.step("presence", self.presence.close())
            if redis_nodes is not None:
                await deadline.step("nodes", redis_nodes.close())
            await deadline.step("chat", chat.close())
            await deadline.step("auth", app.state.auth.close())
            self.readiness.close()
            await deadline.step("pool", pool.close(timeout=deadline.remaining()))
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
            gc.unfreeze()
            gc.set_threshold(*thresholds)
            log.info("stopped")
        if watched is not None and watched.done() and not watched.cancelled():
            error = watched.exception()
            if error is not None:
                raise error

    def _shapes_problem(self) -> str | None:
        """Why this process can't serve shapes now, or None: the capture leader owns them."""
        if self.reuse_port:
            return (
                "shapes are served by a single process: this server runs several workers"
                " (run it with --workers 1 to use shapes)"
            )
        capture = self.capture
        if capture is None or capture.role != "leader" or not capture.ready.is_set():
            return "shapes are served by the node that leads capture; this one does not (yet)"
        if capture.mode != "logical":
            return f"shapes need logical capture; this server captures with {capture.mode!r}"
        return None

    def _add_database_checks(self, pool: AsyncConnectionPool) -> None:
        head = HEAD_REVISION

        async def database() -> str | None:
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
            return None

        async def migrations() -> str | None:
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT version_num FROM syncline.alembic_version"
                    " WHERE to_regclass('syncline.alembic_version') IS NOT NULL"
                )
                row = await cur.fetchone()
            current = row[0] if row else None
            return None if current == head else f"at {current}, head is {head}"

        self.readiness.add("database", database)
        self.readiness.add("migrations", migrations)
