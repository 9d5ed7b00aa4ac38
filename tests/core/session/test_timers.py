"""Timers: the connect deadline, pings and pongs, token and subscription expiry."""

from __future__ import annotations

from syncline.core import protocol as p
from syncline.core.codes import DisconnectCode, UnsubscribeCode

from helpers.session_probe import Probe, connected, subscribed


def test_no_connect_within_the_timeout_closes_3502() -> None:
    session = Probe(now=100.0)
    session.tick(109.0, 0.0)
    assert not session.closed
    session.tick(110.5, 0.0)
    assert session.close_code == DisconnectCode.STALE


def test_a_ping_goes_out_every_interval() -> None:
    session = connected(now=0.0)
    session.tick(24.0, 0.0)
    assert session.out() == []
    session.tick(25.0, 0.0)
    assert session.out() == [{}]  # the JSON ping is an empty object
    assert session.ping_sent_at == 25.0 and session.next_ping_at == 50.0


def test_a_missing_pong_closes_3012() -> None:
    session = connected(now=0.0)
    session.tick(25.0, 0.0)
    session.tick(35.0, 0.0)
    assert not session.closed
    session.tick(35.5, 0.0)
    assert session.close_code == DisconnectCode.NO_PONG


def test_a_pong_keeps_the_connection_and_the_next_ping_starts_a_new_wait() -> None:
    session = connected(now=0.0)
    session.tick(25.0, 0.0)
    assert not session.admit(p.Pong())
    session.tick(49.0, 0.0)
    session.tick(50.0, 0.0)
    assert session.ping_sent_at == 50.0
    assert not session.closed


def test_an_unanswered_ping_keeps_its_deadline_across_pings() -> None:
    session = connected(now=0.0)
    session.tick(25.0, 0.0)
    session.tick(26.0, 0.0)
    assert session.ping_sent_at == 25.0


def test_an_expired_connection_closes_3005() -> None:
    session = connected()
    session.expires_at = 1000
    session.tick(1.0, 1000.0)
    assert not session.closed
    session.tick(2.0, 1000.5)
    assert session.close_code == DisconnectCode.EXPIRED


def test_an_expired_subscription_is_unsubscribed_2501() -> None:
    session = connected()
    sub = subscribed(session, "orders")
    sub.expires_at = 1000
    subscribed(session, "other")
    session.tick(1.0, 1001.0)
    assert session.out() == [
        {
            "push": {
                "channel": "orders",
                "unsubscribe": {
                    "code": UnsubscribeCode.EXPIRED,
                    "reason": UnsubscribeCode.EXPIRED.reason,
                },
            }
        }
    ]
    assert list(session.subs) == ["other"] and not session.closed


def test_an_expired_server_side_subscription_closes_3006() -> None:
    session = connected()
    sub = subscribed(session, "#ann", server_side=True)
    sub.expires_at = 1000
    session.tick(1.0, 1001.0)
    assert session.close_code == DisconnectCode.SUB_EXPIRED


def test_a_closing_session_has_no_timers() -> None:
    session = Probe(now=0.0)
    session.close(DisconnectCode.SHUTDOWN)
    session.tick(1000.0, 0.0)
    assert len(session.closed) == 1
