"""The Centrifuge client session as a state machine: commands, results and time in; replies,
pushes and close decisions out.

A ``Session`` does no I/O and never awaits. The runner (gateway/connection.py) parses a
client message with ``accept``, takes commands with ``next_command``, asks ``admit`` whether
a command needs its work, and for the commands that wait on something (a token, a sign-in
session, a membership query, the engine) calls the step methods here with what it found
(``authenticate``, ``session_live``, ``decided``, ``attach``, ``positioned_at``,
``subscribed``...): the session changes its state and queues the reply or closes.

Output is a bounded queue of encoded messages. The session tells its runner about it through
six hooks, no-ops here, overridden by the runner: ``_on_output`` (something was queued: flush
soon), ``_on_send`` (messages to write now), ``_on_close`` (close with a code and reason),
``_on_detach`` (a subscription ended: stop its fan-out and presence), ``_on_slow`` (the
client is closed with 3008) and ``_on_malformed`` (a message that does not parse, for logs).
Hooks rather than returned effect objects because ``deliver`` is the fan-out's hot path
(hundreds of thousands of calls a second): it must not allocate.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias, TypeGuard

from syncline.core import delta, wire
from syncline.core import protocol as p
from syncline.core.codecs import JSON, Codec
from syncline.core.codes import DisconnectCode, ErrorCode, UnsubscribeCode
from syncline.core.delta import DeltaStep
from syncline.core.log import Publication, StreamPosition
from syncline.core.namespaces import Allow, Decision, Deny, Namespace, NeedsToken
from syncline.core.session.limits import (
    MAX_PENDING_COMMANDS,
    MAX_REFRESH_TTL_S,
    SESSION_REVOKED_REASON,
    SessionLimits,
    earliest,
)
from syncline.core.session.subscription import Subscription

# Commands that read or write and so re-check the token's session (connect and refresh check
# their own token; unsubscribe always succeeds; pong and send carry nothing to authorize).
SESSION_CHECKED = (
    p.SubscribeCommand,
    p.PublishCommand,
    p.PresenceCommand,
    p.PresenceStatsCommand,
    p.HistoryCommand,
    p.RpcCommand,
    p.SubRefreshCommand,
)
SessionChecked: TypeAlias = (
    p.SubscribeCommand
    | p.PublishCommand
    | p.PresenceCommand
    | p.PresenceStatsCommand
    | p.HistoryCommand
    | p.RpcCommand
    | p.SubRefreshCommand
)
# What Centrifugo's `subscribe` push carries of a subscribe result (client.go,
# getSubscribePushReply): the position, not the recovered publications, which follow as pushes.
_SUBSCRIBE_PUSH_KEYS = ("recoverable", "positioned", "epoch", "offset")


class Session:
    """One client's protocol state; ``now`` is monotonic seconds, ``wall`` Unix seconds."""

    # Ten thousand idle connections are ten thousand of these: no per-instance __dict__.
    __slots__ = (
        "_inbox",
        "_out",
        "_out_size",
        "_paused",
        "client",
        "closing",
        "codec",
        "conn_info",
        "connected",
        "expires_at",
        "limits",
        "next_ping_at",
        "opened_at",
        "ping_sent_at",
        "sid",
        "subs",
        "user",
    )

    def __init__(self, limits: SessionLimits, codec: Codec, now: float) -> None:
        self.limits = limits
        # The format, chosen before the session exists: every message goes through it.
        self.codec = codec
        self.client = ""
        self.user = ""
        self.sid = ""  # the token's sign-in session (`sid`), checked while connected
        self.conn_info: bytes | None = None
        self.connected = False
        self.closing = False
        self.opened_at = now
        self.expires_at: int | None = None
        self.ping_sent_at: float | None = None
        self.next_ping_at = 0.0
        self.subs: dict[str, Subscription] = {}
        self._out: list[bytes] = []
        self._out_size = 0
        self._inbox: deque[p.Command] | None = None  # made on the first command
        self._paused = False  # the transport's buffer is over its high-water mark

    # -- hooks (the runner's) ---------------------------------------------------------------

    def _on_output(self) -> None:
        """Messages were queued: flush them soon (once per event-loop turn)."""

    def _on_send(self, messages: list[bytes]) -> None:
        """Write these messages now, in order."""

    def _on_close(self, code: int, reason: str) -> None:
        """Close the transport with this code and reason (called once)."""

    def _on_detach(self, sub: Subscription) -> None:
        """``sub`` ended: no more publications for it, and its presence leaves."""

    def _on_slow(self) -> None:
        """The client reads too slowly: about to be closed with 3008."""

    def _on_malformed(self, detail: str) -> None:
        """A client message that does not parse: about to be closed."""

    # -- input ------------------------------------------------------------------------------

    def accept(self, data: bytes) -> bool:
        """Parse one client message; True when it added commands to run (``next_command``).

        A malformed message closes the session with its code (3501 mostly); more commands
        waiting than MAX_PENDING_COMMANDS close it with 3013.
        """
        if self.closing:
            return False
        limits = self.limits
        try:
            commands = self.codec.parse_frame(
                data,
                max_commands=limits.max_commands_per_frame,
                max_size=limits.max_frame_size,
            )
        except p.ProtocolError as err:
            self._on_malformed(err.detail)
            self.close(err.code)
            return False
        if self._inbox is None:
            self._inbox = deque()
        if len(self._inbox) + len(commands) > MAX_PENDING_COMMANDS:
            self.close(DisconnectCode.TOO_MANY_REQUESTS)
            return False
        self._inbox.extend(commands)
        return bool(commands)

    def next_command(self) -> p.Command | None:
        """The next command to run, in arrival order; None when none (or closing)."""
        inbox = self._inbox
        if inbox and not self.closing:
            return inbox.popleft()
        return None

    def admit(self, command: p.Command) -> bool:
        """Whether ``command`` needs the runner's work; the protocol's own answers are given
        here (a pong, a rejected command, anything before connect, a second connect)."""
        if isinstance(command, p.Pong):
            self.ping_sent_at = None
            return False
        if isinstance(command, p.RejectedCommand):
            self.error(command.id, command.code)
            return False
        if isinstance(command, p.ConnectCommand):
            if self.connected:
                self.close(DisconnectCode.BAD_REQUEST)
                return False
            return True
        if not self.connected:
            # Go closes a session that sends anything before a successful connect.
            self.close(DisconnectCode.BAD_REQUEST)
            return False
        # SendCommand: no handler, no reply (the protocol's fire-and-forget message).
        return not isinstance(command, p.SendCommand)

    def needs_session_check(self, command: p.Command) -> TypeGuard[SessionChecked]:
        """Every read and write re-checks the token's sign-in session, as REST requests do."""
        return bool(self.sid) and isinstance(command, SESSION_CHECKED)

    # -- output -----------------------------------------------------------------------------

    def queue(self, data: bytes) -> None:
        if self.closing:
            return
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size > self.limits.send_buffer:
            if self._paused:
                # The transport is backed up and so is this queue: the client is not reading.
                self._slow()
            else:
                # A burst (one capture batch is fanned out in a single loop turn) is no sign
                # of a slow client: hand it to the transport now.
                self.flush()
            return
        self._on_output()

    def flush(self) -> None:
        # While the transport is backed up, messages wait here, where they are still whole
        # and can be dropped: the transport only ever holds complete ones.
        if not self._paused:
            self._send_out()

    def _send_out(self) -> None:
        if not self._out or self.closing:
            return
        out, self._out = self._out, []
        self._out_size = 0
        self._on_send(out)

    def pause_writing(self) -> None:
        """The transport's buffer went over its high-water mark."""
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._out:
            # Not flush(): uvloop calls this from inside a write to the transport.
            self._on_output()

    def queued(self) -> int:
        """Bytes waiting in the session's own queue (not yet handed to the transport)."""
        return self._out_size

    def _slow(self) -> None:
        self._on_slow()
        # Drop what is queued here; what the transport holds (whole messages) stays, so the
        # close is read right after the last complete one.
        self._out.clear()
        self._out_size = 0
        self.close(DisconnectCode.SLOW, flush=False)

    def reply(self, command_id: int, method: str, result: Mapping[str, Any]) -> None:
        self.queue(self.codec.encode_reply(command_id, method, result))

    def error(self, command_id: int, code: int, message: str | None = None) -> None:
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
        self._on_close(code, reason)

    def closed_by_client(self) -> None:
        """The client started the close: nothing more goes out."""
        self.closing = True

    def end(self) -> None:
        """The transport is gone: every subscription ends, nothing more goes out."""
        self.closing = True
        for sub in list(self.subs.values()):
            self.detach(sub)
        self.subs.clear()
        self._out.clear()
        self._out_size = 0

    # -- deliveries (the hub's, through the runner) -----------------------------------------

    def deliver(
        self,
        sub: Subscription,
        epoch: str,
        offset: int,
        frame: bytes,
        step: DeltaStep | None = None,
    ) -> None:
        """Queue one publication of the channel (``step``: its delta encodings, for a
        channel with delta subscribers). Never skips silently: a gap, another epoch or a
        delta subscriber without a delta ends the subscription with 2500 (lost_continuity)."""
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
        """Make the client resubscribe (or reconnect, for a server-side one) and recover."""
        if self.subs.get(sub.channel) is not sub:
            return
        if sub.server_side:
            self.close(DisconnectCode.INSUFFICIENT_STATE)
            return
        self.detach(sub)
        self.queue(
            self.codec.encode_unsubscribe_push(sub.channel, UnsubscribeCode.INSUFFICIENT_STATE)
        )

    def release(self, sub: Subscription) -> None:
        """Send what arrived while the subscribe reply was being made, then go live."""
        pending, sub.pending = sub.pending or [], None
        for epoch, offset, frame, step in pending:
            self.deliver(sub, epoch, offset, frame, step)

    def detach(self, sub: Subscription) -> None:
        if self.subs.get(sub.channel) is sub:
            del self.subs[sub.channel]
        self._on_detach(sub)

    # -- connect ----------------------------------------------------------------------------

    def token_refused(self, command_id: int, *, expired: bool) -> None:
        """A connect token that does not verify: expired, error 109 (the SDK refreshes and
        connects again); otherwise close with 3500."""
        if expired:
            self.error(command_id, ErrorCode.TOKEN_EXPIRED)
        else:
            self.close(DisconnectCode.INVALID_TOKEN)

    def anonymous(self, command_id: int) -> bool:
        """A connect without a token: allowed only by ``allow_anonymous`` (else 101, 3500)."""
        if self.limits.allow_anonymous:
            return True
        self.error(command_id, ErrorCode.UNAUTHORIZED)
        self.close(DisconnectCode.INVALID_TOKEN)
        return False

    def authenticate(
        self, user: str, expires_at: int | None, conn_info: bytes | None, sid: str
    ) -> None:
        """The connect token's claims (set before the session check, so that a revocation
        during the check finds the connection)."""
        self.user, self.expires_at, self.conn_info, self.sid = user, expires_at, conn_info, sid

    def session_live(self, expiry: int | None) -> bool:
        """The sign-in session check's answer (its expiry, None when revoked or ended): True
        when it is live; else the connection is closed (3500 "session revoked")."""
        if self.closing:
            return False
        if expiry is None:
            self.close(DisconnectCode.INVALID_TOKEN, reason=SESSION_REVOKED_REASON)
            return False
        return True

    def limit_to_session(self, expiry: int) -> None:
        """The connection expires no later than its sign-in session."""
        self.expires_at = earliest(self.expires_at, expiry)

    def check_failed(self, command_id: int) -> None:
        """A check could not be made (database or store down): the command fails with 100,
        the connection stands (a sign-in is not revoked because PostgreSQL restarts)."""
        self.error(command_id, ErrorCode.INTERNAL)

    def connected_as(self, client: str, now: float) -> None:
        self.client = client
        self.connected = True
        self.next_ping_at = now + self.limits.ping_interval

    def connect_reply(
        self, command_id: int, *, version: str, ttl: int, subs: Mapping[str, Mapping[str, Any]]
    ) -> None:
        self.reply(
            command_id,
            "connect",
            wire.connect_result(
                self.client,
                version=version,
                expires=self.expires_at is not None,
                ttl=ttl,
                ping=self.limits.ping_interval,
                pong=True,
                subs=subs,
            ),
        )

    # -- subscribe --------------------------------------------------------------------------

    def may_subscribe(self, command: p.SubscribeCommand) -> bool:
        """A subscribe to a channel not yet subscribed, under the limit (else 105, 106)."""
        if command.channel in self.subs:
            self.error(command.id, ErrorCode.ALREADY_SUBSCRIBED)
            return False
        if len(self.subs) >= self.limits.max_subscriptions:
            self.error(command.id, ErrorCode.LIMIT_EXCEEDED)
            return False
        return True

    def new_subscription(self, command: p.SubscribeCommand, namespace: Namespace) -> Subscription:
        sub = Subscription(command.channel, namespace)
        # Fossil delta is encoded for the JSON format only; a Protobuf client asking for it gets
        # a plain subscription, as Centrifugo answers a delta type it does not allow.
        sub.delta = self.codec is JSON and delta.negotiate(
            command.delta, namespace.allowed_delta_types
        )
        return sub

    def subscribe_token_refused(self, command_id: int, *, expired: bool, mismatch: bool) -> None:
        """A subscription token that does not verify: expired 109; for another client or
        user, close 3500 (as Centrifugo); otherwise 103."""
        if expired:
            self.error(command_id, ErrorCode.TOKEN_EXPIRED)
        elif mismatch:
            self.close(DisconnectCode.INVALID_TOKEN)
        else:
            self.error(command_id, ErrorCode.PERMISSION_DENIED)

    def decided(self, command_id: int, decision: Decision) -> bool | None:
        """An authorization decision: True allowed, False refused (the error queued), None
        when the runner must ask the database (``NeedsMembershipCheck``, then ``member``)."""
        if isinstance(decision, Allow):
            return True
        if isinstance(decision, Deny):
            self.error(command_id, decision.code)
            return False
        if isinstance(decision, NeedsToken):
            self.error(command_id, ErrorCode.PERMISSION_DENIED)
            return False
        return None

    def member(self, command_id: int, member: bool) -> bool:
        """The membership query's answer: a non-member gets 103."""
        if not member:
            self.error(command_id, ErrorCode.PERMISSION_DENIED)
        return member

    def still_wanted(self, channel: str) -> bool:
        """After an await: a subscribe goes on only if nothing closed or took the channel."""
        return not self.closing and channel not in self.subs

    def attach(self, sub: Subscription, *, recoverable: bool, positioned: bool) -> None:
        """``sub`` is live from now (its publications wait in ``pending`` until release)."""
        sub.positioned = recoverable or positioned
        self.subs[sub.channel] = sub

    def positioned_at(
        self,
        sub: Subscription,
        position: StreamPosition,
        *,
        recoverable: bool,
        recovering: bool,
        recovered: bool = False,
        publications: Sequence[Publication] = (),
    ) -> dict[str, Any]:
        """Where the engine put ``sub`` (its top, and what recovery found): the subscribe
        result. A delta subscriber's recovered publications are chained as deltas, and it
        holds the last one."""
        replay: Sequence[Publication | wire.RawJson] = publications
        if sub.delta and publications:
            replay = delta.recovered_chain(publications)
            sub.delta_holds = (position.epoch, publications[-1].offset)
        sub.epoch, sub.offset = position.epoch, position.offset
        return wire.subscribe_result(
            recoverable=recoverable,
            positioned=sub.positioned,
            epoch=position.epoch if sub.positioned else "",
            offset=position.offset if sub.positioned else 0,
            recovered=recovered,
            was_recovering=recovering,
            publications=replay,
            delta=sub.delta,
        )

    def subscribed(
        self, command: p.SubscribeCommand, sub: Subscription, result: dict[str, Any], ttl: int
    ) -> bool:
        """Answer the subscribe and go live; True when the client is now subscribed.

        A recovery that failed with ``reject_unrecovered`` asked is error 112 instead."""
        if self.closing:
            return False
        if (
            command.recover
            and sub.positioned
            and not result.get("recovered")
            and command.reject_unrecovered
        ):
            self.detach(sub)
            self.error(command.id, ErrorCode.UNRECOVERABLE_POSITION)
            return False
        if sub.expires_at is not None:
            result = {**result, "expires": True, "ttl": ttl}
        self.reply(command.id, "subscribe", result)
        self.release(sub)
        return True

    def unsubscribe(self, command: p.UnsubscribeCommand) -> None:
        sub = self.subs.get(command.channel)
        if sub is not None and not sub.server_side:
            self.detach(sub)
        # Always succeeds: an error here makes the SDKs reconnect.
        self.reply(command.id, "unsubscribe", {})

    # -- refresh ----------------------------------------------------------------------------

    def refresh_refused(self, *, expired: bool) -> None:
        """A refresh token that does not verify (or is another user's): 3005 or 3500."""
        self.close(DisconnectCode.EXPIRED if expired else DisconnectCode.INVALID_TOKEN)

    def refreshed(self, command_id: int, expires_at: int | None, ttl: int) -> None:
        self.expires_at = expires_at
        self.reply(
            command_id, "refresh", wire.refresh_result(expires=expires_at is not None, ttl=ttl)
        )

    def to_refresh(self, command: p.SubRefreshCommand) -> Subscription | None:
        """The subscription a sub_refresh is for; None (error 107) when not subscribed."""
        sub = self.subs.get(command.channel)
        if sub is None:
            self.error(command.id, ErrorCode.BAD_REQUEST)
        return sub

    def sub_refresh_refused(self, command_id: int, *, expired: bool) -> None:
        if expired:
            self.error(command_id, ErrorCode.TOKEN_EXPIRED)
        else:
            self.close(DisconnectCode.INVALID_TOKEN)

    def sub_refreshed(
        self, command_id: int, sub: Subscription, expires_at: int | None, ttl: int
    ) -> None:
        sub.expires_at = expires_at
        result = wire.refresh_result(expires=expires_at is not None, ttl=ttl)
        self.reply(command_id, "sub_refresh", result)

    # -- timers -----------------------------------------------------------------------------

    def tick(self, now: float, wall: float) -> None:
        """Timers: the connect deadline, the pong deadline, token and subscription expiry
        (Unix ``wall``), and the next ping. Called about once a second."""
        if self.closing:
            return
        limits = self.limits
        if not self.connected:
            if now - self.opened_at > limits.connect_timeout:
                self.close(DisconnectCode.STALE)
            return
        if self.ping_sent_at is not None and now - self.ping_sent_at > limits.pong_timeout:
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
                self.detach(sub)
                self.queue(self.codec.encode_unsubscribe_push(sub.channel, UnsubscribeCode.EXPIRED))
        if now >= self.next_ping_at:
            self.next_ping_at = now + limits.ping_interval
            if self.ping_sent_at is None:
                self.ping_sent_at = now
            self.queue(self.codec.ping)

    # -- the server's own commands (server API, membership re-checks) -----------------------

    def revoke(self, channel: str, *, server_side_too: bool = False) -> None:
        """Membership lost: the server unsubscribes the client (2000; no resubscribe).

        ``server_side_too`` for the server API's unsubscribe, which removes server-side
        subscriptions as well (Centrifugo's); a membership re-check never does.
        """
        sub = self.subs.get(channel)
        if sub is None or (sub.server_side and not server_side_too):
            return
        self.detach(sub)
        self.queue(self.codec.encode_unsubscribe_push(channel, UnsubscribeCode.SERVER))

    def may_subscribe_server_side(self, channel: str) -> bool:
        """A server-side subscribe applies to a connected session not in the channel yet,
        under the subscription limit; otherwise nothing happens."""
        return (
            not self.closing
            and self.connected
            and channel not in self.subs
            and len(self.subs) < self.limits.max_subscriptions
        )

    def server_subscribed(self, sub: Subscription, result: Mapping[str, Any], data: str) -> bool:
        """Centrifugo's server-side subscribe: a ``subscribe`` push (position and ``data``),
        then what recovery found, then the live publications. False when it ended meanwhile."""
        channel = sub.channel
        if self.closing or self.subs.get(channel) is not sub:
            return False
        push = {key: result[key] for key in _SUBSCRIBE_PUSH_KEYS if key in result}
        if data:
            push["data"] = wire.RawJson(data.encode())
        self.queue(self.codec.encode_subscribe_push(channel, push))
        for pub in result.get("publications", ()):
            self.queue(self.codec.encode_pub_push(channel, pub.data, pub.offset, pub.info))
        self.release(sub)
        self.flush()
        return True

    def server_refreshed(self, *, expired: bool, expire_at: int, info: str, wall: float) -> None:
        """Centrifugo's server-side refresh: ``expired`` closes with 3005; otherwise the
        connection now expires at ``expire_at`` (never when 0, closed at once when past),
        takes the new connection info if one is given, and gets a ``refresh`` push."""
        if self.closing or not self.connected:
            return
        if expired or 0 < expire_at <= wall:
            self.close(DisconnectCode.EXPIRED)
            return
        # Centrifuge caps a server-side refresh at a year (client.go, maxTTLSeconds).
        now = int(wall)
        self.expires_at = min(expire_at, now + MAX_REFRESH_TTL_S) or None
        if info:
            self.conn_info = info.encode()
        ttl = 0 if self.expires_at is None else max(int(self.expires_at - wall), 1)
        result = wire.refresh_result(expires=self.expires_at is not None, ttl=ttl)
        self.queue(self.codec.encode_push("", "refresh", result))
        self.flush()
