"""RPC arguments: anything malformed is the protocol's 107 bad request naming the field, never
100 internal nor an error log line; the issue's cases, then a property test of every method."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncline.apps.chat import models as chat_models
from syncline.apps.inputs import Input
from syncline.core.codes import ErrorCode
from syncline.shapes.rpc import SHAPE_INPUTS

from helpers.chat import Account, make_account
from helpers.hostile import HUGE_INTS, NUL, RawSocket, dump, no_error_logs
from helpers.live_server import LiveServer, start_live_server, stop_live_server

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(migrated_url: str) -> AsyncIterator[LiveServer]:
    server = await start_live_server(migrated_url)
    try:
        yield server
    finally:
        await stop_live_server(server)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ann(live: LiveServer) -> Account:
    return await make_account(live.database_url, "ann")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ids(live: LiveServer, ann: Account) -> dict[str, int]:
    """A room of Ann's with a message in it."""
    async with httpx.AsyncClient(base_url=live.http_url, headers=ann.headers) as http:
        room = (await http.post("/api/rooms", json={"name": "rpc"})).json()["id"]
        url = f"/api/rooms/{room}/messages"
        message = (await http.post(url, json={"body": "hi"})).json()["id"]
    return {"room_id": room, "message_id": message}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sock(live: LiveServer, ann: Account) -> AsyncIterator[RawSocket]:
    socket = await RawSocket.open(live.ws_url, live.http_url, ann.token)
    try:
        yield socket
    finally:
        await socket.close()


ROOM, MESSAGE = "<room>", "<message>"
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("chat.send", {"room_id": ROOM, "body": NUL}, "body"),
    ("chat.edit", {"message_id": MESSAGE, "body": NUL}, "body"),
    ("chat.send", {"room_id": ROOM, "body": "x", "client_msg_id": NUL}, "client_msg_id"),
    # Strict ids: a JSON number, not a string or a float.
    ("chat.send", {"room_id": "1", "body": "x"}, "room_id"),
    ("chat.typing", {"room_id": 1.5}, "room_id"),
    # Beyond a bigint (orjson reads integers past 64 bits as floats).
    ("chat.read", {"room_id": ROOM, "message_id": 2**70}, "message_id"),
    ("chat.read", {"room_id": ROOM, "message_id": 2**63}, "message_id"),
    ("chat.delete", {"message_id": -(2**63) - 1}, "message_id"),
    # An unknown field is named, its NUL escaped.
    ("chat.send", {"room_id": ROOM, "body": "x", NUL: 1}, "a\\u0000b"),
]


def fill(data: dict[str, Any], ids: dict[str, int]) -> dict[str, Any]:
    names = {ROOM: ids["room_id"], MESSAGE: ids["message_id"]}
    return {key: names.get(value, value) if isinstance(value, str) else value
            for key, value in data.items()}  # fmt: skip


@pytest.mark.parametrize(("method", "data", "field"), CASES)
async def test_bad_arguments_are_107_bad_request_naming_the_field(
    sock: RawSocket, ids: dict[str, int], method: str, data: dict[str, Any], field: str
) -> None:
    with no_error_logs():
        reply = await sock.rpc(method, dump(fill(data, ids)))
    error = reply.get("error")
    assert error is not None, reply
    assert error["code"] == ErrorCode.BAD_REQUEST, reply
    assert error["message"].startswith(f"invalid_input: {field}: "), reply


async def test_well_formed_calls_still_work(sock: RawSocket, ids: dict[str, int]) -> None:
    with no_error_logs():
        reply = await sock.rpc("chat.send", dump({"room_id": ids["room_id"], "body": "a\tb\x01"}))
    assert reply["rpc"]["data"]["body"] == "a\tb\x01", reply


# -- property test: every registered method, every argument name, hostile values -------------

# Valid values of the shape methods' required arguments, so that the hostile one is the error.
SHAPE_ARGUMENTS = {"table": "orders", "cursor": "c-1", "channel": "shape:x"}

