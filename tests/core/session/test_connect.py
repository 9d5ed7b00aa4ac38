"""Connect and refresh: tokens refused, anonymous clients, sign-in sessions, the replies."""

from __future__ import annotations

from syncline.core import protocol as p
from syncline.core.codes import DisconnectCode
from syncline.core.session import NEVER, SESSION_REVOKED_REASON

from helpers.session_probe import Limits, Probe, connected


def test_an_expired_connect_token_gets_109_and_the_connection_stays() -> None:
    session = Probe()
    session.token_refused(1, expired=True)
    assert session.out() == [{"id": 1, "error": {"code": 109, "message": "token expired"}}]
    assert not session.closed and not session.connected


def test_an_invalid_connect_token_closes_3500() -> None:
    session = Probe()
    session.token_refused(1, expired=False)
    assert session.close_code == DisconnectCode.INVALID_TOKEN


def test_anonymous_is_refused_101_and_closed_unless_allowed() -> None:
    refused = Probe()
    assert not refused.anonymous(1)
    assert refused.out() == [{"id": 1, "error": {"code": 101, "message": "unauthorized"}}]
    assert refused.close_code == DisconnectCode.INVALID_TOKEN
    allowed = Probe(Limits(allow_anonymous=True))
    assert allowed.anonymous(1)
    assert not allowed.closed


def test_a_successful_connect_replies_with_the_client_ping_and_expiry() -> None:
    session = Probe(now=100.0)
    session.authenticate("ann", 2_000_000_000, b'{"name":"Ann"}', "")
    session.connected_as("c-1", 100.0)
    session.connect_reply(1, version="v1", ttl=60, subs={"#ann": {"recoverable": True}})
    assert session.out() == [
        {
            "id": 1,
            "connect": {
                "client": "c-1",
                "version": "v1",
                "expires": True,
                "ttl": 60,
                "ping": 25,
                "pong": True,
                "subs": {"#ann": {"recoverable": True}},
            },
        }
    ]
    assert session.connected and session.user == "ann"
    assert session.conn_info == b'{"name":"Ann"}'
    assert session.next_ping_at == 125.0


def test_a_connect_without_expiry_says_nothing_of_it() -> None:
    session = Probe()
    session.authenticate("ann", None, None, "")
    session.connected_as("c-1", 0.0)
    session.connect_reply(1, version="v1", ttl=0, subs={})
    (reply,) = session.out()
    assert "expires" not in reply["connect"] and "ttl" not in reply["connect"]


def test_a_revoked_sign_in_session_closes_3500_session_revoked() -> None:
    session = Probe()
    session.authenticate("ann", None, None, "s1")
    assert not session.session_live(None)
    assert session.closed == [(DisconnectCode.INVALID_TOKEN, SESSION_REVOKED_REASON)]


def test_a_live_sign_in_session_limits_the_connection() -> None:
    session = Probe()
    session.authenticate("ann", 5000, None, "s1")
    assert session.session_live(4000)
    session.limit_to_session(4000)
    assert session.expires_at == 4000
    session.limit_to_session(6000)  # the token's expiry comes first
    assert session.expires_at == 4000
    unlimited = Probe()
    unlimited.authenticate("bob", None, None, "s2")
    unlimited.limit_to_session(NEVER)
    assert unlimited.expires_at is None
    unlimited.limit_to_session(3000)
    assert unlimited.expires_at == 3000


def test_a_session_answer_after_the_close_changes_nothing() -> None:
    session = Probe()
    session.close(DisconnectCode.SHUTDOWN)
    assert not session.session_live(4000)
    assert len(session.closed) == 1


def test_a_check_that_failed_is_error_100_and_the_connection_stands() -> None:
    session = connected()
    session.check_failed(4)
    assert session.out() == [
        {"id": 4, "error": {"code": 100, "message": "internal server error", "temporary": True}}
    ]
    assert not session.closed


def test_refresh_refused_closes_3005_when_expired_3500_otherwise() -> None:
    expired = connected()
    expired.refresh_refused(expired=True)
    assert expired.close_code == DisconnectCode.EXPIRED
    invalid = connected()
    invalid.refresh_refused(expired=False)
    assert invalid.close_code == DisconnectCode.INVALID_TOKEN


def test_refreshed_moves_the_expiry_and_replies() -> None:
    session = connected()
    session.refreshed(3, 9000, 120)
    assert session.expires_at == 9000
    assert session.out() == [{"id": 3, "refresh": {"expires": True, "ttl": 120}}]
    session.refreshed(4, None, 0)
    assert session.expires_at is None
    assert session.out() == [{"id": 4, "refresh": {}}]


def test_the_full_connect_path_from_bytes() -> None:
    session = Probe()
    assert session.accept(b'{"id":1,"connect":{"token":"t"}}\n{"id":2,"send":{"data":1}}')
    connect = session.next_command()
    assert isinstance(connect, p.ConnectCommand) and connect.token == "t"
    assert session.admit(connect)
    session.authenticate("ann", None, None, "")
    session.connected_as("c", 0.0)
    session.connect_reply(connect.id, version="v", ttl=0, subs={})
    send = session.next_command()
    assert send is not None and not session.admit(send)
    assert [m["id"] for m in session.out()] == [1]
