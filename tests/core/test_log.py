"""Channel log semantics: offsets, dedupe, bounded history, recovery and history queries."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncline.core.changes import CommitPosition
from syncline.core.log import (
    MAX_OFFSET,
    ChannelStream,
    ClientInfo,
    LogError,
    Publication,
    StreamPosition,
    new_epoch,
)

EPOCH = "ep0ch"


def make(
    size: int = 10,
    ttl_s: float = 60.0,
    *,
    top: int = 0,
    last_position: CommitPosition | None = None,
) -> ChannelStream:
    return ChannelStream(
        EPOCH, history_size=size, history_ttl_s=ttl_s, top=top, last_position=last_position
    )


def fill(stream: ChannelStream, count: int, now_ms: int = 1000) -> list[Publication]:
    pubs = []
    for i in range(count):
        pub = stream.append(b'{"n":%d}' % i, None, now_ms)
        assert pub is not None
        pubs.append(pub)
    return pubs


def offsets(pubs: object) -> list[int]:
    assert isinstance(pubs, list | tuple)
    return [p.offset for p in pubs]


def pos(offset: int, epoch: str = EPOCH) -> StreamPosition:
    return StreamPosition(offset, epoch)


# -- StreamPosition -------------------------------------------------------------------------


def test_stream_position_round_trips_through_its_string_format() -> None:
    for position in (pos(0), pos(42, "k3Xa"), pos(7, ""), pos(3, "a:b"), pos(MAX_OFFSET)):
        assert StreamPosition.parse(str(position)) == position
    assert str(pos(42, "k3Xa")) == "42:k3Xa"


@pytest.mark.parametrize("text", ["", "42", ":e", "x:e", "-1:e", "+1:e", " 1:e", "٣:e"])
def test_stream_position_parse_rejects_malformed_text(text: str) -> None:
    with pytest.raises(ValueError, match="stream position"):
        StreamPosition.parse(text)


def test_stream_position_offset_must_fit_below_2_pow_53() -> None:
    with pytest.raises(ValueError, match="out of range"):
        StreamPosition(-1, "e")
    with pytest.raises(ValueError, match="out of range"):
        StreamPosition.parse(f"{1 << 53}:e")


def test_new_epoch_is_a_fresh_non_empty_string() -> None:
    epochs = {new_epoch() for _ in range(100)}
    assert len(epochs) == 100
    assert all(epochs)


# -- construction and append ----------------------------------------------------------------


def test_stream_rejects_empty_epoch_and_bad_bounds() -> None:
    with pytest.raises(ValueError, match="epoch"):
        ChannelStream("")
    with pytest.raises(ValueError, match="negative"):
        make(size=-1)
    with pytest.raises(ValueError, match="negative"):
        make(ttl_s=-1.0)
    with pytest.raises(ValueError, match="top"):
        make(top=MAX_OFFSET + 1)


def test_new_stream_is_at_offset_zero_of_its_epoch() -> None:
    stream = make()
    assert stream.position == pos(0)
    assert stream.top == 0
    assert len(stream) == 0


def test_append_assigns_contiguous_offsets_from_one() -> None:
    stream = make(size=100)
    info = ClientInfo("u1", "c1", b'{"name":"Ann"}', None)
    pubs = [stream.append(b"%d" % i, info, 5000 + i) for i in range(50)]
    assert [p.offset for p in pubs if p] == list(range(1, 51))
    first = pubs[0]
    assert first == Publication(1, b"0", info, 5000)
    assert stream.position == pos(50)


def test_append_drops_a_change_at_or_before_the_last_position() -> None:
    stream = make()
    assert stream.append(b"a", None, 1, CommitPosition(10, 0)) is not None
    assert stream.append(b"b", None, 1, CommitPosition(10, 1)) is not None
    assert stream.append(b"a", None, 1, CommitPosition(10, 0)) is None
    assert stream.append(b"b", None, 1, CommitPosition(10, 1)) is None
    assert stream.append(b"old", None, 1, CommitPosition(9, 99)) is None
    assert stream.top == 2
    pub = stream.append(b"c", None, 1, CommitPosition(11, 0))
    assert pub is not None
    assert pub.offset == 3
    assert stream.last_position == CommitPosition(11, 0)


def test_append_without_position_always_appends_and_keeps_last_position() -> None:
    stream = make(last_position=CommitPosition(5, 0))
    assert stream.append(b"x", None, 1) is not None
    assert stream.append(b"x", None, 1) is not None
    assert stream.last_position == CommitPosition(5, 0)
    assert stream.append(b"dup", None, 1, CommitPosition(5, 0)) is None
    assert stream.top == 2


def test_append_refuses_to_pass_the_largest_safe_offset() -> None:
    stream = make(top=MAX_OFFSET - 1)
    pub = stream.append(b"x", None, 1)
    assert pub is not None
    assert pub.offset == MAX_OFFSET
    with pytest.raises(OverflowError):
        stream.append(b"y", None, 1, CommitPosition(1, 0))
    assert stream.top == MAX_OFFSET
    assert stream.last_position is None


def test_history_keeps_only_the_newest_size_publications() -> None:
    stream = make(size=3)
    fill(stream, 10)
    assert len(stream) == 3
    assert offsets(stream.history(-1, None, False, 1000).publications) == [8, 9, 10]


@pytest.mark.parametrize(("size", "ttl_s"), [(0, 60.0), (10, 0.0)])
def test_zero_size_or_ttl_keeps_nothing_but_still_assigns_offsets(size: int, ttl_s: float) -> None:
    stream = make(size=size, ttl_s=ttl_s)
    fill(stream, 5)
    assert len(stream) == 0
    assert stream.top == 5
    assert stream.recover(pos(5), 1000).recovered
    assert not stream.recover(pos(4), 1000).recovered


def test_trim_drops_publications_exactly_when_their_ttl_has_passed() -> None:
    stream = make(ttl_s=10.0)
    stream.append(b"a", None, 1_000)
    stream.append(b"b", None, 5_000)
    stream.trim(10_999)
    assert len(stream) == 2
    stream.trim(11_000)
    assert offsets(stream.history(-1, None, False, 11_000).publications) == [2]
    stream.trim(15_000)
    assert len(stream) == 0
    assert stream.top == 2


def test_append_trims_expired_publications() -> None:
    stream = make(ttl_s=1.0)
    stream.append(b"a", None, 0)
    stream.append(b"b", None, 500)
    stream.append(b"c", None, 1_200)
    assert len(stream) == 2


def test_set_bounds_shrinks_history_from_the_oldest_end() -> None:
    stream = make(size=10)
    fill(stream, 8)
    stream.set_bounds(3, 60.0)
    assert offsets(stream.history(-1, None, False, 1000).publications) == [6, 7, 8]
    stream.set_bounds(10, 60.0)
    fill(stream, 2)
    assert offsets(stream.history(-1, None, False, 1000).publications) == [6, 7, 8, 9, 10]
    stream.set_bounds(10, 0.0)
    assert len(stream) == 0


# -- recover (centrifuge-protocol.md §5.3) --------------------------------------------------


def test_recover_returns_exactly_the_missed_publications_in_order() -> None:
    stream = make()
    pubs = fill(stream, 6)
    result = stream.recover(pos(2), 1000)
    assert result.recovered
    assert result.position == pos(6)
    assert list(result.publications) == pubs[2:]


def test_recover_from_zero_replays_everything_when_history_starts_at_one() -> None:
    stream = make()
    fill(stream, 4)
    result = stream.recover(pos(0), 1000)
    assert result.recovered
    assert offsets(result.publications) == [1, 2, 3, 4]


def test_recover_at_the_top_succeeds_with_nothing_to_replay() -> None:
    stream = make()
    assert stream.recover(pos(0), 0).recovered
    fill(stream, 3)
    result = stream.recover(pos(3), 1000)
    assert result.recovered
    assert list(result.publications) == []


def test_recover_with_empty_epoch_accepts_any_epoch() -> None:
    stream = make()
    fill(stream, 3)
    result = stream.recover(pos(1, ""), 1000)
    assert result.recovered
    assert offsets(result.publications) == [2, 3]


@pytest.mark.parametrize("epoch", ["other", "_", EPOCH + "x"])
def test_recover_with_another_epoch_is_not_recovered_and_replays_nothing(epoch: str) -> None:
    stream = make()
    fill(stream, 3)
    for offset in (0, 1, 3):
        result = stream.recover(pos(offset, epoch), 1000)
        assert not result.recovered
        assert result.position == pos(3)
        assert list(result.publications) == []


def test_recover_after_size_trim_never_replays_partially() -> None:
    stream = make(size=3)
    fill(stream, 10)
    assert not stream.recover(pos(6), 1000).recovered
    assert list(stream.recover(pos(6), 1000).publications) == []
    assert offsets(stream.recover(pos(7), 1000).publications) == [8, 9, 10]


def test_recover_after_ttl_trim_is_not_recovered() -> None:
    stream = make(ttl_s=10.0)
    stream.append(b"a", None, 0)
    stream.append(b"b", None, 8_000)
    assert offsets(stream.recover(pos(0), 9_000).publications) == [1, 2]
    result = stream.recover(pos(0), 10_000)
    assert not result.recovered
    assert list(result.publications) == []
    assert offsets(stream.recover(pos(1), 10_000).publications) == [2]
    assert not stream.recover(pos(1), 18_000).recovered
    assert stream.recover(pos(2), 18_000).recovered


def test_recover_with_an_offset_ahead_of_the_top_is_not_recovered() -> None:
    stream = make()
    fill(stream, 3)
    result = stream.recover(pos(4), 1000)
    assert not result.recovered
    assert result.position == pos(3)
    assert list(result.publications) == []


# -- history (centrifuge-protocol.md §2.7) --------------------------------------------------


@pytest.fixture
def ten() -> ChannelStream:
    stream = make(size=100)
    fill(stream, 10)
    return stream


def page(
    stream: ChannelStream, limit: int, since: int | None, reverse: bool = False, now_ms: int = 1000
) -> list[int]:
    result = stream.history(
        limit, None if since is None else pos(since), reverse, now_ms, max_limit=0
    )
    assert result.position == stream.position
    return offsets(result.publications)


def test_history_limit_zero_returns_only_the_position(ten: ChannelStream) -> None:
    result = ten.history(0, None, False, 1000)
    assert result.position == pos(10)
    assert list(result.publications) == []
    assert page(ten, 0, 3) == []
    assert page(ten, 0, None, reverse=True) == []


def test_history_without_since_pages_from_either_end(ten: ChannelStream) -> None:
    assert page(ten, -1, None) == list(range(1, 11))
    assert page(ten, 3, None) == [1, 2, 3]
    assert page(ten, 3, None, reverse=True) == [10, 9, 8]
    assert page(ten, -1, None, reverse=True) == list(range(10, 0, -1))
    assert page(ten, 50, None) == list(range(1, 11))


def test_history_all_and_large_limits_are_capped_by_max_limit(ten: ChannelStream) -> None:
    assert offsets(ten.history(-1, None, False, 1000, max_limit=4).publications) == [1, 2, 3, 4]
    assert offsets(ten.history(9, None, True, 1000, max_limit=2).publications) == [10, 9]
    assert offsets(ten.history(2, None, False, 1000, max_limit=4).publications) == [1, 2]


def test_history_since_returns_publications_after_the_offset(ten: ChannelStream) -> None:
    assert page(ten, -1, 7) == [8, 9, 10]
    assert page(ten, 2, 3) == [4, 5]
    assert page(ten, -1, 0) == list(range(1, 11))
    assert page(ten, -1, 10) == []
    assert page(ten, -1, 11) == []


def test_history_since_reverse_returns_publications_before_it_newest_first(
    ten: ChannelStream,
) -> None:
    assert page(ten, 3, 8, reverse=True) == [7, 6, 5]
    assert page(ten, -1, 3, reverse=True) == [2, 1]
    assert page(ten, -1, 1, reverse=True) == []
    assert page(ten, 2, 11, reverse=True) == [10, 9]
    assert page(ten, -1, 12, reverse=True) == []


def test_history_since_a_trimmed_offset_starts_at_the_oldest_kept() -> None:
    stream = make(size=3)
    fill(stream, 10)
    assert page(stream, -1, 2) == [8, 9, 10]
    assert page(stream, -1, 6, reverse=True) == []
    assert page(stream, -1, 9, reverse=True) == [8]


def test_history_reverse_since_offset_zero_is_a_bad_request(ten: ChannelStream) -> None:
    with pytest.raises(LogError) as caught:
        ten.history(5, pos(0, "wrong"), True, 1000)
    assert (caught.value.code, caught.value.message) == (107, "bad request")


def test_history_since_another_epoch_is_an_unrecoverable_position(ten: ChannelStream) -> None:
    with pytest.raises(LogError) as caught:
        ten.history(5, pos(3, "wrong"), False, 1000)
    assert (caught.value.code, caught.value.message) == (112, "unrecoverable position")
    assert str(caught.value) == "112 unrecoverable position"
    assert page(ten, 2, None) == [1, 2]
    assert offsets(ten.history(2, pos(3, ""), False, 1000).publications) == [4, 5]


def test_history_trims_by_ttl_first() -> None:
    stream = make(ttl_s=1.0)
    stream.append(b"a", None, 0)
    stream.append(b"b", None, 600)
    assert offsets(stream.history(-1, None, False, 1_000).publications) == [2]
    assert offsets(stream.history(-1, None, False, 1_600).publications) == []


# -- properties -----------------------------------------------------------------------------


@dataclass
class Model:
    """What the stream should hold, computed the slow, obvious way."""

    size: int
    ttl_ms: int
    pubs: list[Publication]
    now_ms: int = 0

    def kept(self) -> list[Publication]:
        if self.size == 0 or self.ttl_ms == 0:
            return []
        return [p for p in self.pubs[-self.size :] if p.time_ms > self.now_ms - self.ttl_ms]


ops = st.lists(
    st.tuples(
        st.sampled_from(["append", "append_dup", "trim"]),
        st.integers(min_value=0, max_value=700),
    ),
    max_size=60,
)


def run(size: int, ttl_s: int, script: list[tuple[str, int]]) -> tuple[ChannelStream, Model]:
    stream = make(size=size, ttl_s=float(ttl_s))
    model = Model(size, ttl_s * 1000, [])
    commit = 0
    for op, step_ms in script:
        model.now_ms += step_ms
        if op == "trim":
            stream.trim(model.now_ms)
            continue
        if op == "append_dup" and commit > 0:
            # A change read again after a crash: same or older position, dropped.
            again = CommitPosition(commit - step_ms % 2, 0)
            assert stream.append(b"x", None, model.now_ms, again) is None
            continue
        commit += 1
        pub = stream.append(b"x", None, model.now_ms, CommitPosition(commit, 0))
        assert pub is not None
        assert pub.offset == len(model.pubs) + 1
        model.pubs.append(pub)
    return stream, model


@settings(max_examples=300, deadline=None)
@given(size=st.integers(0, 8), ttl_s=st.integers(0, 3), script=ops)
def test_recover_is_an_exact_replay_or_nothing(
    size: int, ttl_s: int, script: list[tuple[str, int]]
) -> None:
    stream, model = run(size, ttl_s, script)
    top = len(model.pubs)
    kept_offsets = {p.offset for p in model.kept()}
    for since in range(top + 3):
        result = stream.recover(pos(since), model.now_ms)
        assert result.position == pos(top)
        missed = list(range(since + 1, top + 1))
        if result.recovered:
            assert offsets(result.publications) == missed
            assert list(result.publications) == model.pubs[since:top]
        else:
            assert list(result.publications) == []
        can = since <= top and all(o in kept_offsets for o in missed)
        assert result.recovered == can


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(0, 8),
    ttl_s=st.integers(0, 3),
    script=ops,
    limit=st.integers(-1, 5),
    reverse=st.booleans(),
    since=st.none() | st.integers(0, 70),
)
def test_history_pages_are_runs_of_the_kept_publications(
    size: int,
    ttl_s: int,
    script: list[tuple[str, int]],
    limit: int,
    reverse: bool,
    since: int | None,
) -> None:
    stream, model = run(size, ttl_s, script)
    if reverse and since == 0:
        return
    got = page(stream, limit, since, reverse, model.now_ms)
    kept = [p.offset for p in model.kept()]
    if since is not None and reverse and since - 1 not in kept:
        # Go starts a backward page at since - 1 itself, and has none if that is not kept.
        kept = []
    elif since is not None:
        kept = [o for o in kept if o < since] if reverse else [o for o in kept if o > since]
    if reverse:
        kept.reverse()
    assert got == (kept if limit < 0 else kept[:limit])
