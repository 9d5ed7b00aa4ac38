"""Announces captured changes that may have removed a channel member, on the control bus.

Capture hands rows only to the engine; whether a subscriber may still see a channel is the
business of whichever process holds its connection. So when a captured change touches a table
that a namespace's membership query reads (a member deleted, a role changed), the capture
process publishes `RecheckChannel(channel)` and every gateway re-checks its own subscribers
of that channel against PostgreSQL (the change is committed: capture reads only commits).
"""

from __future__ import annotations

import asyncio

from syncline.control.base import ControlBus
from syncline.core.control import MAX_XIDS_PER_RECHECK, RecheckChannel
from syncline.core.namespaces import NamespaceRegistry
from syncline.logs import get_logger

log = get_logger(__name__)


class MembershipWatch:
    """The pipeline's `on_routed` hook: coalesces re-checks per event-loop turn."""

    def __init__(self, registry: NamespaceRegistry, control: ControlBus) -> None:
        self._registry = registry
        self._control = control
        # Channels to announce, with the transactions that touched them; a capture batch that
        # deletes a room's members announces the room once, not once per row.
        self._pending: dict[str, list[int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def on_routed(self, channel: str, table: str, op: str, xid: int) -> None:
        xids = self._pending.get(channel)
        if xids is None:
            if not self._registry.may_revoke_membership(channel, table, op):
                return
            if not self._pending:
                asyncio.get_running_loop().call_soon(self._announce)
            xids = self._pending[channel] = []
        if xid not in xids:
            xids.append(xid)
            # Commit order: the newest matter, the oldest are visible long since.
            del xids[:-MAX_XIDS_PER_RECHECK]

    def _announce(self) -> None:
        channels, self._pending = self._pending, {}
        task = asyncio.get_running_loop().create_task(self._publish(channels))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, channels: dict[str, list[int]]) -> None:
        for channel in sorted(channels):
            try:
                await self._control.publish(RecheckChannel(channel, tuple(channels[channel])))
            except Exception as err:
                # The member keeps the subscription until they resubscribe; say so loudly.
                log.warning(
                    "could not announce a membership re-check", channel=channel, error=str(err)
                )

    async def close(self) -> None:
        """Finish the announcements in flight."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
