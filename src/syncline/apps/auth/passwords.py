"""Password hashing (argon2id) and the strength rules a new password must meet."""

from __future__ import annotations

import asyncio
import functools

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 128

# OWASP's argon2id baseline (19 MiB, 2 passes, 1 lane): ~30 ms per hash on one core here.
# Stronger settings cost every sign-in the same factor in CPU and memory; a stored hash
# records its own parameters, so raising these later upgrades hashes on the next sign-in.
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, type=Type.ID)

# At most this many hashes at once: each holds 19 MiB, and a burst of sign-ins must not take
# every core (or the memory) from the API and the gateway.
CONCURRENT_HASHES = 2

# Common passwords that pass the length, letter and digit rules; the shorter classics are
# already refused by the length rule. Compared case-insensitively.
COMMON_PASSWORDS = frozenset(
    {
        "password123",
        "password1234",
        "password12345",
        "password123!",
        "passw0rd123",
        "p@ssw0rd123",
        "password1!",
        "qwerty12345",
        "qwerty123456",
        "qwertyuiop1",
        "qwertyuiop123",
        "1qaz2wsx3edc",
        "1q2w3e4r5t",
        "1q2w3e4r5t6y",
        "q1w2e3r4t5",
        "q1w2e3r4t5y6",
        "a1b2c3d4e5",
        "abc1234567",
        "abcd123456",
        "abcdef1234",
        "123456789a",
        "a123456789",
        "1234567890a",
        "1234567890q",
        "123456789abc",
        "asdfghjkl1",
        "zxcvbnm123",
        "iloveyou123",
        "welcome123",
        "welcome2024",
        "welcome2025",
        "welcome2026",
        "letmein123",
        "admin12345",
        "admin123456",
        "administrator1",
        "changeme123",
        "trustno1234",
        "football123",
        "baseball123",
        "basketball1",
        "monkey12345",
        "dragon12345",
        "sunshine123",
        "princess123",
        "superman123",
        "starwars123",
        "michael123",
        "computer123",
        "internet123",
        "summer2024",
        "summer2025",
        "summer2026",
        "winter2024",
        "winter2025",
        "winter2026",
        "spring2025",
        "autumn2025",
        "syncline123",
    }
)


class WeakPassword(ValueError):
    """A new password that breaks a strength rule; the message says which."""


def check_password_strength(password: str, username: str = "") -> None:
    """Raise WeakPassword unless the password meets every rule."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"the password may have at most {MAX_PASSWORD_LENGTH} characters")
    if not any(c.isalpha() for c in password) or not any(c.isdigit() for c in password):
        raise WeakPassword("the password needs a letter and a digit")
    folded = password.casefold()
    if username and username.casefold() in folded:
        raise WeakPassword("the password must not contain the username")
    if folded in COMMON_PASSWORDS:
        raise WeakPassword("this password is too common")


def hash_password_sync(password: str) -> str:
    """The argon2id hash of a password (blocking, ~30 ms)."""
    return HASHER.hash(password)


@functools.cache
def _dummy_hash() -> str:
    # Verified against when the account does not exist, so that "no such user" takes as long
    # as "wrong password" (no account enumeration by timing).
    return HASHER.hash("no account has this password 7")


def verify_password_sync(stored_hash: str | None, password: str) -> bool:
    """True if the password matches; None (no account) costs the same and is False."""
    try:
        return HASHER.verify(stored_hash or _dummy_hash(), password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with other parameters than today's."""
    try:
        return HASHER.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


class AsyncHasher:
    """Hashing and verifying off the event loop (argon2-cffi releases the GIL), bounded."""

    def __init__(self, concurrency: int = CONCURRENT_HASHES) -> None:
        # Made per running system: an asyncio.Semaphore belongs to the loop that first waits.
        self._slots = asyncio.Semaphore(concurrency)

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(hash_password_sync, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        async with self._slots:
            return await asyncio.to_thread(verify_password_sync, stored_hash, password)
