"""The control bus: commands every Syncline process carries out for its own connections."""

from __future__ import annotations

from syncline.control.base import ControlBus, ControlHandler
from syncline.control.memory import MemoryControlBus
from syncline.redis_url import parse_redis_url

__all__ = ["ControlBus", "ControlHandler", "MemoryControlBus", "open_control_bus"]


async def open_control_bus(url: str = "memory") -> ControlBus:
    """The bus ``url`` names: ``memory`` (this process only) or a Redis URL (the engine's
    syntax: ``cluster=true``, ``prefix=NAME``; see ``syncline.redis_url``).

    A Redis bus is returned once its subscription is live, so that no command published
    after start-up is missed; if Redis does not confirm it in time this raises
    ``ControlBusUnavailableError`` (a ``ConnectionError``). redis-py is imported only for a
    Redis URL.
    """
    if url == "memory":
        return MemoryControlBus()
    try:
        target = parse_redis_url(url)
    except ValueError as err:
        raise ValueError(f"the control bus must be 'memory' or a Redis URL: {err}") from None
    from syncline.control.redis import RedisControlBus

    bus = RedisControlBus(target.url, cluster=target.cluster, prefix=target.prefix)
    try:
        await bus.wait_subscribed()
    except BaseException:
        await bus.close()
        raise
    return bus
