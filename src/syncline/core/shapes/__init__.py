"""Live queries (shapes): a table, a filter and columns, kept up to date (docs/topics/shapes.md)."""

from syncline.core.shapes.filters import FilterError, canonical, parse, predicate, render_sql
from syncline.core.shapes.registry import ShapeLimitError, ShapeRegistry
from syncline.core.shapes.shape import (
    Shape,
    ShapeEvent,
    ShapeProblem,
    ShapeRequest,
    ShapeRule,
    ShapeRules,
    TableSchema,
    compile_shape,
    load_shape_rules,
    shape_namespace,
)
from syncline.core.shapes.snapshot import (
    Handoff,
    PgSnapshot,
    RecentTransactions,
    SnapshotBoundary,
    SnapshotTooEarlyError,
    visible_in,
    widen_xid,
)

__all__ = [
    "FilterError",
    "Handoff",
    "PgSnapshot",
    "RecentTransactions",
    "Shape",
    "ShapeEvent",
    "ShapeLimitError",
    "ShapeProblem",
    "ShapeRegistry",
    "ShapeRequest",
    "ShapeRule",
    "ShapeRules",
    "SnapshotBoundary",
    "SnapshotTooEarlyError",
    "TableSchema",
    "canonical",
    "compile_shape",
    "load_shape_rules",
    "parse",
    "predicate",
    "render_sql",
    "shape_namespace",
    "visible_in",
    "widen_xid",
]
