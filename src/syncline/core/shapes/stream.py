"""A shape's channel: the publication of each change, and a state joined to a channel position.

Each publication is one change of the shape, JSON: ``{"op", "key", "row", "lsn", "xid",
"commit_time"}`` (docs/protocol.md, "Shapes"). A client's state is the snapshot's rows plus
the publications its snapshot does not contain, up to a channel position; ``ShapeState``
applies them, and pages the result for the RPC replies.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from syncline.core.changes import Change, Lsn
from syncline.core.rules import format_commit_time
from syncline.core.shapes.shape import Shape, ShapeEvent
from syncline.core.shapes.snapshot import SnapshotBoundary

__all__ = [
    "RESET",
    "ShapeReset",
    "ShapeState",
    "apply_event",
    "encode_change",
    "encode_reset",
    "pages",
]

# The op of the publication that ends a shape's stream: its clients must open it again.
RESET = "reset"


class ShapeReset(Exception):
    """The shape's stream ended (a reset publication) while a state was being joined to it."""


def encode_change(events: Sequence[ShapeEvent], change: Change) -> bytes:
    """One publication for what ``change`` does to a shape.

    A change gives one event, or two when an update changed the row's primary key (delete of
    the old key, insert of the new): then one ``update`` with ``old_key``, so that each change
    keeps one publication, and its commit position, in the channel log.
    """
    if len(events) == 2:
        gone, came = events
        body: dict[str, Any] = {"op": "update", "key": came.key, "old_key": gone.key}
        body["row"] = came.row
    else:
        event = events[0]
        body = {"op": event.op}
        if event.key is not None:
            body["key"] = event.key
        if event.row is not None:
            body["row"] = event.row
    body["lsn"] = str(Lsn(change.position.commit))
    body["xid"] = change.xid
    body["commit_time"] = format_commit_time(change.commit_time_us)
    return orjson.dumps(body)


def encode_reset(reason: str) -> bytes:
    """The last publication of a shape's stream: clients open the shape again."""
    return orjson.dumps({"op": RESET, "reason": reason})


class ShapeState:
    """A shape's rows by primary key: a snapshot, then publications applied in offset order."""

    __slots__ = ("_key", "rows")

    def __init__(self, shape: Shape) -> None:
        self._key = shape.primary_key
        self.rows: dict[tuple[Any, ...], dict[str, Any]] = {}

    def load(self, batch: Iterable[dict[str, Any]]) -> None:
        key = self._key
        for row in batch:
            self.rows[tuple(row[name] for name in key)] = row

    def apply(self, data: bytes, boundary: SnapshotBoundary) -> None:
        """Apply one publication unless the snapshot already contains its transaction."""
        body = orjson.loads(data)
        if body["op"] == RESET:
            raise ShapeReset(str(body.get("reason", "")))
        if not boundary.contains_at(Lsn.parse(body["lsn"]).value, int(body["xid"])):
            apply_event(self.rows, self._key, body)


def apply_event(rows: dict[tuple[Any, ...], Any], key: Sequence[str], body: Any) -> bool:
    """Apply one decoded shape publication to rows by primary key (a tuple in ``key``'s
    order); False for a ``reset``: the stream ended and the shape must be opened again."""
    op = body.get("op")
    if op == RESET:
        return False
    if op == "truncate":
        rows.clear()
        return True
    old = body.get("old_key")
    if old is not None:
        rows.pop(tuple(old[name] for name in key), None)
    at = tuple(body["key"][name] for name in key)
    if op == "delete":
        rows.pop(at, None)
    else:
        rows[at] = body["row"]
    return True


def pages(rows: Iterable[dict[str, Any]], *, max_rows: int, max_bytes: int) -> list[list[Any]]:
    """Rows cut into pages of at most ``max_rows`` rows and about ``max_bytes`` of JSON each
    (a single larger row makes a page of its own): no reply frame grows with the shape."""
    out: list[list[Any]] = [[]]
    size = 0
    for row in rows:
        length = len(orjson.dumps(row))
        page = out[-1]
        if page and (len(page) >= max_rows or size + length > max_bytes):
            page = []
            out.append(page)
            size = 0
        page.append(row)
        size += length
    return out
