"""The pgoutput decoder, against messages captured from PostgreSQL 18 (see fixtures/pgoutput)."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import struct
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncline.core.changes import Lsn
from syncline.core.pgoutput import (
    UNCHANGED_TOAST,
    Begin,
    BeginPrepare,
    Commit,
    CommitPrepared,
    Delete,
    Insert,
    Message,
    Origin,
    PgOutputDecoder,
    PgOutputError,
    PgOutputMessage,
    Prepare,
    Relation,
    RelationColumn,
    RollbackPrepared,
    StreamAbort,
    StreamCommit,
    StreamPrepare,
    StreamStart,
    StreamStop,
    Truncate,
    Type,
    Update,
    decode,
)
from syncline.core.replication import PG_EPOCH_OFFSET_US

FIXTURES = Path(__file__).parent / "fixtures" / "pgoutput"
RUNS = ["v1", "v4_stream", "v4_parallel", "v4_binary", "v4_two_phase"]
BIG_BODY = "".join(f"{i:08x}" for i in range(2_500))  # what capture.py stored in docs.body
YEAR_2020_US = PG_EPOCH_OFFSET_US + 20 * 365 * 86_400_000_000


@dataclasses.dataclass(frozen=True)
class Captured:
    lsn: Lsn
    data: bytes
    in_stream: bool
    message: PgOutputMessage


@cache
def run(name: str) -> tuple[dict[str, Any], list[Captured]]:
    raw = json.loads(gzip.decompress((FIXTURES / f"{name}.json.gz").read_bytes()))
    decoder = PgOutputDecoder()
    captured = []
    for lsn, _, hexdata in raw["messages"]:
        data = bytes.fromhex(hexdata)
        in_stream = decoder.in_stream
        captured.append(Captured(Lsn.parse(lsn), data, in_stream, decoder.decode(data)))
    return raw["marks"], captured


def messages(name: str) -> list[PgOutputMessage]:
    return [c.message for c in run(name)[1]]


def transaction(name: str, scenario: str) -> list[PgOutputMessage]:
    """The messages from the Begin of a scenario's transaction to its Commit."""
    xid = run(name)[0][scenario]
    found = messages(name)
    start = next(i for i, m in enumerate(found) if isinstance(m, Begin) and m.xid == xid)
    end = next(i for i in range(start, len(found)) if isinstance(found[i], Commit))
    return found[start : end + 1]


def of_type(found: list[PgOutputMessage], cls: type[Any]) -> list[Any]:
    return [m for m in found if isinstance(m, cls)]


def relation(name: str, table: str) -> Relation:
    return next(m for m in messages(name) if isinstance(m, Relation) and m.name == table)


# -- every capture -------------------------------------------------------------------------


@pytest.mark.parametrize("name", RUNS)
def test_every_captured_message_decodes(name: str) -> None:
    types = {type(m) for m in messages(name)}
    assert {Begin, Commit, Relation, Insert} <= types or name == "v4_two_phase"
    streaming = {StreamStart, StreamStop, StreamCommit, StreamAbort}
    if name in ("v4_stream", "v4_parallel"):
        assert streaming <= types
    if name in ("v1", "v4_binary"):
        assert not streaming & types


@pytest.mark.parametrize("name", ["v1", "v4_stream", "v4_binary"])
def test_commit_repeats_what_begin_announced(name: str) -> None:
    found = messages(name)
    begins = of_type(found, Begin)
    commits = of_type(found, Commit)
    assert len(begins) == len(commits) > 5
    for begin, commit in zip(begins, commits, strict=True):
        assert commit.commit_lsn == begin.final_lsn
        assert commit.commit_time_us == begin.commit_time_us > YEAR_2020_US
        assert commit.end_lsn > commit.commit_lsn
        assert commit.flags == 0


def test_small_transactions_carry_their_xid() -> None:
    marks, _ = run("v1")
    xids = {m.xid for m in of_type(messages("v1"), Begin)}
    for scenario in ("insert_small", "update_small", "types", "message_tx", "origin"):
        assert marks[scenario] in xids


