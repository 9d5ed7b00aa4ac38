"""The replication stream framing, against CopyData captured from a PostgreSQL 18 walsender."""

from __future__ import annotations

import contextlib
import gzip
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncline.core.changes import Lsn
from syncline.core.pgoutput import Begin, Commit, PgOutputDecoder, StreamAbort
from syncline.core.replication import (
    PG_EPOCH_OFFSET_US,
    PrimaryKeepalive,
    ReplicationError,
    XLogData,
    encode_standby_status,
    parse_copy_data,
    pg_to_unix_us,
    unix_to_pg_us,
)

FIXTURES = Path(__file__).parent / "fixtures" / "pgoutput"
# The captures were made in 2026; any parsed server clock must land in these years.
CAPTURE_YEARS_US = (pg_to_unix_us(0) + 20 * 365 * 86_400_000_000, 2_000_000_000_000_000)


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(gzip.decompress((FIXTURES / name).read_bytes()))
    return data


@pytest.fixture(scope="module", params=["walsender_on.json.gz", "walsender_parallel.json.gz"])
def exchange(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load(request.param)


def frames(exchange: dict[str, Any]) -> list[XLogData | PrimaryKeepalive]:
    return [parse_copy_data(bytes.fromhex(raw)) for raw in exchange["received"]]


def test_every_captured_message_parses(exchange: dict[str, Any]) -> None:
    parsed = frames(exchange)
    kinds = {type(p) for p in parsed}
    assert kinds == {XLogData, PrimaryKeepalive}
    for p in parsed:
        assert CAPTURE_YEARS_US[0] < p.server_clock_us < CAPTURE_YEARS_US[1]


def test_xlogdata_carries_one_pgoutput_message_each(exchange: dict[str, Any]) -> None:
    decoder = PgOutputDecoder()
    messages = [decoder.decode(p.payload) for p in frames(exchange) if isinstance(p, XLogData)]
    assert isinstance(messages[-1], Commit)
    assert any(isinstance(m, StreamAbort) for m in messages)
    assert str(messages[-1].end_lsn) == exchange["commit_end_lsn"]


def test_xlogdata_positions_follow_the_wal(exchange: dict[str, Any]) -> None:
    xlogs = [p for p in frames(exchange) if isinstance(p, XLogData)]
    decoder = PgOutputDecoder()
    for xlog in xlogs:
        message = decoder.decode(xlog.payload)
        # pgoutput writes position 0/0 for messages of no WAL record of their own (Relation).
        assert xlog.wal_start.value == 0 or xlog.wal_start <= xlog.wal_end
        if isinstance(message, Begin):
            assert xlog.wal_start < message.final_lsn
        if isinstance(message, Commit):
            assert xlog.wal_start == message.end_lsn
    starts = [x.wal_start for x in xlogs if x.wal_start.value]
    assert starts == sorted(starts)


def test_keepalive_fields_from_captured_bytes(exchange: dict[str, Any]) -> None:
    raw = bytes.fromhex(exchange["received"][0])
    keepalive = parse_copy_data(raw)
    assert isinstance(keepalive, PrimaryKeepalive)
    wal_end, clock, reply = struct.unpack("!QqB", raw[1:])
    assert keepalive == PrimaryKeepalive(Lsn(wal_end), clock + PG_EPOCH_OFFSET_US, bool(reply))
    assert keepalive.reply_requested is False


def test_keepalives_never_go_backwards(exchange: dict[str, Any]) -> None:
    ends = [p.wal_end for p in frames(exchange) if isinstance(p, PrimaryKeepalive)]
    assert len(ends) >= 3
    assert ends == sorted(ends)


def test_status_update_matches_the_bytes_the_server_accepted(exchange: dict[str, Any]) -> None:
    sent = bytes.fromhex(exchange["sent_status_update"])
    kind, write, flush, apply, clock, reply = struct.unpack("!cQQQqB", sent)
    assert kind == b"r"
    end = Lsn.parse(exchange["commit_end_lsn"])
    assert write == flush == apply == end.value
    assert reply == 1
    again = encode_standby_status(end, end, end, clock_us=clock + PG_EPOCH_OFFSET_US, reply=True)
    assert again == sent
    # The server took our flush position as the slot's confirmed position.
    assert exchange["confirmed_flush_lsn_after"] == exchange["commit_end_lsn"]


def test_status_update_layout() -> None:
    encoded = encode_standby_status(
        Lsn(3), Lsn(2), Lsn(1), clock_us=PG_EPOCH_OFFSET_US + 5, reply=False
    )
    assert encoded == b"r" + struct.pack("!QQQqB", 3, 2, 1, 5, 0)
    assert len(encoded) == 34


def test_status_update_refuses_out_of_range_lsns() -> None:
    with pytest.raises(ValueError, match="flush"):
        encode_standby_status(Lsn(0), Lsn(-1), Lsn(0), clock_us=0)
    with pytest.raises(ValueError, match="apply"):
        encode_standby_status(Lsn(0), Lsn(0), Lsn(1 << 64), clock_us=0)


def test_epoch_conversions() -> None:
    assert pg_to_unix_us(0) == 946_684_800 * 1_000_000
    assert unix_to_pg_us(946_684_800 * 1_000_000) == 0
    assert unix_to_pg_us(pg_to_unix_us(123_456_789)) == 123_456_789
    assert pg_to_unix_us(-PG_EPOCH_OFFSET_US) == 0


def test_parse_accepts_memoryview_and_bytearray() -> None:
    raw = b"w" + struct.pack("!QQq", 16, 32, 7) + b"Ehello"
    for data in (raw, bytearray(raw), memoryview(raw)):
        xlog = parse_copy_data(data)
        assert xlog == XLogData(Lsn(16), Lsn(32), 7 + PG_EPOCH_OFFSET_US, b"Ehello")
        assert isinstance(xlog, XLogData)
        assert type(xlog.payload) is bytes


def test_xlogdata_may_have_an_empty_payload() -> None:
    xlog = parse_copy_data(b"w" + bytes(24))
    assert isinstance(xlog, XLogData)
    assert xlog.payload == b""


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"x" + bytes(24), "unknown replication message type 0x78"),
        (b"w" + bytes(23), "too short"),
        (b"k" + bytes(16), "keepalive"),
        (b"k" + bytes(18), "keepalive"),
        # A status update is what we send, not what we receive.
        (b"r" + bytes(33), "unknown"),
    ],
)
def test_malformed_copy_data_is_refused(data: bytes, match: str) -> None:
    with pytest.raises(ReplicationError, match=match):
        parse_copy_data(data)


@given(st.binary(max_size=64))
def test_parse_raises_only_replication_error(data: bytes) -> None:
    with contextlib.suppress(ReplicationError):
        parse_copy_data(data)


@given(st.integers(0, (1 << 64) - 1), st.integers(-(1 << 62), 1 << 62), st.booleans())
def test_keepalive_round_trip(end: int, clock: int, reply: bool) -> None:
    raw = b"k" + struct.pack("!QqB", end, clock, reply)
    assert parse_copy_data(raw) == PrimaryKeepalive(Lsn(end), pg_to_unix_us(clock), reply)
