"""Assembles decoded pgoutput messages into the committed Changes of each transaction.

Rows are dicts of JSON-ready values (see pgvalues). A column whose value pgoutput did not send
because it is an unchanged TOASTed value is left out of the row and named in
``Change.unchanged_toast``, unless the old row (REPLICA IDENTITY FULL) supplies it. An update's
or delete's ``old`` holds the key columns only when pgoutput sent the key ('K'), the whole old
row when it sent one ('O'). Use one assembler per replication session: a new session sends
the relations and the in-progress streamed transactions again from their start.

Memory: a transaction's changes are held until its commit, because nothing of a transaction
may be published before it commits. PostgreSQL holds a transaction in the walsender only up to
``logical_decoding_work_mem`` and then streams it to us (protocol 2+, ``streaming=on``), so a
huge transaction moves its memory from the server to this process; ``max_buffered_changes``
bounds that, and a transaction beyond the bound stops the assembler with
TransactionTooLargeError instead of exhausting memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, NoReturn, TypeAlias

import orjson

from syncline.core.changes import Change, CommitPosition, Lsn, Op, Row
from syncline.core.pgoutput import (
    UNCHANGED_TOAST,
    Begin,
    ColumnValue,
    Commit,
    Delete,
    Insert,
    Message,
    PgOutputDecoder,
    PgOutputError,
    PgOutputMessage,
    Relation,
    StreamAbort,
    StreamCommit,
    StreamStart,
    StreamStop,
    Truncate,
    TupleData,
    TwoPhaseMessage,
    Type,
    Update,
)
from syncline.core.pgvalues import Converter, builtin_type_oid, converter_for
from syncline.core.replication import XLogData

__all__ = [
    "DEFAULT_MAX_BUFFERED_CHANGES",
    "MESSAGE_PREFIX",
    "TransactionAssembler",
    "TransactionTooLargeError",
]

# One million small-row changes take roughly 1 GB as Python objects: far more than any
# transaction a sync workload should publish, far less than a server's memory.
DEFAULT_MAX_BUFFERED_CHANGES = 1_000_000

# pg_logical_emit_message() prefix of the messages that publish to a channel.
MESSAGE_PREFIX = "syncline"


class TransactionTooLargeError(RuntimeError):
    """A transaction has more changes than the assembler may buffer."""


@dataclass(frozen=True, slots=True)
class _Table:
    """A Relation message prepared for turning tuples into rows."""

    schema: str
    table: str
    names: tuple[str, ...]
    converters: tuple[Converter | None, ...]
    keys: tuple[int, ...]  # indexes of the replica identity columns


# A change before its transaction's commit position is known: the fields of Change up to
# ``old``, then unchanged_toast and channel.
_Pending: TypeAlias = tuple[str, str, Op, Row | None, Row | None, frozenset[str], str | None]
_EMPTY: frozenset[str] = frozenset()


class _Stream:
    """A streamed transaction between its first Stream Start and its Stream Commit/Abort."""

    __slots__ = ("changes", "relations", "subxids", "tables")

    def __init__(self) -> None:
        self.changes: list[_Pending] = []
        self.subxids: list[int] = []  # parallel to changes
        # Relations sent inside the stream describe its own changes only, until it commits.
        self.tables: dict[int, _Table] = {}
        self.relations: dict[int, Relation] = {}


class TransactionAssembler:
    """Feed it every message of one replication stream in order; it returns committed Changes.

    ``last_commit_end_lsn`` is the end of the last transaction whose Changes were returned:
    once those are stored, it is the position to confirm to the server.
    """

    def __init__(
        self,
        *,
        max_buffered_changes: int = DEFAULT_MAX_BUFFERED_CHANGES,
        type_aliases: Mapping[int, int] | None = None,
    ) -> None:
        self.max_buffered_changes = max_buffered_changes
        self.last_commit_end_lsn: Lsn | None = None
        self.invalid_messages = 0  # "syncline" messages dropped for bad content
        self._aliases = dict(type_aliases or {})
        self._decoder = PgOutputDecoder()
        self._relations: dict[int, Relation] = {}
        self._types: dict[int, Type] = {}
        self._tables: dict[int, _Table] = {}
        self._txn: list[Change] | None = None
        self._txn_xid = 0
        self._txn_lsn = 0
        self._txn_time = 0
        self._streams: dict[int, _Stream] = {}
        self._stream: _Stream | None = None  # the open streamed block's transaction
        self._stream_buffered = 0

    @property
    def relations(self) -> Mapping[int, Relation]:
        """The last Relation message received for each relation id."""
        return self._relations

    @property
    def types(self) -> Mapping[int, Type]:
        """The Type messages received, by type OID."""
        return self._types

    @property
    def buffered_changes(self) -> int:
        """Changes held for transactions that have not committed yet."""
        return len(self._txn or ()) + self._stream_buffered

    @property
    def is_idle(self) -> bool:
        """No transaction is open: every message received so far has been accounted for."""
        return self._txn is None and not self._streams

    def feed_xlog(self, xlog: XLogData) -> list[Change]:
        """Decode and feed the pgoutput message of one XLogData message."""
        return self.feed(self._decoder.decode(xlog.payload), server_clock_us=xlog.server_clock_us)

    def feed_payload(self, payload: bytes, *, server_clock_us: int = 0) -> list[Change]:
        """Decode and feed one pgoutput message (e.g. from pg_logical_slot_get_binary_changes)."""
        return self.feed(self._decoder.decode(payload), server_clock_us=server_clock_us)

    def feed(self, message: PgOutputMessage, *, server_clock_us: int = 0) -> list[Change]:
        """Feed one decoded message; returns the Changes it completes, usually none.

        The messages must come from a stream-aware decoder (PgOutputDecoder) in stream order.
        ``server_clock_us`` dates a non-transactional message, which has no commit time.
        """
        if isinstance(message, Insert):
            # The hot path: most messages are inserts, so they skip the general dispatch.
            t = self._table(message.relation_id)
            row, toast = _row(t, message.new)
            self._add(message.xid, t.schema, t.table, Op.INSERT, row, None, toast, None)
            return []
        if isinstance(message, (Update, Delete, Truncate, Message)):
            return self._change(message, server_clock_us)
        if isinstance(message, Begin):
            return self._begin(message)
        if isinstance(message, Commit):
            return self._commit(message)
        if isinstance(message, Relation):
            self._relation(message)
        elif isinstance(message, StreamStart):
            self._stream_start(message)
        elif isinstance(message, StreamStop):
            self._stream = None
        elif isinstance(message, StreamCommit):
            return self._stream_commit(message)
        elif isinstance(message, StreamAbort):
            self._stream_abort(message)
        elif isinstance(message, Type):
            self._type(message)
        elif isinstance(message, TwoPhaseMessage):
            raise PgOutputError("two-phase decoding is not supported: do not set two_phase")
        # Origin needs nothing: where a change came from does not change what it is.
        return []

    def _begin(self, begin: Begin) -> list[Change]:
        if self._txn is not None or self._stream is not None:
            raise PgOutputError("Begin inside an open transaction or streamed block")
        self._txn = []
        self._txn_xid = begin.xid
        self._txn_lsn = begin.final_lsn.value
        self._txn_time = begin.commit_time_us
        return []

    def _commit(self, commit: Commit) -> list[Change]:
        changes = self._txn
        if changes is None:
            raise PgOutputError("Commit without Begin")
        self._txn = None
        if commit.commit_lsn.value != self._txn_lsn or commit.commit_time_us != self._txn_time:
            # Begin announces the commit's LSN and time, so they are already in the Changes;
            # should a server ever disagree, the Commit is the authority.
            changes = [
                replace(
                    c,
                    position=CommitPosition(commit.commit_lsn.value, c.position.seq),
                    commit_time_us=commit.commit_time_us,
                )
                for c in changes
            ]
        self.last_commit_end_lsn = commit.end_lsn
        return changes

    def _relation(self, rel: Relation) -> None:
        table = _Table(
            rel.namespace,
            rel.name,
            tuple(c.name for c in rel.columns),
            tuple(converter_for(c.type_oid, self._aliases) for c in rel.columns),
            tuple(i for i, c in enumerate(rel.columns) if c.flags & 1),
        )
        if self._stream is not None:
            self._stream.tables[rel.relation_id] = table
            self._stream.relations[rel.relation_id] = rel
        else:
            self._relations[rel.relation_id] = rel
            self._tables[rel.relation_id] = table

    def _type(self, message: Type) -> None:
        self._types[message.type_oid] = message
        # For a domain, the Type message names its base type; pg_catalog is sent as "".
        if not message.namespace:
            base = builtin_type_oid(message.name)
            if base is not None:
                self._aliases.setdefault(message.type_oid, base)

    def _table(self, relation_id: int) -> _Table:
        table = None
        if self._stream is not None:
            table = self._stream.tables.get(relation_id)
        if table is None:
            table = self._tables.get(relation_id)
            if table is None:
                raise PgOutputError(f"change of relation {relation_id} before its Relation")
        return table

    def _add(
        self,
        xid: int | None,
        schema: str,
        table: str,
        op: Op,
        row: Row | None,
        old: Row | None,
        toast: frozenset[str],
        channel: str | None,
    ) -> None:
        txn = self._txn
        if txn is not None:
            # Begin gave the commit LSN and time, so the Change can be built at once.
            position = CommitPosition(self._txn_lsn, len(txn))
            at = self._txn_time
            txn.append(
                Change(schema, table, op, row, old, position, self._txn_xid, at, toast, channel)
            )
            if len(txn) > self.max_buffered_changes:
                raise TransactionTooLargeError(
                    f"transaction {self._txn_xid} has over {len(txn)} changes"
                )
            return
        stream = self._stream
        if stream is None:
            raise PgOutputError(f"{op.value} outside a transaction")
        if xid is None:
            raise PgOutputError("change in a streamed block without its xid")
        stream.changes.append((schema, table, op, row, old, toast, channel))
        stream.subxids.append(xid)
        self._stream_buffered += 1
        if self._stream_buffered > self.max_buffered_changes:
            raise TransactionTooLargeError(
                f"streamed transactions hold over {self._stream_buffered} changes"
            )

    def _change(self, message: Update | Delete | Truncate | Message, clock_us: int) -> list[Change]:
        xid = message.xid
        if isinstance(message, Update):
            t = self._table(message.relation_id)
            row, old, toast = _update(t, message)
            self._add(xid, t.schema, t.table, Op.UPDATE, row, old, toast, None)
        elif isinstance(message, Delete):
            t = self._table(message.relation_id)
            old = _old_row(t, message.old_kind, message.old)
            self._add(xid, t.schema, t.table, Op.DELETE, None, old, _EMPTY, None)
        elif isinstance(message, Truncate):
            for t in [self._table(relid) for relid in message.relation_ids]:
                self._add(xid, t.schema, t.table, Op.TRUNCATE, None, None, _EMPTY, None)
        else:
            publish = self._publication(message)
            if publish is not None:
                channel, data = publish
                if not message.transactional:
                    return self._lone_message(message, channel, data, clock_us)
                self._add(xid, "", "", Op.MESSAGE, {"data": data}, None, _EMPTY, channel)
        return []

    def _publication(self, message: Message) -> tuple[str, Any] | None:
        if message.prefix != MESSAGE_PREFIX:
            return None
        try:
            body = orjson.loads(message.content)
        except orjson.JSONDecodeError:
            body = None
        channel = body.get("channel") if isinstance(body, dict) else None
        if not isinstance(channel, str) or not channel or "data" not in body:
            # A bad message is the sender's bug; stopping replication for it would stop
            # every other change too, so it is counted and dropped.
            self.invalid_messages += 1
            return None
        return channel, body["data"]

    def _lone_message(
        self, message: Message, channel: str, data: Any, clock_us: int
    ) -> list[Change]:
        position = CommitPosition(message.lsn.value, 0)
        # It belongs to no transaction: no xid, and the server's clock stands in for a commit time.
        row = {"data": data}
        return [Change("", "", Op.MESSAGE, row, None, position, 0, clock_us, _EMPTY, channel)]

    def _stream_start(self, start: StreamStart) -> None:
        if self._txn is not None:
            raise PgOutputError("Stream Start inside an open transaction")
        stream = self._streams.get(start.xid)
        if stream is None or start.first_segment:
            # A first segment starts the transaction afresh, whatever an earlier session left.
            if stream is not None:
                self._stream_buffered -= len(stream.changes)
            stream = self._streams[start.xid] = _Stream()
        self._stream = stream

    def _stream_commit(self, commit: StreamCommit) -> list[Change]:
        stream = self._streams.pop(commit.xid, None)
        self.last_commit_end_lsn = commit.end_lsn
        if stream is None:
            return []  # nothing of it was streamed to this session
        self._stream_buffered -= len(stream.changes)
        self._tables.update(stream.tables)
        self._relations.update(stream.relations)
        lsn, xid, at = commit.commit_lsn.value, commit.xid, commit.commit_time_us
        return [
            Change(schema, table, op, row, old, CommitPosition(lsn, seq), xid, at, toast, channel)
            for seq, (schema, table, op, row, old, toast, channel) in enumerate(stream.changes)
        ]

    def _stream_abort(self, abort: StreamAbort) -> None:
        stream = self._streams.get(abort.xid)
        if stream is None:
            return
        if abort.subxid == abort.xid:
            del self._streams[abort.xid]
            self._stream_buffered -= len(stream.changes)
            return
        keep = [i for i, subxid in enumerate(stream.subxids) if subxid != abort.subxid]
        self._stream_buffered -= len(stream.changes) - len(keep)
        stream.changes = [stream.changes[i] for i in keep]
        stream.subxids = [stream.subxids[i] for i in keep]


class _Unchanged(Exception):
    """Raised inside the row comprehension to send a row with unchanged TOAST the slow way."""


def _not_text(value: ColumnValue) -> NoReturn:
    if value is UNCHANGED_TOAST:
        raise _Unchanged
    raise PgOutputError("binary tuple data is not supported: do not set binary")


def _row(table: _Table, values: TupleData) -> tuple[dict[str, Any], frozenset[str]]:
    names = table.names
    if len(values) != len(names):
        raise PgOutputError(f"{len(values)} values for the {len(names)} columns of {table.table}")
    try:
        row = {
            name: (value if convert is None else convert(value))
            if type(value) is str
            else None
            if value is None
            else _not_text(value)
            for name, convert, value in zip(names, table.converters, values)  # noqa: B905
        }
        return row, _EMPTY
    except _Unchanged:
        pass
    row = {}
    toast = []
    for name, convert, value in zip(names, table.converters, values):  # noqa: B905
        if value is UNCHANGED_TOAST:
            toast.append(name)
        elif type(value) is str:
            row[name] = value if convert is None else convert(value)
        elif value is None:
            row[name] = None
        else:
            _not_text(value)
    return row, frozenset(toast)


def _old_row(table: _Table, kind: str | None, values: TupleData | None) -> dict[str, Any] | None:
    if values is None:
        return None
    row, _ = _row(table, values)
    if kind == "K":
        # The key tuple has every column, the ones outside the key as NULL.
        names = table.names
        return {names[i]: row[names[i]] for i in table.keys if names[i] in row}
    return row


def _update(
    table: _Table, update: Update
) -> tuple[dict[str, Any], dict[str, Any] | None, frozenset[str]]:
    row, toast = _row(table, update.new)
    old = _old_row(table, update.old_kind, update.old)
    if toast and old is not None and update.old_kind == "O":
        # With REPLICA IDENTITY FULL the old row carries the values the update left alone.
        for name in toast:
            if name in old:
                row[name] = old[name]
        toast = frozenset(name for name in toast if name not in old)
    return row, old, toast
