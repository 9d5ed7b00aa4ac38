"""Deliveries: offsets in order, duplicates dropped, a gap or new epoch never skipped silently."""

from __future__ import annotations

from syncline.core.codes import DisconnectCode, UnsubscribeCode
from syncline.core.delta import DeltaChain
from syncline.core.log import Publication
from syncline.core.namespaces import Namespace

from helpers.session_probe import DELTA, connected, subscribed

INSUFFICIENT = {
    "push": {
        "channel": "orders",
        "unsubscribe": {
            "code": UnsubscribeCode.INSUFFICIENT_STATE,
            "reason": UnsubscribeCode.INSUFFICIENT_STATE.reason,
        },
    }
}


def test_consecutive_offsets_go_out_in_order() -> None:
    session = connected()
    sub = subscribed(session, offset=4)
    for offset in (5, 6, 7):
        session.deliver(sub, "e1", offset, b'{"o":%d}' % offset)
    assert session.out() == [{"o": 5}, {"o": 6}, {"o": 7}]
    assert sub.offset == 7


def test_an_offset_already_sent_is_dropped() -> None:
    session = connected()
    sub = subscribed(session, offset=4)
    session.deliver(sub, "e1", 3, b'{"o":3}')
    session.deliver(sub, "e1", 4, b'{"o":4}')
    assert session.out() == [] and "orders" in session.subs


def test_a_gap_unsubscribes_with_2500() -> None:
    session = connected()
    sub = subscribed(session, offset=4)
    session.deliver(sub, "e1", 6, b'{"o":6}')
    assert session.out() == [INSUFFICIENT]
    assert "orders" not in session.subs and session.detached == ["orders"]
    session.deliver(sub, "e1", 7, b'{"o":7}')  # the hub may still hold it this turn
    assert session.out() == [] and session.detached == ["orders"]


def test_a_new_epoch_unsubscribes_with_2500() -> None:
    session = connected()
    sub = subscribed(session, offset=4)
    session.deliver(sub, "e2", 1, b'{"o":1}')
    assert session.out() == [INSUFFICIENT]


def test_a_gap_in_a_server_side_subscription_closes_3010() -> None:
    session = connected()
    sub = subscribed(session, "#ann", offset=1, server_side=True)
    session.deliver(sub, "e1", 3, b'{"o":3}')
    assert session.close_code == DisconnectCode.INSUFFICIENT_STATE


def test_an_unpositioned_subscription_takes_what_comes() -> None:
    session = connected()
    sub = subscribed(session, "chat", namespace=Namespace(), recoverable=False)
    session.deliver(sub, "e1", 9, b'{"o":9}')
    session.deliver(sub, "e1", 3, b'{"o":3}')
    session.deliver(sub, "", 0, b'{"ephemeral":1}')
    assert session.out() == [{"o": 9}, {"o": 3}, {"ephemeral": 1}]


def test_an_ephemeral_publication_does_not_move_the_position() -> None:
    session = connected()
    sub = subscribed(session, offset=4)
    session.deliver(sub, "", 0, b'{"typing":1}')
    assert session.out() == [{"typing": 1}] and sub.offset == 4


def test_a_delta_subscriber_gets_deltas_and_never_plain_data() -> None:
    session = connected()
    sub = subscribed(session, namespace=DELTA, offset=0)
    sub.delta = True
    chain = DeltaChain()
    data = b'{"row":{"id":1,"status":"new","note":"' + b"x" * 80 + b'"}}'
    first = chain.step("orders", "e1", Publication(1, data, None, 0))
    second = chain.step("orders", "e1", Publication(2, data.replace(b"new", b"old"), None, 0))
    session.deliver(sub, "e1", 1, b"plain-1", first)
    session.deliver(sub, "e1", 2, b"plain-2", second)
    full, delta = session.out()
    assert "delta" not in full["push"]["pub"] and delta["push"]["pub"]["delta"] is True
    assert sub.delta_holds == second.key
    session.deliver(sub, "e1", 3, b'{"plain":3}')  # no delta encoding: resubscribe
    assert session.out() == [INSUFFICIENT]


def test_lost_continuity_of_an_ended_subscription_does_nothing() -> None:
    session = connected()
    sub = subscribed(session, offset=4)
    session.revoke("orders")
    session.out()
    session.lost_continuity(sub)
    assert session.out() == [] and not session.closed


def test_deliveries_after_the_close_are_dropped() -> None:
    session = connected()
    sub = subscribed(session, offset=0)
    session.close(DisconnectCode.SHUTDOWN)
    session.deliver(sub, "e1", 1, b'{"o":1}')
    assert session.sent == [] and session.queued() == 0
