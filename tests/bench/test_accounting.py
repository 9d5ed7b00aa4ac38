"""The bench's accounting on plain data: every loss, duplicate and stray number is counted."""

from __future__ import annotations

from syncline.bench.accounting import SeqTracker, Tally, describe_failure, tally, total


def test_everything_once_in_order_is_ok() -> None:
    result = tally(range(100), expected=100)
    assert result == Tally(expected=100, received=100, subscribers=1)
    assert result.ok
    assert describe_failure(result) is None


def test_a_missing_number_is_lost() -> None:
    result = tally([0, 1, 3, 4], expected=5)
    assert (result.lost, result.duplicated, result.received) == (1, 0, 4)
    assert result.subscribers_with_loss == 1
    assert not result.ok


def test_the_tail_missing_is_lost_too() -> None:
    assert tally([0, 1, 2], expected=5).lost == 2
    assert tally([], expected=3).lost == 3


def test_a_repeat_is_a_duplicate_not_a_delivery() -> None:
    result = tally([0, 1, 1, 2, 2, 2], expected=3)
    assert (result.lost, result.duplicated, result.received) == (0, 3, 6)
    assert not result.ok


def test_numbers_the_writer_never_committed_are_unexpected() -> None:
    result = tally([0, 1, 2, 7, -1], expected=3)
    assert (result.lost, result.unexpected) == (0, 2)
    assert not result.ok


def test_late_arrivals_count_as_reordered_not_lost() -> None:
    result = tally([0, 2, 1, 3], expected=4)
    assert (result.lost, result.reordered) == (0, 1)
    assert result.ok


def test_record_says_whether_the_arrival_is_new() -> None:
    tracker = SeqTracker()
    assert tracker.record(5)
    assert not tracker.record(5)
    assert tracker.record(1000)  # far beyond the buffer grown so far
    assert tracker.tally(1001).lost == 999


def test_totals_over_subscribers_and_the_one_line_verdict() -> None:
    summed = total([tally(range(10), 10), tally([0, 1, 1], 10), tally(range(10), 10)])
    assert (summed.expected, summed.lost, summed.duplicated) == (30, 8, 1)
    assert (summed.subscribers, summed.subscribers_with_loss) == (3, 1)
    line = describe_failure(summed)
    assert line is not None
    assert "8 lost" in line and "1 duplicated" in line and "1 of 3 subscribers" in line
    assert "\n" not in line


def test_tally_round_trips_through_a_dict() -> None:
    item = tally([0, 0, 2], expected=4)
    assert Tally.from_dict(item.as_dict()) == item
