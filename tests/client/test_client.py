"""SynclineClient against a whole Syncline in the test's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from syncline.client import (
    QUEUE_OVERFLOW,
    UNSUBSCRIBE_CALLED,
    Disconnected,
    Event,
    Publication,
    ReplyError,
    Subscribed,
    Subscription,
    SynclineClient,
    Unsubscribed,
)
from syncline.client import client as client_module
from syncline.client.subscription import State
from syncline.rpc import RpcContext

from helpers.live_server import LiveServer, start_live_server, stop_live_server
from helpers.waiting import eventually

INSERT_ORDER = "INSERT INTO orders (customer_name, product_name) VALUES ('a', %s)"


async def next_events(events: AsyncIterator[Event], n: int, timeout: float = 10.0) -> list[Event]:
    async def take() -> list[Event]:
        return [await anext(events) for _ in range(n)]

    return await asyncio.wait_for(take(), timeout)


def client_for(server: LiveServer, user: str, **kwargs: Any) -> SynclineClient:
    kwargs.setdefault("timeout", 5.0)
    return SynclineClient(server.ws_url, token=server.token(user), **kwargs)


def force_close(server: LiveServer, code: int) -> None:
    assert server.runtime.gateway is not None
    for conn in list(server.runtime.gateway.connections):
        conn.close(code)


async def test_a_row_inserted_with_sql_reaches_a_subscriber(live_server: LiveServer) -> None:
    client = client_for(live_server, "1")
    try:
        await client.connect()
        sub = await client.subscribe("orders")
        events = sub.events()
        [subscribed] = await next_events(events, 1)
        assert isinstance(subscribed, Subscribed)
        assert not subscribed.was_recovering
        await live_server.sql(INSERT_ORDER, ("tea",))
        [pub] = await next_events(events, 1)
        assert isinstance(pub, Publication)
        assert pub.data["op"] == "insert"
        assert pub.data["row"]["product_name"] == "tea"
        assert pub.offset == 1
        assert sub.position == (subscribed.epoch, 1)
        await sub.unsubscribe()
        assert [e async for e in events] == [Unsubscribed(UNSUBSCRIBE_CALLED, "unsubscribe called")]
        gateway = live_server.runtime.gateway
        assert gateway is not None
        await eventually(lambda: all("orders" not in c.subs for c in gateway.connections))
        assert client.connected
    finally:
        await client.close()


async def test_a_forced_reconnect_recovers_exactly_the_missed_rows(
    live_server: LiveServer,
) -> None:
    # Slow enough to insert the rows while the client is away.
    client = client_for(live_server, "1", min_reconnect_delay=1.0, max_reconnect_delay=1.0)
    try:
        await client.connect()
        sub = await client.subscribe("orders")
        events = sub.events()
        await live_server.sql(INSERT_ORDER, ("p0",))
        first = await next_events(events, 2)
        assert isinstance(first[1], Publication)
        assert first[1].offset == 1
        force_close(live_server, 3011)  # "force reconnect"
        await eventually(lambda: not client.connected, timeout=5)
        for n in range(1, 21):
            await live_server.sql(INSERT_ORDER, (f"p{n}",))
        resumed = await next_events(events, 21)
        subscribed = resumed[0]
        assert isinstance(subscribed, Subscribed)
        assert subscribed.was_recovering
        assert subscribed.recovered
        pubs = resumed[1:]
        assert all(isinstance(p, Publication) for p in pubs)
        assert [p.data["row"]["product_name"] for p in pubs if isinstance(p, Publication)] == [
            f"p{n}" for n in range(1, 21)
        ]
        assert [p.offset for p in pubs if isinstance(p, Publication)] == list(range(2, 22))
        assert client.connected
        assert sub.position[1] == 21
    finally:
        await client.close()


async def test_rpc_round_trip_and_unknown_method(live_server: LiveServer) -> None:
    async def echo(ctx: RpcContext, data: Any) -> Any:
        return {"user": ctx.user, "echo": data}

    live_server.runtime.rpc.register("echo", echo)
    client = client_for(live_server, "7")
    try:
        await client.connect()
        assert await client.rpc("echo", {"x": 1}) == {"user": "7", "echo": {"x": 1}}
        with pytest.raises(ReplyError) as unknown:
            await client.rpc("nope", None)
        assert unknown.value.code == 108
        assert client.connected
    finally:
        await client.close()


async def test_an_expiring_token_is_refreshed(live_server: LiveServer) -> None:
    issued: list[str] = []

    async def get_token() -> str:
        token = live_server.token("3", ttl=2)
        issued.append(token)
        return token

    client = SynclineClient(live_server.ws_url, get_token=get_token, timeout=5.0)
    try:
        await client.connect()
        sub = await client.subscribe("orders")
        await asyncio.sleep(3.5)  # past the first token's expiry
        assert len(issued) >= 2
        assert client.connected
        events = sub.events()
        await live_server.sql(INSERT_ORDER, ("after-refresh",))
        got = await next_events(events, 2)
        assert isinstance(got[0], Subscribed)
        assert not got[0].was_recovering  # one subscription all along: no reconnect
        assert isinstance(got[1], Publication)
        assert got[1].data["row"]["product_name"] == "after-refresh"
    finally:
        await client.close()


async def test_presence_stats_count_clients_and_users(live_server: LiveServer) -> None:
    for user in (1, 2):
        await live_server.sql("INSERT INTO room_members (room_id, user_id) VALUES (5, %s)", (user,))
    clients = [client_for(live_server, u) for u in ("1", "1", "2")]
    try:
        subs: list[Subscription] = []
        for client in clients:
            await client.connect()
            subs.append(await client.subscribe("room:5"))
        stats = await subs[0].presence_stats()
        assert (stats.num_clients, stats.num_users) == (3, 2)
        presence = await subs[2].presence()
        assert {info.user for info in presence.values()} == {"1", "2"}
        assert {info.client for info in presence.values()} == {c.client_id for c in clients}
    finally:
        for client in clients:
            await client.close()


async def test_history_returns_publications_with_offsets(live_server: LiveServer) -> None:
    client = client_for(live_server, "1")
    try:
        await client.connect()
        sub = await client.subscribe("orders")
        events = sub.events()
        for n in range(3):
            await live_server.sql(INSERT_ORDER, (f"h{n}",))
        await next_events(events, 4)  # subscribed + three publications
        history = await sub.history(limit=-1)
        assert [p.offset for p in history.publications] == [1, 2, 3]
        assert [p.data["row"]["product_name"] for p in history.publications] == ["h0", "h1", "h2"]
        assert (history.epoch, history.offset) == sub.position
        newest = await sub.history(limit=1, reverse=True)
        assert [p.offset for p in newest.publications] == [3]
    finally:
        await client.close()


async def test_a_terminal_close_stops_reconnecting(live_server: LiveServer) -> None:
    client = client_for(live_server, "1", min_reconnect_delay=0.05, max_reconnect_delay=0.1)
    try:
        await client.connect()
        sub = await client.subscribe("orders")
        events = sub.events()
        await next_events(events, 1)
        force_close(live_server, 3503)  # "force disconnect"
        [last] = await next_events(events, 1)
        assert isinstance(last, Unsubscribed)
        assert not client.connected
        await asyncio.sleep(0.3)  # several reconnect delays
        assert not client.connected
        assert live_server.runtime.gateway is not None
        assert not live_server.runtime.gateway.connections
        with pytest.raises(Disconnected) as stopped:
            await client.rpc("anything", None)
        assert stopped.value.code == 3503
        with pytest.raises(StopAsyncIteration):
            await anext(events)
    finally:
        await client.close()


async def test_an_expired_token_at_connect_fetches_a_new_one(live_server: LiveServer) -> None:
    tokens = [live_server.token("4", ttl=-10), live_server.token("4")]
    calls: list[int] = []

    async def get_token() -> str:
        calls.append(1)
        return tokens.pop(0) if len(tokens) > 1 else tokens[0]

    client = SynclineClient(live_server.ws_url, get_token=get_token, min_reconnect_delay=0.05)
    try:
        await client.connect()  # the first attempt gets error 109
        assert len(calls) == 2
        assert client.connected
    finally:
        await client.close()


async def test_the_personal_channel_arrives_as_a_server_event(live_server: LiveServer) -> None:
    client = client_for(live_server, "12")
    try:
        await client.connect()
        channel, event = await asyncio.wait_for(anext(client.server_events()), 5)
        assert channel == "user:12"
        assert isinstance(event, Subscribed)
    finally:
        await client.close()


async def test_a_refused_subscription_raises_and_ends(live_server: LiveServer) -> None:
    client = client_for(live_server, "8")
    try:
        await client.connect()
        with pytest.raises(ReplyError) as refused:
            await client.subscribe("user:9")
        assert refused.value.code == 103
        assert client.connected
    finally:
        await client.close()


async def test_a_reader_that_falls_behind_loses_the_subscription(live_server: LiveServer) -> None:
    client = client_for(live_server, "1")
    try:
        await client.connect()
        sub = await client.subscribe("orders", queue_size=3)
        for n in range(5):
            await live_server.sql(INSERT_ORDER, (f"o{n}",))
        await eventually(lambda: sub.state is State.UNSUBSCRIBED)
        got = [event async for event in sub.events()]
        assert [type(e) for e in got] == [Subscribed, Publication, Publication, Unsubscribed]
        last = got[-1]
        assert isinstance(last, Unsubscribed)
        assert last.code == QUEUE_OVERFLOW
        again = await client.subscribe("orders")  # the server let go of the first one
        [subscribed] = await next_events(again.events(), 1)
        assert isinstance(subscribed, Subscribed)
    finally:
        await client.close()


async def test_an_unsubscribe_push_from_2500_resubscribes_with_recovery(
    live_server: LiveServer,
) -> None:
    client = client_for(live_server, "1")
    try:
        await client.connect()
        sub = await client.subscribe("orders")
        events = sub.events()
        await live_server.sql(INSERT_ORDER, ("before",))
        await next_events(events, 2)
        assert live_server.runtime.gateway is not None
        for conn in list(live_server.runtime.gateway.connections):
            conn.lost_continuity(conn.subs["orders"])  # pushes unsubscribe 2500
        [resubscribed] = await next_events(events, 1)
        assert isinstance(resubscribed, Subscribed)
        assert resubscribed.was_recovering
        assert resubscribed.recovered
        await live_server.sql(INSERT_ORDER, ("after",))
        [pub] = await next_events(events, 1)
        assert isinstance(pub, Publication)
        assert pub.offset == 2
    finally:
        await client.close()


async def test_pings_are_answered_and_a_silent_server_is_left(
    schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ping every 2 s (the server checks once a second); wait 1.5 s more than that for a ping.
    monkeypatch.setattr(client_module, "MAX_SERVER_PING_DELAY", 1.5)
    server = await start_live_server(schema_url, ping_interval=2, pong_timeout=1)
    client = client_for(server, "1", min_reconnect_delay=0.05, max_reconnect_delay=0.1)
    try:
        await client.connect()
        first = client.client_id
        await asyncio.sleep(4.5)  # two pings: without pongs the server closes with 3012
        assert (client.connected, client.client_id) == (True, first)
        assert server.runtime.gateway is not None
        for conn in list(server.runtime.gateway.connections):
            conn.next_ping_at = float("inf")  # the server goes quiet
        await eventually(lambda: client.connected and client.client_id != first, timeout=8)
    finally:
        await client.close()
        await stop_live_server(server)
