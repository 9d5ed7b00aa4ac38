"""One client session: the Centrifuge protocol state machine over any transport.

The transport (gateway/transport.py: ``ClientTransport``; the WebSocket one is
gateway/websocket.py) hands in whole messages and carries the encoded output; everything
else is here. Commands of a message run in order, one at a time (JS sends connect and
subscribes in one frame). Everything written to the client (replies, pushes) goes through one
bounded queue, so a reply and the pushes around it keep their order, and a client that does
not read is disconnected with 3008 instead of growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import psycopg

from syncline import __version__, metrics
from syncline.core import delta, wire
from syncline.core import protocol as p
from syncline.core.codecs import JSON
from syncline.core.codes import DisconnectCode, ErrorCode, UnsubscribeCode
from syncline.core.control import RefreshUser, SubscribeUser
from syncline.core.delta import DeltaStep, PubKey
from syncline.core.log import ClientInfo, LogError, Publication, StreamPosition
from syncline.core.namespaces import (
    Action,
    Allow,
    Deny,
    Namespace,
    NeedsMembershipCheck,
    NeedsToken,
    authorize,
)
from syncline.gateway.auth import TokenError
from syncline.gateway.transport import ClientTransport
from syncline.logs import get_logger
from syncline.rpc import RpcContext, RpcError

if TYPE_CHECKING:
    from syncline.gateway.server import Gateway

log = get_logger(__name__)

SERVER_VERSION = f"syncline/{__version__}"
# A command list waiting to run: a client that floods commands is closed, not buffered.
MAX_PENDING_COMMANDS = 1024
# The close reason (with 3500) when the token's sign-in session was revoked or has ended.
SESSION_REVOKED_REASON = "session revoked"
# What a session check returns when the gateway has no session checker: no limit.
_NEVER = 2**62
# Commands that read or write and so re-check the token's session (connect and refresh check
# their own token; unsubscribe always succeeds; pong and send carry nothing to authorize).
_SESSION_CHECKED = (
    p.SubscribeCommand,
    p.PublishCommand,
    p.PresenceCommand,
    p.PresenceStatsCommand,
    p.HistoryCommand,
    p.RpcCommand,
    p.SubRefreshCommand,
)


# The furthest a server-side refresh moves a connection's expiry: a year, as centrifuge's.
MAX_REFRESH_TTL_S = 365 * 24 * 3600
# What Centrifugo's `subscribe` push carries of a subscribe result (client.go,
# getSubscribePushReply): the position, not the recovered publications, which follow as pushes.
_SUBSCRIBE_PUSH_KEYS = ("recoverable", "positioned", "epoch", "offset")


def _earliest(expires_at: int | None, session_expiry: int) -> int | None:
    """A connection lasts no longer than its token nor its session."""
    if session_expiry >= _NEVER:
        return expires_at
    return session_expiry if expires_at is None else min(expires_at, session_expiry)


@dataclass(slots=True, eq=False)
class Subscription:
    """One channel a connection receives, and where it stands in the channel's stream."""

    channel: str
    namespace: Namespace
    server_side: bool = False
    positioned: bool = False  # continuity is checked and a gap unsubscribes with 2500
    epoch: str = ""
    offset: int = 0
    # Live publications that arrive while the subscribe reply is being built.
    pending: list[tuple[str, int, bytes, DeltaStep | None]] | None = field(default_factory=list)
    chan_info: bytes | None = None
    expires_at: int | None = None
    # Present in the channel (presence store): so a leave is announced only after a join.
    joined: bool = False
    # Fossil delta negotiated: publications go out as DeltaStep frames (data a JSON string).
    delta: bool = False
    # The key of the last publication data the client holds, the base a delta must have.
    delta_holds: PubKey | None = None


