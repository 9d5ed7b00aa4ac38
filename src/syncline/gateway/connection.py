"""One client session's runner: the sans-I/O Session plus the work that awaits, over any transport.

The protocol's state and rules are ``syncline.core.session.Session``; this class adds what
needs the world: tokens, sign-in sessions, membership queries, the engine (listen, recover,
publish, history), presence and RPC handlers, and the gateway's fan-out hub. The transport
(gateway/transport.py: ``ClientTransport``; the WebSocket one is gateway/websocket.py) hands
in whole messages and carries the encoded output. Commands of a message run in order, one at
a time (JS sends connect and subscribes in one frame). Everything written to the client goes
through the session's one bounded queue, so a reply and the pushes around it keep their order,
and a client that does not read is disconnected with 3008 instead of growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import TYPE_CHECKING, Any

import orjson
import psycopg

from syncline import __version__, metrics
from syncline.core import protocol as p
from syncline.core import wire
from syncline.core.codes import DisconnectCode, ErrorCode
from syncline.core.control import RefreshUser, SubscribeUser
from syncline.core.log import ClientInfo, LogError, StreamPosition
from syncline.core.namespaces import Action, Decision, Deny, NeedsMembershipCheck, authorize
from syncline.core.session import NEVER, SESSION_REVOKED_REASON, Session, Subscription, earliest
from syncline.gateway.auth import TokenError
from syncline.gateway.transport import ClientTransport
from syncline.logs import get_logger
from syncline.rpc import RpcContext, RpcError

if TYPE_CHECKING:
    from syncline.gateway.server import Gateway

__all__ = ["SERVER_VERSION", "SESSION_REVOKED_REASON", "Connection", "Subscription"]

log = get_logger(__name__)

SERVER_VERSION = f"syncline/{__version__}"


class Connection(Session):
    """A client speaking the Centrifuge protocol, over any transport (``ClientTransport``).

    gateway/transport.py says how a transport adapter drives it.
    """

    __slots__ = ("_worker", "gw", "ip", "transport")

    def __init__(self, gateway: Gateway, transport: ClientTransport) -> None:
        super().__init__(gateway.settings, transport.codec, time.monotonic())
        self.gw = gateway
        self.transport = transport
        self.ip = transport.ip
        self._worker: asyncio.Task[None] | None = None

    # -- the transport's calls --------------------------------------------------------------

    def open(self) -> bool:
        """Register with the gateway; False (and closed) when its limits refuse the client."""
        refused = self.gw.admit(self)
        if refused is not None:
            self.close(refused)
            return False
        return True

    def receive(self, data: bytes) -> None:
        """One complete client message: its commands run in order, after those before it."""
        if self.accept(data) and (self._worker is None or self._worker.done()):
            self._worker = asyncio.create_task(self._work())

    def disconnected(self) -> None:
        """The transport is gone: release subscriptions, presence and the gateway's slot."""
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
        self.end()
        self.gw.forget(self)

    # -- the session's hooks ----------------------------------------------------------------

    def _on_output(self) -> None:
        self.gw.hub.mark_dirty(self)

    def _on_send(self, messages: list[bytes]) -> None:
        self.transport.send(messages)

    def _on_close(self, code: int, reason: str) -> None:
        self.transport.close(code, reason)

    def _on_detach(self, sub: Subscription) -> None:
        gw = self.gw
        gw.hub.remove(sub.channel, self)
        gw.unlisten_soon(sub.channel)
        if sub.namespace.presence and sub.joined:
            info = ClientInfo(self.user, self.client, self.conn_info, sub.chan_info)
            gw.left(sub.channel, info, announce=sub.namespace.join_leave)

    def _on_slow(self) -> None:
        metrics.SLOW_DISCONNECTS.inc()
        log.info("disconnecting a slow client", client=self.client, ip=self.ip)

    def _on_malformed(self, detail: str) -> None:
        log.info("closing on a malformed frame", client=self.client, why=detail)

    # -- commands ---------------------------------------------------------------------------

    async def _work(self) -> None:
        try:
            while (command := self.next_command()) is not None:
                await self._run(command)
            self.flush()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("command failed", client=self.client)
            self.close(DisconnectCode.INTERNAL)

    async def _run(self, command: p.Command) -> None:
        if not self.admit(command):
            return
        if isinstance(command, p.ConnectCommand):
            await self._connect(command)
            return
        if self.needs_session_check(command) and await self._session_expiry(command.id) is None:
            return
        if isinstance(command, p.SubscribeCommand):
            await self._subscribe(command)
        elif isinstance(command, p.UnsubscribeCommand):
            self.unsubscribe(command)
        elif isinstance(command, p.PublishCommand):
            await self._publish(command)
        elif isinstance(command, p.PresenceCommand | p.PresenceStatsCommand):
            await self._presence(command)
        elif isinstance(command, p.HistoryCommand):
            await self._history(command)
        elif isinstance(command, p.RpcCommand):
            await self._rpc(command)
        elif isinstance(command, p.RefreshCommand):
            await self._refresh(command)
        elif isinstance(command, p.SubRefreshCommand):
            self._sub_refresh(command)

    async def _connect(self, cmd: p.ConnectCommand) -> None:
        gw = self.gw
        if cmd.token:
            try:
                claims = gw.tokens.connection(cmd.token)
            except TokenError as err:
                if not err.expired:
                    log.info("connect with an invalid token", ip=self.ip, why=str(err))
                self.token_refused(cmd.id, expired=err.expired)
                return
            self.authenticate(claims.user, claims.expires_at, claims.info, claims.session)
            if self.sid:
                expiry = await self._session_expiry(cmd.id)
                if expiry is None:
                    return
                self.limit_to_session(expiry)
        elif not self.anonymous(cmd.id):
            return
        self.connected_as(str(uuid.uuid4()), time.monotonic())
        if self.user:
            await gw.went_online(self)
        subs: dict[str, dict[str, Any]] = {}
        server_subs: list[Subscription] = []
        personal = gw.personal_channel(self.user)
        if personal is not None:
            namespace = gw.resolve(personal)
            if isinstance(namespace, Deny):
                # The setting was checked at start: this user's id can't make a channel name.
                log.warning("no personal channel", user=self.user, why=namespace.reason)
            else:
                asked = cmd.subs.get(personal)
                sub = Subscription(personal, namespace, server_side=True)
                subs[personal] = await self._attach(
                    sub,
                    recover=bool(asked and asked.recover),
                    since=StreamPosition(asked.offset, asked.epoch) if asked else None,
                    positioned=True,
                )
                server_subs.append(sub)
        self.connect_reply(
            cmd.id, version=SERVER_VERSION, ttl=gw.tokens.ttl(self.expires_at), subs=subs
        )
        for sub in server_subs:
            self.release(sub)

    async def _subscribe(self, cmd: p.SubscribeCommand) -> None:
        gw = self.gw
        channel = cmd.channel
        if not self.may_subscribe(cmd):
            return
        namespace = gw.resolve(channel)
        if isinstance(namespace, Deny):
            self.error(cmd.id, namespace.code)
            return
        sub = self.new_subscription(cmd, namespace)
        if cmd.token:
            try:
                claims = gw.tokens.subscription(
                    cmd.token, channel=channel, user=self.user, client=self.client
                )
            except TokenError as err:
                mismatch = "mismatch" in str(err)
                self.subscribe_token_refused(cmd.id, expired=err.expired, mismatch=mismatch)
                return
            sub.chan_info, sub.expires_at = claims.info, claims.expires_at
        else:
            decision = authorize(namespace, Action.SUBSCRIBE, channel, self.user)
            if not await self._allowed(cmd.id, decision):
                return
        if not self.still_wanted(channel):
            return
        result = await self._attach(
            sub,
            recover=cmd.recover,
            since=StreamPosition(cmd.offset, cmd.epoch) if cmd.recover else None,
            positioned=cmd.positioned,
        )
        if self.subscribed(cmd, sub, result, gw.tokens.ttl(sub.expires_at)):
            await self._join(sub)

    async def _allowed(self, command_id: int, decision: Decision) -> bool:
        allowed = self.decided(command_id, decision)
        if allowed is not None:
            return allowed
        assert isinstance(decision, NeedsMembershipCheck)
        try:
            member = await self.gw.is_member(decision)
        except psycopg.Error as err:
            log.warning("membership check failed", error=str(err))
            self.check_failed(command_id)
            return False
        return self.member(command_id, member)

    async def _attach(
        self, sub: Subscription, *, recover: bool, since: StreamPosition | None, positioned: bool
    ) -> dict[str, Any]:
        """Subscribe to live publications first, then read the position or recover."""
        namespace, engine, hub = sub.namespace, self.gw.engine, self.gw.hub
        recoverable = namespace.recover and namespace.history_size > 0
        self.attach(sub, recoverable=recoverable, positioned=positioned)
        hub.add(sub.channel, self, sub)
        await engine.listen(sub.channel)
        if recoverable and recover and since is not None:
            outcome = await engine.recover(sub.channel, since)
            result = self.positioned_at(
                sub,
                outcome.position,
                recoverable=recoverable,
                recovering=recover,
                recovered=outcome.recovered,
                publications=outcome.publications,
            )
            if sub.delta and outcome.publications:
                # The client ends holding the last one: the next live one can be its delta.
                assert sub.delta_holds is not None
                hub.seed_delta(sub.channel, sub.delta_holds, outcome.publications[-1].data)
            return result
        position = await engine.position(sub.channel)
        return self.positioned_at(sub, position, recoverable=recoverable, recovering=recover)

    async def _join(self, sub: Subscription) -> None:
        if not sub.namespace.presence:
            return
        info = ClientInfo(self.user, self.client, self.conn_info, sub.chan_info)
        announce = sub.namespace.join_leave
        joined = await self.gw.joined(sub.channel, info, announce=announce)
        if self.subs.get(sub.channel) is not sub:
            # Unsubscribed or disconnected while the join was being stored: undo it now, or
            # it would stay until it expires.
            if joined:
                self.gw.left(sub.channel, info, announce=announce)
            return
        sub.joined = joined

    async def _publish(self, cmd: p.PublishCommand) -> None:
        namespace = self.gw.resolve(cmd.channel)
        if isinstance(namespace, Deny):
            self.error(cmd.id, namespace.code)
            return
        subscribed = cmd.channel in self.subs
        decision = authorize(
            namespace, Action.PUBLISH, cmd.channel, self.user, subscribed=subscribed
        )
        if not await self._allowed(cmd.id, decision):
            return
        sub = self.subs.get(cmd.channel)
        info = ClientInfo(self.user, self.client, self.conn_info, sub.chan_info if sub else None)
        data, engine = orjson.dumps(cmd.data), self.gw.engine
        try:
            if namespace.client_publish_history:
                # The engine's atomic append: the next offset of the one sequence that
                # captured changes take too (docs/topics/client-publish-history.md).
                await engine.append(
                    cmd.channel,
                    data,
                    info=info,
                    history_size=namespace.history_size,
                    history_ttl_s=float(namespace.history_ttl),
                )
            else:
                await engine.publish_ephemeral(cmd.channel, data, info)
        except ConnectionError as err:
            # The engine (Redis) is unreachable: the publication may or may not have been
            # appended, so no retry here; the client gets error 100, as from Centrifugo.
            log.warning("publish failed", channel=cmd.channel, error=str(err))
            self.error(cmd.id, ErrorCode.INTERNAL)
            return
        # Centrifugo's PublishResult is empty whatever the namespace: no offset or epoch.
        self.reply(cmd.id, "publish", {})

    async def _presence(self, cmd: p.PresenceCommand | p.PresenceStatsCommand) -> None:
        namespace = self.gw.resolve(cmd.channel)
        if isinstance(namespace, Deny):
            self.error(cmd.id, namespace.code)
            return
        decision = authorize(
            namespace, Action.PRESENCE, cmd.channel, self.user, subscribed=cmd.channel in self.subs
        )
        if not await self._allowed(cmd.id, decision):
            return
        presence = self.gw.presence
        try:
            if isinstance(cmd, p.PresenceCommand):
                result = wire.presence_result(await presence.clients(cmd.channel))
            else:
                result = wire.presence_stats_result(*await presence.stats(cmd.channel))
        except ConnectionError as err:
            log.warning("presence unavailable", channel=cmd.channel, error=str(err))
            self.error(cmd.id, ErrorCode.INTERNAL)
            return
        self.reply(
            cmd.id, "presence" if isinstance(cmd, p.PresenceCommand) else "presence_stats", result
        )

    async def _history(self, cmd: p.HistoryCommand) -> None:
        namespace = self.gw.resolve(cmd.channel)
        if isinstance(namespace, Deny):
            self.error(cmd.id, namespace.code)
            return
        decision = authorize(
            namespace, Action.HISTORY, cmd.channel, self.user, subscribed=cmd.channel in self.subs
        )
        if not await self._allowed(cmd.id, decision):
            return
        try:
            result = await self.gw.engine.history(cmd.channel, cmd.limit, cmd.since, cmd.reverse)
        except LogError as err:
            self.error(cmd.id, err.code)
            return
        self.reply(
            cmd.id,
            "history",
            wire.history_result(
                result.publications, epoch=result.position.epoch, offset=result.position.offset
            ),
        )

    async def _rpc(self, cmd: p.RpcCommand) -> None:
        handler = self.gw.rpc.get(cmd.method)
        if handler is None:
            self.error(cmd.id, ErrorCode.NOT_AVAILABLE)
            return
        try:
            data = await handler(RpcContext(self.user, self.client, self.conn_info), cmd.data)
        except RpcError as err:
            self.error(cmd.id, err.code, err.message)
            return
        except Exception:
            log.exception("rpc handler failed", method=cmd.method)
            self.error(cmd.id, ErrorCode.INTERNAL)
            return
        self.reply(cmd.id, "rpc", wire.rpc_result(data))

    async def _refresh(self, cmd: p.RefreshCommand) -> None:
        try:
            claims = self.gw.tokens.connection(cmd.token)
        except TokenError as err:
            self.refresh_refused(expired=err.expired)
            return
        if claims.user != self.user:
            self.refresh_refused(expired=False)
            return
        # A refreshed token may belong to a new sign-in of the same user: it is the new
        # token's session that must be live from now on.
        self.sid = claims.session
        expires_at = claims.expires_at
        if self.sid:
            expiry = await self._session_expiry(cmd.id)
            if expiry is None:
                return
            expires_at = earliest(expires_at, expiry)
        self.refreshed(cmd.id, expires_at, self.gw.tokens.ttl(expires_at))

    def _sub_refresh(self, cmd: p.SubRefreshCommand) -> None:
        sub = self.to_refresh(cmd)
        if sub is None:
            return
        try:
            claims = self.gw.tokens.subscription(
                cmd.token, channel=cmd.channel, user=self.user, client=self.client
            )
        except TokenError as err:
            self.sub_refresh_refused(cmd.id, expired=err.expired)
            return
        self.sub_refreshed(cmd.id, sub, claims.expires_at, self.gw.tokens.ttl(claims.expires_at))

    async def _session_expiry(self, command_id: int) -> int | None:
        """The session's expiry if it is live (the connection's expiry is brought to it);
        else the connection is closed (3500) and None.

        A failing check (database down) refuses the command with a temporary error instead:
        a sign-in is not revoked because PostgreSQL restarts.
        """
        sessions = self.gw.sessions
        if sessions is None:
            return NEVER
        sid = self.sid
        try:
            expiry = await sessions.token_session_expiry(self.user, sid)
        except Exception as err:
            log.warning("session check failed", client=self.client, error=str(err))
            self.check_failed(command_id)
            return None
        if expiry is None and not self.closing:
            log.info("refused a revoked session", user=self.user, session=sid, ip=self.ip)
        if not self.session_live(expiry):
            return None
        return expiry

    # -- timers (driven by the gateway's clock loop) ----------------------------------------

    def tick(self, now: float, wall: float) -> None:
        if self.closing:
            self.transport.linger(now)
            return
        super().tick(now, wall)

    # -- the server API's subscribe and refresh (control-bus commands) ------------------------

    async def subscribe_server_side(self, command: SubscribeUser) -> None:
        """Subscribe this connection to ``command.channel`` server-side, as Centrifugo's server
        API does. Nothing happens for a channel it is already subscribed to."""
        gw, channel = self.gw, command.channel
        if not self.may_subscribe_server_side(channel):
            if len(self.subs) >= gw.settings.max_subscriptions:
                log.info(
                    "server-side subscribe over the limit", client=self.client, channel=channel
                )
            return
        namespace = gw.resolve(channel)
        if isinstance(namespace, Deny):
            return  # the server API refused it already (102); a node with other config skips
        sub = Subscription(channel, namespace, server_side=True)
        sub.chan_info = command.info.encode() if command.info else None
        sub.expires_at = command.expire_at or None
        since = None
        if command.recover_epoch:
            since = StreamPosition(command.recover_offset, command.recover_epoch)
        try:
            result = await self._attach(
                sub, recover=since is not None, since=since, positioned=True
            )
        except Exception:
            # As a failing client command does: a reconnect puts the client in a known state.
            log.exception("server-side subscribe failed", client=self.client, channel=channel)
            self.close(DisconnectCode.INTERNAL)
            return
        if self.server_subscribed(sub, result, command.data):
            await self._join(sub)

    def refresh_server_side(self, command: RefreshUser) -> None:
        """Centrifugo's server-side refresh (Session.server_refreshed), from the control bus."""
        self.server_refreshed(
            expired=command.expired,
            expire_at=command.expire_at,
            info=command.info,
            wall=time.time(),
        )

    async def still_allowed(self, channel: str) -> bool:
        sub = self.subs.get(channel)
        if sub is None:
            return True
        decision = authorize(sub.namespace, Action.SUBSCRIBE, channel, self.user)
        if isinstance(decision, NeedsMembershipCheck):
            with contextlib.suppress(psycopg.Error):
                # The re-check has waited for the captured transactions already.
                return await self.gw.is_member(decision, settle=False)
            return True  # a failing check is not a lost membership
        return not isinstance(decision, Deny)
