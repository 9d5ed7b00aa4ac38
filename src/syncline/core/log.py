"""One channel's log: epoch, gap-free offsets, bounded history, recovery and history queries.

The rules here are the ones clients rely on (design.md, "Semantics that users rely on";
centrifuge-protocol.md §2.7 and §5): offsets 1, 2, 3 … with no gaps within an epoch, and a
resume that is either an exact replay of the missed publications or an explicit "not
recovered" — never a partial replay. Time comes in as a number and the epoch as a string, so
everything here is deterministic; the engines supply the clock and the randomness.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice

from syncline.core.changes import CommitPosition

# The SDKs keep offsets in JavaScript numbers, which are exact only below 2**53.
MAX_OFFSET = (1 << 53) - 1

# Default history bounds for a namespace that enables history. 300 publications and 5 minutes
# cover a client that drops off for a network change or a laptop lid close, which is what
# recovery is for; a client away longer reloads its state over REST anyway, and keeping more
# would mostly cost memory (every channel's history lives in the engine).
DEFAULT_HISTORY_SIZE = 300
DEFAULT_HISTORY_TTL_S = 300.0

# Largest page one history request may return when the client asks for "all" (limit -1) or
# more. It bounds the size of one reply frame; Centrifugo's history_max_publication_limit
# plays the same role.
DEFAULT_HISTORY_MAX_LIMIT = 1000

# Random bytes in an epoch: 48 bits, printed as 8 URL-safe characters. An epoch only has to
# differ from the epochs a client may still hold for that channel; 2**-48 makes an accidental
# match negligible while keeping the string short, since it travels in every subscribe reply.
EPOCH_BYTES = 6

# Error codes of the Centrifuge protocol (centrifuge-protocol.md §4.1) that history raises.
ERROR_BAD_REQUEST = 107
ERROR_UNRECOVERABLE_POSITION = 112


def new_epoch() -> str:
    """Return a fresh random epoch; engines call this once per stream they create."""
    return secrets.token_urlsafe(EPOCH_BYTES)


class LogError(Exception):
    """A request the log refuses, carrying the protocol error code to send back."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code} {self.message}"


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """Where a client stands in a channel: the last offset it has, within an epoch.

    The one string format is ``"<offset>:<epoch>"``, e.g. ``"42:k3Xa_9Qz"``. The offset comes
    first because it is all digits, so an epoch may itself contain ``:``. An empty epoch is
    allowed in a request and means "any epoch" (§5.3); a stream's own epoch is never empty.
    """

    offset: int
    epoch: str

    def __post_init__(self) -> None:
        if not 0 <= self.offset <= MAX_OFFSET:
            raise ValueError(f"offset out of range: {self.offset}")

    @classmethod
    def parse(cls, text: str) -> StreamPosition:
        offset, sep, epoch = text.partition(":")
        if not sep or not offset.isdigit() or not offset.isascii():
            raise ValueError(f"not a stream position: {text!r}")
        return cls(int(offset), epoch)

    def __str__(self) -> str:
        return f"{self.offset}:{self.epoch}"


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """The publisher's identity, with its info fields already encoded as JSON (or absent)."""

    user: str
    client: str
    conn_info: bytes | None = None
    chan_info: bytes | None = None


@dataclass(frozen=True, slots=True)
class Publication:
    """One entry of a channel log.

    ``data`` is the payload already encoded as JSON: it is encoded once per channel and the same
    bytes go to every subscriber, history reply and recovery. ``offset`` is 0 for an ephemeral
    publication, which never enters a stream. ``time_ms`` is when it was appended (Unix ms);
    the history TTL counts from it.
    """

    offset: int
    data: bytes
    info: ClientInfo | None
    time_ms: int


@dataclass(frozen=True, slots=True)
class RecoveryResult:
    """The answer to a resubscribe with a position: an exact replay, or none at all.

    ``position`` is the stream's current top in both cases. When ``recovered`` is false,
    ``publications`` is always empty and the client must reload its state.
    """

    recovered: bool
    position: StreamPosition
    publications: Sequence[Publication]