class Connection:
    """One client speaking the Centrifuge protocol, over any transport (``ClientTransport``).

    Owns the session's state (connected, subscriptions and their positions, expiry, timers)
    and does its asynchronous work (tokens, sessions, membership, engine, presence, RPC); the
    transport only carries bytes. gateway/transport.py says how an adapter drives it.
    """

    # Ten thousand idle connections are ten thousand of these: no per-instance __dict__.
    __slots__ = (
        "_inbox",
        "_out",
        "_out_size",
        "_paused",
        "_worker",
        "client",
        "closing",
        "codec",
        "conn_info",
        "connected",
        "expires_at",
        "gw",
        "ip",
        "next_ping_at",
        "opened_at",
        "ping_sent_at",
        "session",
        "subs",
        "transport",
        "user",
    )

    def __init__(self, gateway: Gateway, transport: ClientTransport) -> None:
        self.gw = gateway
        self.transport = transport
        # The format, chosen before the connection exists: every message goes through it
        # (the hub reads it for each delivery, hence a copy here rather than a property).
        self.codec = transport.codec
        self.ip = transport.ip
        self.client = ""
        self.user = ""
        self.session = ""  # the token's `sid`: its sign-in session, checked while connected
        self.conn_info: bytes | None = None
        self.connected = False
        self.closing = False
        self.opened_at = time.monotonic()
        self.expires_at: int | None = None
        self.ping_sent_at: float | None = None
        self.next_ping_at = 0.0
        self.subs: dict[str, Subscription] = {}
        self._out: list[bytes] = []
        self._out_size = 0
        self._inbox: deque[p.Command] | None = None  # made on the first command
        self._worker: asyncio.Task[None] | None = None
        self._paused = False  # the transport's buffer is over its high-water mark

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
        if not self.closing:
            self._receive(data)

    def closed_by_client(self) -> None:
        """The client started the close: nothing more goes out."""
        self.closing = True

    def disconnected(self) -> None:
        """The transport is gone: release subscriptions, presence and the gateway's slot."""
        self.closing = True
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
        for sub in list(self.subs.values()):
            self._detach(sub)
        self.subs.clear()
        self._out.clear()
        self.gw.forget(self)

    # -- input ------------------------------------------------------------------------------

    def _receive(self, data: bytes) -> None:
        settings = self.gw.settings
        try:
            commands = self.codec.parse_frame(
                data,
                max_commands=settings.max_commands_per_frame,
                max_size=settings.max_frame_size,
            )
        except p.ProtocolError as err:
            log.info("closing on a malformed frame", client=self.client, why=err.detail)
            self.close(err.code)
            return
        if self._inbox is None:
            self._inbox = deque()
        if len(self._inbox) + len(commands) > MAX_PENDING_COMMANDS:
            self.close(DisconnectCode.TOO_MANY_REQUESTS)
            return
        self._inbox.extend(commands)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())

    async def _work(self) -> None:
        try:
            inbox = self._inbox
            while inbox and not self.closing:
                command = inbox.popleft()
                await self._run(command)
            self.flush()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("command failed", client=self.client)
            self.close(DisconnectCode.INTERNAL)

    async def _run(self, command: p.Command) -> None:
        if isinstance(command, p.Pong):
            self.ping_sent_at = None
            return
        if isinstance(command, p.RejectedCommand):
            self._error(command.id, command.code)
            return
        if isinstance(command, p.ConnectCommand):
            await self._connect(command)
            return
        if not self.connected:
            # Go closes a session that sends anything before a successful connect.
            self.close(DisconnectCode.BAD_REQUEST)
            return
        # Every read and write goes through the session check, as REST requests do.
        if (
            self.session
            and isinstance(command, _SESSION_CHECKED)
            and await self._session_expiry(command.id) is None
        ):
            return
        if isinstance(command, p.SubscribeCommand):
            await self._subscribe(command)
        elif isinstance(command, p.UnsubscribeCommand):
            self._unsubscribe(command)
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
        # SendCommand: no handler, no reply (the protocol's fire-and-forget message).

    # -- output -----------------------------------------------------------------------------

    def queue(self, data: bytes) -> None:
        if self.closing:
            return
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size > self.gw.settings.send_buffer:
            if self._paused:
                # The transport is backed up and so is this queue: the client is not reading.
                self._slow()
            else:
                # A burst (one capture batch is fanned out in a single loop turn) is no sign
                # of a slow client: hand it to the transport now.
                self.flush()
            return
        self.gw.hub.mark_dirty(self)

    def flush(self) -> None:
        # While the transport is backed up, frames wait here, where they are still whole
        # and can be dropped: the transport only ever holds complete frames.
        if not self._paused:
            self._send_out()

    def _send_out(self) -> None:
        if not self._out or self.closing:
            return
        out, self._out = self._out, []
        self._out_size = 0
        self.transport.send(out)

    def pause_writing(self) -> None:
        """The transport's buffer went over its high-water mark."""
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._out:
            # Not flush(): uvloop calls this from inside a write to the transport.
            self.gw.hub.mark_dirty(self)

    def _slow(self) -> None:
        metrics.SLOW_DISCONNECTS.inc()
        log.info("disconnecting a slow client", client=self.client, ip=self.ip)
        # Drop what is queued here; what the transport and the kernel hold (whole frames)
        # stays, so the close frame is read right after the last complete one.
        self._out.clear()
        self._out_size = 0
        self.close(DisconnectCode.SLOW, flush=False)

    def _reply(self, command_id: int, method: str, result: dict[str, Any]) -> None:
        self.queue(self.codec.encode_reply(command_id, method, result))

    def _error(self, command_id: int, code: int, message: str | None = None) -> None:
        self.queue(self.codec.encode_error(command_id, code, message))

    def close(self, code: int, *, flush: bool = True, reason: str | None = None) -> None:
        """Close with a protocol code and its plain-text reason (idempotent).

        What is queued goes out first (``flush``), even into a backed-up transport: a reply
        goes before the close. The transport makes the close the last thing the client reads.
        """
        if self.closing:
            return
        if flush:
            self._send_out()
        self.closing = True
        self._out.clear()
        self._out_size = 0
        if reason is None:
            reason = DisconnectCode(code).reason
        self.transport.close(code, reason)

    # -- deliveries (called by the hub) -----------------------------------------------------

    def deliver(
        self,
        sub: Subscription,
        epoch: str,
        offset: int,
        frame: bytes,
        step: DeltaStep | None = None,
    ) -> None:
        """Queue one publication of the channel (``step``: its delta encodings, for a
        channel with delta subscribers)."""
        if sub.pending is not None:
            sub.pending.append((epoch, offset, frame, step))
            return
        if offset and sub.positioned:
            if epoch != sub.epoch:
                self.lost_continuity(sub)
                return
            if offset <= sub.offset:
                return  # already sent in the subscribe reply
            if offset != sub.offset + 1:
                self.lost_continuity(sub)
                return
        if offset:
            sub.offset = offset
        if sub.delta:
            if step is None:
                # A delta subscriber must never get plain data: make it resubscribe.
                self.lost_continuity(sub)
                return
            frame = step.frame_for(sub.delta_holds)
            sub.delta_holds = step.key
        self.queue(frame)

    def lost_continuity(self, sub: Subscription) -> None:
        """Never skip silently: make the client resubscribe (or reconnect) and recover."""
        if self.subs.get(sub.channel) is not sub:
            return
        if sub.server_side:
            self.close(DisconnectCode.INSUFFICIENT_STATE)
            return
        self._detach(sub)
        self.queue(
            self.codec.encode_unsubscribe_push(sub.channel, UnsubscribeCode.INSUFFICIENT_STATE)
        )

    def _release(self, sub: Subscription) -> None:
        """Send what arrived while the subscribe reply was being made, then go live."""
        pending, sub.pending = sub.pending or [], None
        for epoch, offset, frame, step in pending:
            self.deliver(sub, epoch, offset, frame, step)

    # -- commands ---------------------------------------------------------------------------

    async def _connect(self, cmd: p.ConnectCommand) -> None:
        if self.connected:
            self.close(DisconnectCode.BAD_REQUEST)
            return
        gw = self.gw
        if cmd.token:
            try:
                claims = gw.tokens.connection(cmd.token)
            except TokenError as err:
                if err.expired:
                    self._error(cmd.id, ErrorCode.TOKEN_EXPIRED)
                    return
                log.info("connect with an invalid token", ip=self.ip, why=str(err))
                self.close(DisconnectCode.INVALID_TOKEN)
                return
            self.user, self.expires_at, self.conn_info = claims.user, claims.expires_at, claims.info
            self.session = claims.session
            if self.session:
                session_expiry = await self._session_expiry(cmd.id)
                if session_expiry is None:
                    return
                self.expires_at = _earliest(self.expires_at, session_expiry)
        elif not gw.settings.allow_anonymous:
            self._error(cmd.id, ErrorCode.UNAUTHORIZED)
            self.close(DisconnectCode.INVALID_TOKEN)
            return
        self.client = str(uuid.uuid4())
        self.connected = True
        if self.user:
            await gw.went_online(self)
        self.next_ping_at = time.monotonic() + gw.settings.ping_interval
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
                result = await self._attach(
                    sub,
                    recover=bool(asked and asked.recover),
                    since=StreamPosition(asked.offset, asked.epoch) if asked else None,
                    positioned=True,
                )
                subs[personal] = result
                server_subs.append(sub)
        ttl = gw.tokens.ttl(self.expires_at)
        self._reply(
            cmd.id,
            "connect",
            wire.connect_result(
                self.client,
                version=SERVER_VERSION,
                expires=self.expires_at is not None,
                ttl=ttl,
                ping=gw.settings.ping_interval,
                pong=True,
                subs=subs,
            ),
        )
        for sub in server_subs:
            self._release(sub)

    async def _subscribe(self, cmd: p.SubscribeCommand) -> None:
        gw = self.gw
        channel = cmd.channel
        if channel in self.subs:
            self._error(cmd.id, ErrorCode.ALREADY_SUBSCRIBED)
            return
        if len(self.subs) >= gw.settings.max_subscriptions:
            self._error(cmd.id, ErrorCode.LIMIT_EXCEEDED)
            return
        namespace = gw.resolve(channel)
        if isinstance(namespace, Deny):
            self._error(cmd.id, namespace.code)
            return
        sub = Subscription(channel, namespace)
        # Fossil delta is encoded for the JSON format only; a Protobuf client asking for it gets
        # a plain subscription, as Centrifugo answers a delta type it does not allow.
        sub.delta = self.codec is JSON and delta.negotiate(cmd.delta, namespace.allowed_delta_types)
        if cmd.token:
            try:
                claims = gw.tokens.subscription(
                    cmd.token, channel=channel, user=self.user, client=self.client
                )
            except TokenError as err:
                if err.expired:
                    self._error(cmd.id, ErrorCode.TOKEN_EXPIRED)
                elif "mismatch" in str(err):
                    self.close(DisconnectCode.INVALID_TOKEN)
                else:
                    self._error(cmd.id, ErrorCode.PERMISSION_DENIED)
                return
            sub.chan_info, sub.expires_at = claims.info, claims.expires_at
        else:
            decision = authorize(namespace, Action.SUBSCRIBE, channel, self.user)
            if not await self._allowed(cmd.id, decision):
                return
        if self.closing or channel in self.subs:
            return
        result = await self._attach(
            sub,
            recover=cmd.recover,
            since=StreamPosition(cmd.offset, cmd.epoch) if cmd.recover else None,
            positioned=cmd.positioned,
        )
        if self.closing:
            return
        if (
            cmd.recover
            and sub.positioned
            and not result.get("recovered")
            and cmd.reject_unrecovered
        ):
            self._detach(sub)
            self._error(cmd.id, ErrorCode.UNRECOVERABLE_POSITION)
            return
        if sub.expires_at is not None:
            result = {**result, "expires": True, "ttl": gw.tokens.ttl(sub.expires_at)}
        self._reply(cmd.id, "subscribe", result)
        self._release(sub)
        await self._join(sub)

    async def _allowed(self, command_id: int, decision: object) -> bool:
        if isinstance(decision, Allow):
            return True
        if isinstance(decision, Deny):
            self._error(command_id, decision.code)
            return False
        if isinstance(decision, NeedsToken):
            self._error(command_id, ErrorCode.PERMISSION_DENIED)
            return False
        assert isinstance(decision, NeedsMembershipCheck)
        try:
            member = await self.gw.is_member(decision)
        except psycopg.Error as err:
            log.warning("membership check failed", error=str(err))
            self._error(command_id, ErrorCode.INTERNAL)
            return False
        if not member:
            self._error(command_id, ErrorCode.PERMISSION_DENIED)
        return member

    async def _attach(
        self, sub: Subscription, *, recover: bool, since: StreamPosition | None, positioned: bool
    ) -> dict[str, Any]:
        """Subscribe to live publications first, then read the position or recover."""
        namespace, engine = sub.namespace, self.gw.engine
        recoverable = namespace.recover and namespace.history_size > 0
        sub.positioned = recoverable or positioned
        self.subs[sub.channel] = sub
        self.gw.hub.add(sub.channel, self, sub)
        await engine.listen(sub.channel)
        publications: Sequence[Publication | wire.RawJson] = ()
        recovered = False
        if recoverable and recover and since is not None:
            outcome = await engine.recover(sub.channel, since)
            position = outcome.position
            recovered = outcome.recovered
            if sub.delta and outcome.publications:
                publications = delta.recovered_chain(outcome.publications)
                # The client ends holding the last one: the next live one can be its delta.
                last = outcome.publications[-1]
                sub.delta_holds = (position.epoch, last.offset)
                self.gw.hub.seed_delta(sub.channel, sub.delta_holds, last.data)
            else:
                # Publications as values: each codec encodes them in its own format.
                publications = outcome.publications
        else:
            position = await engine.position(sub.channel)
        sub.epoch, sub.offset = position.epoch, position.offset
        return wire.subscribe_result(
            recoverable=recoverable,
            positioned=sub.positioned,
            epoch=position.epoch if sub.positioned else "",
            offset=position.offset if sub.positioned else 0,
            recovered=recovered,
            was_recovering=recover,
            publications=publications,
            delta=sub.delta,
        )

    def _detach(self, sub: Subscription) -> None:
        if self.subs.get(sub.channel) is sub:
            del self.subs[sub.channel]
        self.gw.hub.remove(sub.channel, self)
        self.gw.unlisten_soon(sub.channel)
        if sub.namespace.presence and sub.joined:
            info = ClientInfo(self.user, self.client, self.conn_info, sub.chan_info)
            self.gw.left(sub.channel, info, announce=sub.namespace.join_leave)

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

    def _unsubscribe(self, cmd: p.UnsubscribeCommand) -> None:
        sub = self.subs.get(cmd.channel)
        if sub is not None and not sub.server_side:
            self._detach(sub)
        # Always succeeds: an error here makes the SDKs reconnect.
        self._reply(cmd.id, "unsubscribe", {})

    async def _publish(self, cmd: p.PublishCommand) -> None:
        namespace = self.gw.resolve(cmd.channel)
        if isinstance(namespace, Deny):
            self._error(cmd.id, namespace.code)
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
            self._error(cmd.id, ErrorCode.INTERNAL)
            return
        # Centrifugo's PublishResult is empty whatever the namespace: no offset or epoch.
        self._reply(cmd.id, "publish", {})

    async def _presence(self, cmd: p.PresenceCommand | p.PresenceStatsCommand) -> None:
        namespace = self.gw.resolve(cmd.channel)
        if isinstance(namespace, Deny):
            self._error(cmd.id, namespace.code)
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
            self._error(cmd.id, ErrorCode.INTERNAL)
            return
        self._reply(
            cmd.id, "presence" if isinstance(cmd, p.PresenceCommand) else "presence_stats", result
        )

    async def _history(self, cmd: p.HistoryCommand) -> None:
        namespace = self.gw.resolve(cmd.channel)
        if isinstance(namespace, Deny):
            self._error(cmd.id, namespace.code)
            return
        decision = authorize(
            namespace, Action.HISTORY, cmd.channel, self.user, subscribed=cmd.channel in self.subs
        )
        if not await self._allowed(cmd.id, decision):
            return
        try:
            result = await self.gw.engine.history(cmd.channel, cmd.limit, cmd.since, cmd.reverse)
        except LogError as err:
            self._error(cmd.id, err.code)
            return
        self._reply(
            cmd.id,
            "history",
            wire.history_result(
                result.publications, epoch=result.position.epoch, offset=result.position.offset
            ),
        )

    async def _rpc(self, cmd: p.RpcCommand) -> None:
        handler = self.gw.rpc.get(cmd.method)
        if handler is None:
            self._error(cmd.id, ErrorCode.NOT_AVAILABLE)
            return
        try:
            data = await handler(RpcContext(self.user, self.client, self.conn_info), cmd.data)
        except RpcError as err:
            self._error(cmd.id, err.code, err.message)
            return
        except Exception:
            log.exception("rpc handler failed", method=cmd.method)
            self._error(cmd.id, ErrorCode.INTERNAL)
            return
        self._reply(cmd.id, "rpc", wire.rpc_result(data))

    async def _refresh(self, cmd: p.RefreshCommand) -> None:
        try:
            claims = self.gw.tokens.connection(cmd.token)
        except TokenError as err:
            self.close(DisconnectCode.EXPIRED if err.expired else DisconnectCode.INVALID_TOKEN)
            return
        if claims.user != self.user:
            self.close(DisconnectCode.INVALID_TOKEN)
            return
        expires_at = claims.expires_at
        # A refreshed token may belong to a new sign-in of the same user: it is the new
        # token's session that must be live from now on.
        self.session = claims.session
        if self.session:
            session_expiry = await self._session_expiry(cmd.id)
            if session_expiry is None:
                return
            expires_at = _earliest(expires_at, session_expiry)
        self.expires_at = expires_at
        ttl = self.gw.tokens.ttl(self.expires_at)
        self._reply(
            cmd.id, "refresh", wire.refresh_result(expires=self.expires_at is not None, ttl=ttl)
        )

    def _sub_refresh(self, cmd: p.SubRefreshCommand) -> None:
        sub = self.subs.get(cmd.channel)
        if sub is None:
            self._error(cmd.id, ErrorCode.BAD_REQUEST)
            return
        try:
            claims = self.gw.tokens.subscription(
                cmd.token, channel=cmd.channel, user=self.user, client=self.client
            )
        except TokenError as err:
            if err.expired:
                self._error(cmd.id, ErrorCode.TOKEN_EXPIRED)
            else:
                self.close(DisconnectCode.INVALID_TOKEN)
            return
        sub.expires_at = claims.expires_at
        ttl = self.gw.tokens.ttl(sub.expires_at)
        self._reply(
            cmd.id, "sub_refresh", wire.refresh_result(expires=sub.expires_at is not None, ttl=ttl)
        )

    # -- timers (driven by the gateway's clock loop) ----------------------------------------

    def tick(self, now: float, wall: float) -> None:
        settings = self.gw.settings
        if self.closing:
            self.transport.linger(now)
            return
        if not self.connected:
            if now - self.opened_at > settings.connect_timeout:
                self.close(DisconnectCode.STALE)
            return
        if self.ping_sent_at is not None and now - self.ping_sent_at > settings.pong_timeout:
            self.close(DisconnectCode.NO_PONG)
            return
        if self.expires_at is not None and wall > self.expires_at:
            self.close(DisconnectCode.EXPIRED)
            return
        for sub in list(self.subs.values()):
            if sub.expires_at is not None and wall > sub.expires_at:
                if sub.server_side:
                    self.close(DisconnectCode.SUB_EXPIRED)
                    return
                self._detach(sub)
                self.queue(self.codec.encode_unsubscribe_push(sub.channel, UnsubscribeCode.EXPIRED))
        if now >= self.next_ping_at:
            self.next_ping_at = now + settings.ping_interval
            if self.ping_sent_at is None:
                self.ping_sent_at = now
            self.queue(self.codec.ping)

    async def _session_expiry(self, command_id: int) -> int | None:
        """The session's expiry if it is live; else the connection is closed (3500) and None.

        A failing check (database down) refuses the command with a temporary error instead:
        a sign-in is not revoked because PostgreSQL restarts.
        """
        sessions = self.gw.sessions
        if sessions is None:
            return _NEVER
        session = self.session
        try:
            expiry = await sessions.token_session_expiry(self.user, session)
        except Exception as err:
            log.warning("session check failed", client=self.client, error=str(err))
            self._error(command_id, ErrorCode.INTERNAL)
            return None
        if self.closing:
            return None
        if expiry is None:
            log.info("refused a revoked session", user=self.user, session=session, ip=self.ip)
            self.close(DisconnectCode.INVALID_TOKEN, reason=SESSION_REVOKED_REASON)
            return None
        return expiry

    def revoke(self, channel: str, *, server_side_too: bool = False) -> None:
        """Membership lost: the server unsubscribes the client (no automatic resubscribe).

        ``server_side_too`` for the server API's unsubscribe, which removes server-side
        subscriptions as well (Centrifugo's); a membership re-check never does.
        """
        sub = self.subs.get(channel)
        if sub is None or (sub.server_side and not server_side_too):
            return
        self._detach(sub)
        self.queue(self.codec.encode_unsubscribe_push(channel, UnsubscribeCode.SERVER))

    # -- the server API's subscribe and refresh (control-bus commands) ------------------------

    async def subscribe_server_side(self, command: SubscribeUser) -> None:
        """Subscribe this connection to ``command.channel`` server-side, as Centrifugo's server
        API does: a ``subscribe`` push (position and ``data``), then what recovery found, then
        the live publications. Nothing happens for a channel it is already subscribed to."""
        gw, channel = self.gw, command.channel
        if self.closing or not self.connected or channel in self.subs:
            return
        if len(self.subs) >= gw.settings.max_subscriptions:
            log.info("server-side subscribe over the limit", client=self.client, channel=channel)
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
        if self.closing or self.subs.get(channel) is not sub:
            return
        push = {key: result[key] for key in _SUBSCRIBE_PUSH_KEYS if key in result}
        if command.data:
            push["data"] = wire.RawJson(command.data.encode())
        self.queue(self.codec.encode_subscribe_push(channel, push))
        for pub in result.get("publications", ()):
            self.queue(self.codec.encode_pub_push(channel, pub.data, pub.offset, pub.info))
        self._release(sub)
        self.flush()
        await self._join(sub)

    def refresh_server_side(self, command: RefreshUser) -> None:
        """Centrifugo's server-side refresh: ``expired`` closes with 3005; otherwise the
        connection now expires at ``expire_at`` (never when 0, closed at once when past),
        takes the new connection info if one is given, and gets a ``refresh`` push."""
        if self.closing or not self.connected:
            return
        if command.expired or 0 < command.expire_at <= time.time():
            self.close(DisconnectCode.EXPIRED)
            return
        # Centrifuge caps a server-side refresh at a year (client.go, maxTTLSeconds).
        now = int(time.time())
        self.expires_at = min(command.expire_at, now + MAX_REFRESH_TTL_S) or None
        if command.info:
            self.conn_info = command.info.encode()
        ttl = self.gw.tokens.ttl(self.expires_at)
        result = wire.refresh_result(expires=self.expires_at is not None, ttl=ttl)
        self.queue(self.codec.encode_push("", "refresh", result))
        self.flush()

    async def still_allowed(self, channel: str) -> bool:
        sub = self.subs.get(channel)
        if sub is None:
            return True
        decision = authorize(sub.namespace, Action.SUBSCRIBE, channel, self.user)
        if isinstance(decision, NeedsMembershipCheck):
            with contextlib.suppress(psycopg.Error):
                return await self.gw.is_member(decision)
            return True  # a failing check is not a lost membership
        return not isinstance(decision, Deny)
