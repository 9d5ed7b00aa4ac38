"""Publication accounting: which sequence numbers each subscriber got, lost and duplicated."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass


@dataclass
class Tally:
    """What subscribers received of what the writer committed (sums over subscribers)."""

    expected: int = 0
    received: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0  # sequence numbers the writer never committed
    reordered: int = 0  # arrivals with a lower sequence number than one already seen
    subscribers: int = 0
    subscribers_with_loss: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(**{k: v + getattr(other, k) for k, v in asdict(self).items()})

    @property
    def ok(self) -> bool:
        """Every publication arrived exactly once at every subscriber."""
        return self.lost == 0 and self.duplicated == 0 and self.unexpected == 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, int]) -> Tally:
        return cls(**{k: int(data.get(k, 0)) for k in asdict(cls())})


class SeqTracker:
    """The sequence numbers one subscriber received in one run (0, 1, 2, … as written)."""

    __slots__ = ("duplicated", "highest", "received", "reordered", "seen", "unexpected")

    def __init__(self) -> None:
        self.seen = bytearray()
        self.received = 0
        self.duplicated = 0
        self.unexpected = 0
        self.reordered = 0
        self.highest = -1

    def record(self, seq: int) -> bool:
        """Note one arrival; False if it is a duplicate or not a sequence number at all."""
        self.received += 1
        if seq < 0:
            self.unexpected += 1
            return False
        if seq >= len(self.seen):
            # Grow geometrically: a subscriber records thousands of numbers one by one.
            self.seen.extend(bytes(max(seq + 1 - len(self.seen), len(self.seen), 64)))
        if self.seen[seq]:
            self.duplicated += 1
            return False
        self.seen[seq] = 1
        if seq < self.highest:
            self.reordered += 1
        else:
            self.highest = seq
        return True

    def tally(self, expected: int) -> Tally:
        """Compare with the `expected` numbers 0 … expected-1 that the writer committed."""
        got = self.seen[:expected].count(1)
        beyond = self.seen[expected:].count(1)
        lost = expected - got
        return Tally(
            expected=expected,
            received=self.received,
            lost=lost,
            duplicated=self.duplicated,
            unexpected=self.unexpected + beyond,
            reordered=self.reordered,
            subscribers=1,
            subscribers_with_loss=1 if lost else 0,
        )


def tally(received: Iterable[int], expected: int) -> Tally:
    """The tally of one subscriber that received `received` (in arrival order)."""
    sequence = SeqTracker()
    for seq in received:
        sequence.record(seq)
    return sequence.tally(expected)


def total(tallies: Iterable[Tally]) -> Tally:
    """The sum of many subscribers' tallies."""
    result = Tally()
    for item in tallies:
        result = result + item
    return result


def describe_failure(result: Tally) -> str | None:
    """One line saying what went wrong, or None when every publication arrived exactly once."""
    if result.ok:
        return None
    parts = [f"{result.lost:,} lost", f"{result.duplicated:,} duplicated"]
    if result.unexpected:
        parts.append(f"{result.unexpected:,} unexpected")
    return (
        f"{', '.join(parts)} of {result.expected:,} expected deliveries"
        f" ({result.subscribers_with_loss:,} of {result.subscribers:,} subscribers missed some)"
    )
