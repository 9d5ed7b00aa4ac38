"""The open shapes of one server: shared by key, limited, dropped when idle, and routed.

Identical shapes (same table, columns and normalized filter with the row policy bound to the
user) have the same key, so they are one entry with many subscribers: one filter evaluation
per change whatever the number of subscribers. The clock is the caller's (``now`` arguments).
"""

from __future__ import annotations

import bisect
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
# cost one filter pass each per change of that table, less the shapes the index skips.
DEFAULT_MAX_SHAPES = 10_000
# A UI shows a handful of live lists at once; 100 is far above that and stops a runaway loop.
DEFAULT_MAX_SHAPES_PER_CONNECTION = 100
# Kept this long without subscribers, so that a page reload or a reconnect reuses the shape
# (and its history) instead of reading a new snapshot.
DEFAULT_IDLE_SECONDS = 60.0


class ShapeLimitError(Exception):
    """Too many shapes on this server or this connection; the message says which."""


@dataclass(frozen=True, slots=True)
class _Index:
    """What a shape's filter requires of one column, for the routing index.

    ``op`` "=" with ``keys``: the column's key is one of them. ``op`` "<", "<=", ">" or ">="
    with one key: the column compares so with it. A row whose column doesn't satisfy it (or is
    NULL) is not in the shape, so the shape needn't be evaluated for that row.
    """

    column: str
    op: str
    keys: tuple[Any, ...]
    key_function: Any  # the column's ValueType.key


@dataclass(slots=True)
class _Entry:
    shape: Shape
    subscribers: set[str] = field(default_factory=set)
    idle_since: float | None = None
    index: _Index | None = None


def _index_of(shape: Shape) -> _Index | None:
    """The index entry of a shape: from ``c = v``, ``c in (…)`` or else ``c < v`` (and the
    other orderings), alone or as an item of a top-level ``and``; equality preferred."""
    expr = shape.filter
    if isinstance(expr, Junction) and expr.op != "and":
        return None
    items = expr.items if isinstance(expr, Junction) else (expr,)
    ordered: _Index | None = None
    for item in items:
        if isinstance(item, Comparison):
            if item.op == "=":
                return _Index(item.column, "=", (item.key,), item.type.key)
            if item.op != "!=" and ordered is None:
                ordered = _Index(item.column, item.op, (item.key,), item.type.key)
        elif isinstance(item, Membership) and not item.negated:
            return _Index(item.column, "=", tuple(item.keys), item.type.key)
    return ordered


def _first(entry: tuple[Any, str]) -> Any:
    return entry[0]


class _Ordered:
    """Shapes requiring ``column op k``, sorted by k: the matches of a value are a prefix
    (``>``, ``>=``: every k below the value) or a suffix (``<``, ``<=``), found by bisection."""

    __slots__ = ("entries", "op")

    def __init__(self, op: str) -> None:
        self.op = op
        self.entries: list[tuple[Any, str]] = []  # (k, shape key), sorted

    def add(self, key: Any, shape_key: str) -> None:
        bisect.insort(self.entries, (key, shape_key))

    def remove(self, key: Any, shape_key: str) -> None:
        i = bisect.bisect_left(self.entries, (key, shape_key))
        if i < len(self.entries) and self.entries[i] == (key, shape_key):
            del self.entries[i]

    def matching(self, value: Any) -> list[tuple[Any, str]]:
        entries, op = self.entries, self.op
        if op == ">":  # k < value
            return entries[: bisect.bisect_left(entries, value, key=_first)]
        if op == ">=":  # k <= value
            return entries[: bisect.bisect_right(entries, value, key=_first)]
        if op == "<":  # k > value
            return entries[bisect.bisect_right(entries, value, key=_first) :]
        return entries[bisect.bisect_left(entries, value, key=_first) :]  # "<=": k >= value


class _Table:
    """The shapes of one table, indexed by what their filters require of a column."""

    def __init__(self) -> None:
        self.scan: dict[str, Shape] = {}  # evaluated for every change
        self.shapes: dict[str, Shape] = {}  # every indexed shape, by key
        self.equal: dict[str, dict[Any, set[str]]] = {}  # column → key → shape keys
        self.ordered: dict[tuple[str, str], _Ordered] = {}  # (column, op) → sorted shapes
        self.key_of: dict[str, Any] = {}  # column → its ValueType.key function

    def add(self, entry: _Entry) -> None:
        shape, index = entry.shape, entry.index
        if index is None:
            self.scan[shape.key] = shape
            return
        self.shapes[shape.key] = shape
        self.key_of[index.column] = index.key_function
        if index.op == "=":
            by_key = self.equal.setdefault(index.column, {})
            for key in index.keys:
                by_key.setdefault(key, set()).add(shape.key)
        else:
            ordered = self.ordered.setdefault((index.column, index.op), _Ordered(index.op))
            ordered.add(index.keys[0], shape.key)

    def remove(self, entry: _Entry) -> None:
        shape, index = entry.shape, entry.index
        if index is None:
            self.scan.pop(shape.key, None)
            return
        del self.shapes[shape.key]
        if index.op == "=":
            by_key = self.equal[index.column]
            for key in index.keys:
                keys = by_key[key]
                keys.discard(shape.key)
                if not keys:
                    del by_key[key]
            if not by_key:
                del self.equal[index.column]
        else:
            ordered = self.ordered[(index.column, index.op)]
            ordered.remove(index.keys[0], shape.key)
            if not ordered.entries:
                del self.ordered[(index.column, index.op)]

    def __bool__(self) -> bool:
        return bool(self.scan or self.shapes)

    def candidates(self, change: Change) -> Iterator[Shape]:
        """Every shape the change may touch: the unindexed ones, and the indexed ones that
        the old or the new row satisfies on their column (all of them for a truncate, or when
        the old row or a row's column is missing: the shape then reports what it lacks)."""
        yield from self.scan.values()
        if not self.shapes:
            return
        if change.op is Op.TRUNCATE or (change.op is not Op.INSERT and change.old is None):
            # An update or delete without its old row (a table whose REPLICA IDENTITY was
            # changed behind Syncline's back): every shape must see it and report the problem.
            yield from self.shapes.values()
            return
        found: set[str] = set()
        rows = [row for row in (change.row, change.old) if row is not None]
        for column, by_key in self.equal.items():
            key = self.key_of[column]
            for row in rows:
                value = row.get(column, _ABSENT)
                if value is _ABSENT:
                    for keys in by_key.values():
                        found.update(keys)
                elif value is not None:
                    found.update(by_key.get(key(value), ()))
        for (column, _), ordered in self.ordered.items():
            key = self.key_of[column]
            for row in rows:
                value = row.get(column, _ABSENT)
                if value is _ABSENT:
                    found.update(shape_key for _, shape_key in ordered.entries)
                elif value is not None:
                    found.update(shape_key for _, shape_key in ordered.matching(key(value)))
        shapes = self.shapes
        for shape_key in found:
            yield shapes[shape_key]


_ABSENT = object()


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

    def keys(self) -> list[str]:
        return list(self._entries)

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
            entry = self._entries[shape.key] = _Entry(shape, index=_index_of(shape))
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

    def touch(self, key: str, now: float) -> None:
        """A shape still in use without an opener (a client that recovered its subscription
        after a reconnect): its idle time starts again."""
        entry = self._entries.get(key)
        if entry is not None and entry.idle_since is not None:
            entry.idle_since = now

    def connections(self) -> list[str]:
        """The connections that have shapes open."""
        return list(self._by_connection)

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