def test_positions_and_times_agree_across_protocol_versions() -> None:
    v1 = {(m.xid, m.final_lsn, m.commit_time_us) for m in of_type(messages("v1"), Begin)}
    v4 = {(m.xid, m.final_lsn, m.commit_time_us) for m in of_type(messages("v4_stream"), Begin)}
    streamed = {
        (m.xid, m.commit_lsn, m.commit_time_us)
        for m in of_type(messages("v4_stream"), StreamCommit)
    }
    assert v4 | streamed == v1


# -- relations and types -------------------------------------------------------------------


def test_relation_describes_columns_and_key() -> None:
    items = relation("v1", "items")
    assert (items.namespace, items.name, items.replica_identity) == ("public", "items", "d")
    assert items.xid is None
    assert items.columns == (
        RelationColumn(1, "id", 23, -1),
        RelationColumn(0, "name", 25, -1),
        RelationColumn(0, "qty", 23, -1),
        RelationColumn(0, "price", 1700, (10 << 16 | 2) + 4),  # numeric(10,2)
        RelationColumn(0, "note", 25, -1),
    )
    assert [c.is_key for c in items.columns] == [True, False, False, False, False]
    assert relation("v1", "items_full").replica_identity == "f"


def test_relation_is_sent_again_after_a_schema_change() -> None:
    found = transaction("v1", "schema_change")
    (items,) = of_type(found, Relation)
    assert [c.name for c in items.columns] == ["id", "name", "qty", "price", "note", "tag"]
    (insert,) = of_type(found, Insert)
    assert insert.new == ("6", "after alter", "1", "1.00", None, "new")


def test_type_messages_name_user_types_and_domain_bases() -> None:
    types = {(t.namespace, t.name) for t in of_type(transaction("v1", "types"), Type)}
    # A domain is announced under its base type's name; pg_catalog is sent as "".
    assert types == {("public", "mood"), ("public", "_mood"), ("", "int4"), ("public", "pair")}


# -- row changes ---------------------------------------------------------------------------


def test_insert_sends_every_column_as_text_or_null() -> None:
    inserts = of_type(transaction("v1", "insert_small"), Insert)
    assert [i.new for i in inserts] == [
        ("1", "apple", "3", "1.50", None),
        ("2", "pear", None, None, "n"),
        ("3", "fig", "7", "0.99", "x"),
    ]
    assert {i.relation_id for i in inserts} == {relation("v1", "items").relation_id}


def test_update_that_keeps_the_key_sends_no_old_row() -> None:
    (update,) = of_type(transaction("v1", "update_small"), Update)
    assert (update.old_kind, update.old) == (None, None)
    assert update.new == ("1", "apple", "4", "1.50", "ripe")


def test_update_of_the_key_sends_the_old_key() -> None:
    (update,) = of_type(transaction("v1", "update_key"), Update)
    assert update.old_kind == "K"
    assert update.old == ("2", None, None, None, None)
    assert update.new == ("20", "pear", None, None, "n")


def test_delete_sends_the_old_key() -> None:
    (delete,) = of_type(transaction("v1", "delete_small"), Delete)
    assert (delete.old_kind, delete.old) == ("K", ("3", None, None, None, None))


def test_replica_identity_full_sends_the_whole_old_row() -> None:
    found = transaction("v1", "full_identity")
    (update,) = of_type(found, Update)
    (delete,) = of_type(found, Delete)
    assert (update.old_kind, update.old, update.new) == ("O", ("1", "a", "1"), ("1", "a", "2"))
    assert (delete.old_kind, delete.old) == ("O", ("1", "a", "2"))


def test_unchanged_toast_column_is_not_resent() -> None:
    docs, docs_full = of_type(transaction("v1", "toast_insert"), Insert)
    assert docs.new == ("1", "t1", BIG_BODY) == docs_full.new
    plain, full = of_type(transaction("v1", "toast_update"), Update)
    assert plain.old is None
    assert plain.new == ("1", "t2", UNCHANGED_TOAST)
    # REPLICA IDENTITY FULL logs the old row detoasted, the new one still points at it.
    assert full.old_kind == "O"
    assert full.old == ("1", "t1", BIG_BODY)
    assert full.new == ("1", "t2", UNCHANGED_TOAST)
    assert repr(UNCHANGED_TOAST) == "UNCHANGED_TOAST"


