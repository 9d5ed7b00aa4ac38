"""Session output: the bounded queue, flushing, back-pressure, the slow-consumer rule, close."""

from __future__ import annotations

from syncline.core.codes import DisconnectCode

from helpers.session_probe import Limits, Probe, connected, subscribed


def test_queued_messages_wait_for_a_flush_in_one_batch() -> None:
    session = connected()
    session.wakes = 0
    session.queue(b'{"a":1}')
    session.queue(b'{"a":2}')
    assert session.wakes == 2 and session.sent == []
    assert session.queued() == 14
    session.flush()
    assert session.sent == [[b'{"a":1}', b'{"a":2}']]
    assert session.queued() == 0
    session.flush()  # nothing more
    assert len(session.sent) == 1


def test_a_burst_over_the_buffer_goes_out_at_once_when_the_transport_takes_it() -> None:
    session = connected(Limits(send_buffer=100))
    for n in range(3):
        session.queue(b'{"n":' + str(n).encode() + b',"pad":"' + b"x" * 40 + b'"}')
    # The second went over: both went out at once; the third waits for the flush.
    assert [len(batch) for batch in session.sent] == [2]
    assert session.queued() > 0 and not session.closed


def test_while_paused_output_waits_and_resume_asks_for_a_flush() -> None:
    session = connected()
    session.pause_writing()
    session.queue(b'{"a":1}')
    session.flush()
    assert session.sent == []
    session.wakes = 0
    session.resume_writing()
    assert session.wakes == 1
    session.flush()
    assert session.sent == [[b'{"a":1}']]


def test_resume_with_nothing_queued_asks_for_nothing() -> None:
    session = connected()
    session.pause_writing()
    session.wakes = 0
    session.resume_writing()
    assert session.wakes == 0


def test_paused_and_over_the_buffer_the_client_is_slow_3008() -> None:
    session = connected(Limits(send_buffer=100))
    session.queue(b'{"first":1}')
    session.flush()
    session.pause_writing()
    for _ in range(3):
        session.queue(b'{"pad":"' + b"x" * 40 + b'"}')
    assert session.slow == 1
    assert session.closed == [(DisconnectCode.SLOW, DisconnectCode.SLOW.reason)]
    # What waited in the session was dropped, not sent ahead of the close.
    assert session.sent == [[b'{"first":1}']]
    assert session.queued() == 0
    session.queue(b"{}")  # closing: ignored
    assert session.queued() == 0


def test_close_sends_what_is_queued_first_even_when_paused() -> None:
    session = connected()
    session.queue(b'{"reply":1}')
    session.pause_writing()
    session.close(DisconnectCode.SHUTDOWN)
    assert session.sent == [[b'{"reply":1}']]
    assert session.closed == [(DisconnectCode.SHUTDOWN, DisconnectCode.SHUTDOWN.reason)]


def test_close_without_flush_drops_the_queue() -> None:
    session = connected()
    session.queue(b'{"reply":1}')
    session.close(1002, flush=False, reason="reserved bit set")
    assert session.sent == []
    assert session.closed == [(1002, "reserved bit set")]


def test_close_is_idempotent() -> None:
    session = connected()
    session.close(DisconnectCode.EXPIRED)
    session.close(DisconnectCode.SHUTDOWN)
    assert session.closed == [(DisconnectCode.EXPIRED, "connection expired")]


def test_a_client_that_closes_gets_nothing_more() -> None:
    session = connected()
    session.closed_by_client()
    session.queue(b"{}")
    session.flush()
    assert session.sent == [] and session.closed == []


def test_the_end_of_the_transport_ends_every_subscription() -> None:
    session = connected()
    subscribed(session, "a")
    subscribed(session, "b")
    session.queue(b"{}")
    session.end()
    assert sorted(session.detached) == ["a", "b"]
    assert session.subs == {} and session.queued() == 0 and session.closing


def test_a_reply_and_an_error_are_encoded_by_the_codec() -> None:
    session = connected()
    session.reply(5, "publish", {})
    session.error(6, 103)
    session.error(7, 100, "custom")
    assert session.out() == [
        {"id": 5, "publish": {}},
        {"id": 6, "error": {"code": 103, "message": "permission denied"}},
        {"id": 7, "error": {"code": 100, "message": "custom", "temporary": True}},
    ]


def test_a_fresh_session_has_sent_nothing() -> None:
    session = Probe()
    session.flush()
    assert session.sent == [] and not session.connected
