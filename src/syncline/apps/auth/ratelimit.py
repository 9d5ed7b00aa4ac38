"""Rate limits on sign-in, registration and mailed tokens, per client IP and per account."""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisClusterStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from syncline.redis_url import parse_redis_url
from syncline.settings import Settings

# Account keys are what the client typed (folded); cap them so a key can't be a megabyte.
MAX_KEY_LENGTH = 256


class Rule(enum.Enum):
    """A limited action and who it is counted for; the value names its setting."""

    LOGIN_IP = "rate_limit_login_ip"
    LOGIN_ACCOUNT = "rate_limit_login_account"
    REGISTER_IP = "rate_limit_register_ip"
    RESET_IP = "rate_limit_reset_ip"
    RESET_ACCOUNT = "rate_limit_reset_account"


class RateLimited(Exception):
    """Over a limit; try again in `retry_after` seconds."""

    def __init__(self, rule: Rule, retry_after: int) -> None:
        super().__init__(f"too many attempts; try again in {retry_after} s")
        self.rule = rule
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class _Limits:
    items: tuple[RateLimitItem, ...]


def storage_for(engine: str) -> Storage:
    """Where the counters live: this process's memory, or the engine's Redis, so that every
    process of a cluster counts the same attempts (redis-py, the client the engine uses)."""
    if engine == "memory":
        return MemoryStorage()
    target = parse_redis_url(engine)
    prefix = target.prefix + ":limits"
    if target.cluster:
        uri = "async+redis+cluster" + target.url.removeprefix(target.scheme)
        return RedisClusterStorage(uri, implementation="redispy", key_prefix=prefix)
    uri = "async+" + target.url
    return RedisStorage(uri, implementation="redispy", key_prefix=prefix)


class RateLimiter:
    """Moving-window limits from the settings, counted where `settings.engine` says.

    A moving window counts every attempt of the last minute/hour exactly, so a burst at a
    window boundary can't double the allowance (a fixed window allows 2x there). With a Redis
    engine the counters are in Redis, shared by every process and node.
    """

    def __init__(self, settings: Settings, storage: Storage | None = None) -> None:
        self._storage = storage if storage is not None else storage_for(settings.engine)
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._rules = {
            rule: _Limits(
                tuple(parse_many(value)) if (value := getattr(settings, rule.value)) else ()
            )
            for rule in Rule
        }

    async def hit(self, rule: Rule, key: str) -> None:
        """Count one attempt for `key` under `rule`; raise RateLimited if over any limit.

        All limits of the rule are tested before any is counted: an attempt refused by the
        hourly limit does not also use up the per-minute allowance.
        """
        key = key[:MAX_KEY_LENGTH]
        items = self._rules[rule].items
        for item in items:
            if not await self._limiter.test(item, rule.name, key):
                raise RateLimited(rule, await self._retry_after(item, rule, key))
        for item in items:
            if not await self._limiter.hit(item, rule.name, key):
                # A concurrent attempt took the last slot between test and hit.
                raise RateLimited(rule, await self._retry_after(item, rule, key))

    async def close(self) -> None:
        """Close the Redis connections of the counters (none in memory)."""
        # `limits` has no close of its own; its redis-py bridge keeps the client it made.
        client = getattr(getattr(self._storage, "bridge", None), "storage", None)
        if client is not None:
            await client.aclose()

    async def _retry_after(self, item: RateLimitItem, rule: Rule, key: str) -> int:
        stats = await self._limiter.get_window_stats(item, rule.name, key)
        return max(1, math.ceil(stats.reset_time - time.time()))