def test_truncate_of_two_tables() -> None:
    parent, child = relation("v1", "parent"), relation("v1", "child")
    (two,) = of_type(transaction("v1", "truncate_two"), Truncate)
    assert two.relation_ids == (parent.relation_id, child.relation_id)
    assert (two.options, two.restart_identity, two.cascade) == (2, True, False)
    (cascade,) = of_type(transaction("v1", "truncate_cascade"), Truncate)
    assert cascade.relation_ids == (parent.relation_id, child.relation_id)
    assert (cascade.options, cascade.restart_identity, cascade.cascade) == (1, False, True)


def test_logical_decoding_messages() -> None:
    found = transaction("v1", "message_tx")
    tx = of_type(found, Message)
    assert [(m.transactional, m.prefix, m.content) for m in tx] == [
        (True, "syncline", b'{"channel": "c", "data": {"x": 1}}'),
        (True, "other", b"ignored"),
        (True, "syncline", b"not json"),
    ]
    commit = found[-1]
    assert isinstance(commit, Commit)
    assert all(m.lsn <= commit.commit_lsn for m in tx)
    lone = [m for m in of_type(messages("v1"), Message) if not m.transactional]
    assert [(m.prefix, m.content, m.xid) for m in lone] == [
        ("syncline", b'{"channel": "n", "data": [1, 2]}', None),
        ("other", b"\x00\xff", None),
    ]


def test_origin_of_a_replicated_transaction() -> None:
    (origin,) = of_type(transaction("v1", "origin"), Origin)
    assert origin == Origin(Lsn(0), "upstream")


def test_binary_format_sends_bytes() -> None:
    inserts = of_type(transaction("v4_binary", "insert_small"), Insert)
    first = inserts[0].new
    assert first[0] == struct.pack("!i", 1)
    assert first[1] == b"apple"
    assert first[4] is None


# -- streaming -----------------------------------------------------------------------------


def stream_of(name: str, scenario: str) -> list[Captured]:
    """Every captured message that belongs to a streamed transaction, in order."""
    xid = run(name)[0][scenario]
    found, current = [], None
    for c in run(name)[1]:
        m = c.message
        if isinstance(m, StreamStart):
            current = m.xid
        if current == xid or (isinstance(m, (StreamCommit, StreamAbort)) and m.xid == xid):
            found.append(c)
        if isinstance(m, StreamStop):
            current = None
    return found


def test_streamed_blocks_carry_subtransaction_xids() -> None:
    marks, _ = run("v4_stream")
    top = marks["big_stream"]
    block = stream_of("v4_stream", "big_stream")
    starts = [c.message for c in block if isinstance(c.message, StreamStart)]
    assert [s.first_segment for s in starts] == [True] + [False] * (len(starts) - 1)
    data = [c for c in block if isinstance(c.message, (Insert, Update, Relation, Message))]
    assert all(c.in_stream and c.message.xid is not None for c in data)  # type: ignore[union-attr]
    xids = {c.message.xid for c in data}  # type: ignore[union-attr]
    assert top in xids
    assert len(xids) >= 4  # savepoints a, b, c, d and the last update each have their own
    undone = {
        c.message.xid
        for c in data
        if isinstance(c.message, Insert) and c.message.new[2] == "undone"
    }
    aborts = [c.message for c in block if isinstance(c.message, StreamAbort)]
    assert {a.subxid for a in aborts} == undone
    assert all(a.xid == top and a.abort_lsn is None for a in aborts)
    (message,) = [c.message for c in data if isinstance(c.message, Message)]
    assert message.content == b'{"channel": "big", "data": "done"}'
    commit = block[-1].message
    assert isinstance(commit, StreamCommit)
    assert (commit.xid, commit.flags) == (top, 0)


def test_data_outside_streamed_blocks_has_no_xid() -> None:
    for c in run("v4_stream")[1]:
        if not c.in_stream and isinstance(c.message, (Insert, Update, Delete, Relation)):
            assert c.message.xid is None


