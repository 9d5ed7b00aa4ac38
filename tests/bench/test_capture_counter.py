"""The capture bench's counter: a phase ends on distinct rows, not on changes."""

from __future__ import annotations

from collections.abc import Sequence

from syncline.bench.capture import _Counter
from syncline.core.changes import Change, CommitPosition, Op


class _Sink:
    async def __call__(self, changes: Sequence[Change]) -> None:
        return None


def change(seq: int, row_id: int | None, op: Op = Op.INSERT) -> Change:
    return Change(
        schema="public",
        table="bench_rows",
        op=op,
        row=None if row_id is None else {"id": row_id, "n": row_id},
        old=None,
        position=CommitPosition(1, seq),
        xid=1,
        commit_time_us=1,
    )


async def test_a_truncate_or_a_duplicate_does_not_end_a_phase_early() -> None:
    counter = _Counter(_Sink())  # type: ignore[arg-type]
    counter.target = 3
    # A TRUNCATE left in the outbox by an earlier run, then rows 1, 2, and 2 again.
    await counter([change(0, None, Op.TRUNCATE), change(1, 1), change(2, 2), change(3, 2)])
    assert counter.count == 4
    assert counter.duplicates == 1
    assert not counter.done.is_set()  # two distinct rows of three: the third is on its way
    await counter([change(4, 3)])
    assert counter.done.is_set()
