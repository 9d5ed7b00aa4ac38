"""The format chosen per connection and the per-format publication cache (syncline.core.codecs)."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from syncline.core import pb_protocol, pb_wire, protocol, wire
from syncline.core.codecs import JSON, PROTOBUF, Codec, Format, PubFrames, choose
from syncline.core.log import ClientInfo, Publication


@pytest.mark.parametrize(
    ("subprotocols", "param", "expected"),
    [
        ((), None, JSON),
        ((), "json", JSON),
        ((), "protobuf", PROTOBUF),
        (("centrifuge-protobuf",), None, PROTOBUF),
        (("centrifuge-json", "centrifuge-protobuf"), "json", PROTOBUF),
        (("centrifuge-json",), None, JSON),
        ((), "xml", None),
        ((), "", None),
    ],
)
def test_codec_is_chosen_by_subprotocol_then_query(
    subprotocols: tuple[str, ...], param: str | None, expected: Codec | None
) -> None:
    assert choose(subprotocols, param) is expected


def test_each_codec_holds_its_formats_functions() -> None:
    assert (JSON.format, JSON.binary, PROTOBUF.format, PROTOBUF.binary) == (
        Format.JSON, False, Format.PROTOBUF, True,
    )  # fmt: skip
    assert JSON.parse_frame is protocol.parse_frame
    assert PROTOBUF.parse_frame is pb_protocol.parse_frame
    for field in dataclasses.fields(Codec):
        if field.name.startswith("encode_"):
            assert getattr(JSON, field.name) is getattr(wire, field.name)
            assert getattr(PROTOBUF, field.name) is getattr(pb_wire, field.name)
    assert (JSON.ping, PROTOBUF.ping) == (b"{}", b"\x00")


def test_a_publication_is_encoded_once_per_format_however_many_subscribers() -> None:
    pub = Publication(7, b'{"a":1}', ClientInfo("u", "c"), 0)
    frames = PubFrames("room:1", pub)
    delivered = [frames.get(codec) for codec in [JSON, PROTOBUF] * 500]
    assert frames.encodings == 2
    json_frames, pb_frames = set(delivered[::2]), set(delivered[1::2])
    assert json_frames == {wire.encode_pub_push("room:1", pub.data, 7, pub.info)}
    assert pb_frames == {pb_wire.encode_pub_push("room:1", pub.data, 7, pub.info)}
    assert all(frame is delivered[0] for frame in delivered[::2])
    assert orjson.loads(delivered[0])["push"]["pub"]["offset"] == 7


def test_a_json_only_fan_out_never_builds_protobuf() -> None:
    frames = PubFrames("c", Publication(1, b"1", None, 0))
    frames.get(JSON)
    frames.get(JSON)
    assert frames.encodings == 1
