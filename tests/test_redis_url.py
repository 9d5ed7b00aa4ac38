"""The one Redis URL syntax of the engine, presence, the bus and the rate limits."""

from __future__ import annotations

import pytest

from syncline.redis_url import RedisUrl, hash_tag, parse_redis_url


def test_syncline_options_are_taken_out_and_the_rest_left_for_redis_py() -> None:
    assert parse_redis_url("redis://h:1/0") == RedisUrl(
        "redis://h:1/0", False, "syncline", None, None, "redis"
    )
    parsed = parse_redis_url(
        "rediss://u:p@h:1/2?cluster=true&prefix=p1&durable=false&meta_ttl=5&health_check_interval=3"
    )
    assert parsed == RedisUrl(
        "rediss://u:p@h:1/2?health_check_interval=3", True, "p1", False, 5.0, "rediss"
    )


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://h/0",
        "memory",
        "redis://h/0?cluster=maybe",
        "redis://h/0?durable=2",
        "redis://h/0?meta_ttl=soon",
        "redis://h/0?prefix=",
        "redis://h/0?prefix=a{b}",
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        parse_redis_url(url)


def test_a_channel_is_its_own_hash_tag_unless_it_has_braces() -> None:
    assert hash_tag("room:42") == "room:42"
    assert hash_tag("a{b}c").startswith("$")  # no valid channel name holds a '$'
    assert hash_tag("dialog#42,43") == "dialog#42,43"
    assert hash_tag("") != hash_tag("x")
    assert hash_tag("a{b}c") == hash_tag("a{b}c")
