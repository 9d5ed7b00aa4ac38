"""VerifiedTokens: a verified access token's claims are reused until the token expires."""

from __future__ import annotations

import time

import pytest

from syncline.apps.auth.tokens import AccessTokenError, VerifiedTokens, issue_access_token

SECRET = "s" * 32


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def token(user_id: int = 1, ttl_s: int = 60, secret: str = SECRET) -> str:
    return issue_access_token(
        secret,
        user_id=user_id,
        session_id="sid",
        username=f"u{user_id}",
        display_name="U",
        ttl_s=ttl_s,
    )


def test_claims_are_decoded_once_and_kept_until_the_token_expires() -> None:
    clock = Clock()
    tokens = VerifiedTokens(SECRET, clock=clock)
    raw = token(ttl_s=60)
    first = tokens.claims(raw)
    assert (first.user_id, first.session_id, first.username) == (1, "sid", "u1")
    assert tokens.claims(raw) is first  # from the cache, not decoded again
    clock.now = first.expires_at - 0.001
    assert tokens.claims(raw) is first
    clock.now = first.expires_at  # PyJWT's rule: exp <= now is expired
    with pytest.raises(AccessTokenError) as err:
        tokens.claims(raw)
    assert err.value.expired
    assert len(tokens) == 0


def test_tokens_that_do_not_verify_are_refused_every_time_and_never_kept() -> None:
    tokens = VerifiedTokens(SECRET)
    forged = token(secret="x" * 32)
    tampered = token()[:-2] + "AA"
    expired = token(ttl_s=-5)
    for raw in (forged, tampered, "not.a.token", expired, forged):
        with pytest.raises(AccessTokenError) as err:
            tokens.claims(raw)
        assert err.value.expired == (raw == expired)
    assert len(tokens) == 0


def test_the_least_recently_used_token_goes_first_when_full() -> None:
    tokens = VerifiedTokens(SECRET, max_entries=2)
    a, b, c = token(1), token(2), token(3)
    kept_a = tokens.claims(a)
    kept_b = tokens.claims(b)
    assert tokens.claims(a) is kept_a  # a is now the most recently used
    kept_c = tokens.claims(c)  # b goes
    assert len(tokens) == 2
    assert tokens.claims(a) is kept_a
    assert tokens.claims(c) is kept_c
    again_b = tokens.claims(b)  # decoded again: equal claims, a new object
    assert again_b == kept_b and again_b is not kept_b
