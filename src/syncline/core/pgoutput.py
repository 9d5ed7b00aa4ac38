"""Decoder of pgoutput, PostgreSQL's logical replication output plugin (protocol versions 1 to 4).

Each message is one XLogData payload (or one ``data`` value of
``pg_logical_slot_get_binary_changes``); :func:`decode` turns it into a frozen dataclass.
Inside a streamed block (between Stream Start and Stream Stop, protocol 2+) the data messages
carry an extra transaction id, so the caller must say whether a block is open;
:class:`PgOutputDecoder` tracks that for a whole stream. Format reference: "Logical
Replication Message Formats" in the PostgreSQL manual. LSNs are :class:`Lsn` values and
timestamps are converted to Unix microseconds.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from syncline.core.changes import Lsn
from syncline.core.replication import PG_EPOCH_OFFSET_US as _EPOCH


class PgOutputError(ValueError):
    """A pgoutput message that is malformed, truncated, unknown, or out of place."""


class _UnchangedToast:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNCHANGED_TOAST"


# Stands for a TOASTed value the update did not change, which pgoutput does not resend ('u').
UNCHANGED_TOAST: Final = _UnchangedToast()

# One column of a tuple: text format ('t') as str, binary format ('b') as bytes, NULL ('n') as
# None, or UNCHANGED_TOAST ('u').
ColumnValue: TypeAlias = str | bytes | _UnchangedToast | None
TupleData: TypeAlias = tuple[ColumnValue, ...]


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: Lsn
    commit_time_us: int
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    flags: int
    commit_lsn: Lsn
    end_lsn: Lsn
    commit_time_us: int


@dataclass(frozen=True, slots=True)
class Origin:
    origin_lsn: Lsn
    name: str


@dataclass(frozen=True, slots=True)
class RelationColumn:
    flags: int  # bit 1: part of the replica identity (the key)
    name: str
    type_oid: int
    type_modifier: int  # atttypmod, -1 when none

    @property
    def is_key(self) -> bool:
        return bool(self.flags & 1)


@dataclass(frozen=True, slots=True)
class Relation:
    relation_id: int
    namespace: str  # empty string for pg_catalog
    name: str
    replica_identity: str  # 'd' default, 'n' nothing, 'f' full, 'i' index
    columns: tuple[RelationColumn, ...]
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class Type:
    type_oid: int
    namespace: str
    name: str
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class Insert:
    relation_id: int
    new: TupleData
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class Update:
    relation_id: int
    old_kind: Literal["K", "O"] | None  # 'K' key only, 'O' whole old row, None: not sent
    old: TupleData | None
    new: TupleData
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    relation_id: int
    old_kind: Literal["K", "O"]
    old: TupleData
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class Truncate:
    options: int
    relation_ids: tuple[int, ...]
    xid: int | None = None

    @property
    def cascade(self) -> bool:
        return bool(self.options & 1)

    @property
    def restart_identity(self) -> bool:
        return bool(self.options & 2)


@dataclass(frozen=True, slots=True)
class Message:
    transactional: bool
    lsn: Lsn
    prefix: str
    content: bytes
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class StreamStart:
    xid: int
    first_segment: bool


@dataclass(frozen=True, slots=True)
class StreamStop:
    pass


@dataclass(frozen=True, slots=True)
class StreamCommit:
    xid: int
    flags: int
    commit_lsn: Lsn
    end_lsn: Lsn
    commit_time_us: int


@dataclass(frozen=True, slots=True)
class StreamAbort:
    xid: int  # the top-level transaction
    subxid: int  # equal to xid when the whole transaction aborted
    abort_lsn: Lsn | None = None  # only sent with streaming=parallel (protocol 4)
    abort_time_us: int | None = None


@dataclass(frozen=True, slots=True)
class BeginPrepare:
    prepare_lsn: Lsn
    end_lsn: Lsn
    prepare_time_us: int
    xid: int
    gid: str


@dataclass(frozen=True, slots=True)
class Prepare:
    flags: int
    prepare_lsn: Lsn
    end_lsn: Lsn
    prepare_time_us: int
    xid: int
    gid: str


@dataclass(frozen=True, slots=True)
class CommitPrepared:
    flags: int
    commit_lsn: Lsn
    end_lsn: Lsn
    commit_time_us: int
    xid: int
    gid: str


@dataclass(frozen=True, slots=True)
class RollbackPrepared:
    flags: int
    prepare_end_lsn: Lsn
    rollback_end_lsn: Lsn
    prepare_time_us: int
    rollback_time_us: int
    xid: int
    gid: str


@dataclass(frozen=True, slots=True)
class StreamPrepare:
    flags: int
    prepare_lsn: Lsn
    end_lsn: Lsn
    prepare_time_us: int
    xid: int
    gid: str


TransactionMessage: TypeAlias = Begin | Commit | Origin | Relation | Type
DataMessage: TypeAlias = Insert | Update | Delete | Truncate | Message
StreamMessage: TypeAlias = StreamStart | StreamStop | StreamCommit | StreamAbort
TwoPhaseMessage: TypeAlias = (
    BeginPrepare | Prepare | CommitPrepared | RollbackPrepared | StreamPrepare
)
PgOutputMessage: TypeAlias = TransactionMessage | DataMessage | StreamMessage | TwoPhaseMessage

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_I32 = struct.Struct("!i")
_U64 = struct.Struct("!Q")
_BEGIN = struct.Struct("!QqI")
_COMMIT = struct.Struct("!BQQq")
_COLUMN_TYPE = struct.Struct("!Ii")
_TRUNCATE = struct.Struct("!IB")
_MESSAGE = struct.Struct("!BQ")
_STREAM_START = struct.Struct("!IB")
_STREAM_COMMIT = struct.Struct("!IBQQq")
_STREAM_ABORT = struct.Struct("!II")
_STREAM_ABORT_PARALLEL = struct.Struct("!IIQq")
_BEGIN_PREPARE = struct.Struct("!QQqI")
_PREPARE = struct.Struct("!BQQqI")  # also Commit Prepared and Stream Prepare
_ROLLBACK_PREPARED = struct.Struct("!BQQqqI")

_TEXT, _NULL, _UNCHANGED, _BINARY = b"tnub"
_STREAM_STOP = StreamStop()  # it has no fields, so one instance serves
_KEY, _OLD, _NEW = b"KON"

# A parser gets the message and the offset after its type byte, and returns the message and
# the offset after its last byte, so that decode() can refuse trailing garbage.
_Parsed: TypeAlias = tuple[PgOutputMessage, int]


def _cstr(data: bytes, pos: int) -> tuple[str, int]:
    end = data.find(0, pos)
    if end < 0:
        raise PgOutputError("unterminated string")
    return data[pos:end].decode(), end + 1


def _tuple(data: bytes, pos: int) -> tuple[TupleData, int]:
    (count,) = _U16.unpack_from(data, pos)
    pos += 2
    size = len(data)
    values: list[ColumnValue] = []
    append = values.append
    for _ in range(count):
        kind = data[pos]
        if kind in (_TEXT, _BINARY):
            (length,) = _I32.unpack_from(data, pos + 1)
            start = pos + 5
            pos = start + length
            if length < 0 or pos > size:
                raise PgOutputError(f"column value of {length} bytes overruns the message")
            append(data[start:pos].decode() if kind == _TEXT else data[start:pos])
        elif kind == _NULL:
            append(None)
            pos += 1
        elif kind == _UNCHANGED:
            append(UNCHANGED_TOAST)
            pos += 1
        else:
            raise PgOutputError(f"unknown tuple column kind {kind:#04x}")
    return tuple(values), pos


def _begin(data: bytes, pos: int, xid: int | None) -> _Parsed:
    lsn, ts, txid = _BEGIN.unpack_from(data, pos)
    return Begin(Lsn(lsn), ts + _EPOCH, txid), pos + _BEGIN.size


def _commit(data: bytes, pos: int, xid: int | None) -> _Parsed:
    flags, lsn, end, ts = _COMMIT.unpack_from(data, pos)
    return Commit(flags, Lsn(lsn), Lsn(end), ts + _EPOCH), pos + _COMMIT.size


def _origin(data: bytes, pos: int, xid: int | None) -> _Parsed:
    (lsn,) = _U64.unpack_from(data, pos)
    name, pos = _cstr(data, pos + 8)
    return Origin(Lsn(lsn), name), pos


def _relation(data: bytes, pos: int, xid: int | None) -> _Parsed:
    (relid,) = _U32.unpack_from(data, pos)
    namespace, pos = _cstr(data, pos + 4)
    name, pos = _cstr(data, pos)
    identity = chr(data[pos])
    (count,) = _U16.unpack_from(data, pos + 1)
    pos += 3
    columns = []
    for _ in range(count):
        flags = data[pos]
        colname, pos = _cstr(data, pos + 1)
        type_oid, typmod = _COLUMN_TYPE.unpack_from(data, pos)
        pos += 8
        columns.append(RelationColumn(flags, colname, type_oid, typmod))
    return Relation(relid, namespace, name, identity, tuple(columns), xid), pos


def _type(data: bytes, pos: int, xid: int | None) -> _Parsed:
    (oid,) = _U32.unpack_from(data, pos)
    namespace, pos = _cstr(data, pos + 4)
    name, pos = _cstr(data, pos)
    return Type(oid, namespace, name, xid), pos


def _insert(data: bytes, pos: int, xid: int | None) -> _Parsed:
    (relid,) = _U32.unpack_from(data, pos)
    if data[pos + 4] != _NEW:
        raise PgOutputError(f"insert: expected 'N', got {data[pos + 4]:#04x}")
    new, pos = _tuple(data, pos + 5)
    return Insert(relid, new, xid), pos


def _update(data: bytes, pos: int, xid: int | None) -> _Parsed:
    (relid,) = _U32.unpack_from(data, pos)
    kind = data[pos + 4]
    pos += 5
    old: TupleData | None = None
    old_kind: Literal["K", "O"] | None = None
    if kind in (_KEY, _OLD):
        old_kind = "K" if kind == _KEY else "O"
        old, pos = _tuple(data, pos)
        kind = data[pos]
        pos += 1
    if kind != _NEW:
        raise PgOutputError(f"update: expected 'K', 'O' or 'N', got {kind:#04x}")
    new, pos = _tuple(data, pos)
    return Update(relid, old_kind, old, new, xid), pos


def _delete(data: bytes, pos: int, xid: int | None) -> _Parsed:
    (relid,) = _U32.unpack_from(data, pos)
    kind = data[pos + 4]
    if kind not in (_KEY, _OLD):
        raise PgOutputError(f"delete: expected 'K' or 'O', got {kind:#04x}")
    old, pos = _tuple(data, pos + 5)
    return Delete(relid, "K" if kind == _KEY else "O", old, xid), pos


def _truncate(data: bytes, pos: int, xid: int | None) -> _Parsed:
    count, options = _TRUNCATE.unpack_from(data, pos)
    pos += _TRUNCATE.size
    end = pos + 4 * count
    if end > len(data):
        raise PgOutputError(f"truncate of {count} relations overruns the message")
    relids = struct.unpack_from(f"!{count}I", data, pos)
    return Truncate(options, relids, xid), end


def _message(data: bytes, pos: int, xid: int | None) -> _Parsed:
    flags, lsn = _MESSAGE.unpack_from(data, pos)
    prefix, pos = _cstr(data, pos + _MESSAGE.size)
    (length,) = _U32.unpack_from(data, pos)
    end = pos + 4 + length
    if end > len(data):
        raise PgOutputError(f"message content of {length} bytes overruns the message")
    return Message(bool(flags & 1), Lsn(lsn), prefix, data[pos + 4 : end], xid), end


def _stream_start(data: bytes, pos: int, xid: int | None) -> _Parsed:
    txid, first = _STREAM_START.unpack_from(data, pos)
    return StreamStart(txid, first == 1), pos + _STREAM_START.size


def _stream_commit(data: bytes, pos: int, xid: int | None) -> _Parsed:
    txid, flags, lsn, end, ts = _STREAM_COMMIT.unpack_from(data, pos)
    return StreamCommit(txid, flags, Lsn(lsn), Lsn(end), ts + _EPOCH), pos + _STREAM_COMMIT.size


def _stream_abort(data: bytes, pos: int, xid: int | None) -> _Parsed:
    # Protocol 4 with streaming=parallel appends the abort LSN and time; nothing else in the
    # message says which form it is, so the length decides.
    if len(data) - pos == _STREAM_ABORT_PARALLEL.size:
        txid, subxid, lsn, ts = _STREAM_ABORT_PARALLEL.unpack_from(data, pos)
        abort = StreamAbort(txid, subxid, Lsn(lsn), ts + _EPOCH)
        return abort, pos + _STREAM_ABORT_PARALLEL.size
    txid, subxid = _STREAM_ABORT.unpack_from(data, pos)
    return StreamAbort(txid, subxid), pos + _STREAM_ABORT.size


def _begin_prepare(data: bytes, pos: int, xid: int | None) -> _Parsed:
    lsn, end, ts, txid = _BEGIN_PREPARE.unpack_from(data, pos)
    gid, pos = _cstr(data, pos + _BEGIN_PREPARE.size)
    return BeginPrepare(Lsn(lsn), Lsn(end), ts + _EPOCH, txid, gid), pos


def _prepare_like(
    cls: type[Prepare | CommitPrepared | StreamPrepare],
) -> Callable[[bytes, int, int | None], _Parsed]:
    def parse(data: bytes, pos: int, xid: int | None) -> _Parsed:
        flags, lsn, end, ts, txid = _PREPARE.unpack_from(data, pos)
        gid, pos = _cstr(data, pos + _PREPARE.size)
        return cls(flags, Lsn(lsn), Lsn(end), ts + _EPOCH, txid, gid), pos

    return parse


def _rollback_prepared(data: bytes, pos: int, xid: int | None) -> _Parsed:
    flags, prep_end, end, prep_ts, ts, txid = _ROLLBACK_PREPARED.unpack_from(data, pos)
    gid, pos = _cstr(data, pos + _ROLLBACK_PREPARED.size)
    msg = RollbackPrepared(flags, Lsn(prep_end), Lsn(end), prep_ts + _EPOCH, ts + _EPOCH, txid, gid)
    return msg, pos


_Parser: TypeAlias = Callable[[bytes, int, int | None], _Parsed]

# Types whose message starts with the subtransaction's xid when sent inside a streamed block.
_STREAMABLE: dict[int, _Parser] = {
    ord("R"): _relation,
    ord("Y"): _type,
    ord("I"): _insert,
    ord("U"): _update,
    ord("D"): _delete,
    ord("T"): _truncate,
    ord("M"): _message,
}
_PARSERS: dict[int, _Parser] = {
    **_STREAMABLE,
    ord("B"): _begin,
    ord("C"): _commit,
    ord("O"): _origin,
    ord("S"): _stream_start,
    ord("E"): lambda data, pos, xid: (_STREAM_STOP, pos),
    ord("c"): _stream_commit,
    ord("A"): _stream_abort,
    ord("b"): _begin_prepare,
    ord("P"): _prepare_like(Prepare),
    ord("K"): _prepare_like(CommitPrepared),
    ord("r"): _rollback_prepared,
    ord("p"): _prepare_like(StreamPrepare),
}


def decode(data: bytes, *, in_stream: bool = False) -> PgOutputMessage:
    """Decode one pgoutput message.

    ``in_stream`` says whether the message lies inside a streamed block, where data messages
    start with a transaction id. Raises PgOutputError, and nothing else, for any input that is
    not exactly one well-formed message.
    """
    try:
        kind = data[0]
        parser = _PARSERS.get(kind)
        if parser is None:
            raise PgOutputError(f"unknown pgoutput message type {kind:#04x}")
        xid: int | None = None
        pos = 1
        if in_stream and kind in _STREAMABLE:
            (xid,) = _U32.unpack_from(data, 1)
            pos = 5
        message, end = parser(data, pos, xid)
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise PgOutputError(f"malformed pgoutput message {data[:1]!r}: {exc}") from None
    if end != len(data):
        raise PgOutputError(f"{len(data) - end} unexpected bytes after pgoutput message")
    return message


class PgOutputDecoder:
    """Decodes the messages of one replication stream in order, tracking streamed blocks."""

    __slots__ = ("in_stream",)

    def __init__(self) -> None:
        self.in_stream = False

    def decode(self, data: bytes) -> PgOutputMessage:
        """Decode the next message of the stream; see :func:`decode`."""
        message = decode(data, in_stream=self.in_stream)
        cls = type(message)
        if cls is StreamStart:
            if self.in_stream:
                raise PgOutputError("Stream Start inside a streamed block")
            self.in_stream = True
        elif cls is StreamStop:
            if not self.in_stream:
                raise PgOutputError("Stream Stop outside a streamed block")
            self.in_stream = False
        return message
