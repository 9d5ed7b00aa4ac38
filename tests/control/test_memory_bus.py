"""The in-process control bus: every handler gets each command once, in publish order."""

from __future__ import annotations

import pytest

from syncline.control import MemoryControlBus
from syncline.core.control import ControlCommand, DisconnectUser, SessionsRevoked


async def test_handlers_receive_each_command_in_order_until_unsubscribed() -> None:
    bus = MemoryControlBus()
    first: list[ControlCommand] = []
    second: list[ControlCommand] = []
    bus.subscribe(first.append)
    stop = bus.subscribe(second.append)
    a, b = SessionsRevoked("1", ("s",)), DisconnectUser("2", 3503)
    await bus.publish(a)
    stop()
    await bus.publish(b)
    assert first == [a, b]
    assert second == [a]


async def test_a_failing_handler_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    bus = MemoryControlBus()
    seen: list[ControlCommand] = []

    def broken(command: ControlCommand) -> None:
        raise RuntimeError("boom")

    bus.subscribe(broken)
    bus.subscribe(seen.append)
    await bus.publish(DisconnectUser("2", 3503))
    assert seen == [DisconnectUser("2", 3503)]


async def test_a_closed_bus_delivers_nothing() -> None:
    bus = MemoryControlBus()
    seen: list[ControlCommand] = []
    bus.subscribe(seen.append)
    await bus.close()
    await bus.publish(DisconnectUser("2", 3503))
    assert seen == []
