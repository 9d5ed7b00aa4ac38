"""From committed changes to channel-log appends: route by the sync rules, encode once, append."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import orjson

from syncline import metrics
from syncline.capture.live_rules import RULES_TABLE, LiveRules
from syncline.core.changes import Change
from syncline.core.namespaces import Deny, NamespaceRegistry
from syncline.core.rules import RoutingError, RuleSet
from syncline.engine.base import AppendRequest, ChannelLog
from syncline.logs import get_logger

log = get_logger(__name__)

# A misconfigured rule can fail on every row; say so once per (table, reason) this often.
ROUTING_WARNING_INTERVAL_S = 60.0
# Channel → history bounds, cached: resolving a namespace costs microseconds per change. The
# cache is cleared when it reaches this size (a few MB), so any number of channels is fine.
BOUNDS_CACHE_SIZE = 100_000


class ShapeRouter(Protocol):
    """The shapes' side of routing (syncline.shapes.service.ShapeService)."""

    def fence(self, change: Change) -> bool:
        """Whether ``change`` is a shape fence: consumed, published nowhere."""
        ...

    def route(self, change: Change) -> list[AppendRequest]:
        """The publications ``change`` makes in shape channels."""
        ...

    def appended(self) -> None:
        """The batch routed so far is in the channel log."""
        ...


class Pipeline:
    """The sink every capture source feeds: returns once the changes are in the channel log."""

    def __init__(
        self,
        rules: RuleSet,
        registry: NamespaceRegistry,
        engine: ChannelLog,
        *,
        clock: Callable[[], float] = time.time,
        on_routed: Callable[[str, str, str, int], None] | None = None,
        live: LiveRules | None = None,
        on_rules_applied: Callable[[list[tuple[int, str]]], Awaitable[None]] | None = None,
        shapes: ShapeRouter | None = None,
    ) -> None:
        self._rules = rules
        # Live queries: every change goes through the shapes too (one dict lookup for a
        # table without shapes); their publications join the same batch append.
        self._shapes = shapes
        # Rules added at runtime: an insert into syncline.sync_rules changes the routing of
        # every change after it, in the same batch too; told (id, position) once appended.
        self._live = live
        self._on_rules_applied = on_rules_applied
        self._registry = registry
        self._engine = engine
        self._clock = clock
        # Told (channel, table, op) of every publication, e.g. so the gateway can re-check
        # memberships when a membership row changes.
        self._on_routed = on_routed
        self._bounds: dict[str, tuple[int, float] | None] = {}
        self._warned: dict[tuple[str, str], float] = {}
        self.appended = 0
        self.duplicates = 0

    async def __call__(self, changes: Sequence[Change]) -> None:
        requests: list[AppendRequest] = []
        tables: list[str] = []
        captured: Counter[tuple[str, str]] = Counter()
        bounds_cache, on_routed, dumps = self._bounds, self._on_routed, orjson.dumps
        live, shapes = self._live, self._shapes
        route = (self._rules if live is None else live.current).route
        applied: list[tuple[int, str]] = []
        for change in changes:
            table = change.table or "(message)"
            op = change.op.value
            if live is not None and (change.schema, change.table) == RULES_TABLE:
                rule_id = live.handle(op, change.row)
                if rule_id is not None:
                    applied.append((rule_id, str(change.position)))
                    route = live.current.route
                continue
            if shapes is not None:
                if shapes.fence(change):
                    continue
                for request in shapes.route(change):
                    requests.append(request)
                    tables.append(table)
            captured[table, op] += 1
            for routed in route(change):
                if isinstance(routed, RoutingError):
                    self._warn(routed)
                    continue
                channel = routed.channel
                bounds = (
                    bounds_cache[channel] if channel in bounds_cache else self._resolve(channel)
                )
                if bounds is None:
                    continue
                size, ttl = bounds
                requests.append(
                    AppendRequest(channel, dumps(routed.payload), size, ttl, None, change.position)
                )
                tables.append(table)
                if on_routed is not None:
                    on_routed(channel, change.table, op, change.xid)
        for (table, op), count in captured.items():
            metrics.CHANGES_CAPTURED.labels(table, op).inc(count)
        if requests:
            results = await self._engine.append_batch(requests)
            published: Counter[str] = Counter()
            for table, result in zip(tables, results, strict=True):
                if result is None:
                    self.duplicates += 1
                else:
                    published[table] += 1
            self.appended += sum(published.values())
            for table, count in published.items():
                metrics.PUBLICATIONS.labels(table).inc(count)
        if shapes is not None:
            shapes.appended()
        if applied and self._on_rules_applied is not None:
            await self._on_rules_applied(applied)
        if changes:
            latency = self._clock() - changes[-1].commit_time_us / 1_000_000
            metrics.COMMIT_TO_APPEND.observe(max(latency, 0.0))

    def _resolve(self, channel: str) -> tuple[int, float] | None:
        """History bounds of the channel's namespace; None (logged) for an invalid channel."""
        resolved = self._registry.resolve(channel)
        bounds: tuple[int, float] | None
        if isinstance(resolved, Deny):
            log.warning(
                "not publishing to an invalid channel", channel=channel, why=resolved.reason
            )
            bounds = None
        else:
            bounds = (resolved.history_size, float(resolved.history_ttl))
        if len(self._bounds) >= BOUNDS_CACHE_SIZE:
            self._bounds.clear()
        self._bounds[channel] = bounds
        return bounds

    def _warn(self, error: RoutingError) -> None:
        key = (error.table, error.reason.value)
        now = self._clock()
        if now - self._warned.get(key, 0.0) >= ROUTING_WARNING_INTERVAL_S:
            self._warned[key] = now
            log.warning(
                "change not routed", table=error.table, channel=error.channel, why=error.message
            )
