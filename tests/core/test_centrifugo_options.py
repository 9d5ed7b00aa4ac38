"""Centrifugo's channel options carried into syncline.toml: accepted where the meaning is the
same, refused with the reason where it is not, in both of Centrifugo's layouts."""

from __future__ import annotations

from typing import Any

import pytest

from syncline.core.centrifugo_options import UNSUPPORTED, parse_duration_s, translate
from syncline.core.namespaces import (
    ConfigError,
    Namespace,
    NamespaceRegistry,
    SubscribePolicy,
    load_namespaces,
)


def one(options: dict[str, Any], name: str = "chat") -> Namespace:
    namespace = load_namespaces({name: options}).get(name)
    assert namespace is not None
    return namespace


def problems(options: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        load_namespaces({"chat": options})
    return "\n".join(info.value.problems)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("300s", 300), ("5m", 300), ("1h30m", 5400), ("1.5m", 90), ("0s", 0), ("120", 120), (60, 60)],
)
def test_durations_as_centrifugo_writes_them(text: str | int, seconds: int) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["5 minutes", "1.5s", "300ms", "s", "-5s"])
def test_durations_that_are_not_whole_seconds_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|whole number"):
        parse_duration_s(text)


def test_a_centrifugo_namespace_reads_as_the_same_syncline_one() -> None:
    chat = one(
        {
            "history_size": 100,
            "history_ttl": "300s",
            "force_recovery": True,
            "presence": True,
            "join_leave": True,
            "force_push_join_leave": True,
            "allow_subscribe_for_client": True,
            "allow_publish_for_subscriber": False,
            "allow_presence_for_subscriber": True,
            "allow_history_for_subscriber": True,
            "allow_user_limited_channels": True,
            "history_meta_ttl": "0s",
            "subscribe_proxy_enabled": False,  # zero values ask for nothing
        }
    )
    assert chat.model_dump(exclude={"name"}) == {
        **Namespace().model_dump(exclude={"name"}),
        "history_size": 100,
        "history_ttl": 300,
        "recover": True,
        "presence": True,
        "join_leave": True,
        "subscribe": SubscribePolicy.AUTHENTICATED,
        "allow_history": True,
        "allow_presence": True,
        "allow_user_limited_channels": True,
    }


@pytest.mark.parametrize(
    ("options", "policy"),
    [
        ({"allow_subscribe_for_client": True}, SubscribePolicy.AUTHENTICATED),
        (
            {"allow_subscribe_for_client": True, "allow_subscribe_for_anonymous": True},
            SubscribePolicy.PUBLIC,
        ),
        # Centrifugo's default: without allow_subscribe_for_client only a token lets one in.
        ({"force_recovery": False}, SubscribePolicy.TOKEN),
        ({"allow_user_limited_channels": True, "presence": True}, SubscribePolicy.AUTHENTICATED),
    ],
)
def test_the_subscribe_policy_from_centrifugo_flags(
    options: dict[str, Any], policy: SubscribePolicy
) -> None:
    assert one(options).subscribe is policy


def test_syncline_names_alone_keep_syncline_defaults() -> None:
    # allow_user_limited_channels is a name both share: no Centrifugo defaults are implied.
    assert one({"allow_user_limited_channels": True}).subscribe is SubscribePolicy.AUTHENTICATED
    assert translate({"presence": True}).options == {"presence": True}


def test_publish_for_client_is_refused_where_not_every_user_may_subscribe() -> None:
    text = problems({"allow_publish_for_client": True})  # token-only namespace
    assert "allow_publish_for_client: Syncline lets a client publish only where it may" in text
    chat = one({"allow_subscribe_for_client": True, "allow_publish_for_client": True})
    assert chat.allow_publish


