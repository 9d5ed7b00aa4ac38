"""Positions and the Change record that every capture source produces."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# JSON-compatible row values, as PostgreSQL's to_jsonb() would render them.
Row = Mapping[str, Any]


@dataclass(frozen=True, order=True, slots=True)
class Lsn:
    """A PostgreSQL WAL position; printed the way PostgreSQL prints it (``16/B374D848``)."""

    value: int

    @classmethod
    def parse(cls, text: str) -> Lsn:
        high, sep, low = text.partition("/")
        if not sep or not high or not low:
            raise ValueError(f"not an LSN: {text!r}")
        try:
            value = (int(high, 16) << 32) | int(low, 16)
        except ValueError:
            raise ValueError(f"not an LSN: {text!r}") from None
        if int(low, 16) >= 1 << 32 or value >= 1 << 64:
            raise ValueError(f"LSN out of range: {text!r}")
        return cls(value)

    def __str__(self) -> str:
        return f"{self.value >> 32:X}/{self.value & 0xFFFFFFFF:X}"


@dataclass(frozen=True, order=True, slots=True)
class CommitPosition:
    """Where a change stands in commit order: the transaction's commit key, then its index in it.

    For the logical source ``commit`` is the commit LSN; for the outbox sources it is the
    claim sequence given to the row when it was read. Positions from one source are totally
    ordered, which is what lets an engine drop a change it already appended after a crash.
    """

    commit: int
    seq: int

    @classmethod
    def parse(cls, text: str) -> CommitPosition:
        commit, sep, seq = text.partition(":")
        if not sep:
            raise ValueError(f"not a commit position: {text!r}")
        try:
            return cls(int(commit), int(seq))
        except ValueError:
            raise ValueError(f"not a commit position: {text!r}") from None

    def __str__(self) -> str:
        return f"{self.commit}:{self.seq}"


class Op(enum.StrEnum):
    """What happened to a row (or, for MESSAGE, a transactional publish)."""

    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"
    TRUNCATE = "truncate"
    MESSAGE = "message"


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change of one row, as every capture source reports it.

    ``row`` is the new row (insert, update) and ``old`` the old one (update: the full old row
    under REPLICA IDENTITY FULL, else the key when the key changed; delete: the same), both
    with JSON-ready values. ``unchanged_toast`` names columns of ``row`` whose value was not
    sent because it is an unchanged TOASTed value; a publisher must fill or mark them, never
    publish them as null. For MESSAGE, ``table`` is empty, ``channel`` names the target and
    ``row`` holds the published data under the key ``"data"``.
    """

    schema: str
    table: str
    op: Op
    row: Row | None
    old: Row | None
    position: CommitPosition
    xid: int
    commit_time_us: int  # microseconds since the Unix epoch, UTC
    unchanged_toast: frozenset[str] = field(default_factory=frozenset)
    channel: str | None = None