def test_stream_abort_with_parallel_streaming_carries_lsn_and_time() -> None:
    aborts = [c for c in run("v4_parallel")[1] if isinstance(c.message, StreamAbort)]
    assert len(aborts) == 3
    for c in aborts:
        assert isinstance(c.message, StreamAbort)
        assert c.message.abort_lsn == c.lsn
        assert c.message.abort_time_us is not None and c.message.abort_time_us > YEAR_2020_US
    short = [m for m in of_type(messages("v4_stream"), StreamAbort)]
    assert [(m.xid, m.subxid) for m in short] == [(c.message.xid, c.message.subxid) for c in aborts]  # type: ignore[union-attr]


def test_interleaved_streams_and_a_transaction_between_them() -> None:
    marks, captured = run("v4_stream")
    a, b = marks["interleaved_a"], marks["interleaved_b"]
    order = []
    for c in captured:
        m = c.message
        if isinstance(m, StreamStart) and m.xid in (a, b):
            order.append(("start", m.xid))
        elif isinstance(m, Begin) and m.xid == marks["interleaved_small"]:
            order.append(("begin", m.xid))
        elif isinstance(m, StreamCommit) and m.xid in (a, b):
            order.append(("commit", m.xid))
    starts = [x for kind, x in order if kind == "start"]
    assert starts[0] == a and b in starts and starts[-1] == a
    tail = [entry for entry in order if entry[0] != "start"]
    assert tail == [("begin", marks["interleaved_small"]), ("commit", b), ("commit", a)]


def test_protocol_1_sends_a_large_transaction_whole() -> None:
    found = transaction("v1", "big_stream")
    inserts = of_type(found, Insert)
    assert len(inserts) == 3_500
    assert all(i.new[2] != "undone" for i in inserts)
    assert not of_type(messages("v1"), StreamStart)


# -- two-phase commit ----------------------------------------------------------------------


def test_two_phase_messages() -> None:
    marks, _ = run("v4_two_phase")
    found = messages("v4_two_phase")
    begins = of_type(found, BeginPrepare)
    prepares = of_type(found, Prepare)
    assert [(b.gid, b.xid) for b in begins] == [("g1", marks["g1"]), ("g2", marks["g2"])]
    for begin, prepare in zip(begins, prepares, strict=True):
        assert (prepare.prepare_lsn, prepare.end_lsn) == (begin.prepare_lsn, begin.end_lsn)
        assert (prepare.gid, prepare.xid, prepare.flags) == (begin.gid, begin.xid, 0)
        assert prepare.prepare_time_us == begin.prepare_time_us > YEAR_2020_US
    committed = of_type(found, CommitPrepared)
    assert [c.gid for c in committed] == ["g1", "g3"]
    v1_commits = {m.xid: m.final_lsn for m in of_type(messages("v1"), Begin)}
    assert all(c.commit_lsn == v1_commits[c.xid] for c in committed)
    (rollback,) = of_type(found, RollbackPrepared)
    assert (rollback.gid, rollback.xid) == ("g2", marks["g2"])
    assert rollback.prepare_end_lsn == prepares[1].end_lsn < rollback.rollback_end_lsn
    assert rollback.rollback_time_us >= rollback.prepare_time_us
    (stream_prepare,) = of_type(found, StreamPrepare)
    assert (stream_prepare.gid, stream_prepare.xid) == ("g3", marks["g3"])
    assert stream_prepare.end_lsn == committed[1].commit_lsn


# -- malformed input -----------------------------------------------------------------------


def samples() -> list[Captured]:
    """One captured message of each type, inside and outside streamed blocks."""
    seen: dict[tuple[int, bool], Captured] = {}
    for name in ("v4_parallel", "v4_stream", "v4_two_phase", "v1", "v4_binary"):
        for c in run(name)[1]:
            seen.setdefault((c.data[0], c.in_stream), c)
    return list(seen.values())


def test_samples_cover_every_message_type() -> None:
    assert {chr(c.data[0]) for c in samples()} == set("BCORYIUDTMSEcAbPKrp")


@pytest.mark.parametrize("sample", samples(), ids=lambda c: f"{chr(c.data[0])}{c.in_stream:d}")
def test_every_truncation_is_refused(sample: Captured) -> None:
    assert decode(sample.data, in_stream=sample.in_stream) == sample.message
    for size in range(len(sample.data)):
        prefix = sample.data[:size]
        if sample.data[0] == ord("A") and size == 9:
            continue  # the parallel form's first nine bytes are the other form, complete
        with pytest.raises(PgOutputError):
            decode(prefix, in_stream=sample.in_stream)


