"""The shape registry: sharing, limits, idle expiry, and routing through the index."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncline.core.changes import Change, CommitPosition, Op
from syncline.core.shapes.registry import ShapeLimitError, ShapeRegistry
from syncline.core.shapes.shape import (
    Shape,
    ShapeProblem,
    ShapeRequest,
    ShapeRule,
    TableSchema,
    compile_shape,
)

ORDERS = TableSchema("public", "orders", {"id": "int8", "status": "text", "total": "int4"}, ("id",))
RULE = ShapeRule(table="orders", policy="authenticated")


def shape(where: str | None) -> Shape:
    return compile_shape(ShapeRequest(table="orders", where=where), RULE, ORDERS, "u")


def change(op: Op, row: dict[str, Any] | None, old: dict[str, Any] | None) -> Change:
    return Change("public", "orders", op, row, old, CommitPosition(1, 0), 9, 0)


def test_identical_shapes_are_one_entry_with_many_subscribers() -> None:
    registry = ShapeRegistry()
    first, created = registry.open("c1", shape("status = 'a'"))
    assert created
    again, created = registry.open("c2", shape("Status = 'a'"))
    assert not created and again is first
    assert registry.open("c2", shape("status = 'a'")) == (first, False)  # idempotent
    assert len(registry) == 1
    assert registry.subscribers(first.key) == {"c1", "c2"}
    assert registry.tables() == [("public", "orders")]


def test_limits_per_connection_and_per_server() -> None:
    registry = ShapeRegistry(max_shapes=3, max_per_connection=2)
    registry.open("c1", shape("total = 1"))
    registry.open("c1", shape("total = 2"))
    with pytest.raises(ShapeLimitError, match="a connection may have 2 shapes open at most"):
        registry.open("c1", shape("total = 3"))
    registry.open("c2", shape("total = 3"))
    with pytest.raises(ShapeLimitError, match="this server has 3 shapes open already"):
        registry.open("c2", shape("total = 4"))
    registry.open("c2", shape("total = 1"))  # an existing shape costs the server nothing


def test_idle_shapes_are_dropped_after_a_while_unless_reopened() -> None:
    registry = ShapeRegistry(idle_seconds=60)
    a, _ = registry.open("c1", shape("total = 1"))
    b, _ = registry.open("c1", shape("total = 2"))
    registry.open("c2", shape("total = 2"))
    registry.close_connection("c1", now=100)
    assert registry.subscribers(b.key) == {"c2"}
    assert registry.expire(now=159) == []
    registry.open("c3", shape("total = 1"))  # reopened in time: kept
    registry.close("c3", a.key, now=170)
    assert registry.expire(now=229) == []
    assert registry.expire(now=230) == [a]
    assert registry.get(a.key) is None and registry.get(b.key) is b
    registry.close("c2", b.key, now=300)
    assert registry.expire(now=360) == [b]
    assert len(registry) == 0 and registry.tables() == []
    assert registry.route(change(Op.INSERT, {"id": 1, "status": "a", "total": 2}, None)) == []


def test_a_failed_shape_is_dropped_with_its_subscribers() -> None:
    registry = ShapeRegistry()
    s, _ = registry.open("c1", shape("status = 'a'"))
    problem = registry.route(change(Op.DELETE, None, {"id": 1}))
    assert len(problem) == 1 and isinstance(problem[0][1], ShapeProblem)
    assert registry.drop(s.key) is s
    assert registry.drop(s.key) is None
    registry.open("c1", shape("status = 'b'"))  # the connection's count went down


FILTERS = [
    None,
    "status = 'a'",
    "status = 'b'",
    "status in ('a', 'c')",
    "status = 'a' and total > 1",
    "status = 'a' or total > 1",
    "total = 2",
    "total = 2 and status != 'x'",
    "status not in ('a')",
    "status is null",
    "total > 1",
    "total >= 2",
    "total < 1",
    "total <= 2 and status != 'c'",
    "total > 0 and status = 'b'",
    "total != 2",
]
_rows = st.fixed_dictionaries(
    {
        "id": st.integers(1, 3),
        "status": st.sampled_from(["a", "b", "c", None]),
        "total": st.integers(0, 3) | st.none(),
    }
)


@settings(max_examples=300)
@given(
    op=st.sampled_from([Op.INSERT, Op.UPDATE, Op.DELETE, Op.TRUNCATE]),
    new=_rows,
    old=_rows | st.none(),  # None: an update or delete without its old row
)
def test_routing_through_the_index_equals_asking_every_shape(
    op: Op, new: dict[str, Any], old: dict[str, Any] | None
) -> None:
    registry = ShapeRegistry()
    shapes = [registry.open(f"c{i}", shape(f))[0] for i, f in enumerate(FILTERS)]
    c = change(
        op,
        None if op in (Op.DELETE, Op.TRUNCATE) else new,
        None if op in (Op.INSERT, Op.TRUNCATE) else old,
    )
    expected = {s.key: r for s in shapes if (r := s.classify(c))}
    assert {s.key: r for s, r in registry.route(c)} == expected


def test_the_index_skips_the_shapes_a_change_cannot_touch() -> None:
    registry = ShapeRegistry()
    for k in range(50):
        registry.open("c", shape(f"total > {k}"))
        registry.open("c", shape(f"total = {k}"))
    row = {"id": 1, "status": "a", "total": 3}
    table = registry._tables[("public", "orders")]
    touched = {s.where for s in table.candidates(change(Op.INSERT, row, None))}
    assert touched == {"total > 0", "total > 1", "total > 2", "total = 3"}
    moved = change(Op.UPDATE, {**row, "total": 5}, row)
    touched = {s.where for s in table.candidates(moved)}
    assert touched == {f"total > {k}" for k in range(5)} | {"total = 3", "total = 5"}
    assert {
        s.where for s in table.candidates(change(Op.INSERT, {**row, "total": None}, None))
    } == set()
