"""The control-bus wire format: every command round-trips; anything else is refused."""

from __future__ import annotations

import pytest

from syncline.core import control
from syncline.core.control import (
    MAX_SESSIONS_PER_COMMAND,
    ControlDecodeError,
    DisconnectUser,
    Emulate,
    RecheckChannel,
    RefreshUser,
    SessionsRevoked,
    SubscribeUser,
    UnsubscribeUser,
)


@pytest.mark.parametrize(
    "command",
    [
        SessionsRevoked("7", ("0b1c2d3e-0000-4000-8000-000000000000",)),
        SessionsRevoked("7", ()),
        DisconnectUser("7", 3503, "force disconnect", "client-1"),
        DisconnectUser("", 4000),
        UnsubscribeUser("7", "room:1", ""),
        UnsubscribeUser("ü", "chat:ö", "c"),
        UnsubscribeUser("7", "", ""),
        SubscribeUser("7", "news"),
        SubscribeUser("", "news", "c", '{"role":"x"}', '{"hello":1}', 1_900_000_000, 12, "ep"),
        RefreshUser("7"),
        RefreshUser("7", "c", expired=True),
        RefreshUser("7", "", False, 1_900_000_000, '{"name":"Ann"}'),
        RecheckChannel("room:42"),
        RecheckChannel("room:42", (7, 4_294_967_297)),
        Emulate("host-w2", "4f1c", b'{"id":2,"subscribe":{"channel":"c"}}'),
        Emulate("n", "s", b"\x05\x08\x02\x1a\x01\xff"),
    ],
)
def test_every_command_round_trips(command: control.ControlCommand) -> None:
    assert control.decode(control.encode(command)) == command


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[]",
        b"not json",
        b'{"kind": "reboot"}',
        b'{"kind": "sessions_revoked", "user": "7"}',
        b'{"kind": "sessions_revoked", "user": "7", "sessions": [1]}',
        b'{"kind": "sessions_revoked", "user": 7, "sessions": []}',
        b'{"kind": "disconnect", "user": "7", "code": 1000}',
        b'{"kind": "disconnect", "user": "7", "code": true}',
        b'{"kind": "disconnect", "user": "7", "code": "3503"}',
        b'{"kind": "unsubscribe", "user": "7"}',
        b'{"kind": "recheck"}',
        b'{"kind": "recheck", "channel": "c", "xids": [-1]}',
        b'{"kind": "recheck", "channel": "c", "xids": [true]}',
        b'{"kind": "recheck", "channel": "c", "xids": "7"}',
        b'{"kind": "recheck", "channel": "c", "xids": [' + b",".join([b"1"] * 33) + b"]}",
        b'{"kind": "subscribe", "user": "7"}',
        b'{"kind": "subscribe", "user": "7", "channel": "c", "expire_at": -1}',
        b'{"kind": "subscribe", "user": "7", "channel": "c", "recover_offset": "1"}',
        b'{"kind": "subscribe", "user": "7", "channel": "c", "info": {"a": 1}}',
        b'{"kind": "refresh", "user": "7", "expired": 1}',
        b'{"kind": "refresh", "user": "7", "expire_at": true}',
        b'{"kind": "refresh"}',
        b'{"kind": "unsubscribe", "user": "7", "channel": "' + b"x" * 2000 + b'"}',
        b'{"kind": "emulate", "node": "n", "session": "s"}',
        b'{"kind": "emulate", "node": "n", "session": "s", "data": "not base64!"}',
        b'{"kind": "emulate", "node": "n", "session": "s", "data": "' + b"A" * 90_000 + b'"}',
        b'{"kind": "emulate", "session": "s", "data": ""}',
    ],
)
def test_anything_else_is_refused(data: bytes) -> None:
    with pytest.raises(ControlDecodeError):
        control.decode(data)


def test_a_command_naming_too_many_sessions_is_refused() -> None:
    many = SessionsRevoked("7", tuple(str(i) for i in range(MAX_SESSIONS_PER_COMMAND + 1)))
    with pytest.raises(ControlDecodeError):
        control.decode(control.encode(many))