# Each method's arguments, by the chat's naming (chat.send takes RpcSend, ...); a method with
# no such model is tried with every field name of the chat's request models.
ARGUMENTS = {
    f"chat.{name.removeprefix('Rpc').lower()}": sorted(obj.model_fields)
    for name, obj in vars(chat_models).items()
    if name.startswith("Rpc") and isinstance(obj, type) and issubclass(obj, Input)
} | {method: sorted(model.model_fields) for method, model in SHAPE_INPUTS.items()}
FIELDS = sorted(
    {
        name
        for obj in vars(chat_models).values()
        if isinstance(obj, type) and issubclass(obj, Input) and obj is not Input
        for name in obj.model_fields
    }
)
# The protocol's frames are parsed with orjson, which refuses lone surrogates and NaN: such a
# frame never reaches a method (the gateway answers it), so they are left out here.
_CHAR = st.characters(codec="utf-8", categories=None)
rpc_text = st.one_of(
    st.builds(
        lambda head, tail: f"{head}\x00{tail}",
        st.text(_CHAR, max_size=8),
        st.text(_CHAR, max_size=8),
    ),
    st.sampled_from([NUL, "\x01\x1f\x7f", " ", "", "1", "x" * 4001]),
    st.text(_CHAR, max_size=30),
)
rpc_scalar = st.one_of(
    rpc_text,
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([*HUGE_INTS, 0, -1, 1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
rpc_value = st.recursive(
    rpc_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(rpc_text, inner, max_size=3),
    max_leaves=6,
)


def rpc_data(fields: list[str], valid: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Mostly valid arguments with one hostile value (what reaches the service), else some
    fields valid or hostile with maybe an unknown one, else anything at all."""
    base = {name: valid[name] for name in fields if name in valid}
    one_bad = st.sampled_from(fields).flatmap(
        lambda name: st.one_of(rpc_text, rpc_value).map(lambda value: {**base, name: value})
    )
    mix = st.fixed_dictionaries(
        {},
        optional={name: st.one_of(st.just(valid.get(name, "hello")), rpc_value) for name in fields},
    )
    unknown = mix.flatmap(lambda d: rpc_value.map(lambda v: {**d, NUL: v}))
    return st.one_of(one_bad, one_bad, mix, unknown, rpc_value)  # one_bad: twice as likely


def methods(live: LiveServer) -> list[str]:
    """Every registered method: a new one is covered without touching this test."""
    return sorted(live.runtime.rpc._handlers)


async def test_every_argument_refuses_unstorable_values(
    live: LiveServer, sock: RawSocket, ids: dict[str, int]
) -> None:
    """Each argument of each method, in otherwise valid data: NUL is 107 naming it; huge or
    mistyped numbers are refused without an internal error."""
    valid = {**ids, "body": "hello", "client_msg_id": "k-1", **SHAPE_ARGUMENTS}
    for method in methods(live):
        fields = ARGUMENTS.get(method, FIELDS)
        base = {name: valid[name] for name in fields if name in valid}
        for field in fields:
            for value in [NUL, [NUL], {"k": NUL}, 2**70, -(2**63) - 1, 1.5, "1"]:
                with no_error_logs():
                    reply = await sock.rpc(method, dump({**base, field: value}))
                where = (method, field, value, reply)
                if "rpc" in reply:  # e.g. "1" as a message body
                    assert value != NUL, where
                    continue
                error = reply["error"]
                assert error["code"] != ErrorCode.INTERNAL, where
                if value == NUL:
                    assert error["code"] == ErrorCode.BAD_REQUEST, where
                    assert error["message"].startswith(f"invalid_input: {field}: "), where


@given(data=st.data())
@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
async def test_every_method_answers_any_data_without_internal_errors(
    live: LiveServer, sock: RawSocket, ids: dict[str, int], data: st.DataObject
) -> None:
    names = methods(live)
    assert {"room_id", "message_id", "body", "client_msg_id"} <= set(FIELDS)
    assert {"chat.send", "chat.edit", "chat.delete", "chat.read", "chat.typing"} <= set(names)
    assert set(ARGUMENTS) <= set(names), ARGUMENTS
    method = data.draw(st.sampled_from(names), label="method")
    valid = {**ids, "body": "hello", "client_msg_id": "k-1", **SHAPE_ARGUMENTS}
    args = data.draw(rpc_data(ARGUMENTS.get(method, FIELDS), valid), label="data")
    with no_error_logs():
        reply = await sock.rpc(method, dump(args))
    error = reply.get("error")
    if error is None:
        assert "rpc" in reply, reply
        return
    # 107 for malformed arguments; an application refusal (403, 404, 409, 429) otherwise.
    assert error["code"] == ErrorCode.BAD_REQUEST or 400 <= error["code"] < 500, reply
    if error["code"] == ErrorCode.BAD_REQUEST:
        assert error["message"].startswith("invalid_input: "), reply
