"""A configuration written for Centrifugo, met by the official centrifuge-python SDK: short
development keys, anonymous tokens, user-limited channels and Centrifugo's option names."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import jwt
import pytest
from cent import AsyncClient as CentClient
from cent import HistoryRequest as CentHistory
from cent import PresenceStatsRequest as CentPresenceStats
from cent import PublishRequest as CentPublish
from centrifuge import (
    Client,
    ClientEventHandler,
    PublicationContext,
    ServerSubscribedContext,
    SubscribedContext,
    SubscriptionEventHandler,
    UnsubscribedContext,
)
from jwt.warnings import InsecureKeyLengthWarning

from syncline.errors import ConfigError

from helpers.live_server import start_live_server, stop_live_server
from helpers.waiting import eventually

# The key of Centrifugo's examples and of many a test setup written for it.
CENTRIFUGO_EXAMPLE_KEY = "secret"


class ServerSubs(ClientEventHandler):  # type: ignore[misc]
    """Records the channels the server subscribed the connection to."""

    def __init__(self) -> None:
        self.channels: list[str] = []

    async def on_subscribed(self, ctx: ServerSubscribedContext) -> None:
        self.channels.append(ctx.channel)


class SubEvents(SubscriptionEventHandler):  # type: ignore[misc]
    """Records whether a subscription succeeded, what it received and the code it ended with."""

    def __init__(self) -> None:
        self.subscribed = 0
        self.unsubscribed: list[int] = []
        self.pubs: list[Any] = []

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.pubs.append(ctx.pub.data)

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.subscribed += 1

    async def on_unsubscribed(self, ctx: UnsubscribedContext) -> None:
        self.unsubscribed.append(ctx.code)


async def refused_code(client: Client, channel: str) -> int:
    """The code a subscription to ``channel`` was refused with (it must be refused)."""
    events = SubEvents()
    sub = client.new_subscription(channel, events=events)
    await sub.subscribe()
    await eventually(lambda: bool(events.unsubscribed or events.subscribed))
    assert not events.subscribed, f"{channel} was allowed"
    client.remove_subscription(sub)
    return events.unsubscribed[0]


def short_key_token(claims: dict[str, Any]) -> str:
    """A token signed with the 6-byte example key (PyJWT rightly warns about it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, CENTRIFUGO_EXAMPLE_KEY, algorithm="HS256")


async def test_a_token_signed_with_a_short_key_connects_in_development(schema_url: str) -> None:
    server = await start_live_server(
        schema_url, jwt_secret=CENTRIFUGO_EXAMPLE_KEY, insecure_short_keys=True
    )
    try:
        handler = ServerSubs()
        client = Client(server.ws_url, token=short_key_token({"sub": "42"}), events=handler)
        await client.connect()
        await client.ready(timeout=5)
        # Connected as user 42: the server subscribed it to that user's personal channel.
        await eventually(lambda: handler.channels == ["user:42"])
        await client.disconnect()
    finally:
        await stop_live_server(server)


# A Centrifugo-style public channel with presence (who is in the lobby, anonymous included).
LOBBY = {"lobby": {"subscribe": "public", "presence": True, "allow_presence": True}}


async def test_tokens_without_sub_are_the_anonymous_user_counted_once(schema_url: str) -> None:
    server = await start_live_server(schema_url, namespaces=LOBBY)
    anonymous_subs = ServerSubs()
    clients = [
        # No `sub` claim at all (and allow_anonymous is off: the token is the app's grant).
        Client(server.ws_url, token=server.token(None), events=anonymous_subs),
        Client(server.ws_url, token=server.token(None)),
        Client(server.ws_url, token=server.token("")),  # an empty one: the same user
        Client(server.ws_url, token=server.token("7")),
    ]
    subs = [client.new_subscription("lobby:hall") for client in clients]
    try:
        for client, sub in zip(clients, subs, strict=True):
            await client.connect()
            await sub.subscribe()
            await sub.ready(timeout=5)
        stats = await subs[0].presence_stats()
        assert (stats.num_clients, stats.num_users) == (4, 2)
        presence = await subs[3].presence()
        assert sorted(c.user for c in presence.clients.values()) == ["", "", "", "7"]
        # The anonymous user has no personal channel, and may not enter what needs a user.
        assert anonymous_subs.channels == []
        assert await refused_code(clients[0], "orders") == 103
    finally:
        for client in clients:
            await client.disconnect()
        await stop_live_server(server)


# The built-in default namespace (the orders dashboard's), with Centrifugo's user-limited
# channels allowed: `dialog#42,43`, and `#42` as every user's personal channel.
USER_LIMITED = {
    "default": {
        "history_size": 1000,
        "history_ttl": 3600,
        "recover": True,
        "allow_history": True,
        "allow_user_limited_channels": True,
    }
}


async def test_a_user_limited_channel_admits_its_users_only(schema_url: str) -> None:
    server = await start_live_server(schema_url, namespaces=USER_LIMITED, personal_channel="#{sub}")
    personal = ServerSubs()
    ann = Client(server.ws_url, token=server.token("42"), events=personal)
    eve = Client(server.ws_url, token=server.token("44"))
    try:
        await ann.connect()
        await eve.connect()
        # `personal_channel = "#{sub}"`: the server subscribed user 42 to `#42`.
        await eventually(lambda: personal.channels == ["#42"])
        events = SubEvents()
        dialog = ann.new_subscription("dialog#42,43", events=events)
        await dialog.subscribe()
        await dialog.ready(timeout=5)
        # No other permission needed, and none helps another user: 103 permission denied.
        assert await refused_code(eve, "dialog#42,43") == 103
        assert await refused_code(eve, "#42") == 103
        await server.runtime.engine.append(
            "dialog#42,43", b'{"text":"hi"}', history_size=1000, history_ttl_s=3600
        )
        await eventually(lambda: events.pubs == [{"text": "hi"}])
    finally:
        await ann.disconnect()
        await eve.disconnect()
        await stop_live_server(server)


