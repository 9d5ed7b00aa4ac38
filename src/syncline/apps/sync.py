"""What the reference applications register with Syncline at start: namespaces and sync rules.

The core is generic (it routes any table by any rule); the chat and the orders dashboard are
applications of it, so their channels and rules live with them and are handed to the
composition (`syncline.sync_config`) as defaults that syncline.toml can replace.
"""

from __future__ import annotations

from syncline.apps.chat.sync import chat_namespaces, chat_rules
from syncline.apps.orders.sync import orders_namespaces, orders_rules, orders_shape_rules
from syncline.core.namespaces import Namespace
from syncline.core.rules import Rule
from syncline.core.shapes import ShapeRule


def app_namespaces() -> list[Namespace]:
    """The built-in applications' namespaces (the default one included)."""
    return [*orders_namespaces(), *chat_namespaces()]


def app_shape_rules() -> list[ShapeRule]:
    """The built-in applications' [[shapes]] rules (a configured rule of a table replaces them)."""
    return [*orders_shape_rules()]


def app_rules() -> list[Rule]:
    """The built-in applications' sync rules (their tables come from the migrations)."""
    return [*chat_rules(), *orders_rules()]
