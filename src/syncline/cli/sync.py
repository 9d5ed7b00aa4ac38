"""`syncline sync add` and `sync list`: the sync rules and each table's capture state."""

from __future__ import annotations

import asyncio
import json
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape

from syncline.apps.sync import app_rules
from syncline.capture import setup
from syncline.capture.choose import capabilities, choose
from syncline.cli import sync_live
from syncline.cli.base import (
    ConfigOption,
    JsonOption,
    connect,
    guarded,
    out,
    running_url,
    settings_for,
)
from syncline.core.changes import Op
from syncline.core.namespaces import describe_errors
from syncline.core.rules import ALL_COLUMNS, ReplicaIdentity, Rule, required_replica_identity
from syncline.errors import ConfigError, SynclineError
from syncline.settings import DEFAULT_CONFIG_FILE, Settings
from syncline.sync_config import SyncConfig, build_sync_config
from syncline.tables import print_table

OP_ORDER = [Op.INSERT, Op.UPDATE, Op.DELETE, Op.TRUNCATE]
_REPLIDENT = {"d": "default", "f": "full", "n": "nothing", "i": "index"}


def sync_config(settings: Settings, extra: Mapping[str, Any] | None = None) -> SyncConfig:
    if extra is None:
        return build_sync_config(settings)
    return build_sync_config(settings.model_copy(update={"rules": [*settings.rules, extra]}))


def _ops_text(ops: frozenset[Op]) -> str:
    return "all" if ops == frozenset(OP_ORDER) else ", ".join(o.value for o in OP_ORDER if o in ops)


def _columns_text(rule: Rule) -> str:
    # ", ": a narrow terminal wraps the list between names, never inside one.
    return ALL_COLUMNS if rule.columns == ALL_COLUMNS else ", ".join(rule.columns)


# -- sync add ---------------------------------------------------------------------------------


def toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    parts = ['"']
    for char in value:
        if char in ('"', "\\"):
            parts.append("\\" + char)
        elif char < " " or char == "\x7f":
            parts.append(f"\\u{ord(char):04X}")
        else:
            parts.append(char)
    parts.append('"')
    return "".join(parts)


def rule_toml(body: Mapping[str, Any]) -> str:
    """One ``[[rules]]`` table for a rule body of strings and lists of strings."""
    lines = ["[[rules]]"]
    for key, value in body.items():
        if isinstance(value, str):
            lines.append(f"{key} = {toml_string(value)}")
        else:
            lines.append(f"{key} = [{', '.join(toml_string(v) for v in value)}]")
    return "\n".join(lines) + "\n"


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _rule_body(
    table: str, channel: str, columns: str, ops: str | None, truncate_channel: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"table": table, "channel": channel}
    body["columns"] = ALL_COLUMNS if columns.strip() == ALL_COLUMNS else _split(columns)
    if ops is not None:
        body["ops"] = [op.lower() for op in _split(ops)]
    if truncate_channel is not None:
        body["truncate_channel"] = truncate_channel
    try:
        Rule.model_validate(body)
    except ValidationError as error:
        where = "[rule] "  # the rule is the command's arguments, not a table in a file
        problems = "; ".join(p.removeprefix(where) for p in describe_errors("rule", error, Rule))
        raise ConfigError(f"invalid rule: {problems}") from None
    return body


def _append_rule(path: Path, body: Mapping[str, Any]) -> None:
    """Append the rule to the file as text; refuse if the result would not parse."""
    try:
        existing = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from None
    addition = "\n" if existing and not existing.endswith("\n") else ""
    addition += ("\n" if existing.strip() else "") + rule_toml(body)
    try:
        parsed = tomllib.loads(existing + addition)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"cannot append a [[rules]] table to {path}: {error}") from None
    if not parsed.get("rules") or parsed["rules"][-1] != body:
        raise ConfigError(f"cannot append a [[rules]] table to {path}: it defines rules otherwise")
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(addition)
        with path.open("rb") as handle:
            tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"cannot write {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:  # someone else wrote to it meanwhile
        raise ConfigError(f"{path} is no longer valid TOML: {error}") from None