async def test_a_personal_channel_that_subscribes_nobody_stops_the_start(schema_url: str) -> None:
    with pytest.raises(ConfigError, match=r"personal_channel '#\{sub\}' would subscribe nobody"):
        await start_live_server(schema_url, personal_channel="#{sub}")


# Namespaces as a Centrifugo config has them (its `namespaces` array), carried over unchanged.
CENTRIFUGO_NAMESPACES = [
    {
        "name": "chat",
        "allow_subscribe_for_client": True,
        "history_size": 10,
        "history_ttl": "300s",
        "force_recovery": True,
        "presence": True,
        "join_leave": True,
        "force_push_join_leave": True,
        "allow_presence_for_subscriber": True,
        "allow_history_for_subscriber": True,
    },
    {"name": "private", "history_size": 0, "subscribe_proxy_enabled": False},
]


async def test_namespaces_in_centrifugos_layout_and_names(schema_url: str) -> None:
    server = await start_live_server(schema_url, namespaces=CENTRIFUGO_NAMESPACES)
    client = Client(server.ws_url, token=server.token("42"))
    try:
        await client.connect()
        events = SubEvents()
        sub = client.new_subscription("chat:1", events=events)
        await sub.subscribe()
        await sub.ready(timeout=5)
        await server.runtime.engine.append("chat:1", b'{"n":1}', history_size=10, history_ttl_s=300)
        await eventually(lambda: events.pubs == [{"n": 1}])
        history = await sub.history(limit=10)
        assert [p.data for p in history.publications] == [{"n": 1}]
        stats = await sub.presence_stats()
        assert (stats.num_clients, stats.num_users) == (1, 1)
        # No allow_subscribe_for_client: as in Centrifugo, a token is needed.
        assert await refused_code(client, "private:x") == 103
    finally:
        await client.disconnect()
        await stop_live_server(server)


async def test_a_centrifugo_config_file_runs_unchanged(schema_url: str, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "client": {
                    "token": {"hmac_secret_key": CENTRIFUGO_EXAMPLE_KEY},
                    "allow_anonymous_connect_without_token": True,
                    "subscribe_to_user_personal_channel": {
                        "enabled": True,
                        "personal_channel_namespace": "personal",
                    },
                },
                "channel": {
                    "namespaces": [
                        {"name": "chat", "allow_subscribe_for_client": True, "presence": True},
                        {"name": "personal", "allow_user_limited_channels": True},
                    ]
                },
            }
        )
    )
    server = await start_live_server(
        schema_url, jwt_secret=None, centrifugo_config=config, insecure_short_keys=True
    )
    personal = ServerSubs()
    user = Client(server.ws_url, token=short_key_token({"sub": "42"}), events=personal)
    anonymous = Client(server.ws_url)  # no token at all
    try:
        await user.connect()
        await eventually(lambda: personal.channels == ["personal:#42"])
        sub = user.new_subscription("chat:1")
        await sub.subscribe()
        await sub.ready(timeout=5)
        await anonymous.connect()
        await anonymous.ready(timeout=5)
        # allow_subscribe_for_anonymous is not set: anonymous may not subscribe.
        assert await refused_code(anonymous, "chat:1") == 103
    finally:
        await user.disconnect()
        await anonymous.disconnect()
        await stop_live_server(server)


async def test_an_application_written_for_centrifugo_runs_after_changing_the_urls(
    schema_url: str, tmp_path: Path
) -> None:
    """The issue's whole scenario: Centrifugo's config file (namespaces with history, recovery
    and presence, the example HMAC and API keys), its server-API client `cent` and the SDK,
    with only the URLs pointed at Syncline."""
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "client": {"token": {"hmac_secret_key": CENTRIFUGO_EXAMPLE_KEY}},
                "http_api": {"key": "api-key"},
                "channel": {
                    "namespaces": [
                        {
                            "name": "chat",
                            "history_size": 10,
                            "history_ttl": "300s",
                            "force_recovery": True,
                            "presence": True,
                            "allow_subscribe_for_client": True,
                            "allow_history_for_subscriber": True,
                            "allow_presence_for_subscriber": True,
                        }
                    ]
                },
            }
        )
    )
    server = await start_live_server(
        schema_url, jwt_secret=None, centrifugo_config=config, insecure_short_keys=True
    )
    api = CentClient(f"{server.http_url}/api", "api-key")
    user = Client(server.ws_url, token=short_key_token({"sub": "42"}))
    events = SubEvents()
    try:
        await user.connect()
        sub = user.new_subscription("chat:1", events=events)
        await sub.subscribe()
        await eventually(lambda: events.subscribed == 1)
        await api.publish(CentPublish(channel="chat:1", data={"text": "hello"}))
        await eventually(lambda: events.pubs == [{"text": "hello"}])
        stats = await api.presence_stats(CentPresenceStats(channel="chat:1"))
        assert (stats.num_clients, stats.num_users) == (1, 1)
        history = await api.history(CentHistory(channel="chat:1", limit=10))
        assert [p.data for p in history.publications] == [{"text": "hello"}]
        assert (await sub.history(limit=10)).publications[0].data == {"text": "hello"}
    finally:
        await user.disconnect()
        await api.close()
        await stop_live_server(server)
