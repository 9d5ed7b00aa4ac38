"""The orders dashboard's channel and sync rule, registered with Syncline at start."""

from __future__ import annotations

from syncline.core.namespaces import Namespace
from syncline.core.rules import Rule
from syncline.core.shapes import ShapeRule

ORDER_COLUMNS = ("id", "customer_name", "product_name", "status", "created_at", "updated_at")


def orders_namespaces() -> list[Namespace]:
    """`orders` and every other channel without ':': any signed-in user, recoverable."""
    return [
        Namespace.model_validate(
            {"history_size": 1000, "history_ttl": 3600, "recover": True, "allow_history": True}
        )
    ]


def orders_rules() -> list[Rule]:
    return [Rule(table="orders", channel="orders", columns=ORDER_COLUMNS)]


def orders_shape_rules() -> list[ShapeRule]:
    """Live queries on orders (the dashboard's status filter): any signed-in user, as the
    channel; the same columns."""
    return [ShapeRule(table="orders", columns=ORDER_COLUMNS, policy="authenticated")]
