"""Subscribe: limits, tokens, authorization, positions, recovery, going live, unsubscribe."""

from __future__ import annotations

from collections.abc import Sequence

from syncline.core import protocol as p
from syncline.core.codecs import PROTOBUF
from syncline.core.codes import DisconnectCode, ErrorCode
from syncline.core.log import ClientInfo, Publication, StreamPosition
from syncline.core.namespaces import ALLOW, NEEDS_TOKEN, Deny, Namespace, NeedsMembershipCheck
from syncline.core.session import Subscription

from helpers.session_probe import DELTA, RECOVERABLE, Limits, Probe, connected, subscribed


def pub(offset: int, data: bytes = b'{"v":1}') -> Publication:
    return Publication(offset, data, None, 0)


def begin(session: Probe, command: p.SubscribeCommand, namespace: Namespace) -> Subscription:
    """The subscribe up to the engine's answer: authorized, attached, publications pending."""
    sub = session.new_subscription(command, namespace)
    session.attach(sub, recoverable=True, positioned=False)
    return sub


def finish(
    session: Probe,
    command: p.SubscribeCommand,
    sub: Subscription,
    position: StreamPosition,
    *,
    recovered: bool = False,
    publications: Sequence[Publication] = (),
    ttl: int = 0,
) -> bool:
    """The engine's answer fed back: the session replies (or refuses) and goes live."""
    result = session.positioned_at(
        sub,
        position,
        recoverable=True,
        recovering=command.recover,
        recovered=recovered,
        publications=publications,
    )
    return session.subscribed(command, sub, result, ttl=ttl)


def test_a_second_subscribe_to_a_channel_is_105() -> None:
    session = connected()
    subscribed(session, "orders")
    assert not session.may_subscribe(p.SubscribeCommand(id=5, channel="orders"))
    assert session.out() == [{"id": 5, "error": {"code": 105, "message": "already subscribed"}}]


def test_subscriptions_over_the_limit_are_106() -> None:
    session = connected(Limits(max_subscriptions=2))
    subscribed(session, "a")
    subscribed(session, "b")
    assert not session.may_subscribe(p.SubscribeCommand(id=5, channel="c"))
    assert session.out() == [{"id": 5, "error": {"code": 106, "message": "limit exceeded"}}]


def test_delta_is_negotiated_for_json_in_a_namespace_that_allows_it() -> None:
    asked = p.SubscribeCommand(id=2, channel="orders", delta="fossil")
    assert connected().new_subscription(asked, DELTA).delta
    assert not connected().new_subscription(asked, RECOVERABLE).delta
    assert not connected().new_subscription(p.SubscribeCommand(id=2, channel="o"), DELTA).delta
    protobuf = Probe(codec=PROTOBUF)
    assert not protobuf.new_subscription(asked, DELTA).delta


def test_subscription_token_refusals() -> None:
    expired = connected()
    expired.subscribe_token_refused(2, expired=True, mismatch=False)
    assert expired.out()[0]["error"]["code"] == ErrorCode.TOKEN_EXPIRED
    mismatch = connected()
    mismatch.subscribe_token_refused(2, expired=False, mismatch=True)
    assert mismatch.close_code == DisconnectCode.INVALID_TOKEN
    invalid = connected()
    invalid.subscribe_token_refused(2, expired=False, mismatch=False)
    assert invalid.out()[0]["error"]["code"] == ErrorCode.PERMISSION_DENIED
    assert not invalid.closed


def test_authorization_decisions() -> None:
    session = connected()
    assert session.decided(2, ALLOW) is True
    assert session.decided(3, Deny(ErrorCode.UNKNOWN_CHANNEL, "no such namespace")) is False
    assert session.decided(4, NEEDS_TOKEN) is False
    check = NeedsMembershipCheck("SELECT 1", {"room": "1"})
    assert session.decided(5, check) is None  # the runner asks the database
    assert session.member(5, True) is True
    assert session.member(6, False) is False
    assert [(m["id"], m["error"]["code"]) for m in session.out()] == [(3, 102), (4, 103), (6, 103)]