def sync_add(
    table: Annotated[str, typer.Argument(help="schema.table, or table for public.table")],
    channel: Annotated[str, typer.Option(help="channel template, e.g. 'room:{room_id}'")],
    columns: Annotated[str, typer.Option(help="published columns: a,b,c or '*'")] = ALL_COLUMNS,
    ops: Annotated[
        str | None, typer.Option(help="insert,update,delete,truncate [all]", show_default=False)
    ] = None,
    truncate_channel: Annotated[
        str | None, typer.Option(help="fixed channel that announces a truncate")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Add a sync rule: with the database up, into the database (every node; a running
    Syncline applies it at once, from the commit position printed); else into syncline.toml."""

    def body() -> None:
        path = config if config is not None else DEFAULT_CONFIG_FILE
        rule = _rule_body(table, channel, columns, ops, truncate_channel)
        settings = settings_for(path if path.exists() else None, quiet=True)
        sync_config(settings, rule)  # namespaces, duplicates
        url = running_url(settings)
        if url is None:
            _append_rule(path, rule)
            out.print(f"added rule {escape(table)} → {escape(channel)} to {escape(str(path))}")
            out.print("database not running: `syncline up` sets the table up when it starts")
            return
        added = asyncio.run(sync_live.add(url, settings, rule))
        out.print(
            f"added rule {escape(table)} → {escape(channel)} to the database"
            f" (syncline.sync_rules id {added.rule_id}, transaction {added.xid})"
        )
        for change in added.report.changed:
            out.print(f"  {added.mode} capture: {escape(change)}")
        for schema, name in added.report.missing:
            out.print(
                f"  table {schema}.{name} does not exist yet; "
                "it is captured once created and Syncline restarted"
            )
        if added.position is None:
            out.print(
                "no running capture read it yet: it takes effect at its commit when capture"
                " reads it, or from where capture resumes when Syncline starts"
            )
        else:
            out.print(
                f"in force from commit position {added.position}: every commit after it is"
                " routed by the rule (its publications have a greater lsn)"
            )

    guarded(body)


# -- sync list --------------------------------------------------------------------------------


@dataclass
class _TableState:
    exists: bool = False
    in_publication: bool = False
    trigger: bool = False
    replica_identity: str = ""
    needs_full: bool = False


async def _table_states(
    url: str, settings: Settings, rules: list[Rule]
) -> tuple[str, dict[tuple[str, str], _TableState]]:
    conn = await connect(url)
    states: dict[tuple[str, str], _TableState] = {}
    async with conn:
        caps = await capabilities(conn)
        mode, why = choose(settings.capture, caps)
        for rule in rules:
            key = rule.table_key
            state = states.setdefault(key, _TableState())
            row = await (
                await conn.execute(
                    "SELECT c.relreplident,"
                    " EXISTS (SELECT 1 FROM pg_publication_tables p WHERE p.pubname = %s"
                    "   AND p.schemaname = n.nspname AND p.tablename = c.relname),"
                    " EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid"
                    "   AND t.tgname = %s)"
                    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
                    (settings.publication_name, setup.ROW_TRIGGER, *key),
                )
            ).fetchone()
            if row is None:
                continue
            state.exists = True
            state.replica_identity = _REPLIDENT.get(row[0], row[0])
            state.in_publication, state.trigger = bool(row[1]), bool(row[2])
            pk = await (
                await conn.execute(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
                    " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
                    " WHERE i.indrelid = format('%%I.%%I', %s::text, %s::text)::regclass"
                    " AND i.indisprimary",
                    key,
                )
            ).fetchall()
            if required_replica_identity(rule, [r[0] for r in pk]) is ReplicaIdentity.FULL:
                state.needs_full = True
    return f"{mode} ({why})", states


def _capture_text(state: _TableState) -> str:
    if not state.exists:
        return "table missing"
    parts = []
    if state.in_publication:
        parts.append("in publication")
    if state.trigger:
        parts.append("trigger installed")
    if not parts:
        parts.append("not set up")
    identity = f"replica identity {state.replica_identity}"
    if state.needs_full and state.replica_identity != "full":
        identity += " (needs full)"
    return ", ".join([*parts, identity])


def sync_list(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Show the sync rules in force (built in, syncline.toml, the database's) and their
    capture state."""

    def body() -> None:
        settings = settings_for(config, quiet=True)
        rules = list(sync_config(settings).rules.rules)
        sources = [(len(app_rules()), "default"), (len(rules), "syncline.toml")]
        url = running_url(settings)
        mode, states, note = None, None, None
        if url is None:
            note = "database not running: capture state unknown"
        else:
            try:
                stored = asyncio.run(sync_live.database_rules(url)) or []
                rules = list(sync_live.with_database_rules(settings, stored).rules.rules)
                mode, states = asyncio.run(_table_states(url, settings, rules))
            except SynclineError as error:
                note = str(error)
        rows = []
        for i, rule in enumerate(rules):
            source = next((name for end, name in sources if i < end), "database")
            row: dict[str, Any] = {
                "table": rule.qualified_table,
                "channel": rule.channel,
                "columns": rule.columns if rule.columns == ALL_COLUMNS else list(rule.columns),
                "ops": [op.value for op in OP_ORDER if op in rule.ops],
                "source": source,
            }
            if states is not None:
                state = states[rule.table_key]
                row.update(
                    exists=state.exists,
                    in_publication=state.in_publication,
                    trigger_installed=state.trigger,
                    replica_identity=state.replica_identity or None,
                )
            rows.append((rule, row))
        if as_json:
            data = {"capture": mode, "rules": [row for _, row in rows]}
            sys.stdout.write(json.dumps(data, indent=2) + "\n")
            return
        headers = ["table", "channel", "columns", "ops", "source"]
        headers += ["capture"] if states is not None else []
        cells = []
        for rule, row in rows:
            line = [rule.qualified_table, rule.channel, _columns_text(rule)]
            line += [_ops_text(rule.ops), row["source"]]
            if states is not None:
                line.append(_capture_text(states[rule.table_key]))
            cells.append(line)
        print_table("Sync rules", headers, cells)
        out.print(f"capture: {escape(mode)}" if mode else escape(note or ""))

    guarded(body)
