"""Refresh-token outcomes and opaque tokens, on plain data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncline.apps.auth.refresh import (
    REFRESH_TOKEN_TTL,
    RefreshOutcome,
    StoredRefresh,
    decide_refresh,
    new_token,
    token_hash,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def stored(**changes: object) -> StoredRefresh:
    fields: dict[str, object] = {
        "rotated_at": None,
        "created_at": NOW - timedelta(minutes=20),
        "session_revoked_at": None,
        "session_expires_at": NOW + timedelta(days=29),
    }
    fields.update(changes)
    return StoredRefresh(**fields)  # type: ignore[arg-type]


def test_a_fresh_token_rotates() -> None:
    assert decide_refresh(stored(), NOW) is RefreshOutcome.ROTATE


def test_an_unknown_token_is_invalid() -> None:
    assert decide_refresh(None, NOW) is RefreshOutcome.UNKNOWN
    assert RefreshOutcome.UNKNOWN.value == "invalid_refresh_token"


def test_a_rotated_token_is_reuse() -> None:
    outcome = decide_refresh(stored(rotated_at=NOW - timedelta(minutes=5)), NOW)
    assert outcome is RefreshOutcome.REUSED
    assert outcome.value == "token_reused"


GRACE = timedelta(seconds=30)
ROTATED = NOW - timedelta(seconds=5)


def test_a_token_rotated_moments_ago_whose_successor_is_unused_is_reissued() -> None:
    token = stored(rotated_at=ROTATED, successor_created_at=ROTATED)
    assert decide_refresh(token, NOW, GRACE) is RefreshOutcome.REISSUE
    assert decide_refresh(token, ROTATED + GRACE, GRACE) is RefreshOutcome.REISSUE


@pytest.mark.parametrize(
    ("token", "grace"),
    [
        # past the grace
        (stored(rotated_at=ROTATED, successor_created_at=ROTATED), timedelta(seconds=4)),
        # the successor was used (or already replaced once): a newer token is live
        (stored(rotated_at=ROTATED, successor_created_at=NOW - timedelta(seconds=1)), GRACE),
        # no live token left in the session
        (stored(rotated_at=ROTATED, successor_created_at=None), GRACE),
        # grace off
        (stored(rotated_at=ROTATED, successor_created_at=ROTATED), timedelta(0)),
    ],
)
def test_other_rotated_tokens_are_reuse(token: StoredRefresh, grace: timedelta) -> None:
    assert decide_refresh(token, NOW, grace) is RefreshOutcome.REUSED


def test_a_revoked_session_refuses_even_within_the_grace() -> None:
    token = stored(rotated_at=ROTATED, successor_created_at=ROTATED, session_revoked_at=NOW)
    assert decide_refresh(token, NOW, GRACE) is RefreshOutcome.REVOKED


@pytest.mark.parametrize(
    "changes",
    [
        {"session_revoked_at": NOW - timedelta(seconds=1)},
        # A revoked family stays revoked: its rotated tokens don't read as "reused" again.
        {"session_revoked_at": NOW, "rotated_at": NOW - timedelta(minutes=1)},
        {"session_expires_at": NOW},
        {"created_at": NOW - REFRESH_TOKEN_TTL},
    ],
)
def test_revoked_or_expired_sessions_refuse(changes: dict[str, object]) -> None:
    outcome = decide_refresh(stored(**changes), NOW)
    assert outcome is RefreshOutcome.REVOKED
    assert outcome.value == "session_revoked"


def test_tokens_are_random_urlsafe_and_stored_as_sha256() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    token = tokens.pop()
    assert len(token) == 43
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    digest = token_hash(token)
    assert len(digest) == 32
    assert digest == token_hash(token)
    assert digest != token_hash(token + "x")