def test_a_subscribe_goes_on_only_if_nothing_closed_or_took_the_channel() -> None:
    session = connected()
    assert session.still_wanted("orders")
    subscribed(session, "orders")
    assert not session.still_wanted("orders")
    session.close(DisconnectCode.SHUTDOWN)
    assert not session.still_wanted("other")


def test_a_positioned_subscribe_replies_with_the_stream_top_then_goes_live() -> None:
    session = connected()
    command = p.SubscribeCommand(id=2, channel="orders")
    sub = begin(session, command, RECOVERABLE)
    # Live publications that arrive meanwhile wait behind the reply.
    session.deliver(sub, "e1", 8, b'{"pub":8}')
    session.deliver(sub, "e1", 9, b'{"pub":9}')
    result = session.positioned_at(sub, StreamPosition(8, "e1"), recoverable=True, recovering=False)
    assert session.subscribed(command, sub, result, ttl=0)
    assert session.out() == [
        {
            "id": 2,
            "subscribe": {"recoverable": True, "positioned": True, "epoch": "e1", "offset": 8},
        },
        {"pub": 9},  # 8 was in the stream top already
    ]
    assert sub.pending is None and sub.offset == 9


def test_an_unpositioned_subscribe_says_no_position() -> None:
    session = connected()
    command = p.SubscribeCommand(id=2, channel="chat")
    sub = session.new_subscription(command, Namespace())
    session.attach(sub, recoverable=False, positioned=False)
    result = session.positioned_at(
        sub, StreamPosition(3, "e1"), recoverable=False, recovering=False
    )
    assert session.subscribed(command, sub, result, ttl=0)
    assert session.out() == [{"id": 2, "subscribe": {}}]
    assert not sub.positioned


def test_a_recovery_replays_the_missed_publications() -> None:
    session = connected()
    command = p.SubscribeCommand(id=2, channel="orders", recover=True, offset=3, epoch="e1")
    sub = begin(session, command, RECOVERABLE)
    assert finish(
        session,
        command,
        sub,
        StreamPosition(5, "e1"),
        recovered=True,
        publications=[pub(4), pub(5)],
    )
    (reply,) = session.out()
    assert reply["subscribe"]["recovered"] is True
    assert reply["subscribe"]["was_recovering"] is True
    assert [q["offset"] for q in reply["subscribe"]["publications"]] == [4, 5]
    session.deliver(sub, "e1", 6, b'{"pub":6}')
    assert session.out() == [{"pub": 6}]


def test_a_failed_recovery_is_reported_not_recovered() -> None:
    session = connected()
    command = p.SubscribeCommand(id=2, channel="orders", recover=True, offset=3, epoch="old")
    sub = begin(session, command, RECOVERABLE)
    assert finish(session, command, sub, StreamPosition(50, "new"))
    (reply,) = session.out()
    assert reply["subscribe"]["epoch"] == "new" and reply["subscribe"]["offset"] == 50
    assert "recovered" not in reply["subscribe"]
    assert reply["subscribe"]["was_recovering"] is True
    assert sub.epoch == "new"  # continuity counts from the new epoch


def test_a_failed_recovery_with_reject_unrecovered_is_112_and_no_subscription() -> None:
    session = connected()
    command = p.SubscribeCommand(
        id=2, channel="orders", recover=True, offset=3, epoch="old", flag=2
    )
    sub = begin(session, command, RECOVERABLE)
    assert not finish(session, command, sub, StreamPosition(50, "new"))
    assert session.out() == [{"id": 2, "error": {"code": 112, "message": "unrecoverable position"}}]
    assert "orders" not in session.subs and session.detached == ["orders"]


