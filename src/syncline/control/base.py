"""The control-bus port: publish a command to every process, receive every process's commands.

Delivery is at most once per process and in publish order from one publisher. A command is
sent after the change it announces has committed (a revoked session is revoked in PostgreSQL
first), so a process that misses one, because its bus connection dropped, is still correct on
its next database check: the bus makes revocation immediate, the database makes it certain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from syncline.core.control import ControlCommand

ControlHandler = Callable[[ControlCommand], None]


class ControlBus(Protocol):
    """Commands to every Syncline process, this one included."""

    async def publish(self, command: ControlCommand) -> None:
        """Send ``command`` to every subscribed handler of every process."""
        ...

    def subscribe(self, handler: ControlHandler) -> Callable[[], None]:
        """Call ``handler`` (synchronously, never blocking) for each command; returns the
        function that unsubscribes it."""
        ...

    async def close(self) -> None:
        """Release the bus; later publishes are dropped. Idempotent."""
        ...
