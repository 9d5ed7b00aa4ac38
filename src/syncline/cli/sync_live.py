"""`syncline sync add` with the database up: the rule goes into syncline.sync_rules, in the
transaction that sets its table up for capture, and a running capture applies it at that
commit; the command waits for the position and prints it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from syncline.capture import live_rules, setup
from syncline.capture.choose import capabilities, choose
from syncline.capture.service import LEADER_LOCK_KEY
from syncline.cli.base import connect
from syncline.errors import SynclineError
from syncline.settings import Settings
from syncline.sync_config import SyncConfig, build_sync_config

# How long `sync add` waits for a running capture to read the rule's commit.
APPLIED_WAIT_S = 10.0
_POLL_S = 0.1


@dataclass
class Added:
    """What `sync add` did: the rule's id and transaction, the setup, where capture applied it
    (None: no running capture read it within APPLIED_WAIT_S)."""

    rule_id: int
    xid: str
    mode: str
    report: setup.SetupReport
    position: str | None


def with_database_rules(
    settings: Settings, stored: list[Any], extra: Mapping[str, Any] | None = None
) -> SyncConfig:
    """The rules in force: built in, syncline.toml, the database's, and `extra`."""
    rules = [*settings.rules, *stored, *([extra] if extra is not None else [])]
    return build_sync_config(settings.model_copy(update={"rules": rules}))


async def database_rules(url: str) -> list[Any] | None:
    """The bodies of the rules in syncline.sync_rules; None before migration 0006."""
    conn = await connect(url)
    async with conn:
        found = await live_rules.fetch(conn)
    return None if found is None else [body for _, body in found]


async def add(url: str, settings: Settings, body: Mapping[str, Any]) -> Added:
    """Store the rule and set its table up, in one transaction; wait for capture to apply it."""
    conn = await connect(url)
    async with conn:
        found = await live_rules.fetch(conn)
        if found is None:
            raise SynclineError("the database has no syncline.sync_rules: run `syncline migrate`")
        config = with_database_rules(settings, [b for _, b in found], body)  # duplicates
        mode, _ = choose(settings.capture, await capabilities(conn))
        extra = [live_rules.RULES_TABLE]
        # One transaction: the table joins the publication (or gets its triggers) in the same
        # commit that adds the rule, so every commit after it is both captured and routed.
        async with conn.transaction():
            if mode == "logical":
                pub = settings.publication_name
                report = await setup.setup_logical(conn, config.rules.rules, pub, extra=extra)
            else:
                report = await setup.setup_triggers(conn, config.rules.rules, extra=extra)
            row = await (
                await conn.execute(
                    "INSERT INTO syncline.sync_rules (body) VALUES (%s)"
                    " RETURNING id, pg_current_xact_id()::text",
                    (Jsonb(dict(body)),),
                )
            ).fetchone()
        assert row is not None
        rule_id, xid = int(row[0]), str(row[1])
        position = await _applied(conn, rule_id) if await _capturing(conn) else None
        return Added(rule_id, xid, mode, report, position)


async def _capturing(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether a Syncline leads capture on this database now (holds the leader lock)."""
    row = await (
        await conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid = %s AND objid = %s AND objsubid = 1)",
            (LEADER_LOCK_KEY >> 32, LEADER_LOCK_KEY & 0xFFFFFFFF),
        )
    ).fetchone()
    return bool(row and row[0])


async def _applied(conn: psycopg.AsyncConnection[Any], rule_id: int) -> str | None:
    deadline = time.monotonic() + APPLIED_WAIT_S
    while time.monotonic() < deadline:
        row = await (
            await conn.execute(
                "SELECT applied_position FROM syncline.sync_rules WHERE id = %s", (rule_id,)
            )
        ).fetchone()
        if row is not None and row[0] is not None:
            return str(row[0])
        await asyncio.sleep(_POLL_S)
    return None