@dataclass(frozen=True, slots=True)
class HistoryResult:
    """A page of history and the stream's current top."""

    position: StreamPosition
    publications: Sequence[Publication]


_NO_PUBLICATIONS: tuple[Publication, ...] = ()


class ChannelStream:
    """The log of one channel: not thread-safe, and deliberately free of clocks and I/O.

    History keeps the newest publications, at most ``history_size`` of them and none older than
    ``history_ttl_s`` seconds; with either bound at 0 nothing is kept (as in Centrifuge, where a
    namespace has history only when both are set), but offsets are still assigned, so a client
    can still be positioned and a resume at the top still succeeds. The kept publications are
    always a contiguous run ending at ``top``, which is what makes the recovery check a
    comparison of two numbers.
    """

    __slots__ = (
        "_history",
        "_top",
        "_ttl_ms",
        "epoch",
        "history_size",
        "history_ttl_s",
        "last_position",
        "touched_ms",
    )

    def __init__(
        self,
        epoch: str,
        *,
        history_size: int = DEFAULT_HISTORY_SIZE,
        history_ttl_s: float = DEFAULT_HISTORY_TTL_S,
        top: int = 0,
        last_position: CommitPosition | None = None,
    ) -> None:
        if not epoch:
            raise ValueError("a stream epoch must not be empty")
        if not 0 <= top <= MAX_OFFSET:
            raise ValueError(f"top offset out of range: {top}")
        self.epoch = epoch
        self._top = top
        # The newest position appended, so that a change read again after a crash is dropped.
        self.last_position = last_position
        # Last time the stream was used: append, recover and history set it, and an engine sets it
        # on its other uses. Engines drop streams that stay unused; see engine/memory.py.
        self.touched_ms = 0
        self.history_size = 0
        self.history_ttl_s = 0.0
        self._ttl_ms = 0
        self._history: deque[Publication] = deque(maxlen=0)
        self.set_bounds(history_size, history_ttl_s)

    @property
    def top(self) -> int:
        """The offset of the newest publication, 0 before the first."""
        return self._top

    @property
    def position(self) -> StreamPosition:
        return StreamPosition(self._top, self.epoch)

    def __len__(self) -> int:
        """How many publications history holds right now (before any trim by time)."""
        return len(self._history)

    def set_bounds(self, history_size: int, history_ttl_s: float) -> None:
        """Change the history bounds; shrinking drops the oldest publications at once."""
        if history_size < 0 or history_ttl_s < 0:
            raise ValueError("history bounds must not be negative")
        if history_size == self.history_size and history_ttl_s == self.history_ttl_s:
            return
        self.history_size = history_size
        self.history_ttl_s = history_ttl_s
        self._ttl_ms = round(history_ttl_s * 1000)
        keep = history_size if history_size > 0 and self._ttl_ms > 0 else 0
        # A bounded deque drops from the left by itself on append: no size check per append.
        self._history = deque(self._history, maxlen=keep)

    def append(
        self,
        data: bytes,
        info: ClientInfo | None,
        now_ms: int,
        position: CommitPosition | None = None,
    ) -> Publication | None:
        """Give ``data`` the next offset and keep it in history.

        Returns None, and appends nothing, when ``position`` is not after the last position
        appended: that change is already in the log and is being read again after a restart.
        """
        if position is not None:
            last = self.last_position
            if last is not None and position <= last:
                return None
        top = self._top
        if top >= MAX_OFFSET:
            # Unreachable in practice (285 years at a million a second), but a wrong offset
            # would break every client; refuse before recording the position.
            raise OverflowError(f"offset space of epoch {self.epoch!r} is exhausted")
        if position is not None:
            self.last_position = position
        top += 1
        self._top = top
        self.touched_ms = now_ms
        pub = Publication(top, data, info, now_ms)
        history = self._history
        if history.maxlen:
            history.append(pub)
            if history[0].time_ms <= now_ms - self._ttl_ms:
                self.trim(now_ms)
        return pub

    def clear(self) -> None:
        """Drop all of history but keep the position (epoch, top offset and the last commit
        position), as Centrifuge's ``RemoveHistory`` does: a client positioned at the top goes
        on, one behind it cannot recover (nothing to replay) and reloads; the offsets go on
        from the same top, so nobody mistakes a later publication for one it has."""
        self._history.clear()

    def trim(self, now_ms: int) -> None:
        """Drop the publications older than the TTL (this alone does not count as a use)."""
        history = self._history
        cutoff = now_ms - self._ttl_ms
        while history and history[0].time_ms <= cutoff:
            history.popleft()

    def _holds_after(self, offset: int) -> bool:
        """Whether history holds every publication from ``offset + 1`` up to the top."""
        history = self._history
        return bool(history) and history[0].offset <= offset + 1

    def _after(self, offset: int, limit: int) -> list[Publication]:
        """Up to ``limit`` (negative: all) kept publications after ``offset``, oldest first."""
        history = self._history
        if not history or offset >= self._top or limit == 0:
            return []
        first = history[0].offset
        start = max(offset + 1 - first, 0)
        stop = len(history) if limit < 0 else min(start + limit, len(history))
        if len(history) - start < stop:
            # A deque has no slicing and islice walks from the left: come in from the right
            # end when that is shorter, as it is for a recovery of the last few publications.
            tail = list(islice(reversed(history), len(history) - stop, len(history) - start))
            tail.reverse()
            return tail
        return list(islice(history, start, stop))

    def _before(self, offset: int, limit: int) -> list[Publication]:
        """Up to ``limit`` (negative: all) kept publications up to ``offset``, newest first."""
        history = self._history
        if not history or limit == 0:
            return []
        skip = self._top - offset
        if skip < 0 or skip >= len(history):
            return []
        stop = len(history) if limit < 0 else min(skip + limit, len(history))
        return list(islice(reversed(history), skip, stop))

    def recover(self, since: StreamPosition, now_ms: int) -> RecoveryResult:
        """Exactly the publications after ``since``, or ``recovered=False`` and none (§5.3)."""
        self.touched_ms = now_ms
        self.trim(now_ms)
        position = self.position
        if since.epoch and since.epoch != self.epoch:
            return RecoveryResult(False, position, _NO_PUBLICATIONS)
        if since.offset == self._top:
            return RecoveryResult(True, position, _NO_PUBLICATIONS)
        if since.offset > self._top or not self._holds_after(since.offset):
            return RecoveryResult(False, position, _NO_PUBLICATIONS)
        return RecoveryResult(True, position, self._after(since.offset, -1))

    def history(
        self,
        limit: int,
        since: StreamPosition | None,
        reverse: bool,
        now_ms: int,
        max_limit: int = DEFAULT_HISTORY_MAX_LIMIT,
    ) -> HistoryResult:
        """A history page with the Go server's semantics (centrifuge-protocol.md §2.7).

        ``limit`` 0 returns only the position and a negative limit means "all"; both "all" and
        any limit above ``max_limit`` are cut to ``max_limit`` (0: no cap). Without ``since``
        the page starts at the oldest kept publication, or at the newest when ``reverse``.
        With ``since`` it holds the publications after ``since.offset`` (oldest first), or with
        ``reverse`` those before it (newest first). Like Go, a forward page whose
        ``since.offset + 1`` was trimmed starts at the oldest kept publication (the caller sees
        the gap in the offsets), and a backward page whose ``since.offset - 1`` is not kept is
        empty.

        Raises LogError 107 for ``reverse`` with ``since.offset`` 0 and 112 when
        ``since.epoch`` is set and is not this stream's epoch.
        """
        if since is not None:
            if reverse and since.offset == 0:
                raise LogError(ERROR_BAD_REQUEST, "bad request")
            if since.epoch and since.epoch != self.epoch:
                raise LogError(ERROR_UNRECOVERABLE_POSITION, "unrecoverable position")
        if max_limit > 0 and (limit < 0 or limit > max_limit):
            limit = max_limit
        self.touched_ms = now_ms
        self.trim(now_ms)
        if since is None:
            pubs = self._before(self._top, limit) if reverse else self._after(0, limit)
        elif reverse:
            pubs = self._before(since.offset - 1, limit)
        else:
            pubs = self._after(since.offset, limit)
        return HistoryResult(self.position, pubs)
