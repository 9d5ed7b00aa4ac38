"""The gateway process part: picows server, admission limits, timers, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from picows import (
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
)
from psycopg_pool import AsyncConnectionPool

from syncline import metrics
from syncline.control.base import ControlBus
from syncline.core.codes import DisconnectCode
from syncline.core.control import (
    ControlCommand,
    DisconnectUser,
    Emulate,
    RecheckChannel,
    RefreshUser,
    SessionsRevoked,
    SubscribeUser,
    UnsubscribeUser,
)
from syncline.core.log import ClientInfo
from syncline.core.namespaces import (
    Deny,
    Namespace,
    NamespaceRegistry,
    NeedsMembershipCheck,
    NeedsShapeCheck,
)
from syncline.engine.base import ChannelLog
from syncline.gateway import deflate, upgrade
from syncline.gateway.auth import SessionCheck, TokenVerifier
from syncline.gateway.connection import SESSION_REVOKED_REASON, Connection
from syncline.gateway.frames import PicowsLog
from syncline.gateway.http_routes import HttpRoutes
from syncline.gateway.hub import Hub
from syncline.gateway.visibility import CommitSettler, wait_until_visible
from syncline.gateway.websocket import WebSocketTransport
from syncline.logs import get_logger
from syncline.nodes import NodeCounts
from syncline.presence import MemoryPresenceStore, PresenceStore, online_key
from syncline.rpc import RpcRegistry
from syncline.settings import Settings

log = get_logger(__name__)

WEBSOCKET_PATH = b"/connection/websocket"
# The accept queue of the gateway port, as the runtime listens with (bind_socket).
LISTEN_BACKLOG = 2048
# Timers (pings, pong deadlines, token expiry, stale handshakes) are checked this often; a
# single loop over all connections is cheaper than one timer handle per connection.
TICK_S = 1.0
# picows starts every connection with a 16 KiB read buffer; client frames are small (a
# command is ~200 bytes) and the buffer grows when one is not, so idle connections keep 2 KiB.
READ_BUFFER_INIT_SIZE = 2048
# Each process re-adds its presence entries three times per `presence_ttl` (the setting: how
# long an entry lives without a refresh), so one slow or lost refresh does not drop anyone,
# and the clients of a process that died are gone everywhere within the TTL.
PRESENCE_REFRESHES_PER_TTL = 3
# Entries per add_many call (a Redis round trip of batched scripts).
PRESENCE_REFRESH_BATCH = 5000
# At shutdown, how long the leaves of the closed clients may take to reach the store.
PRESENCE_DRAIN_S = 2.0


# An address from a header is at most this long (an IPv6 address is 45 characters).
MAX_IP_LENGTH = 64


def _networks(values: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(v, strict=False) for v in values]


def _in_networks(
    address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


class Gateway:
    """Owns every connection of this process and the fan-out hub."""

    def __init__(
        self,
        settings: Settings,
        engine: ChannelLog,
        registry: NamespaceRegistry,
        tokens: TokenVerifier,
        pool: AsyncConnectionPool | None,
        *,
        rpc: RpcRegistry | None = None,
        allowed_origins: set[str] | None = None,
        sessions: SessionCheck | None = None,
        control: ControlBus | None = None,
        presence: PresenceStore | None = None,
        node_name: str = "",
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.registry = registry
        self.tokens = tokens
        self.pool = pool
        self.settler = CommitSettler(pool) if pool is not None else None
        self.rpc = rpc or RpcRegistry()
        # Checks the sign-in session behind tokens with a `sid`; None: such tokens are not
        # checked (a gateway without the auth application).
        self.sessions = sessions
        # Every upgrade response names the node (and worker) that took the connection:
        # operators and tests can tell where a client landed behind a balancer.
        self._upgrade_headers = {"X-Syncline-Node": node_name} if node_name else None
        self.node_name = node_name or "syncline"
        self.node_headers = dict(self._upgrade_headers or {})
        # The HTTP transports (HTTP-streaming, SSE, /emulation) on the same port.
        self.http = HttpRoutes(self)
        self.deflater = deflate.Deflater()  # shared by every connection that negotiated it
        self.hub = Hub()
        # Who is in which channel, and who is online, across every process of the cluster.
        self.presence: PresenceStore = presence if presence is not None else MemoryPresenceStore()
        self.connections: set[Connection] = set()
        # Called with the user of each connection that closed, once it is no longer present
        # (applications record last-seen times with it, asking presence whether the user is
        # still online elsewhere).
        self.disconnect_listeners: list[Callable[[str], None]] = []
        # Who may subscribe to a shape channel (channel, user): the shape service's check.
        self.shape_access: Callable[[str, str], bool] | None = None
        self._per_ip: Counter[str] = Counter()
        self._rate = MovingWindowRateLimiter(MemoryStorage())
        self._rate_item = RateLimitItemPerSecond(settings.connects_per_ip_per_second)
        self._trusted = _networks(settings.trusted_proxies)
        self._origins = {o.rstrip("/").lower() for o in (allowed_origins or set())}
        self._origins.update(o.rstrip("/").lower() for o in settings.cors_origins)
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._presence_refresher: asyncio.Task[None] | None = None
        self._unsubscribe_fanout = engine.subscribe_fanout(self.hub)
        self._unsubscribe_presence = engine.subscribe_presence(self.hub)
        self.control = control
        self._unsubscribe_control = control.subscribe(self.on_control) if control else None
        self._namespaces: dict[str, Namespace | Deny] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, sock: socket.socket) -> None:
        # picows's ws_create_server, with a guard in front of its protocol that answers an
        # oversized request head with 431 (picows itself would just drop the connection).
        make_protocol = upgrade.protocol_factory(
            self._route,
            logger=PicowsLog(logging.getLogger("picows.syncline.gateway.ws")),
            handshake_timeout=self.settings.connect_timeout,
            max_frame_size=self.settings.max_frame_size,
            read_buffer_init_size=READ_BUFFER_INIT_SIZE,
            take_http=self.http.take,
        )
        make_protocol()  # a picows whose protocol takes other arguments fails here
        loop = asyncio.get_running_loop()
        # create_server listens again with its own backlog (100 by default), which would undo
        # the runtime's: a burst of connects (every HTTP-transport client POSTing its pong at
        # once, a reconnect storm) then overflows the accept queue and waits on SYN retries.
        self._server = await loop.create_server(make_protocol, sock=sock, backlog=LISTEN_BACKLOG)
        self._ticker = asyncio.create_task(self._tick_loop(), name="gateway-ticker")
        self._presence_refresher = asyncio.create_task(
            self._refresh_presence_loop(), name="gateway-presence"
        )

    async def stop(self) -> None:
        """Stop accepting, tell every client to reconnect elsewhere, and close."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close(DisconnectCode.SHUTDOWN)
        for task in (self._ticker, self._presence_refresher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # The leaves of the clients just closed: present no longer, here or anywhere.
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PRESENCE_DRAIN_S):
                    await asyncio.gather(*self._tasks, return_exceptions=True)
        self._unsubscribe_fanout()
        self._unsubscribe_presence()
        if self._unsubscribe_control is not None:
            self._unsubscribe_control()
        self.http.close()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def problem(self) -> str | None:
        if self._server is None or not self._server.is_serving():
            return "gateway is not listening"
        return None

    # -- admission --------------------------------------------------------------------------

    def _route(self, request: WSUpgradeRequest) -> Any:
        path = request.path.split(b"?", 1)[0]
        if path != WEBSOCKET_PATH:
            return None  # 404
        origin = request.headers.get("Origin")
        if origin is not None and not self.origin_allowed(origin):
            log.info("refused a WebSocket from a foreign origin", origin=origin)
            return WSUpgradeResponseWithListener(
                WSUpgradeResponse.create_error_response(403, b"origin not allowed"), None
            )
        # picows would upgrade versions 7 and 8 too, whose framing we do not speak.
        refused = upgrade.refuse_version(request)
        if refused is not None:
            return refused
        codec, headers = upgrade.requested_codec(request)
        if codec is None:
            log.info("refused a WebSocket asking for an unknown format")
            return WSUpgradeResponseWithListener(
                WSUpgradeResponse.create_error_response(
                    400, b"unknown format: use format=json or format=protobuf"
                ),
                None,
            )
        agreement = None
        if self.settings.websocket_compression:
            negotiated = deflate.negotiate(
                request.headers, takeover=self.settings.websocket_compression_context
            )
            if negotiated is not None:
                agreement, accepted = negotiated
                headers = {**headers, "Sec-WebSocket-Extensions": accepted}
        if self._upgrade_headers:
            headers = {**self._upgrade_headers, **headers}
        if not headers:
            return WebSocketTransport(self, codec)
        response = WSUpgradeResponse.create_101_response(extra_headers=headers)
        return WSUpgradeResponseWithListener(response, WebSocketTransport(self, codec, agreement))

    def client_ip(self, peer: str, forwarded: str | None) -> str:
        """The client's address: the TCP peer's, or the last hop of ``forwarded`` (the
        request's X-Forwarded-For) added by a peer in `trusted_proxies` (a balancer in front
        of the nodes); per-IP limits count it. Every transport asks it the same way."""
        if not self._trusted or not forwarded or not _in_networks(peer, self._trusted):
            return peer
        # Hops are appended left to right; the last one not added by a trusted proxy is the
        # client as our own proxies saw it (anything further left, the client could forge).
        for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
            if not _in_networks(hop, self._trusted):
                return hop[:MAX_IP_LENGTH]
        return peer

    def origin_allowed(self, origin: str) -> bool:
        """A browser's ``Origin`` the WebSocket and HTTP transports accept."""
        return origin.rstrip("/").lower() in self._origins

    def admit(self, conn: Connection) -> int | None:
        """Register a new connection, or the close code that refuses it."""
        ip = conn.ip
        if self._per_ip[ip] >= self.settings.max_connections_per_ip:
            return int(DisconnectCode.CONNECTION_LIMIT)
        if not self._rate.hit(self._rate_item, "connect", ip):
            return int(DisconnectCode.TOO_MANY_REQUESTS)
        self._per_ip[ip] += 1
        self.connections.add(conn)
        metrics.CONNECTIONS.set(len(self.connections))
        return None

    def forget(self, conn: Connection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self._per_ip[conn.ip] -= 1
            if self._per_ip[conn.ip] <= 0:
                del self._per_ip[conn.ip]
            metrics.CONNECTIONS.set(len(self.connections))
            if conn.connected and conn.user:
                self._spawn(self._went_offline(conn.user, conn.client))

    # -- presence ---------------------------------------------------------------------------

    async def went_online(self, conn: Connection) -> None:
        """A user's connection is open: present under the user's online key, cluster-wide."""
        info = ClientInfo(conn.user, conn.client, conn.conn_info)
        try:
            await self.presence.add(online_key(conn.user), info, self.settings.presence_ttl)
        except ConnectionError as err:
            log.warning("presence unavailable: online status not recorded", error=str(err))

    async def _went_offline(self, user: str, client: str) -> None:
        try:
            await self.presence.remove(online_key(user), client)
        except ConnectionError as err:
            log.warning("presence unavailable: the entry will expire", error=str(err))
        for listener in self.disconnect_listeners:
            listener(user)

    async def joined(self, channel: str, info: ClientInfo, *, announce: bool) -> bool:
        """A client is present in ``channel`` (and its join pushed, if ``announce``); False
        when the presence store could not take it (the subscription stands anyway)."""
        try:
            await self.presence.add(channel, info, self.settings.presence_ttl)
        except ConnectionError as err:
            log.warning(
                "presence unavailable: a join not recorded", channel=channel, error=str(err)
            )
            return False
        if announce:
            await self._announce(channel, info, joined=True)
        return True

    def left(self, channel: str, info: ClientInfo, *, announce: bool) -> None:
        """A present client left ``channel``: removed from presence, its leave pushed."""
        self._spawn(self._remove_presence(channel, info, announce))

    async def _announce(self, channel: str, info: ClientInfo, *, joined: bool) -> None:
        """Push a join or leave to the channel's subscribers in every process (the engine
        carries it; each process's hub pushes it to its own subscribers)."""
        try:
            await self.engine.publish_presence(channel, info, joined)
        except ConnectionError as err:
            log.warning("engine unavailable: a join or leave not pushed", error=str(err))

    async def _remove_presence(self, channel: str, info: ClientInfo, announce: bool) -> None:
        if announce:
            await self._announce(channel, info, joined=False)
        try:
            await self.presence.remove(channel, info.client)
        except ConnectionError as err:
            log.warning(
                "presence unavailable: the entry will expire", channel=channel, error=str(err)
            )

    def _present(self) -> list[tuple[str, ClientInfo]]:
        """Every presence entry this process owns: its users online, its clients in channels."""
        entries: list[tuple[str, ClientInfo]] = []
        for conn in self.connections:
            if not conn.connected or conn.closing:
                continue
            if conn.user:
                entries.append(
                    (online_key(conn.user), ClientInfo(conn.user, conn.client, conn.conn_info))
                )
            for sub in conn.subs.values():
                if sub.joined:
                    info = ClientInfo(conn.user, conn.client, conn.conn_info, sub.chan_info)
                    entries.append((sub.channel, info))
        return entries

    async def _refresh_presence_loop(self) -> None:
        """Keep this process's entries from expiring; a dead process's expire on their own."""
        while True:
            await asyncio.sleep(self.settings.presence_ttl / PRESENCE_REFRESHES_PER_TTL)
            entries = self._present()
            for start in range(0, len(entries), PRESENCE_REFRESH_BATCH):
                try:
                    await self.presence.add_many(
                        entries[start : start + PRESENCE_REFRESH_BATCH], self.settings.presence_ttl
                    )
                except ConnectionError as err:
                    log.warning("presence refresh failed", error=str(err))
                    break

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background (awaited, for a moment, when the gateway stops)."""
        self._spawn(coro)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- services for connections -----------------------------------------------------------

    def resolve(self, channel: str) -> Namespace | Deny:
        cached = self._namespaces.get(channel)
        if cached is None:
            cached = self.registry.resolve(channel)
            if len(self._namespaces) < 100_000:
                self._namespaces[channel] = cached
        return cached

    def personal_channel(self, user: str) -> str | None:
        template = self.settings.personal_channel
        if not user or not template:
            return None
        return template.replace("{sub}", user)

    async def is_member(self, check: NeedsMembershipCheck, *, settle: bool = True) -> bool:
        """The membership query's answer; `settle=False` when the caller has already waited
        for the commits it acts on (a re-check after a captured change)."""
        if isinstance(check, NeedsShapeCheck):
            access = self.shape_access
            return access is not None and access(check.params["channel"], check.params["user"])
        if self.pool is None:
            return False
        asked_at = asyncio.get_running_loop().time()
        if await self._member_now(check):
            return True
        # Not a member, or a membership committed a moment ago that new snapshots do not see
        # yet (capture delivered its row and the client acted on it): ask again once such
        # commits are visible. Again even when the wait found nothing running: the commit may
        # have become visible between the first answer and the wait. Only a refusal pays.
        if not settle or self.settler is None:
            return False
        await self.settler.settle(asked_at)
        return await self._member_now(check)

    async def _member_now(self, check: NeedsMembershipCheck) -> bool:
        assert self.pool is not None
        async with self.pool.connection() as conn:
            cur = await conn.execute(check.query, dict(check.params))
            return await cur.fetchone() is not None

    def unlisten_soon(self, channel: str) -> None:
        if self.hub.subscribers(channel) == 0:
            task = asyncio.get_running_loop().create_task(self.engine.unlisten(channel))
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _recheck(self, channel: str, xids: tuple[int, ...] = ()) -> None:
        if self.pool is not None:
            await wait_until_visible(self.pool, xids)
        for conn in list(self.hub.channels.get(channel, {})):
            if not await conn.still_allowed(channel):
                conn.revoke(channel)
                conn.flush()

    # -- what this process reports (syncline.nodes.LocalStats) -----------------------------

    def counts(self) -> NodeCounts:
        connected = [c for c in self.connections if c.connected]
        return NodeCounts(
            num_clients=len(connected),
            num_users=len({c.user for c in connected}),
            num_channels=len(self.hub.channels),
            num_subs=sum(len(c.subs) for c in connected),
        )

    def channel_clients(self) -> dict[str, int]:
        return {name: len(subs) for name, subs in self.hub.channels.items()}

    # -- control-bus commands (from any process) --------------------------------------------

    def on_control(self, command: ControlCommand) -> None:
        """Carry out a control-bus command for this process's connections."""
        if isinstance(command, SessionsRevoked):
            self.close_sessions(command.user, set(command.sessions))
        elif isinstance(command, DisconnectUser):
            self.disconnect_user(command.user, command.code, command.reason, command.client)
        elif isinstance(command, UnsubscribeUser):
            self.unsubscribe_user(command.user, command.channel, command.client)
        elif isinstance(command, SubscribeUser):
            for conn in self._connections_of(command.user, command.client):
                self._spawn(conn.subscribe_server_side(command))
        elif isinstance(command, RefreshUser):
            for conn in self._connections_of(command.user, command.client):
                conn.refresh_server_side(command)
        elif isinstance(command, Emulate) and command.node == self.node_name:
            self.http.emulate_here(command.session, command.data, forwarded=True)
        elif isinstance(command, RecheckChannel) and command.channel in self.hub.channels:
            self._spawn(self._recheck(command.channel, command.xids))

    def close_sessions(self, user: str, sessions: set[str]) -> None:
        """Close (3500 "session revoked") every connection whose token is of these sessions,
        including one whose connect is still being checked (its user and session are set
        before the check, so it cannot slip through between the check and the revocation)."""
        for conn in list(self.connections):
            if conn.sid in sessions and conn.user == user:
                conn.close(DisconnectCode.INVALID_TOKEN, reason=SESSION_REVOKED_REASON)

    def disconnect_user(self, user: str, code: int, reason: str = "", client: str = "") -> None:
        if not reason:
            known = code in DisconnectCode._value2member_map_
            reason = DisconnectCode(code).reason if known else "force disconnect"
        for conn in list(self.connections):
            if conn.connected and conn.user == user and (not client or conn.client == client):
                conn.close(code, reason=reason)

    def _connections_of(self, user: str, client: str) -> list[Connection]:
        return [
            conn
            for conn in self.connections
            if conn.connected
            and not conn.closing
            and conn.user == user
            and (not client or conn.client == client)
        ]

    def unsubscribe_user(self, user: str, channel: str, client: str = "") -> None:
        """The server API's unsubscribe: from ``channel`` (every channel when empty), server-side
        subscriptions included, as Centrifugo's; the client gets an unsubscribe push (2000)."""
        if not channel:
            for conn in self._connections_of(user, client):
                for name in list(conn.subs):
                    conn.revoke(name, server_side_too=True)
                conn.flush()
            return
        for conn in list(self.hub.channels.get(channel, {})):
            if conn.user == user and (not client or conn.client == client):
                conn.revoke(channel, server_side_too=True)
                conn.flush()

    # -- timers -----------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now, wall = time.monotonic(), time.time()
            for conn in list(self.connections):
                conn.tick(now, wall)
