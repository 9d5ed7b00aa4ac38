"""Framing of the START_REPLICATION copy stream: XLogData and keepalives in, status updates out."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from syncline.core.changes import Lsn

__all__ = [
    "PG_EPOCH_OFFSET_US",
    "PrimaryKeepalive",
    "ReplicationError",
    "XLogData",
    "encode_standby_status",
    "parse_copy_data",
    "pg_to_unix_us",
    "unix_to_pg_us",
]

# PostgreSQL counts timestamps in microseconds from 2000-01-01 00:00 UTC, 10,957 days after
# the Unix epoch.
PG_EPOCH_OFFSET_US = 946_684_800_000_000

_XLOG_HEADER = struct.Struct("!QQq")  # wal_start, wal_end, server clock
_KEEPALIVE = struct.Struct("!QqB")  # wal_end, server clock, reply requested
_STATUS = struct.Struct("!cQQQqB")  # 'r', write, flush, apply, client clock, reply

_XLOG_PAYLOAD_AT = 1 + _XLOG_HEADER.size
_KEEPALIVE_SIZE = 1 + _KEEPALIVE.size
_MAX_LSN = (1 << 64) - 1


class ReplicationError(ValueError):
    """A CopyData message of the replication stream that cannot be parsed."""


def pg_to_unix_us(pg_us: int) -> int:
    """Convert microseconds since the PostgreSQL epoch (2000-01-01) to Unix microseconds."""
    return pg_us + PG_EPOCH_OFFSET_US


def unix_to_pg_us(unix_us: int) -> int:
    """Convert Unix microseconds to microseconds since the PostgreSQL epoch (2000-01-01)."""
    return unix_us - PG_EPOCH_OFFSET_US


@dataclass(frozen=True, slots=True)
class XLogData:
    """A 'w' message: one pgoutput message and where it lies in the WAL.

    ``wal_start`` is the WAL position the payload starts at (zero for messages that have no
    position of their own, such as a transaction's begin), ``wal_end`` the server's current end
    of WAL and ``server_clock_us`` the server's clock when it sent the message, in Unix
    microseconds.
    """

    wal_start: Lsn
    wal_end: Lsn
    server_clock_us: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class PrimaryKeepalive:
    """A 'k' message: the server's end of WAL, its clock (Unix µs) and whether it wants a reply.

    When ``reply_requested`` is set the client must send a status update at once or the
    server ends the connection after ``wal_sender_timeout``.
    """

    wal_end: Lsn
    server_clock_us: int
    reply_requested: bool


def parse_copy_data(data: bytes | bytearray | memoryview) -> XLogData | PrimaryKeepalive:
    """Parse one CopyData payload received from the server in a START_REPLICATION stream.

    Raises ReplicationError for an unknown message type or a message of the wrong length.
    """
    size = len(data)
    if size == 0:
        raise ReplicationError("empty CopyData message")
    kind = data[0]
    if kind == 0x77:  # 'w'
        if size < _XLOG_PAYLOAD_AT:
            raise ReplicationError(f"XLogData message too short: {size} bytes")
        start, end, clock = _XLOG_HEADER.unpack_from(data, 1)
        return XLogData(
            Lsn(start), Lsn(end), clock + PG_EPOCH_OFFSET_US, bytes(data[_XLOG_PAYLOAD_AT:])
        )
    if kind == 0x6B:  # 'k'
        if size != _KEEPALIVE_SIZE:
            raise ReplicationError(f"keepalive message has {size} bytes, not {_KEEPALIVE_SIZE}")
        end, clock, reply = _KEEPALIVE.unpack_from(data, 1)
        return PrimaryKeepalive(Lsn(end), clock + PG_EPOCH_OFFSET_US, reply != 0)
    raise ReplicationError(f"unknown replication message type {kind:#04x}")


def encode_standby_status(
    write: Lsn, flush: Lsn, apply: Lsn, *, clock_us: int, reply: bool = False
) -> bytes:
    """Encode an 'r' Standby Status Update to send as CopyData.

    ``flush`` is what the server may forget: for a logical slot it becomes the slot's
    confirmed_flush_lsn, so it must only cover changes that are safely stored. ``clock_us`` is
    the client's clock in Unix microseconds (the caller reads the clock: this module keeps
    none). ``reply`` asks the server to answer with a keepalive at once.
    """
    for name, lsn in (("write", write), ("flush", flush), ("apply", apply)):
        if not 0 <= lsn.value <= _MAX_LSN:
            raise ValueError(f"{name} LSN out of range: {lsn.value}")
    return _STATUS.pack(
        b"r", write.value, flush.value, apply.value, clock_us - PG_EPOCH_OFFSET_US, int(reply)
    )
