"""The control bus over Redis: every process gets every command in order, through restarts."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis_asyncio
import structlog

from syncline.control import MemoryControlBus, open_control_bus
from syncline.control import redis as bus_module
from syncline.control.redis import ControlBusUnavailableError, RedisControlBus
from syncline.core import control
from syncline.core.control import (
    ControlCommand,
    DisconnectUser,
    SessionsRevoked,
    UnsubscribeUser,
)
from syncline.db.embedded import free_port

from helpers.redis_servers import RedisClusterServers, RedisServer, start_cluster

# Makes a bus on the test's Redis (or the URL given) and waits for its subscription.
MakeBus = Callable[..., Awaitable[RedisControlBus]]


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


@pytest.fixture
def prefix() -> str:
    return f"t{secrets.token_hex(6)}"


@pytest.fixture
async def buses(redis_url: str, prefix: str) -> AsyncIterator[MakeBus]:
    """Subscribed buses sharing a fresh prefix (one per process, as it were); closed after."""
    made: list[RedisControlBus] = []

    async def make(url: str = redis_url) -> RedisControlBus:
        bus = RedisControlBus(url, prefix=prefix)
        made.append(bus)
        await bus.wait_subscribed()
        return bus

    yield make
    for bus in made:
        await bus.close()


def commands(n: int) -> list[ControlCommand]:
    kinds: list[ControlCommand] = []
    for i in range(n):
        if i % 3 == 0:
            kinds.append(SessionsRevoked(f"u{i}", (f"s{i}", "ünï")))
        elif i % 3 == 1:
            kinds.append(DisconnectUser(f"u{i}", 3500 + i % 100, "bye", f"c{i}"))
        else:
            kinds.append(UnsubscribeUser(f"u{i}", f"room:{i}"))
    return kinds


async def test_every_bus_gets_every_command_from_either_in_order(
    buses: MakeBus,
) -> None:
    one, two = await buses(), await buses()
    seen_one: list[ControlCommand] = []
    seen_two: list[ControlCommand] = []
    one.subscribe(seen_one.append)
    two.subscribe(seen_two.append)
    sent = commands(200)
    for i, command in enumerate(sent):
        await (one if i % 2 else two).publish(command)
    await until(lambda: len(seen_one) == len(sent) and len(seen_two) == len(sent))
    assert seen_one == sent
    assert seen_two == sent


async def test_commands_published_without_waiting_arrive_in_order(
    buses: MakeBus,
) -> None:
    bus = await buses()
    seen: list[ControlCommand] = []
    bus.subscribe(seen.append)
    sent = commands(100)
    # Concurrent publishes from one process go out over one connection in call order.
    await asyncio.gather(*(bus.publish(command) for command in sent))
    await until(lambda: len(seen) == len(sent))
    assert seen == sent


async def test_undecodable_bytes_are_dropped_with_a_warning(buses: MakeBus, redis_url: str) -> None:
    bus = await buses()
    seen: list[ControlCommand] = []
    bus.subscribe(seen.append)
    raw = redis_asyncio.Redis.from_url(redis_url)
    try:
        with structlog.testing.capture_logs() as logs:
            for junk in (b"not json", b'{"kind":"from_the_future"}', b"[1]", b"\xff\xfe"):
                await raw.publish(bus.topic, junk)
            await bus.publish(DisconnectUser("1", 3503))
            await until(lambda: len(seen) == 1)
    finally:
        await raw.aclose()
    assert seen == [DisconnectUser("1", 3503)]
    assert bus.dropped == 4
    warnings = [e for e in logs if e["event"] == "control_command_undecodable"]
    assert len(warnings) == 4
    assert all(e["log_level"] == "warning" for e in warnings)


async def test_a_failing_handler_does_not_stop_the_others_or_the_bus(
    buses: MakeBus,
) -> None:
    bus = await buses()
    seen: list[ControlCommand] = []

    def broken(command: ControlCommand) -> None:
        raise RuntimeError("boom")

    bus.subscribe(broken)
    stop = bus.subscribe(seen.append)
    with structlog.testing.capture_logs() as logs:
        await bus.publish(DisconnectUser("1", 3503))
        await until(lambda: len(seen) == 1)
    assert any(e["event"] == "control handler failed" for e in logs)
    stop()
    after: list[ControlCommand] = []
    bus.subscribe(after.append)
    await bus.publish(DisconnectUser("2", 3503))
    await until(lambda: len(after) == 1)
    assert seen == [DisconnectUser("1", 3503)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, to stop and start again on the same port."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


async def test_the_bus_reconnects_after_a_redis_restart(
    server: RedisServer, buses: MakeBus
) -> None:
    one, two = await buses(server.url), await buses(server.url)
    seen: list[ControlCommand] = []
    two.subscribe(seen.append)
    await one.publish(DisconnectUser("before", 3503))
    await until(lambda: len(seen) == 1)

    with structlog.testing.capture_logs() as logs:
        server.stop()
        await until(lambda: one.reconnects == 1 and two.reconnects == 1)
        with pytest.raises(ControlBusUnavailableError):
            await one.publish(DisconnectUser("while down", 3503))
        await asyncio.sleep(0.5)  # a few failed attempts, logged once
        server.start()
        await one.wait_subscribed()
        await two.wait_subscribed()
        # The "reconnected" line may come a moment after the subscription is live again.
        await one.publish(DisconnectUser("after", 3503))
        await until(lambda: len(seen) == 2)
        await until(lambda: sum(e["event"] == "control_bus_reconnected" for e in logs) == 2)
    assert seen == [DisconnectUser("before", 3503), DisconnectUser("after", 3503)]
    lost = [e for e in logs if e["event"] == "control_bus_disconnected"]
    assert len(lost) == 2  # one per bus, however many attempts
    assert len([e for e in logs if e["event"] == "control_bus_reconnected"]) == 2


async def test_a_bus_without_redis_keeps_trying_and_closes() -> None:
    bus = RedisControlBus(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(ControlBusUnavailableError):
            await bus.wait_subscribed(0.3)
        with pytest.raises(ControlBusUnavailableError):
            await bus.publish(DisconnectUser("1", 3503))
    finally:
        await bus.close()


async def test_close_is_idempotent_and_a_closed_bus_publishes_nothing(
    buses: MakeBus,
) -> None:
    one, two = await buses(), await buses()
    seen: list[ControlCommand] = []
    two.subscribe(seen.append)
    await one.close()
    await one.close()
    await one.publish(DisconnectUser("1", 3503))  # dropped, no error
    await two.publish(DisconnectUser("2", 3503))
    await until(lambda: len(seen) == 1)
    assert seen == [DisconnectUser("2", 3503)]


async def test_open_control_bus_returns_a_live_bus(redis_url: str, prefix: str) -> None:
    assert isinstance(await open_control_bus("memory"), MemoryControlBus)
    with pytest.raises(ValueError, match="memory"):
        await open_control_bus("nats://x")
    bus = await open_control_bus(f"{redis_url}?prefix={prefix}&durable=true")
    try:
        assert isinstance(bus, RedisControlBus)
        assert bus.topic == f"{prefix}:control".encode()
        seen: list[ControlCommand] = []
        bus.subscribe(seen.append)
        await bus.publish(DisconnectUser("1", 3503))  # its own handlers get it too
        await until(lambda: len(seen) == 1)
    finally:
        await bus.close()


# -- Redis Cluster ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    servers = start_cluster(Path(tmp_path_factory.mktemp("cluster")))
    try:
        yield servers
    finally:
        servers.stop()


async def test_on_a_cluster_a_command_reaches_buses_whichever_node_took_it(
    cluster: RedisClusterServers, prefix: str
) -> None:
    made = [
        await open_control_bus(f"{cluster.url}&prefix={prefix}"),
        await open_control_bus(f"{cluster.url}&prefix={prefix}"),
    ]
    seen: list[list[ControlCommand]] = [[], []]
    for bus, into in zip(made, seen, strict=True):
        bus.subscribe(into.append)
    try:
        sent: list[ControlCommand] = [DisconnectUser("from bus", 3503)]
        await made[0].publish(sent[0])
        # Classic pub/sub is broadcast over the cluster bus: a PUBLISH to any node arrives.
        for i, node in enumerate(cluster.nodes):
            raw = redis_asyncio.Redis.from_url(node.url)
            try:
                command = DisconnectUser(f"from node {i}", 3503)
                await raw.publish(f"{prefix}:control", control.encode(command))
                sent.append(command)
            finally:
                await raw.aclose()
        await until(lambda: all(len(into) == len(sent) for into in seen))
        assert seen == [sent, sent]
    finally:
        for bus in made:
            await bus.close()


async def test_a_silent_connection_is_dropped_and_replaced(
    buses: MakeBus, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A paused Redis answers nothing, as over a half-open TCP connection.
    monkeypatch.setattr(bus_module, "PING_INTERVAL_S", 0.05)
    bus = await buses()
    seen: list[ControlCommand] = []
    bus.subscribe(seen.append)
    raw = redis_asyncio.Redis.from_url(redis_url)
    try:
        with structlog.testing.capture_logs() as logs:
            await raw.client_pause(500, all=True)
            await until(lambda: bus.reconnects == 1)
            await bus.wait_subscribed()
        assert any(e["event"] == "control_bus_silent" for e in logs)
        await bus.publish(DisconnectUser("1", 3503))
        await until(lambda: len(seen) == 1)
    finally:
        await raw.aclose()
