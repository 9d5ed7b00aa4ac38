"""The open shapes of one server: shared by key, limited, dropped when idle, and routed.

Identical shapes (same table, columns and normalized filter with the row policy bound to the
user) have the same key, so they are one entry with many subscribers: one filter evaluation
per change whatever the number of subscribers. The clock is the caller's (``now`` arguments).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from syncline.core.changes import Change, Op
from syncline.core.shapes.filters import Comparison, Junction, Membership
from syncline.core.shapes.shape import Shape, ShapeEvent, ShapeProblem

__all__ = [
    "DEFAULT_IDLE_SECONDS",
    "DEFAULT_MAX_SHAPES",
    "DEFAULT_MAX_SHAPES_PER_CONNECTION",
    "ShapeLimitError",
    "ShapeRegistry",
]

# A shape costs its filter, a channel and its history; 10,000 distinct shapes on one table
# cost one filter pass each per change of that table (the equality index below skips most).
DEFAULT_MAX_SHAPES = 10_000
# A UI shows a handful of live lists at once; 100 is far above that and stops a runaway loop.
DEFAULT_MAX_SHAPES_PER_CONNECTION = 100
# Kept this long without subscribers, so that a page reload or a reconnect reuses the shape
# (and its history) instead of reading a new snapshot.
DEFAULT_IDLE_SECONDS = 60.0


class ShapeLimitError(Exception):
    """Too many shapes on this server or this connection; the message says which."""


@dataclass(slots=True)
class _Entry:
    shape: Shape
    subscribers: set[str] = field(default_factory=set)
    idle_since: float | None = None
    index: tuple[str, frozenset[Any]] | None = None  # (column, keys) the filter needs equal


def _equality(shape: Shape) -> tuple[str, frozenset[Any]] | None:
    """A column and the keys it must have for the filter to be true, if the filter says so.

    ``c = v`` or ``c in (…)``, alone or as an item of a top-level ``and``: a row whose ``c``
    has another key (or is NULL) is not in the shape, so the shape needn't be evaluated.
    """
    items = shape.filter.items if isinstance(shape.filter, Junction) else (shape.filter,)
    if isinstance(shape.filter, Junction) and shape.filter.op != "and":
        return None
    for item in items:
        if isinstance(item, Comparison) and item.op == "=":
            return item.column, frozenset({item.key})
        if isinstance(item, Membership) and not item.negated:
            return item.column, item.keys
    return None


class _Table:
    """The shapes of one table, with an index of those that need a column equal to a value."""

    def __init__(self) -> None:
        self.scan: dict[str, Shape] = {}  # evaluated for every change
        self.index: dict[str, dict[Any, dict[str, Shape]]] = {}  # column → key → shapes
        self.key_of: dict[str, Any] = {}  # column → its ValueType.key function

    def add(self, entry: _Entry) -> None:
        shape = entry.shape
        if entry.index is None:
            self.scan[shape.key] = shape
            return
        column, keys = entry.index
        by_key = self.index.setdefault(column, {})
        self.key_of[column] = _key_function(shape, column)
        for key in keys:
            by_key.setdefault(key, {})[shape.key] = shape

    def remove(self, entry: _Entry) -> None:
        shape = entry.shape
        if entry.index is None:
            self.scan.pop(shape.key, None)
            return
        column, keys = entry.index
        by_key = self.index[column]
        for key in keys:
            shapes = by_key[key]
            shapes.pop(shape.key, None)
            if not shapes:
                del by_key[key]
        if not by_key:
            del self.index[column], self.key_of[column]

    def __bool__(self) -> bool:
        return bool(self.scan or self.index)

    def candidates(self, change: Change) -> Iterator[Shape]:
        yield from self.scan.values()
        everything = change.op is Op.TRUNCATE
        for column, by_key in self.index.items():
            found: dict[str, Shape] = {}
            key = self.key_of[column]
            for row in (change.row, change.old):
                if row is None:
                    continue
                value = row.get(column, _ABSENT)
                if value is _ABSENT:
                    # Not in the row (TOAST, key-only old row): let every shape see the change
                    # and report what it lacks, or (truncate) every shape is touched.
                    for shapes in by_key.values():
                        found.update(shapes)
                    break
                if value is not None:
                    found.update(by_key.get(key(value), {}))
            if everything:
                for shapes in by_key.values():
                    found.update(shapes)
            yield from found.values()


_ABSENT = object()


def _key_function(shape: Shape, column: str) -> Any:
    items = shape.filter.items if isinstance(shape.filter, Junction) else (shape.filter,)
    for item in items:
        if isinstance(item, Comparison | Membership) and item.column == column:
            return item.type.key
    raise AssertionError(f"no comparison on {column}")


class ShapeRegistry:
    """Open shapes by key, their subscribers (connection ids), limits and idle expiry."""

    def __init__(
        self,
        *,
        max_shapes: int = DEFAULT_MAX_SHAPES,
        max_per_connection: int = DEFAULT_MAX_SHAPES_PER_CONNECTION,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
    ) -> None:
        self.max_shapes = max_shapes
        self.max_per_connection = max_per_connection
        self.idle_seconds = idle_seconds
        self._entries: dict[str, _Entry] = {}
        self._by_connection: dict[str, set[str]] = {}
        self._tables: dict[tuple[str, str], _Table] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Shape | None:
        entry = self._entries.get(key)
        return None if entry is None else entry.shape

    def subscribers(self, key: str) -> frozenset[str]:
        entry = self._entries.get(key)
        return frozenset() if entry is None else frozenset(entry.subscribers)

    def open(self, connection: str, shape: Shape) -> tuple[Shape, bool]:
        """Subscribe ``connection`` to ``shape``: the registered shape, and whether it is new
        (then the caller reads its snapshot). ShapeLimitError when a limit is reached."""
        mine = self._by_connection.get(connection, set())
        entry = self._entries.get(shape.key)
        if entry is not None and connection in entry.subscribers:
            return entry.shape, False
        if len(mine) >= self.max_per_connection:
            raise ShapeLimitError(
                f"a connection may have {self.max_per_connection} shapes open at most"
            )
        created = entry is None
        if entry is None:
            if len(self._entries) >= self.max_shapes:
                raise ShapeLimitError(f"this server has {self.max_shapes} shapes open already")
            entry = self._entries[shape.key] = _Entry(shape, index=_equality(shape))
            self._tables.setdefault((shape.schema, shape.table), _Table()).add(entry)
        entry.subscribers.add(connection)
        entry.idle_since = None
        self._by_connection.setdefault(connection, set()).add(shape.key)
        return entry.shape, created

    def close(self, connection: str, key: str, now: float) -> None:
        """Unsubscribe ``connection``; a shape left without subscribers starts idling."""
        entry = self._entries.get(key)
        if entry is None or connection not in entry.subscribers:
            return
        entry.subscribers.discard(connection)
        mine = self._by_connection[connection]
        mine.discard(key)
        if not mine:
            del self._by_connection[connection]
        if not entry.subscribers:
            entry.idle_since = now

    def close_connection(self, connection: str, now: float) -> None:
        """A connection went away: unsubscribe it from every shape."""
        for key in list(self._by_connection.get(connection, ())):
            self.close(connection, key, now)

    def expire(self, now: float) -> list[Shape]:
        """Drop the shapes idle for ``idle_seconds`` or more; returns them."""
        dropped = [
            entry
            for entry in self._entries.values()
            if entry.idle_since is not None and now - entry.idle_since >= self.idle_seconds
        ]
        for entry in dropped:
            self.drop(entry.shape.key)
        return [entry.shape for entry in dropped]

    def drop(self, key: str) -> Shape | None:
        """Remove a shape now (expired, or its stream failed): its subscribers must reopen."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        for connection in entry.subscribers:
            mine = self._by_connection[connection]
            mine.discard(key)
            if not mine:
                del self._by_connection[connection]
        table_key = (entry.shape.schema, entry.shape.table)
        table = self._tables[table_key]
        table.remove(entry)
        if not table:
            del self._tables[table_key]
        return entry.shape

    def tables(self) -> list[tuple[str, str]]:
        """The tables that have shapes: what capture must deliver to the registry."""
        return list(self._tables)

    def route(self, change: Change) -> list[tuple[Shape, list[ShapeEvent] | ShapeProblem]]:
        """Each shape that ``change`` touches, with its events (or the problem it causes)."""
        table = self._tables.get((change.schema, change.table))
        if table is None:
            return []
        out: list[tuple[Shape, list[ShapeEvent] | ShapeProblem]] = []
        for shape in table.candidates(change):
            result = shape.classify(change)
            if result:
                out.append((shape, result))
        return out
