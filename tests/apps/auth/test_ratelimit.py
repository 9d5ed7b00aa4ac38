"""Rate limits with the real `limits` moving window in memory."""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest
from limits.aio.storage import MemoryStorage, RedisClusterStorage, RedisStorage

from syncline.apps.auth.ratelimit import RateLimited, RateLimiter, Rule, storage_for
from syncline.errors import ConfigError
from syncline.settings import load_settings


def limiter(**limits: Any) -> RateLimiter:
    return RateLimiter(load_settings(None, **limits))


async def test_over_the_limit_is_refused_with_retry_after() -> None:
    rl = limiter(rate_limit_login_ip="3/minute")
    for _ in range(3):
        await rl.hit(Rule.LOGIN_IP, "10.0.0.1")
    with pytest.raises(RateLimited) as info:
        await rl.hit(Rule.LOGIN_IP, "10.0.0.1")
    assert 1 <= info.value.retry_after <= 60
    assert info.value.rule is Rule.LOGIN_IP


async def test_keys_and_rules_are_counted_apart() -> None:
    rl = limiter(rate_limit_login_ip="1/minute", rate_limit_register_ip="1/minute")
    await rl.hit(Rule.LOGIN_IP, "10.0.0.1")
    await rl.hit(Rule.LOGIN_IP, "10.0.0.2")
    await rl.hit(Rule.REGISTER_IP, "10.0.0.1")
    with pytest.raises(RateLimited):
        await rl.hit(Rule.LOGIN_IP, "10.0.0.1")


async def test_every_limit_of_a_rule_applies_and_a_refusal_uses_none() -> None:
    rl = limiter(rate_limit_reset_account="2/second;3/hour")
    await rl.hit(Rule.RESET_ACCOUNT, "a")
    await rl.hit(Rule.RESET_ACCOUNT, "a")
    with pytest.raises(RateLimited) as info:
        await rl.hit(Rule.RESET_ACCOUNT, "a")
    assert info.value.retry_after == 1
    time.sleep(1.05)
    await rl.hit(Rule.RESET_ACCOUNT, "a")  # the 1-second window moved on; 3rd of the hour
    time.sleep(1.05)
    with pytest.raises(RateLimited) as info:
        await rl.hit(Rule.RESET_ACCOUNT, "a")
    assert info.value.retry_after > 3500  # the hourly limit now


async def test_an_empty_setting_means_no_limit() -> None:
    rl = limiter(rate_limit_register_ip="")
    for _ in range(200):
        await rl.hit(Rule.REGISTER_IP, "10.0.0.1")


def test_defaults_and_bad_settings() -> None:
    settings = load_settings(None)
    assert settings.rate_limit_login_account == "10/minute"
    assert settings.rate_limit_register_ip == "5/minute"
    assert settings.rate_limit_reset_account == "3/hour"
    with pytest.raises(ConfigError, match="rate_limit_login_ip"):
        load_settings(None, rate_limit_login_ip="often")


async def test_with_a_redis_engine_every_process_counts_the_same_attempts(redis_url: str) -> None:
    """Two limiters over the engine's Redis, as two processes would have: one allowance."""
    settings = load_settings(
        None,
        jwt_secret="k" * 40,
        engine=f"{redis_url}?prefix=t{secrets.token_hex(3)}",
        rate_limit_login_ip="3/minute",
    )
    first, second = RateLimiter(settings), RateLimiter(settings)
    try:
        ip = f"198.51.100.{secrets.randbelow(250)}"
        await first.hit(Rule.LOGIN_IP, ip)
        await second.hit(Rule.LOGIN_IP, ip)
        await first.hit(Rule.LOGIN_IP, ip)
        with pytest.raises(RateLimited) as refused:
            await second.hit(Rule.LOGIN_IP, ip)
        assert refused.value.retry_after >= 1
        # Another address has its own allowance.
        await second.hit(Rule.LOGIN_IP, "198.51.100.251")
    finally:
        await first.close()
        await second.close()


def test_the_storage_follows_the_engine_url() -> None:
    assert isinstance(storage_for("memory"), MemoryStorage)
    assert isinstance(storage_for("redis://127.0.0.1:1/0?prefix=x&durable=true"), RedisStorage)
    assert isinstance(storage_for("redis://127.0.0.1:1/0?cluster=true"), RedisClusterStorage)