@pytest.mark.parametrize("sample", samples(), ids=lambda c: f"{chr(c.data[0])}{c.in_stream:d}")
def test_trailing_bytes_are_refused(sample: Captured) -> None:
    with pytest.raises(PgOutputError, match="unexpected bytes"):
        decode(sample.data + b"\x00", in_stream=sample.in_stream)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "malformed"),
        (b"Z", "unknown pgoutput message type 0x5a"),
        (b"I\x00\x00\x00\x01X\x00\x00", "expected 'N'"),
        (b"I\x00\x00\x00\x01N\x00\x01x", "unknown tuple column kind 0x78"),
        (b"I\x00\x00\x00\x01N\x00\x01t\xff\xff\xff\xff", "overruns"),
        (b"I\x00\x00\x00\x01N\x00\x01t\x00\x00\x00\x05abc", "overruns"),
        (b"I\x00\x00\x00\x01N\x00\x01t\x00\x00\x00\x01\xff", "malformed"),
        (b"U\x00\x00\x00\x01X\x00\x00", "expected 'K', 'O' or 'N'"),
        (b"U\x00\x00\x00\x01K\x00\x00K\x00\x00", "expected 'K', 'O' or 'N'"),
        (b"D\x00\x00\x00\x01N\x00\x00", "expected 'K' or 'O'"),
        (b"R\x00\x00\x00\x01public", "unterminated string"),
        (b"R\x00\x00\x00\x01\xff\x00t\x00d\x00\x00", "malformed"),
        (b"T\xff\xff\xff\xff\x00\x00\x00\x00\x01", "overruns"),
        (b"M\x01" + bytes(8) + b"p\x00\x00\x00\x00\x09abc", "overruns"),
        (b"A" + bytes(12), "unexpected bytes"),
    ],
)
def test_malformed_messages_are_refused(data: bytes, match: str) -> None:
    with pytest.raises(PgOutputError, match=match):
        decode(data)


def test_handmade_messages_decode() -> None:
    assert decode(b"I\x00\x00\x00\x07N\x00\x03n\x75b\x00\x00\x00\x02\x01\x02") == Insert(
        7, (None, UNCHANGED_TOAST, b"\x01\x02")
    )
    assert decode(b"T\x00\x00\x00\x00\x03") == Truncate(3, ())
    assert decode(b"E") is decode(b"E")
    assert decode(b"Y\x00\x00\x00\x09\x00\x00\x00\x10s\x00t\x00", in_stream=True) == Type(
        16, "s", "t", xid=9
    )


def test_decoder_refuses_misplaced_stream_markers() -> None:
    decoder = PgOutputDecoder()
    with pytest.raises(PgOutputError, match="outside"):
        decoder.decode(b"E")
    decoder.decode(b"S\x00\x00\x00\x01\x01")
    assert decoder.in_stream
    with pytest.raises(PgOutputError, match="inside"):
        decoder.decode(b"S\x00\x00\x00\x01\x00")
    decoder.decode(b"E")
    assert not decoder.in_stream


def test_messages_are_immutable() -> None:
    message = decode(b"T\x00\x00\x00\x00\x03")
    assert isinstance(message, Truncate)
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.options = 0  # type: ignore[misc]


@given(st.binary(max_size=80), st.booleans())
def test_random_bytes_raise_only_pgoutput_error(data: bytes, in_stream: bool) -> None:
    with contextlib.suppress(PgOutputError):
        decode(data, in_stream=in_stream)


@given(st.sampled_from(b"BCORYIUDTMSEcAbPKrp"), st.binary(max_size=60), st.booleans())
def test_random_bodies_raise_only_pgoutput_error(kind: int, body: bytes, in_stream: bool) -> None:
    with contextlib.suppress(PgOutputError):
        decode(bytes([kind]) + body, in_stream=in_stream)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_real_messages_raise_only_pgoutput_error(data: st.DataObject) -> None:
    sample = data.draw(st.sampled_from(samples()))
    mutated = bytearray(sample.data)
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(mutated) - 1))
        mutated[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    with contextlib.suppress(PgOutputError):
        decode(bytes(mutated[:cut]), in_stream=sample.in_stream)
