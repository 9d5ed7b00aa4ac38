"""The snapshot boundary: which captured transactions a shape's snapshot already contains.

A shape's snapshot is read in one REPEATABLE READ transaction that first runs
``SELECT pg_current_snapshot(), pg_current_wal_insert_lsn()``; the SELECT of the rows then sees
exactly the transactions that snapshot sees. A captured (so committed) transaction with xid X
is in the snapshot iff X < xmax and X is not in the xip list. docs/topics/shapes.md gives the
argument that, with :class:`Handoff`, no change is missed or applied twice.

xids: ``pg_current_snapshot()`` gives 64-bit xid8 values (epoch << 32 | 32-bit xid). The
logical capture source sees 32-bit xids (pgoutput's), the outbox source xid8. A 32-bit xid is
widened to the xid8 nearest to the snapshot's xmax, the same modulo-2^32 rule PostgreSQL's
``TransactionIdPrecedes`` applies; this is exact because every transaction a replication slot
still has to deliver is less than 2^31 xids away from the server's next xid (the slot's
catalog_xmin holds back freezing, and PostgreSQL stops assigning xids before a wraparound
would make two live xids ambiguous), and so is xmax.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from syncline.core.changes import Change

__all__ = [
    "DEFAULT_MAX_PENDING_CHANGES",
    "DEFAULT_RECENT_TRANSACTIONS",
    "Handoff",
    "HandoffOverflowError",
    "PgSnapshot",
    "RecentTransactions",
    "SnapshotBoundary",
    "SnapshotTooEarlyError",
    "visible_in",
    "widen_xid",
]

_XID32 = 1 << 32
_HALF = 1 << 31
_FIRST_NORMAL_XID = 3  # 0 invalid, 1 bootstrap, 2 frozen: never a transaction's xid

# Changes held for a shape while its snapshot is read. A snapshot of 100,000 rows takes about
# a second; at the capture rates measured (~30,000 changes/s at most) all of a table's changes
# in that second fit. A shape that falls further behind fails and is reopened, never skips.
DEFAULT_MAX_PENDING_CHANGES = 100_000

# Transactions remembered as delivered by capture (see RecentTransactions): the window in which
# a delivered transaction may still be invisible to new snapshots is the time between its
# commit record's flush and its leaving the proc array, normally microseconds, at most the wait
# for a synchronous standby; 10,000 transactions is seconds of the highest commit rates.
DEFAULT_RECENT_TRANSACTIONS = 10_000


@dataclass(frozen=True, slots=True)
class PgSnapshot:
    """A ``pg_snapshot`` value: ``xmin:xmax:xip,…`` with 64-bit xids."""

    xmin: int
    xmax: int
    xip: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> PgSnapshot:
        parts = text.split(":")
        try:
            if len(parts) != 3:
                raise ValueError
            xmin, xmax = int(parts[0]), int(parts[1])
            xip = frozenset(int(x) for x in parts[2].split(",")) if parts[2] else frozenset()
        except ValueError:
            raise ValueError(f"not a pg_snapshot: {text!r}") from None
        if not 0 < xmin <= xmax or any(not xmin <= x < xmax for x in xip):
            raise ValueError(f"inconsistent pg_snapshot: {text!r}")
        return cls(xmin, xmax, xip)

    def __str__(self) -> str:
        return f"{self.xmin}:{self.xmax}:{','.join(str(x) for x in sorted(self.xip))}"


def widen_xid(xid: int, near: int) -> int:
    """The xid8 of a transaction given its 32-bit xid (or its xid8) and an xid8 within 2^31.

    A value of 2^32 or more is an xid8 already and comes back unchanged.
    """
    if xid >= _XID32:
        return xid
    if xid < _FIRST_NORMAL_XID:
        raise ValueError(f"{xid} is not the xid of a transaction")
    # The signed 32-bit distance from `near`, as TransactionIdPrecedes computes it.
    distance = (xid - near) % _XID32
    if distance >= _HALF:
        distance -= _XID32
    full = near + distance
    if full < 0:
        raise ValueError(f"xid {xid} cannot precede xid8 {near} by that much")
    return full


def visible_in(snapshot: PgSnapshot, xid: int) -> bool:
    """Whether a committed transaction's changes are in the snapshot (xid: xid8 or 32-bit)."""
    full = widen_xid(xid, snapshot.xmax)
    if full < snapshot.xmin:
        return True
    return full < snapshot.xmax and full not in snapshot.xip


