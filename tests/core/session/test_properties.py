"""Random sequences of client messages, time, deliveries and server actions never crash a
session, and keep its invariants (one close at most, nothing after it, bounded output)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncline.core import protocol as p
from syncline.core.log import StreamPosition
from syncline.core.session import Session, Subscription

from helpers.session_probe import RECOVERABLE, Limits, Probe

CHANNELS = ("a", "b", "c", "d", "e", "#ann")
FRAMES = (
    b'{"id":1,"connect":{"token":"t"}}',
    b'{"id":2,"connect":{}}',
    b"{}",
    b'{"id":3,"send":{"data":1}}',
    b'{"id":4,"refresh":{"token":"t"}}',
    b"not json",
    b'{"id":5,"nope":{}}',
    b'{"id":6,"history":{"channel":"a","limit":"x"}}',
    b'{"id":7,"rpc":{"method":"m","data":' + b"1" * 400 + b"}}",
    *(b'{"id":8,"subscribe":{"channel":"%s"}}' % c.encode() for c in CHANNELS),
    *(b'{"id":9,"unsubscribe":{"channel":"%s"}}' % c.encode() for c in CHANNELS),
    *(b'{"id":10,"sub_refresh":{"channel":"%s","token":"t"}}' % c.encode() for c in CHANNELS),
)

# Session methods a runner or transport calls with no argument.
ACTIONS = ("pause_writing", "resume_writing", "flush", "closed_by_client", "end")

steps = st.lists(
    st.one_of(
        st.tuples(st.just("receive"), st.lists(st.sampled_from(FRAMES), min_size=1, max_size=4)),
        st.tuples(st.just("tick"), st.floats(min_value=0, max_value=40)),
        st.tuples(
            st.just("deliver"),
            st.sampled_from(CHANNELS),
            st.sampled_from(("e1", "e2", "")),
            st.integers(min_value=0, max_value=12),
        ),
        st.tuples(st.just("revoke"), st.sampled_from(CHANNELS), st.booleans()),
        st.tuples(st.just("server_subscribe"), st.sampled_from(CHANNELS)),
        st.tuples(st.just("server_refresh"), st.booleans(), st.integers(0, 3000)),
        st.tuples(st.just("expire"), st.sampled_from(CHANNELS)),
        st.tuples(
            st.sampled_from(("pause_writing", "resume_writing", "flush", "closed_by_client", "end"))
        ),
    ),
    max_size=40,
)


def run_commands(session: Probe, now: float) -> None:
    """What a runner does with each command, every check passing (the simplest world)."""
    while (command := session.next_command()) is not None:
        if not session.admit(command):
            continue
        if isinstance(command, p.ConnectCommand):
            if command.token:
                session.authenticate("ann", 1500, None, "")
            elif not session.anonymous(command.id):
                continue
            session.connected_as("c1", now)
            session.connect_reply(command.id, version="t", ttl=1, subs={})
        elif isinstance(command, p.SubscribeCommand):
            if not session.may_subscribe(command) or not session.still_wanted(command.channel):
                continue
            sub = session.new_subscription(command, RECOVERABLE)
            session.attach(sub, recoverable=True, positioned=False)
            result = session.positioned_at(
                sub, StreamPosition(3, "e1"), recoverable=True, recovering=False
            )
            session.subscribed(command, sub, result, ttl=0)
        elif isinstance(command, p.UnsubscribeCommand):
            session.unsubscribe(command)
        elif isinstance(command, p.SubRefreshCommand):
            target = session.to_refresh(command)
            if target is not None:
                session.sub_refreshed(command.id, target, 1200, 10)
        elif isinstance(command, p.RefreshCommand):
            session.refreshed(command.id, 2000, 10)
        else:
            session.reply(getattr(command, "id", 0), "rpc", {})


def check(session: Probe, offsets: dict[int, int]) -> None:
    assert len(session.closed) <= 1
    assert session.queued() <= session.limits.send_buffer
    if session.closed:
        assert session.closing and session.queued() == 0
    assert len(session.subs) <= session.limits.max_subscriptions
    for channel, sub in session.subs.items():
        assert sub.channel == channel
        # A positioned subscription only moves forward.
        assert sub.offset >= offsets.get(id(sub), 0)
        offsets[id(sub)] = sub.offset


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_any_sequence_keeps_the_invariants(plan: list[tuple[Any, ...]]) -> None:
    session = Probe(Limits(max_subscriptions=3, send_buffer=600, allow_anonymous=True))
    now = wall = 0.0
    offsets: dict[int, int] = {}
    for step in plan:
        kind = step[0]
        if kind == "receive":
            if session.accept(b"\n".join(step[1])):
                run_commands(session, now)
        elif kind == "tick":
            now += step[1]
            wall += step[1] * 40
            session.tick(now, wall)
        elif kind == "deliver":
            sub = session.subs.get(step[1])
            if sub is not None:
                session.deliver(sub, step[2], step[3], b'{"o":%d}' % step[3])
        elif kind == "revoke":
            session.revoke(step[1], server_side_too=step[2])
        elif kind == "server_subscribe":
            if session.may_subscribe_server_side(step[1]):
                sub = Subscription(step[1], RECOVERABLE, server_side=True)
                session.attach(sub, recoverable=True, positioned=True)
                result = session.positioned_at(
                    sub, StreamPosition(3, "e1"), recoverable=True, recovering=False
                )
                session.server_subscribed(sub, result, "")
        elif kind == "server_refresh":
            session.server_refreshed(expired=step[1], expire_at=step[2], info="", wall=wall)
        elif kind == "expire":
            sub = session.subs.get(step[1])
            if sub is not None:
                sub.expires_at = int(wall)
        else:
            getattr(session, kind)()
        check(session, offsets)
    session.end()
    assert session.subs == {} and session.closing


def test_the_probe_is_a_session() -> None:
    assert isinstance(Probe(), Session)