def test_anonymous_access_must_be_said_as_in_centrifugo() -> None:
    public = {"allow_subscribe_for_client": True, "allow_subscribe_for_anonymous": True}
    text = problems({**public, "allow_publish_for_subscriber": True})
    assert "Syncline lets anonymous clients publish there too" in text
    assert one(
        {**public, "allow_publish_for_subscriber": True, "allow_publish_for_anonymous": True}
    )
    text = problems({"allow_subscribe_for_client": True, "allow_history_for_anonymous": True})
    assert "allow_history_for_anonymous needs allow_history_for_subscriber" in text
    assert "allow_subscribe_for_anonymous needs allow_subscribe_for_client" in problems(
        {"allow_subscribe_for_anonymous": True}
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"subscribe": "public", "allow_subscribe_for_client": True}, "not both"),
        ({"recover": True, "force_recovery": True, "history_size": 1, "history_ttl": 1}, "both"),
        ({"allow_history": True, "allow_history_for_subscriber": True}, "not both"),
        ({"force_recovery_mode": "cache"}, "only the stream recovery mode"),
        ({"channel_regex": "^[a-z]+$"}, "channel_pattern"),
        ({"subscribe_proxy_enabled": True}, "no proxies"),
        ({"force_positioning": True}, "add force_recovery"),
        ({"force_push_join_leave": True, "presence": True}, "needs join_leave"),
        ({"join_leave": True}, "join_leave = true needs presence = true"),
        ({"allow_recovery": "yes"}, "must be true or false"),
        ({"history_ttl": "1.5s"}, "not a whole number of seconds"),
        ({"no_such_option": 1}, "unknown option"),
    ],
)
def test_options_that_differ_or_are_missing_are_errors(
    options: dict[str, Any], message: str
) -> None:
    assert message in problems(options)


def test_every_unsupported_option_set_is_named_with_its_reason() -> None:
    for name, why in UNSUPPORTED.items():
        text = problems({"allow_subscribe_for_client": True, name: True})
        assert f"{name}: Centrifugo's option is not supported by Syncline: {why}" in text


def test_accepted_differences_are_noted() -> None:
    registry = load_namespaces(
        {
            "chat": {
                "history_size": 10,
                "history_ttl": "1m",
                "allow_recovery": True,
                "history_meta_ttl": "720h",
                "presence": True,
                "join_leave": True,
            }
        }
    )
    notes = "\n".join(registry.notes)
    assert "[namespaces.chat] allow_recovery: every subscription is recoverable" in notes
    assert "history_meta_ttl is ignored" in notes
    assert "join_leave: joins and leaves go to every subscriber" in notes


def test_centrifugos_list_layout() -> None:
    registry = load_namespaces(
        [
            {"name": "chat", "presence": True, "allow_subscribe_for_client": True},
            {"name": "default", "history_size": 10, "history_ttl": "10s", "force_recovery": True},
        ]
    )
    assert isinstance(registry, NamespaceRegistry)
    chat, default = registry.get("chat"), registry.get("")
    # Centrifugo's layout, Centrifugo's defaults: without allow_subscribe_for_client, a token.
    assert default is not None and default.subscribe is SubscribePolicy.TOKEN
    personal = load_namespaces([{"name": "personal", "allow_user_limited_channels": True}])
    assert personal.get("personal").subscribe is SubscribePolicy.TOKEN  # type: ignore[union-attr]
    assert chat is not None and chat.presence
    assert default is not None and default.recover and default.history_ttl == 10
    with pytest.raises(ConfigError) as info:
        load_namespaces([{"presence": True}, {"name": "a"}, {"name": "a"}, "x"])
    assert info.value.problems == [
        "[namespaces[0]] must be a table with a name, as in Centrifugo",
        "[namespaces[3]] must be a table with a name, as in Centrifugo",
        "[namespaces[2] (a)] configures 'a' a second time",
    ]


def test_an_option_syncline_has_is_never_translated_away() -> None:
    raw = {"allowed_delta_types": ["fossil"], "allow_subscribe_for_client": True}
    kept = translate(raw, known={"allowed_delta_types"})
    assert kept.options["allowed_delta_types"] == ["fossil"]
    assert kept.problems == []
    refused = translate({"delta_publish": True})
    assert refused.problems == [
        "delta_publish: Centrifugo's option is not supported by Syncline: delta is chosen per "
        "subscription (allowed_delta_types), not per publish"
    ]
    assert translate({"allowed_delta_types": [], "force_recovery": False}).problems == []


def test_client_publications_enter_history_as_in_centrifugo() -> None:
    registry = load_namespaces(
        [
            {
                "name": "chat",
                "allow_subscribe_for_client": True,
                "allow_publish_for_subscriber": True,
                "history_size": 10,
                "history_ttl": "60s",
            }
        ]
    )
    chat = registry.get("chat")
    assert chat is not None and chat.allow_publish and chat.client_publish_history
    assert registry.notes == (
        "[namespaces[0] (chat)] client publications take offsets and enter history, as in "
        "Centrifugo (client_publish_history = true; docs/topics/client-publish-history.md)",
    )
