"""Password strength rules and argon2id hashing, on plain data."""

from __future__ import annotations

import asyncio

import pytest
from argon2 import PasswordHasher, Type

from syncline.apps.auth.passwords import (
    HASHER,
    MAX_PASSWORD_LENGTH,
    AsyncHasher,
    WeakPassword,
    check_password_strength,
    hash_password_sync,
    needs_rehash,
    verify_password_sync,
)


@pytest.mark.parametrize(
    ("password", "username", "reason"),
    [
        ("short1", "ann", "at least 10"),
        ("x1" * 65, "ann", "at most 128"),
        ("onlyletterslong", "ann", "a letter and a digit"),
        ("1234567890123", "ann", "a letter and a digit"),
        ("my-Annabel-2024", "annabel", "username"),
        ("Password123", "ann", "too common"),
        ("QWERTY123456", "ann", "too common"),
    ],
)
def test_weak_passwords_are_refused_with_the_reason(
    password: str, username: str, reason: str
) -> None:
    with pytest.raises(WeakPassword, match=reason):
        check_password_strength(password, username)


@pytest.mark.parametrize(
    "password",
    ["Qz7v-Km9x-Wr4t", "correct horse 9 battery", "é" * 9 + "1", "a1" + "b" * 126],
)
def test_strong_passwords_pass(password: str) -> None:
    check_password_strength(password, "ann")
    assert len(password) <= MAX_PASSWORD_LENGTH


def test_hash_is_argon2id_with_the_configured_parameters() -> None:
    stored = hash_password_sync("Qz7v-Km9x-Wr4t")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert verify_password_sync(stored, "Qz7v-Km9x-Wr4t")
    assert not verify_password_sync(stored, "Qz7v-Km9x-Wr4T")
    # Salted: the same password never hashes the same twice.
    assert hash_password_sync("Qz7v-Km9x-Wr4t") != stored


def test_no_account_and_broken_hashes_never_verify() -> None:
    assert not verify_password_sync(None, "anything-1")
    assert not verify_password_sync("x", "anything-1")  # seed rows, imported junk
    assert not verify_password_sync("$argon2id$v=19$garbage", "anything-1")


def test_old_parameters_need_a_rehash() -> None:
    weaker = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1, type=Type.ID)
    assert needs_rehash(weaker.hash("Qz7v-Km9x-Wr4t"))
    assert not needs_rehash(HASHER.hash("Qz7v-Km9x-Wr4t"))
    assert needs_rehash("not a hash")


async def test_async_hasher_runs_off_the_loop_and_bounds_concurrency() -> None:
    hasher = AsyncHasher(concurrency=1)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    hashes = await asyncio.gather(*(hasher.hash(f"Qz7v-Km9x-{i}") for i in range(3)))
    task.cancel()
    # The loop kept running while three ~30 ms hashes were computed in a thread.
    assert ticks >= 10
    assert all(
        await asyncio.gather(*(hasher.verify(h, f"Qz7v-Km9x-{i}") for i, h in enumerate(hashes)))
    )
    assert not await hasher.verify(hashes[0], "Qz7v-Km9x-1")
