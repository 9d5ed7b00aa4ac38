"""Session input: parsing limits, command order, what runs before and after connect."""

from __future__ import annotations

from syncline.core import protocol as p
from syncline.core.codecs import PROTOBUF
from syncline.core.codes import DisconnectCode, ErrorCode
from syncline.core.session import MAX_PENDING_COMMANDS

from helpers.session_probe import Limits, Probe, connected


def commands(session: Probe) -> list[p.Command]:
    out = []
    while (command := session.next_command()) is not None:
        out.append(command)
    return out


def test_commands_of_a_message_come_out_in_order() -> None:
    session = Probe()
    assert session.accept(b'{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"a"}}')
    assert session.accept(b'{"id":3,"subscribe":{"channel":"b"}}')
    assert [c.id for c in commands(session)] == [1, 2, 3]  # type: ignore[union-attr]
    assert session.next_command() is None


def test_a_malformed_message_closes_with_its_code_and_nothing_runs() -> None:
    session = Probe()
    assert not session.accept(b"not json")
    assert session.close_code == DisconnectCode.BAD_REQUEST
    assert session.malformed and "invalid JSON" in session.malformed[0]
    assert session.next_command() is None
    assert not session.accept(b'{"id":1,"connect":{}}')  # closed: input is ignored


def test_an_unknown_method_closes_3501() -> None:
    session = Probe()
    assert not session.accept(b'{"id":1,"frobnicate":{}}')
    assert session.closed == [(DisconnectCode.BAD_REQUEST, "bad request")]


def test_an_oversized_message_closes() -> None:
    session = Probe(Limits(max_frame_size=1024))
    assert not session.accept(b'{"id":1,"rpc":{"data":"' + b"x" * 2000 + b'"}}')
    assert session.close_code == DisconnectCode.BAD_REQUEST


def test_too_many_commands_in_one_message_closes() -> None:
    session = Probe(Limits(max_commands_per_frame=2))
    assert not session.accept(b"{}\n{}\n{}")
    assert session.close_code == DisconnectCode.BAD_REQUEST


def test_a_flood_of_waiting_commands_closes_3013() -> None:
    session = Probe()
    frame = b"\n".join([b"{}"] * 128)
    for _ in range(MAX_PENDING_COMMANDS // 128):
        assert session.accept(frame)
    assert not session.accept(b"{}")
    assert session.close_code == DisconnectCode.TOO_MANY_REQUESTS
    assert session.next_command() is None  # closing: the backlog is not run


def test_protobuf_input_goes_through_the_protobuf_codec() -> None:
    session = Probe(codec=PROTOBUF)
    assert not session.accept(b'{"id":1,"connect":{}}')  # JSON is not varint-delimited protobuf
    assert session.closed


def test_anything_before_connect_closes_3501() -> None:
    session = Probe()
    assert not session.admit(p.SubscribeCommand(id=1, channel="a"))
    assert session.close_code == DisconnectCode.BAD_REQUEST


def test_a_send_before_connect_closes_too() -> None:
    session = Probe()
    assert not session.admit(p.SendCommand(data=1))
    assert session.close_code == DisconnectCode.BAD_REQUEST


def test_connect_is_admitted_once() -> None:
    session = Probe()
    assert session.admit(p.ConnectCommand(id=1))
    session.connected_as("c", 0.0)
    assert not session.admit(p.ConnectCommand(id=2))
    assert session.close_code == DisconnectCode.BAD_REQUEST


def test_a_pong_clears_the_ping_and_needs_no_work() -> None:
    session = connected()
    session.ping_sent_at = 5.0
    assert not session.admit(p.Pong())
    assert session.ping_sent_at is None
    assert session.out() == []


def test_a_pong_before_connect_is_fine() -> None:
    session = Probe()
    assert not session.admit(p.Pong())
    assert not session.closed


def test_a_rejected_command_gets_its_error_reply() -> None:
    session = connected()
    rejected = p.RejectedCommand(7, p.Method.HISTORY, ErrorCode.BAD_REQUEST, "bad limit")
    assert not session.admit(rejected)
    assert session.out() == [{"id": 7, "error": {"code": 107, "message": "bad request"}}]
    assert not session.closed


def test_send_needs_no_work_and_no_reply() -> None:
    session = connected()
    assert not session.admit(p.SendCommand(data={"x": 1}))
    assert session.out() == []


def test_commands_after_connect_are_admitted() -> None:
    session = connected()
    for command in (
        p.SubscribeCommand(id=2, channel="a"),
        p.UnsubscribeCommand(id=3, channel="a"),
        p.PublishCommand(id=4, channel="a", data=1),
        p.RpcCommand(id=5, method="m"),
        p.RefreshCommand(id=6, token="t"),
    ):
        assert session.admit(command)
    assert not session.closed


def test_reads_and_writes_recheck_the_sign_in_session_only_with_one() -> None:
    session = connected()
    subscribe = p.SubscribeCommand(id=2, channel="a")
    assert not session.needs_session_check(subscribe)
    session.sid = "s1"
    assert session.needs_session_check(subscribe)
    assert session.needs_session_check(p.HistoryCommand(id=3, channel="a"))
    assert session.needs_session_check(p.SubRefreshCommand(id=3, channel="a", token="t"))
    # Unsubscribe always succeeds; refresh checks its own token's session.
    assert not session.needs_session_check(p.UnsubscribeCommand(id=4, channel="a"))
    assert not session.needs_session_check(p.RefreshCommand(id=5, token="t"))
