"""The checked-in client_pb2 is client.proto's: every message and field, by number and name."""

from __future__ import annotations

import re
from pathlib import Path

import centrifuge.protocol.client_pb2 as sdk_pb

from syncline.core.proto import client_pb2 as pb

PROTO = Path(pb.__file__).with_name("client.proto")
_MESSAGE = re.compile(r"^message (\w+)\s*\{(.*?)\}", re.MULTILINE | re.DOTALL)
_FIELD = re.compile(r"^\s*(?:repeated\s+)?(?:map<[^>]+>|[\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;", re.M)


def declared() -> dict[str, dict[str, int]]:
    text = re.sub(r"//[^\n]*", "", PROTO.read_text())
    return {
        name: {field: int(number) for field, number in _FIELD.findall(body)}
        for name, body in _MESSAGE.findall(text)
    }


def test_generated_messages_match_the_proto_file() -> None:
    messages = declared()
    assert len(messages) == PROTO.read_text().count("\nmessage ")
    generated = {
        name: {f.name: f.number for f in descriptor.fields}
        for name, descriptor in pb.DESCRIPTOR.message_types_by_name.items()
    }
    assert generated == messages


def test_the_proto_file_keeps_its_origin_and_licence() -> None:
    head = PROTO.read_text()[:2000]
    assert "github.com/centrifugal/protocol" in head
    assert "MIT License" in head and "Centrifugal Labs LTD" in head


def test_lives_beside_the_sdks_older_copy_of_the_same_package() -> None:
    # Both name their package centrifugal.centrifuge.protocol: a private pool keeps them apart,
    # and the wire format is the same.
    assert pb.Command.DESCRIPTOR.full_name == sdk_pb.Command.DESCRIPTOR.full_name
    assert pb.Command.DESCRIPTOR is not sdk_pb.Command.DESCRIPTOR
    command = pb.Command(id=3, subscribe=pb.SubscribeRequest(channel="c", offset=9, type=2))
    theirs = sdk_pb.Command.FromString(command.SerializeToString())
    assert (theirs.id, theirs.subscribe.channel, theirs.subscribe.offset) == (3, "c", 9)