@dataclass(frozen=True, slots=True)
class SnapshotBoundary:
    """A shape's snapshot and, for the logical source, the WAL insert position read after it.

    Every transaction visible in the snapshot wrote its commit record before it became
    visible, so before ``wal_lsn``: a transaction that commits at or after ``wal_lsn`` is never
    in the snapshot, and once capture has delivered one, none of the later ones can be either.
    """

    snapshot: PgSnapshot
    wal_lsn: int | None = None  # None for sources whose positions are not LSNs (the outbox)

    def contains(self, change: Change) -> bool:
        """Whether ``change`` is already in the snapshot's rows (so must not be applied)."""
        return self.contains_at(change.position.commit, change.xid)

    def contains_at(self, commit: int, xid: int) -> bool:
        """``contains`` for a change known by its commit position and xid (a publication)."""
        if self.wal_lsn is not None and commit >= self.wal_lsn:
            return False
        return visible_in(self.snapshot, xid)

    def settled_by(self, change: Change) -> bool:
        """Whether no change delivered after ``change`` can be in the snapshot.

        True from the first change that commits at or after ``wal_lsn``. Without an LSN
        (outbox), never: the visibility test stays exact for full xids, so it just goes on.
        """
        return self.wal_lsn is not None and change.position.commit >= self.wal_lsn


class RecentTransactions:
    """The xids of the last transactions capture delivered, newest last (bounded).

    Logical decoding may deliver a transaction as soon as its commit record is flushed, a
    moment *before* the transaction becomes visible to new snapshots (it leaves the proc array
    after the flush and after any wait for a synchronous standby). A shape registered in that
    moment would miss it: capture delivered it before the shape existed, and the snapshot
    doesn't contain it. :class:`Handoff` checks the snapshot against these xids and asks for a
    new snapshot when one of them is not visible yet.
    """

    __slots__ = ("_xids",)

    def __init__(self, size: int = DEFAULT_RECENT_TRANSACTIONS) -> None:
        self._xids: deque[int] = deque(maxlen=size)

    def record(self, xid: int) -> None:
        """Note a transaction whose changes capture has delivered."""
        if not self._xids or self._xids[-1] != xid:
            self._xids.append(xid)

    def copy(self) -> tuple[int, ...]:
        """The xids delivered so far, for a shape being registered now."""
        return tuple(self._xids)


class SnapshotTooEarlyError(RuntimeError):
    """The snapshot doesn't yet show a transaction capture already delivered: take another."""


class HandoffOverflowError(RuntimeError):
    """More changes arrived while the snapshot was read than a shape may hold."""


class Handoff:
    """Joins a shape's snapshot and the capture stream into one stream without gap or double.

    Create it when the shape is registered with capture, with the xids capture had delivered
    until then (:meth:`RecentTransactions.copy`), and feed it every later change of the shape's
    table in capture order; only then start the snapshot transaction. Until :meth:`start` gets
    the boundary, changes are held (bounded); then those not in the snapshot come out, and
    later changes pass through :meth:`feed` the same way until the boundary is settled, after
    which everything passes.
    """

    __slots__ = ("_boundary", "_delivered", "_max_pending", "_pending")

    def __init__(
        self,
        delivered: Iterable[int] = (),
        *,
        max_pending: int = DEFAULT_MAX_PENDING_CHANGES,
    ) -> None:
        self._delivered = tuple(delivered)
        self._max_pending = max_pending
        self._pending: list[Change] | None = []
        self._boundary: SnapshotBoundary | None = None

    @property
    def waiting(self) -> bool:
        """The snapshot's boundary is not known yet: changes are being held."""
        return self._pending is not None

    @property
    def filtering(self) -> bool:
        """Changes are still checked against the snapshot."""
        return self._boundary is not None

    def feed(self, change: Change) -> list[Change]:
        """The changes to apply after the snapshot's rows, now that ``change`` arrived."""
        if self._pending is not None:
            if len(self._pending) >= self._max_pending:
                raise HandoffOverflowError(
                    f"more than {self._max_pending} changes arrived while the snapshot was read"
                )
            self._pending.append(change)
            return []
        return list(self._pass([change]))

    def check(self, boundary: SnapshotBoundary) -> None:
        """Raise SnapshotTooEarlyError if a transaction delivered before the shape was
        registered is not visible in the snapshot: read a new one. :meth:`start` checks too;
        checking first saves reading the rows of a snapshot that can't be used."""
        late = [xid for xid in self._delivered if not visible_in(boundary.snapshot, xid)]
        if late:
            raise SnapshotTooEarlyError(
                f"transaction {late[0]} was delivered but is not visible in snapshot "
                f"{boundary.snapshot} yet"
            )

    def start(self, boundary: SnapshotBoundary) -> list[Change]:
        """The snapshot's rows have all been emitted: the held changes that must follow them.

        Raises SnapshotTooEarlyError, and keeps holding changes, when a transaction delivered
        before the shape was registered is not in the snapshot yet: read a new snapshot.
        """
        if self._pending is None:
            raise RuntimeError("the handoff has started already")
        self.check(boundary)
        pending, self._pending = self._pending, None
        self._boundary = boundary
        return list(self._pass(pending))

    def _pass(self, changes: Iterable[Change]) -> Iterator[Change]:
        for change in changes:
            boundary = self._boundary
            if boundary is None:
                yield change
            elif boundary.settled_by(change):
                self._boundary = None
                yield change
            elif not boundary.contains(change):
                yield change