def test_a_delta_recovery_chains_deltas_and_holds_the_last() -> None:
    session = connected()
    command = p.SubscribeCommand(
        id=2, channel="orders", recover=True, offset=3, epoch="e1", delta="fossil"
    )
    sub = begin(session, command, DELTA)
    data = b'{"row":{"id":1,"status":"new","note":"' + b"x" * 60 + b'"}}'
    publications = [pub(4, data), pub(5, data.replace(b"new", b"old"))]
    assert finish(
        session, command, sub, StreamPosition(5, "e1"), recovered=True, publications=publications
    )
    assert sub.delta_holds == ("e1", 5)
    (reply,) = session.out()
    first, second = reply["subscribe"]["publications"]
    assert "delta" not in first and second["delta"] is True
    assert reply["subscribe"]["delta"] is True


def test_an_expiring_subscription_says_when() -> None:
    session = connected()
    command = p.SubscribeCommand(id=2, channel="orders", token="t")
    sub = session.new_subscription(command, RECOVERABLE)
    sub.expires_at = 5000
    session.attach(sub, recoverable=True, positioned=False)
    assert finish(session, command, sub, StreamPosition(0, "e1"), ttl=30)
    (reply,) = session.out()
    assert reply["subscribe"]["expires"] is True and reply["subscribe"]["ttl"] == 30


def test_a_subscribe_answered_after_the_close_does_nothing() -> None:
    session = connected()
    command = p.SubscribeCommand(id=2, channel="orders")
    sub = begin(session, command, RECOVERABLE)
    session.close(DisconnectCode.SHUTDOWN)
    assert not finish(session, command, sub, StreamPosition(0, "e1"))
    assert session.sent == []


def test_unsubscribe_always_succeeds_and_keeps_server_side_subscriptions() -> None:
    session = connected()
    subscribed(session, "orders")
    subscribed(session, "#ann", server_side=True)
    for n, channel in enumerate(("orders", "#ann", "never-subscribed"), start=10):
        session.unsubscribe(p.UnsubscribeCommand(id=n, channel=channel))
    assert session.out() == [
        {"id": 10, "unsubscribe": {}},
        {"id": 11, "unsubscribe": {}},
        {"id": 12, "unsubscribe": {}},
    ]
    assert list(session.subs) == ["#ann"] and session.detached == ["orders"]


def test_sub_refresh_of_a_channel_not_subscribed_is_107() -> None:
    session = connected()
    assert session.to_refresh(p.SubRefreshCommand(id=3, channel="x", token="t")) is None
    assert session.out()[0]["error"]["code"] == ErrorCode.BAD_REQUEST


def test_sub_refresh_moves_the_subscription_expiry() -> None:
    session = connected()
    sub = subscribed(session, "orders")
    command = p.SubRefreshCommand(id=3, channel="orders", token="t")
    assert session.to_refresh(command) is sub
    session.sub_refreshed(3, sub, 7000, 90)
    assert sub.expires_at == 7000
    assert session.out() == [{"id": 3, "sub_refresh": {"expires": True, "ttl": 90}}]


def test_sub_refresh_refusals() -> None:
    expired = connected()
    expired.sub_refresh_refused(3, expired=True)
    assert expired.out()[0]["error"]["code"] == ErrorCode.TOKEN_EXPIRED
    invalid = connected()
    invalid.sub_refresh_refused(3, expired=False)
    assert invalid.close_code == DisconnectCode.INVALID_TOKEN


def test_the_recovered_publications_keep_their_publisher() -> None:
    session = connected()
    command = p.SubscribeCommand(id=2, channel="chat", recover=True, offset=0, epoch="e1")
    sub = begin(session, command, RECOVERABLE)
    info = ClientInfo("bob", "c-9")
    publications = [Publication(1, b'{"t":"hi"}', info, 0)]
    assert finish(
        session, command, sub, StreamPosition(1, "e1"), recovered=True, publications=publications
    )
    (reply,) = session.out()
    (recovered,) = reply["subscribe"]["publications"]
    assert recovered["info"] == {"user": "bob", "client": "c-9"}
