"""The sync rules in force: the configured ones, plus those added at runtime (the table
syncline.sync_rules), each from the commit that added it on."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg
from pydantic import ValidationError

from syncline.core.namespaces import ConfigError as NamespaceConfigError
from syncline.core.namespaces import NamespaceRegistry
from syncline.core.rules import Rule, RuleSet
from syncline.logs import get_logger

log = get_logger(__name__)

RULES_TABLE = ("syncline", "sync_rules")
_LOAD = "SELECT id, body FROM syncline.sync_rules ORDER BY id"
_RECORD = "UPDATE syncline.sync_rules SET applied_position = %s WHERE id = %s"


class LiveRules:
    """The configured RuleSet and the runtime rules on top of it; `current` routes."""

    def __init__(self, configured: RuleSet, registry: NamespaceRegistry) -> None:
        self.configured = configured
        self.registry = registry
        self.added: dict[int, Rule] = {}
        self.current = configured

    def load(self, rows: Iterable[tuple[int, Any]]) -> None:
        """Every runtime rule at once (capture start): in force from where capture resumes."""
        self.added, self.current = {}, self.configured
        for rule_id, body in rows:
            self.add(rule_id, body)

    def add(self, rule_id: int, body: object) -> bool:
        """Route by one more rule from now on; False (logged) if it is invalid or known."""
        if rule_id in self.added:
            return False
        try:
            rule = Rule.model_validate(body)
            rules = RuleSet([*self.current.rules, rule], self.registry)
        except (ValidationError, NamespaceConfigError, ValueError) as err:
            text = " ".join(str(err).split())
            log.error("sync rule refused", id=rule_id, error=text)
            return False
        self.added[rule_id] = rule
        self.current = rules
        log.info("sync rule added", id=rule_id, table=rule.qualified_table, channel=rule.channel)
        return True

    def handle(self, op: str, row: Mapping[str, Any] | None) -> int | None:
        """A change of syncline.sync_rules: an insert adds its rule; the rule's id if it did."""
        if op != "insert" or row is None:
            return None  # the applied_position updates capture itself writes
        rule_id = int(row["id"])
        return rule_id if self.add(rule_id, row.get("body")) else None


async def fetch(conn: psycopg.AsyncConnection[Any]) -> list[tuple[int, Any]] | None:
    """The runtime rules in the database, oldest first; None before migration 0006."""
    found = await (await conn.execute("SELECT to_regclass('syncline.sync_rules')")).fetchone()
    if not found or found[0] is None:
        return None
    return [(int(r[0]), r[1]) for r in await (await conn.execute(_LOAD)).fetchall()]


async def record_applied(url: str, applied: Sequence[tuple[int, str]]) -> None:
    """Write where capture applied each rule (what `syncline sync add` waits for)."""
    try:
        connect = psycopg.AsyncConnection.connect
        async with await connect(url, autocommit=True, connect_timeout=5) as conn:
            for rule_id, position in applied:
                await conn.execute(_RECORD, (position, rule_id))
    except psycopg.Error as err:  # the rule is in force all the same
        log.warning("could not record where a sync rule was applied", error=str(err))
