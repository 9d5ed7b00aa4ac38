"""The namespaces and sync rules in force: built-in defaults plus syncline.toml."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from syncline.apps.sync import app_namespaces, app_rules, app_shape_rules
from syncline.core import namespaces as ns
from syncline.core.rules import RuleSet, load_rules
from syncline.core.shapes import ShapeRules, load_shape_rules, shape_namespace
from syncline.errors import ConfigError
from syncline.settings import Settings


@dataclass(frozen=True)
class SyncConfig:
    """Channel namespaces and the compiled sync rules."""

    registry: ns.NamespaceRegistry
    rules: RuleSet
    shapes: ShapeRules


def build_sync_config(settings: Settings) -> SyncConfig:
    """Defaults plus the configured namespaces and rules; one clear error if they are invalid."""
    try:
        defaults = [*app_namespaces(), shape_namespace()]
        registry = ns.load_namespaces(settings.namespaces, defaults=defaults)
        if problem := registry.personal_channel_problem(settings.personal_channel):
            raise ConfigError(problem)
        rules = [*app_rules(), *load_rules(settings.rules)]
        configured = load_shape_rules(settings.shapes)
        built_in = {r.table_key: r for r in app_shape_rules()}
        shapes = ShapeRules({**built_in, **configured.by_table}.values())
        return SyncConfig(registry, RuleSet(rules, registry), shapes)
    except ns.ConfigError as err:
        # One line: the problems after one another, not a bulleted list flattened.
        what = str(err).split(":", 1)[0]
        raise ConfigError(f"{what}: {'; '.join(err.problems)}") from None
    except (ValueError, ValidationError) as err:
        text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        raise ConfigError(text) from None
