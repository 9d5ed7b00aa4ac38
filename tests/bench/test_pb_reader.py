"""The bench receivers' Protobuf fast path reads what upb reads, or declines."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from syncline.bench.pb_reader import publication_data
from syncline.core.pb_wire import PING, encode_pub_push
from syncline.core.proto import client_pb2 as pb

_text = st.text(max_size=40)
_blob = st.binary(max_size=300)
_uint64 = st.integers(min_value=0, max_value=2**64 - 1)


@st.composite
def publications(draw: st.DrawFn) -> pb.Publication:
    pub = pb.Publication(data=draw(st.binary(max_size=20_000)), offset=draw(_uint64))
    if draw(st.booleans()):
        info = pb.ClientInfo(user=draw(_text), client=draw(_text), conn_info=draw(_blob))
        pub.info.CopyFrom(info)
    pub.tags.update(draw(st.dictionaries(_text, _text, max_size=3)))
    if draw(st.booleans()):
        pub.delta = True
    pub.time = draw(st.integers(min_value=-(2**63), max_value=2**63 - 1))
    return pub


@st.composite
def replies(draw: st.DrawFn) -> pb.Reply:
    kind = draw(st.sampled_from(["pub", "pub", "join", "unsubscribe", "connect", "error", "none"]))
    reply = pb.Reply(id=draw(st.sampled_from([0, 0, 1, 2**32 - 1])))
    channel = draw(st.text(max_size=200))
    if kind == "pub":
        reply.push.CopyFrom(pb.Push(channel=channel, pub=draw(publications())))
    elif kind == "join":
        reply.push.CopyFrom(pb.Push(channel=channel, join=pb.Join(info=pb.ClientInfo(user="u"))))
    elif kind == "unsubscribe":
        reply.push.CopyFrom(pb.Push(channel=channel, unsubscribe=pb.Unsubscribe(code=2500)))
    elif kind == "connect":
        reply.connect.CopyFrom(pb.ConnectResult(client=draw(_text), data=draw(_blob)))
    elif kind == "error":
        reply.error.CopyFrom(pb.Error(code=100, message=draw(_text)))
    return reply


def _upb(body: bytes) -> bytes | None:
    reply = pb.Reply.FromString(body)
    if reply.HasField("push") and reply.push.HasField("pub"):
        return reply.push.pub.data
    return None


@given(replies(), _blob, _blob)
def test_reads_what_upb_reads_or_declines(reply: pb.Reply, before: bytes, after: bytes) -> None:
    body = reply.SerializeToString()
    buf = before + body + after
    found = publication_data(buf, len(before), len(before) + len(body))
    if found is not None:
        assert found == _upb(body)
    elif reply.id == 0 and len(reply.push.channel.encode()) < 128:
        # The server's own pushes: declined only when upb finds no data either.
        assert len(reply.push.pub.data) >= 16_384 or not _upb(body)


@given(replies(), st.data())
def test_a_reply_cut_short_never_reads_past_the_cut(reply: pb.Reply, data: st.DataObject) -> None:
    body = reply.SerializeToString()
    cut = data.draw(st.integers(min_value=0, max_value=len(body)))
    found = publication_data(body, 0, cut)
    if found is not None:
        # Only the data field itself can be whole before the cut; then it is the right one.
        assert found == reply.push.pub.data
        assert body.index(found) + len(found) <= cut


def test_the_servers_own_push_frame() -> None:
    data = b'{"row":{"run":1,"seq":7}}'
    frame = encode_pub_push("bench", data, offset=7)
    assert publication_data(frame, 1, 1 + frame[0]) == data
    assert publication_data(PING, 1, 1) is None
