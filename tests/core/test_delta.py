"""Fossil delta compression of publications (syncline.core.delta), with plain data.

Deltas are checked against fossil's own output and applied with centrifuge-python's fossil
decoder, an implementation independent of the encoder (a port of the JS SDK's).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from centrifuge.fossil import apply_delta
from hypothesis import given
from hypothesis import strategies as st

from syncline.core.delta import DeltaChain, fossil_patch, negotiate, recovered_chain
from syncline.core.log import ClientInfo, Publication

# Reference vectors: `fossil test-delta-create ORIGIN TARGET DELTA` (fossil SCM's own encoder).
FOSSIL_VECTORS = [
    (
        b'{"42182fb2426340ac5fad4e511d8a2dc4":{"title":"New note"}}\n',
        b'{"42182fb2426340ac5fad4e511d8a2dc4":{"title":"First note"}}\n',
        b'x\nj@0,E:First note"}}\n5NpHA;',
    ),
    (b"tiny", b"little", b"6\n6:little3OocHp;"),
]


def applied(base: bytes, patch: str) -> bytes:
    """What an SDK does with a delta: UTF-8 of the JSON string, applied to the data it holds."""
    return bytes(apply_delta(base, patch.encode("utf-8")))


def pub(offset: int, data: Any, info: ClientInfo | None = None) -> Publication:
    return Publication(offset=offset, data=orjson.dumps(data), info=info, time_ms=0)


def push_pub(frame: bytes) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(frame)["push"]["pub"]
    return body


ORDER: dict[str, Any] = {
    "table": "orders",
    "op": "update",
    "row": {"id": 7, "customer_name": "Ann", "product_name": "Green tea", "status": "new"},
    "lsn": "27653120:0",
    "xid": 771,
}


def order(status: str, xid: int) -> dict[str, Any]:
    return {**ORDER, "row": {**ORDER["row"], "status": status}, "xid": xid}


# --- the fossil encoder ---------------------------------------------------------------------


def test_the_encoder_writes_what_fossil_writes() -> None:
    # Our vector 2 has a delta longer than its target: fossil_patch then says "send it whole".
    base, target, expected = FOSSIL_VECTORS[0]
    assert fossil_patch(base, target) == expected.decode()
    assert applied(base, expected.decode()) == target
    base, target, expected = FOSSIL_VECTORS[1]
    assert len(expected) >= len(target)
    assert fossil_patch(base, target) is None


@given(st.binary(max_size=400), st.binary(max_size=400))
def test_every_patch_applies_back_to_its_target(base: bytes, target: bytes) -> None:
    patch = fossil_patch(base, target)
    if patch is not None:
        assert len(patch.encode()) < len(target)
        assert applied(base, patch) == target


def test_a_patch_that_is_not_utf8_text_is_not_sent() -> None:
    # One Cyrillic letter for another: the literal run is the second byte of a two-byte
    # character alone, which the SDK's UTF-8 round trip of the JSON string would corrupt.
    text = '{"name":"' + "абвгдеёжзийклмнопрстуфхцчшщъыьэюя" * 2 + '","n":1}'
    changed = text[:17] + "д" + text[18:]
    assert fossil_patch(text.encode(), changed.encode()) is None
    # A change of whole characters is text, and goes as a delta.
    ascii_change = text.replace('"n":1', '"n":2')
    patch = fossil_patch(text.encode(), ascii_change.encode())
    assert patch is not None
    assert applied(text.encode(), patch) == ascii_change.encode()


# --- a channel's publications as delta subscribers get them ---------------------------------


def test_the_first_publication_is_whole_and_its_data_a_json_string() -> None:
    chain = DeltaChain()
    step = chain.step("orders", "E", pub(1, order("new", 1), ClientInfo("u1", "c1")))
    assert step.key == ("E", 1)
    assert step.base is None
    body = push_pub(step.frame_for(None))
    assert body == {
        "data": orjson.dumps(order("new", 1)).decode(),
        "offset": 1,
        "info": {"user": "u1", "client": "c1"},
    }
    assert json.loads(body["data"]) == order("new", 1)


def test_the_next_one_is_a_delta_against_it_for_a_subscriber_holding_it() -> None:
    chain = DeltaChain()
    first = chain.step("orders", "E", pub(1, order("new", 1)))
    second = chain.step("orders", "E", pub(2, order("paid", 2)))
    assert second.base == first.key
    body = push_pub(second.frame_for(first.key))
    assert body["delta"] is True
    assert body["offset"] == 2
    full = orjson.dumps(order("paid", 2))
    assert len(body["data"]) < len(full)
    assert applied(orjson.dumps(order("new", 1)), body["data"]) == full
    # Anybody else (a fresh subscriber, one that holds something else) gets it whole.
    for holds in (None, ("E", 5), ("other", 1)):
        whole = push_pub(second.frame_for(holds))
        assert "delta" not in whole
        assert json.loads(whole["data"]) == order("paid", 2)


def test_each_encoding_is_made_once_per_publication() -> None:
    chain = DeltaChain()
    first = chain.step("orders", "E", pub(1, order("new", 1)))
    second = chain.step("orders", "E", pub(2, order("paid", 2)))
    assert second.frame_for(first.key) is second.frame_for(first.key)
    assert second.frame_for(None) is second.frame_for(None)


def test_a_delta_no_shorter_than_the_data_goes_whole() -> None:
    chain = DeltaChain()
    first = chain.step("c", "E", pub(1, "tiny"))
    second = chain.step("c", "E", pub(2, "little"))
    body = push_pub(second.frame_for(first.key))
    assert body == {"data": '"little"', "offset": 2}


def test_publications_without_offsets_are_chained_by_their_order() -> None:
    chain = DeltaChain()
    steps = [chain.step("typing:5", "", pub(0, {"user": "7", "typing": t})) for t in (1, 0, 1)]
    assert [s.key for s in steps] == [("", -1), ("", -2), ("", -3)]
    assert [s.base for s in steps] == [None, ("", -1), ("", -2)]
    body = push_pub(steps[2].frame_for(("", -2)))
    assert "offset" not in body


def test_a_sequence_reconstructs_exactly_through_the_deltas() -> None:
    """A subscriber that gets every publication holds, after each, exactly what was published."""
    chain = DeltaChain()
    holds = None
    text = b""
    statuses = ["new", "paid", "packed", "shipped", "delivered", "returned", "refunded"]
    for n, status in enumerate(statuses, start=1):
        step = chain.step("orders", "E", pub(n, order(status, 700 + n)))
        body = push_pub(step.frame_for(holds))
        text = applied(text, body["data"]) if body.get("delta") else body["data"].encode()
        assert json.loads(text) == order(status, 700 + n)
        holds = step.key
    assert body.get("delta") is True


# --- recovery replays and negotiation -------------------------------------------------------


def test_a_recovery_replay_starts_whole_then_chains_deltas() -> None:
    pubs = [pub(n, order(s, n)) for n, s in enumerate(["new", "paid", "shipped"], start=4)]
    replay = [orjson.loads(raw.json) for raw in recovered_chain(pubs)]
    assert "delta" not in replay[0]
    assert json.loads(replay[0]["data"]) == order("new", 4)
    assert [r["offset"] for r in replay] == [4, 5, 6]
    text = replay[0]["data"].encode()
    for body, expected in zip(replay[1:], pubs[1:], strict=True):
        assert body["delta"] is True
        text = applied(text, body["data"])
        assert text == expected.data


def test_only_an_allowed_delta_type_is_negotiated() -> None:
    assert negotiate("fossil", ("fossil",))
    assert not negotiate("fossil", ())  # Centrifugo: a plain subscription, no error
    assert not negotiate("", ("fossil",))
