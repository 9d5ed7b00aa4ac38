"""The contract between a capture source and the rest: batches of changes, then acknowledged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from syncline.core.changes import Change


class ChangeSink(Protocol):
    """Receives committed changes in commit order; returns once they are in the channel log.

    A source acknowledges a position to PostgreSQL (slot feedback, outbox delete) only after
    the sink returned for every change up to it: that is what makes a crash lose nothing.
    """

    async def __call__(self, changes: Sequence[Change]) -> None: ...


class CaptureSource(Protocol):
    """A running source of changes (logical replication, trigger outbox, poll)."""

    name: str

    async def run(self, sink: ChangeSink) -> None:
        """Stream changes into `sink` until cancelled; raise CaptureError if it cannot go on."""
        ...

    def problem(self) -> str | None:
        """None while streaming; else what is wrong (for /readyz)."""
        ...


class CaptureError(Exception):
    """The source cannot start or cannot go on (the message says why and what to do)."""
