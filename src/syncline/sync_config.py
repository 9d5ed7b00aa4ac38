"""The namespaces and sync rules in force: built-in defaults plus syncline.toml."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from syncline.apps.sync import app_namespaces, app_rules
from syncline.core import namespaces as ns
from syncline.core.rules import RuleSet, load_rules
from syncline.errors import ConfigError
from syncline.settings import Settings


@dataclass(frozen=True)
class SyncConfig:
    """Channel namespaces and the compiled sync rules."""

    registry: ns.NamespaceRegistry
    rules: RuleSet


def build_sync_config(settings: Settings) -> SyncConfig:
    """Defaults plus the configured namespaces and rules; one clear error if they are invalid."""
    try:
        registry = ns.load_namespaces(settings.namespaces, defaults=app_namespaces())
        if problem := registry.personal_channel_problem(settings.personal_channel):
            raise ConfigError(problem)
        rules = [*app_rules(), *load_rules(settings.rules)]
        return SyncConfig(registry, RuleSet(rules, registry))
    except ns.ConfigError as err:
        # One line: the problems after one another, not a bulleted list flattened.
        what = str(err).split(":", 1)[0]
        raise ConfigError(f"{what}: {'; '.join(err.problems)}") from None
    except (ValueError, ValidationError) as err:
        text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        raise ConfigError(text) from None
