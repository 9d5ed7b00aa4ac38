"""The configuration in force as `syncline config` shows it: secrets by where they come from,
the built-in rules and namespaces next to syncline.toml's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from syncline.apps.sync import app_rules
from syncline.core.namespaces import (
    DEFAULT_NAMESPACE,
    DEFAULT_NAMESPACE_KEY,
    Namespace,
    NamespaceRegistry,
    namespace_tables,
)
from syncline.core.rules import ALL_COLUMNS, Rule
from syncline.keys import API_KEY_FILE, JWT_KEY_FILE
from syncline.settings import Settings, masked
from syncline.sync_config import build_sync_config

MASK = "********"
BUILT_IN, FROM_FILE = "built in", "syncline.toml"
OP_ORDER = ("insert", "update", "delete", "truncate")


def _generated(settings: Settings, file_name: str, unset: str) -> str:
    """Where a key the embedded mode generates lives (read, never made, by `config`)."""
    if not settings.embedded:
        return unset
    path = (settings.data_dir / file_name).resolve()
    if path.exists():
        return f"set, generated in {path}"
    return f"unset, generated at the first `syncline up` in {path}"


def _rule(rule: Rule, source: str) -> dict[str, Any]:
    body: dict[str, Any] = {"table": rule.qualified_table, "channel": rule.channel}
    body["columns"] = ALL_COLUMNS if rule.columns == ALL_COLUMNS else list(rule.columns)
    body["ops"] = [op for op in OP_ORDER if op in {o.value for o in rule.ops}]
    if rule.truncate_channel is not None:
        body["truncate_channel"] = rule.truncate_channel
    return {**body, "source": source}


def _namespace(namespace: Namespace, source: str) -> dict[str, Any]:
    options = namespace.model_dump(mode="json", exclude_defaults=True, exclude={"name"})
    return {**options, "source": source}


def effective(settings: Settings) -> dict[str, Any]:
    """Every setting as it takes effect; raises ConfigError when the rules are invalid."""
    data = masked(settings)
    data["jwt_secret"] = (
        MASK
        if settings.jwt_secret is not None
        else _generated(settings, JWT_KEY_FILE, "unset: required with DATABASE_URL")
    )
    data["api_key"] = (
        MASK
        if settings.api_key is not None
        else _generated(settings, API_KEY_FILE, "unset: the server API is off")
    )
    in_force = build_sync_config(settings)
    n_built_in = len(app_rules())
    data["rules"] = [
        _rule(rule, BUILT_IN if i < n_built_in else FROM_FILE)
        for i, rule in enumerate(in_force.rules.rules)
    ]
    data["namespaces"] = {
        (namespace.name or DEFAULT_NAMESPACE_KEY): _namespace(namespace, source)
        for namespace, source in _sourced(settings, in_force.registry)
    }
    data["namespace_notes"] = list(in_force.registry.notes)
    data["shapes"] = [
        rule.model_dump(mode="json", exclude_none=True)
        for rule in in_force.shapes.by_table.values()
    ]
    return data


def _sourced(settings: Settings, registry: NamespaceRegistry) -> list[tuple[Namespace, str]]:
    tables, _ = namespace_tables(settings.namespaces)
    configured = {
        DEFAULT_NAMESPACE if key == DEFAULT_NAMESPACE_KEY else key for _, key, _ in tables
    }
    return [(ns, FROM_FILE if ns.name in configured else BUILT_IN) for ns in registry]


def namespace_options(settings: Settings) -> dict[str, Any]:
    """Every option of every namespace in force (defaults included), where each namespace
    comes from, and the notes on Centrifugo options read with a difference."""
    registry = build_sync_config(settings).registry
    namespaces = {
        (namespace.name or DEFAULT_NAMESPACE_KEY): {
            **namespace.model_dump(mode="json", exclude={"name"}),
            "source": source,
        }
        for namespace, source in _sourced(settings, registry)
    }
    return {"namespaces": namespaces, "notes": list(registry.notes)}


def namespace_rows(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The headers (option, then each namespace) and one row per option, for a table."""
    namespaces = data["namespaces"]
    names = list(namespaces)
    options = list(next(iter(namespaces.values()), {}))
    options.remove("source")
    rows = [
        [option, *(_cell(namespaces[name][option]) for name in names)]
        for option in ["source", *options]
    ]
    return ["option", *names], rows


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _toml_value(value: Any) -> str:
    return json.dumps(str(value) if isinstance(value, Path) else value, ensure_ascii=False)


def as_text(data: dict[str, Any]) -> list[str]:
    """`key = value` lines, then the rules and namespaces as TOML tables with their source."""
    lines = [
        f"{key} = {'null' if value is None else _toml_value(value)}"
        for key, value in data.items()
        if key not in ("rules", "namespaces", "namespace_notes")
    ]
    lines += ["", "# and the rules `syncline sync add` put in the database: `syncline sync list`"]
    for rule in data["rules"]:
        lines += ["", f"[[rules]]  # {rule['source']}"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in rule.items() if k != "source"]
    if data.get("namespace_notes"):
        lines += ["", "# notes on Centrifugo options:"]
        lines += [f"#   {note}" for note in data["namespace_notes"]]
    for name, options in data["namespaces"].items():
        lines += ["", f"[namespaces.{name}]  # {options['source']}"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in options.items() if k != "source"]
    return lines
