"""The live-session cache on plain data: expiry, revocation, a lookup racing a revocation."""

from __future__ import annotations

import uuid

from syncline.apps.auth.live_sessions import LiveSessionCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_remembered_session_is_live_until_the_ttl_passes() -> None:
    clock = Clock()
    cache = LiveSessionCache(2.0, clock=clock)
    sid = uuid.uuid4()
    assert not cache.is_live(sid, 1)
    cache.remember(sid, 1, cache.generation)
    assert cache.is_live(sid, 1)
    assert not cache.is_live(sid, 2)  # another user's claim on the same session id
    clock.now += 1.9
    assert cache.is_live(sid, 1)
    clock.now += 0.2
    assert not cache.is_live(sid, 1)


def test_a_revocation_forgets_every_session() -> None:
    cache = LiveSessionCache(60.0, clock=Clock())
    sids = [uuid.uuid4() for _ in range(3)]
    for sid in sids:
        cache.remember(sid, 1, cache.generation)
    cache.revoked()
    assert not any(cache.is_live(sid, 1) for sid in sids)


def test_a_lookup_that_raced_a_revocation_is_not_remembered() -> None:
    cache = LiveSessionCache(60.0, clock=Clock())
    sid = uuid.uuid4()
    started = cache.generation  # the lookup reads PostgreSQL…
    cache.revoked()  # …while a revocation commits
    cache.remember(sid, 1, started)
    assert not cache.is_live(sid, 1)


def test_size_is_bounded_and_expired_entries_go_first() -> None:
    clock = Clock()
    cache = LiveSessionCache(1.0, max_entries=3, clock=clock)
    old = [uuid.uuid4() for _ in range(3)]
    for sid in old:
        cache.remember(sid, 1, cache.generation)
    clock.now += 5
    fresh = uuid.uuid4()
    cache.remember(fresh, 1, cache.generation)
    assert cache.is_live(fresh, 1)
    assert len(cache._until) == 1


def test_a_zero_ttl_disables_the_cache() -> None:
    cache = LiveSessionCache(0.0, clock=Clock())
    sid = uuid.uuid4()
    cache.remember(sid, 1, cache.generation)
    assert not cache.is_live(sid, 1)
