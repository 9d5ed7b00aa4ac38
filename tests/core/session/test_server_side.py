"""The server's own commands: revocation, server-side subscribe and refresh."""

from __future__ import annotations

from syncline.core.codes import DisconnectCode, UnsubscribeCode
from syncline.core.log import ClientInfo, Publication, StreamPosition
from syncline.core.session import MAX_REFRESH_TTL_S, Subscription

from helpers.session_probe import RECOVERABLE, Limits, Probe, connected, subscribed


def test_a_revocation_unsubscribes_with_2000() -> None:
    session = connected()
    subscribed(session, "room:1")
    session.revoke("room:1")
    assert session.out() == [
        {
            "push": {
                "channel": "room:1",
                "unsubscribe": {
                    "code": UnsubscribeCode.SERVER,
                    "reason": UnsubscribeCode.SERVER.reason,
                },
            }
        }
    ]
    assert session.subs == {}
    session.revoke("room:1")  # not subscribed any more: nothing
    assert session.out() == []


def test_a_membership_recheck_leaves_server_side_subscriptions_alone() -> None:
    session = connected()
    subscribed(session, "#ann", server_side=True)
    session.revoke("#ann")
    assert "#ann" in session.subs and session.out() == []
    session.revoke("#ann", server_side_too=True)
    assert session.subs == {} and len(session.out()) == 1


def test_server_side_subscribe_applies_only_where_it_can() -> None:
    assert not Probe().may_subscribe_server_side("a")  # not connected
    session = connected(Limits(max_subscriptions=1))
    assert session.may_subscribe_server_side("a")
    subscribed(session, "a")
    assert not session.may_subscribe_server_side("a")  # already
    assert not session.may_subscribe_server_side("b")  # the limit
    session.close(DisconnectCode.SHUTDOWN)
    assert not session.may_subscribe_server_side("c")


def test_a_server_side_subscribe_pushes_position_data_and_recovered_publications() -> None:
    session = connected()
    sub = Subscription("news", RECOVERABLE, server_side=True)
    session.attach(sub, recoverable=True, positioned=True)
    session.deliver(sub, "e1", 3, b'{"live":3}')
    result = session.positioned_at(
        sub,
        StreamPosition(2, "e1"),
        recoverable=True,
        recovering=True,
        recovered=True,
        publications=[Publication(2, b'{"v":2}', ClientInfo("bob", "c2"), 0)],
    )
    assert session.server_subscribed(sub, result, '{"welcome":true}')
    subscribe, recovered, live = session.out()
    assert subscribe["push"] == {
        "channel": "news",
        "subscribe": {
            "recoverable": True,
            "positioned": True,
            "epoch": "e1",
            "offset": 2,
            "data": {"welcome": True},
        },
    }
    assert recovered["push"]["pub"]["offset"] == 2 and recovered["push"]["pub"]["data"] == {"v": 2}
    assert live == {"live": 3}  # what arrived meanwhile, after the recovered ones
    assert sub.offset == 3


def test_a_server_side_subscribe_that_ended_meanwhile_pushes_nothing() -> None:
    session = connected()
    sub = Subscription("news", RECOVERABLE, server_side=True)
    session.attach(sub, recoverable=True, positioned=True)
    session.revoke("news", server_side_too=True)
    session.out()
    result = session.positioned_at(sub, StreamPosition(0, "e1"), recoverable=True, recovering=False)
    assert not session.server_subscribed(sub, result, "")
    assert session.out() == []


def test_a_server_side_refresh_moves_the_expiry_and_pushes_refresh() -> None:
    session = connected()
    session.server_refreshed(expired=False, expire_at=1600, info='{"n":1}', wall=1000.0)
    assert session.expires_at == 1600 and session.conn_info == b'{"n":1}'
    assert session.out() == [{"push": {"refresh": {"expires": True, "ttl": 600}}}]


def test_a_server_side_refresh_to_never() -> None:
    session = connected()
    session.expires_at = 1500
    session.server_refreshed(expired=False, expire_at=0, info="", wall=1000.0)
    assert session.expires_at is None and session.conn_info is None
    assert session.out() == [{"push": {"refresh": {}}}]


def test_a_server_side_refresh_is_capped_at_a_year() -> None:
    session = connected()
    session.server_refreshed(expired=False, expire_at=2**40, info="", wall=1000.0)
    assert session.expires_at == 1000 + MAX_REFRESH_TTL_S


def test_an_expired_or_past_server_side_refresh_closes_3005() -> None:
    expired = connected()
    expired.server_refreshed(expired=True, expire_at=0, info="", wall=1000.0)
    assert expired.close_code == DisconnectCode.EXPIRED
    past = connected()
    past.server_refreshed(expired=False, expire_at=999, info="", wall=1000.0)
    assert past.close_code == DisconnectCode.EXPIRED


def test_a_server_side_refresh_before_connect_does_nothing() -> None:
    session = Probe()
    session.server_refreshed(expired=True, expire_at=0, info="", wall=1000.0)
    assert not session.closed and session.out() == []
