"""From committed changes to channel-log appends: route by the sync rules, encode once, append."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import orjson

from syncline import metrics
from syncline.core.changes import Change
from syncline.core.namespaces import Deny, Namespace, NamespaceRegistry
from syncline.core.rules import RoutingError, RuleSet
from syncline.engine.base import AppendRequest, ChannelLog
from syncline.logs import get_logger

log = get_logger(__name__)

# A misconfigured rule can fail on every row; say so once per (table, reason) this often.
ROUTING_WARNING_INTERVAL_S = 60.0


class Pipeline:
    """The sink every capture source feeds: returns once the changes are in the channel log."""

    def __init__(
        self,
        rules: RuleSet,
        registry: NamespaceRegistry,
        engine: ChannelLog,
        *,
        clock: Callable[[], float] = time.time,
        on_routed: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self._rules = rules
        self._registry = registry
        self._engine = engine
        self._clock = clock
        # Told (channel, table, op) of every publication, e.g. so the gateway can re-check
        # memberships when a membership row changes.
        self._on_routed = on_routed
        self._namespaces: dict[str, Namespace | None] = {}
        self._warned: dict[tuple[str, str], float] = {}
        self.appended = 0
        self.duplicates = 0

    async def __call__(self, changes: Sequence[Change]) -> None:
        requests: list[AppendRequest] = []
        tables: list[str] = []
        for change in changes:
            metrics.CHANGES_CAPTURED.labels(change.table or "(message)", change.op.value).inc()
            for routed in self._rules.route(change):
                if isinstance(routed, RoutingError):
                    self._warn(routed)
                    continue
                namespace = self._namespace(routed.channel)
                if namespace is None:
                    continue
                requests.append(
                    AppendRequest(
                        routed.channel,
                        orjson.dumps(routed.payload),
                        namespace.history_size,
                        float(namespace.history_ttl),
                        None,
                        change.position,
                    )
                )
                tables.append(change.table or "(message)")
                if self._on_routed is not None:
                    self._on_routed(routed.channel, change.table, change.op.value)
        if requests:
            results = await self._engine.append_batch(requests)
            for table, result in zip(tables, results, strict=True):
                if result is None:
                    self.duplicates += 1
                else:
                    self.appended += 1
                    metrics.PUBLICATIONS.labels(table).inc()
        if changes:
            latency = self._clock() - changes[-1].commit_time_us / 1_000_000
            metrics.COMMIT_TO_APPEND.observe(max(latency, 0.0))

    def _namespace(self, channel: str) -> Namespace | None:
        prefix = channel.split(":", 1)[0] if ":" in channel else ""
        if prefix in self._namespaces:
            cached = self._namespaces[prefix]
            if cached is not None and cached.accepts(channel):
                return cached
        resolved = self._registry.resolve(channel)
        if isinstance(resolved, Deny):
            log.warning(
                "not publishing to an invalid channel", channel=channel, why=resolved.reason
            )
            return None
        self._namespaces[prefix] = resolved
        return resolved

    def _warn(self, error: RoutingError) -> None:
        key = (error.table, error.reason.value)
        now = self._clock()
        if now - self._warned.get(key, 0.0) >= ROUTING_WARNING_INTERVAL_S:
            self._warned[key] = now
            log.warning(
                "change not routed", table=error.table, channel=error.channel, why=error.message
            )
