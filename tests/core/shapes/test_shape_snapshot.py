"""The snapshot boundary: xid visibility (with 32-bit xids across wraparound) and the handoff
that joins a snapshot and the capture stream without a gap or a double."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncline.core.changes import Change, CommitPosition, Op
from syncline.core.shapes.snapshot import (
    Handoff,
    HandoffOverflowError,
    PgSnapshot,
    RecentTransactions,
    SnapshotBoundary,
    SnapshotTooEarlyError,
    visible_in,
    widen_xid,
)

EPOCH = 1 << 32


def change(xid: int, lsn: int = 0, seq: int = 0) -> Change:
    return Change("public", "t", Op.INSERT, {"id": xid}, None, CommitPosition(lsn, seq), xid, 0)


def test_pg_snapshot_parses_and_prints() -> None:
    snap = PgSnapshot.parse("10:20:12,15")
    assert snap == PgSnapshot(10, 20, frozenset({12, 15}))
    assert str(snap) == "10:20:12,15"
    assert PgSnapshot.parse("5:5:") == PgSnapshot(5, 5, frozenset())
    for bad in ("", "1:2", "a:b:", "20:10:", "10:20:25", "0:1:"):
        with pytest.raises(ValueError, match="pg_snapshot"):
            PgSnapshot.parse(bad)


def test_visibility_below_xmin_in_xip_and_from_xmax() -> None:
    snap = PgSnapshot(100, 110, frozenset({100, 105}))
    assert visible_in(snap, 99)
    assert not visible_in(snap, 100)  # xmin itself is the oldest still running
    assert visible_in(snap, 101)
    assert not visible_in(snap, 105)
    assert visible_in(snap, 109)
    assert not visible_in(snap, 110)
    assert not visible_in(snap, 111)


def test_a_32_bit_xid_widens_to_the_epoch_nearest_the_reference() -> None:
    near = 5 * EPOCH + 100
    assert widen_xid(100, near) == near
    assert widen_xid(50, near) == 5 * EPOCH + 50
    # Just before the wrap, seen from just after it: the previous epoch.
    assert widen_xid(EPOCH - 10, near) == 4 * EPOCH + EPOCH - 10
    # Just after the wrap, seen from just before it: the next epoch.
    assert widen_xid(3, 5 * EPOCH + EPOCH - 10) == 6 * EPOCH + 3
    # An xid8 is left as it is.
    assert widen_xid(7 * EPOCH + 9, near) == 7 * EPOCH + 9
    with pytest.raises(ValueError, match="not the xid of a transaction"):
        widen_xid(2, near)
    with pytest.raises(ValueError, match="cannot precede"):
        widen_xid(EPOCH - 10, 100)  # epoch 0 has nothing before it


def test_visibility_across_wraparound_with_32_bit_xids() -> None:
    # The snapshot straddles the wrap: xmin in epoch 5, xmax in epoch 6.
    xmin = 5 * EPOCH + EPOCH - 20
    snap = PgSnapshot(xmin, 6 * EPOCH + 10, frozenset({xmin, 6 * EPOCH + 4}))
    assert visible_in(snap, EPOCH - 30)  # before xmin, epoch 5
    assert not visible_in(snap, EPOCH - 20)  # xmin
    assert visible_in(snap, EPOCH - 1)  # last xid of epoch 5
    assert visible_in(snap, 3)  # first normal xid of epoch 6
    assert not visible_in(snap, 4)  # in xip, given as 32 bits
    assert not visible_in(snap, 10)  # xmax
    assert not visible_in(snap, 1000)  # after the snapshot


@given(
    base=st.integers(3, (1 << 40)),
    offset=st.integers(-(1 << 31) + 1, (1 << 31) - 1),
)
def test_widening_inverts_truncation_within_half_the_xid_space(base: int, offset: int) -> None:
    full = base + offset
    if full % EPOCH < 3 or full < 3:
        return  # not a normal xid
    assert widen_xid(full % EPOCH, base) == full


def test_handoff_holds_changes_then_drops_those_in_the_snapshot() -> None:
    handoff = Handoff()
    assert handoff.waiting
    # Delivered while the snapshot is being read: 98 committed before it (visible), 101 was
    # in progress (in xip), 105 started after it (>= xmax).
    assert handoff.feed(change(98, lsn=10)) == []
    assert handoff.feed(change(101, lsn=11)) == []
    assert handoff.feed(change(105, lsn=12)) == []
    snap = PgSnapshot(99, 103, frozenset({101, 102}))
    out = handoff.start(SnapshotBoundary(snap, wal_lsn=20))
    assert [c.xid for c in out] == [101, 105]
    assert handoff.filtering
    # Still before the WAL position read with the snapshot: checked.
    assert handoff.feed(change(100, lsn=15)) == []  # visible: committed before the snapshot
    assert [c.xid for c in handoff.feed(change(102, lsn=16))] == [102]  # was in progress
    # From the WAL position on, nothing can be in the snapshot: checks stop for good.
    assert [c.xid for c in handoff.feed(change(104, lsn=20))] == [104]
    assert not handoff.filtering
    assert [c.xid for c in handoff.feed(change(50, lsn=21))] == [50]


def test_commit_order_is_not_visibility_order() -> None:
    # T1 (xid 200) wrote its commit record first but was still in the proc array when the
    # snapshot was taken (waiting for a synchronous standby); T2 (xid 201) committed after it
    # and is visible. Capture delivers T1 then T2: T1 must be applied, T2 dropped. Stopping
    # the checks at the first invisible transaction would apply T2 twice.
    handoff = Handoff()
    snap = PgSnapshot(200, 202, frozenset({200}))
    assert handoff.start(SnapshotBoundary(snap, wal_lsn=50)) == []
    assert [c.xid for c in handoff.feed(change(200, lsn=40))] == [200]
    assert handoff.feed(change(201, lsn=41)) == []


def test_without_an_lsn_the_check_goes_on_with_full_xids() -> None:
    handoff = Handoff()
    snap = PgSnapshot(5 * EPOCH + 10, 5 * EPOCH + 20, frozenset())
    assert handoff.start(SnapshotBoundary(snap)) == []
    assert handoff.feed(change(5 * EPOCH + 15, lsn=1 << 62)) == []
    assert len(handoff.feed(change(5 * EPOCH + 25))) == 1
    assert handoff.filtering


def test_a_delivered_transaction_not_yet_visible_asks_for_a_new_snapshot() -> None:
    recent = RecentTransactions(size=3)
    for xid in (10, 11, 11, 12, 13):
        recent.record(xid)
    assert recent.copy() == (11, 12, 13)
    handoff = Handoff(recent.copy())
    assert handoff.feed(change(14, lsn=5)) == []
    early = SnapshotBoundary(PgSnapshot(13, 15, frozenset({13, 14})), wal_lsn=9)
    with pytest.raises(SnapshotTooEarlyError):
        handoff.check(early)  # before reading the rows
    handoff.check(SnapshotBoundary(PgSnapshot(14, 15, frozenset({14})), wal_lsn=9))
    with pytest.raises(SnapshotTooEarlyError, match="transaction 13 was delivered"):
        handoff.start(SnapshotBoundary(PgSnapshot(13, 15, frozenset({13, 14})), wal_lsn=9))
    assert handoff.waiting  # still holding: the next snapshot gets 14
    out = handoff.start(SnapshotBoundary(PgSnapshot(14, 15, frozenset({14})), wal_lsn=9))
    assert [c.xid for c in out] == [14]


def test_the_handoff_is_bounded() -> None:
    handoff = Handoff(max_pending=2)
    handoff.feed(change(5))
    handoff.feed(change(6))
    with pytest.raises(HandoffOverflowError, match="more than 2 changes"):
        handoff.feed(change(7))
    handoff = Handoff()
    handoff.start(SnapshotBoundary(PgSnapshot(1, 1, frozenset())))
    with pytest.raises(RuntimeError, match="started already"):
        handoff.start(SnapshotBoundary(PgSnapshot(1, 1, frozenset())))
