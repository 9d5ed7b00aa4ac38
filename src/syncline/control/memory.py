"""The control bus of a single process: a command reaches this process's handlers at once."""

from __future__ import annotations

from collections.abc import Callable

from syncline.control.base import ControlHandler
from syncline.core import control
from syncline.core.control import ControlCommand
from syncline.logs import get_logger

log = get_logger(__name__)


class MemoryControlBus:
    """Handlers called in the publisher's turn of the event loop, in subscription order."""

    def __init__(self) -> None:
        self._handlers: list[ControlHandler] = []
        self._closed = False

    async def publish(self, command: ControlCommand) -> None:
        if self._closed:
            return
        # Round-trip through the wire format so that a command the Redis bus could not carry
        # fails here too, in single-process tests, not first in production.
        delivered = control.decode(control.encode(command))
        for handler in list(self._handlers):
            try:
                handler(delivered)
            except Exception:
                log.exception("control handler failed", command=type(command).__name__)

    def subscribe(self, handler: ControlHandler) -> Callable[[], None]:
        self._handlers.append(handler)

        def unsubscribe() -> None:
            if handler in self._handlers:
                self._handlers.remove(handler)

        return unsubscribe

    async def close(self) -> None:
        self._closed = True
        self._handlers.clear()
