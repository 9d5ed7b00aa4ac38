"""Shape rules and requests, row policies, and what each change means for a shape."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncline.core.changes import Change, CommitPosition, Op
from syncline.core.namespaces import ConfigError
from syncline.core.shapes.filters import FilterError
from syncline.core.shapes.shape import (
    Shape,
    ShapeEvent,
    ShapeProblem,
    ShapeRequest,
    ShapeRule,
    TableSchema,
    compile_shape,
    load_shape_rules,
)

ORDERS = TableSchema(
    "public",
    "orders",
    {"id": "int8", "owner_id": "int8", "status": "text", "total": "numeric", "note": "text"},
    ("id",),
)
OPEN = ShapeRule(table="orders", policy="authenticated")
MINE = ShapeRule(table="orders", policy="row", row_filter="owner_id = {sub}")


def shape(where: str | None = None, rule: ShapeRule = OPEN, sub: str = "7", **kw: Any) -> Shape:
    return compile_shape(ShapeRequest(table="orders", where=where, **kw), rule, ORDERS, sub)


def change(op: Op, row: dict[str, Any] | None, old: dict[str, Any] | None, **kw: Any) -> Change:
    return Change("public", "orders", op, row, old, CommitPosition(1, 0), 9, 0, **kw)


def order(id: int = 1, status: str | None = "pending", **kw: Any) -> dict[str, Any]:
    return {"id": id, "owner_id": 7, "status": status, "total": 10, "note": "n", **kw}


def test_rules_load_and_say_what_is_wrong() -> None:
    rules = load_shape_rules(
        [
            {"table": "orders", "policy": "authenticated"},
            {"table": "app.rooms", "policy": "row", "row_filter": "owner = {sub}"},
        ]
    )
    assert rules.get("orders") is not None
    assert rules.get("public.orders") is rules.get("orders")
    assert rules.get("app.rooms") is not None
    assert rules.get("rooms") is None
    with pytest.raises(ConfigError) as caught:
        load_shape_rules(
            [
                {"table": "orders", "policy": "row"},
                {"table": "a", "policy": "row", "row_filter": "owner = {user}"},
                {"table": "b", "policy": "authenticated", "row_filter": "x = 1"},
                {"table": "c", "policy": "public"},
                {"table": "d", "policy": "authenticated", "columns": ["id", "password_hash"]},
            ]
        )
    text = str(caught.value)
    assert "needs a row_filter" in text
    assert "unknown placeholder {user}" in text
    assert "row_filter is only for policy 'row'" in text
    assert "shapes[3]" in text
    assert "can never be published" in text


def test_identical_shapes_share_a_key_and_different_ones_do_not() -> None:
    a = shape("status = 'pending' and total > 5")
    b = shape("total > 5.0 AND Status = 'pending'")
    assert a.key == b.key and a.key.startswith("shape:")
    assert a.where == "status = 'pending' and total > 5"
    assert shape("status = 'paid'").key != a.key
    assert shape("status = 'pending' and total > 5", columns=("status",)).key != a.key
    # The policy's bound user is part of the key: two users never share a row-policy shape.
    assert shape(rule=MINE, sub="7").key != shape(rule=MINE, sub="8").key
    assert shape(rule=MINE, sub="7").key == shape(rule=MINE, sub="7").key


def test_the_row_policy_is_added_to_every_filter() -> None:
    mine = shape("status = 'pending' or owner_id = 8", rule=MINE, sub="7")
    assert mine.where == "(owner_id = 8 or status = 'pending') and owner_id = 7"
    assert not mine.matches(order(owner_id=8))  # the client's `or` can't widen the policy
    assert mine.matches(order(owner_id=7))
    with pytest.raises(FilterError, match="the row policy does not admit this user"):
        shape(rule=MINE, sub="alice")
    with pytest.raises(FilterError, match="for signed-in users"):
        compile_shape(ShapeRequest(table="orders"), OPEN, ORDERS, None)


def test_columns_are_limited_to_the_rule_and_always_carry_the_key() -> None:
    narrow = ShapeRule(table="orders", policy="authenticated", columns=("id", "status"))
    s = compile_shape(ShapeRequest(table="orders", columns=("status",)), narrow, ORDERS, "1")
    assert s.columns == ("id", "status")
    with pytest.raises(FilterError, match=r"unknown column 'note' \(columns: id, status\)"):
        compile_shape(ShapeRequest(table="orders", columns=("note",)), narrow, ORDERS, "1")
    # A hidden column can't be filtered on either: that would reveal its values.
    with pytest.raises(FilterError, match="unknown column 'total'"):
        compile_shape(ShapeRequest(table="orders", where="total > 1"), narrow, ORDERS, "1")
    no_key = ShapeRule(table="orders", policy="authenticated", columns=("status",))
    with pytest.raises(FilterError, match="needs a primary key among the shape rule's columns"):
        compile_shape(ShapeRequest(table="orders"), no_key, ORDERS, "1")
    secret = TableSchema("public", "u", {"id": "int4", "password_hash": "text"}, ("id",))
    s = compile_shape(
        ShapeRequest(table="u"), ShapeRule(table="u", policy="authenticated"), secret, "1"
    )
    assert s.columns == ("id",)
    default_identity = TableSchema("public", "orders", ORDERS.columns, ("id",), False)
    with pytest.raises(FilterError, match="needs REPLICA IDENTITY FULL"):
        compile_shape(ShapeRequest(table="orders"), OPEN, default_identity, "1")


PENDING = "status = 'pending'"
NEW = {"the new row": True}  # stands for the new row in the table below


@pytest.mark.parametrize(
    ("old_status", "new_status", "expected"),
    [
        ("pending", "pending", [ShapeEvent("update", {"id": 1}, NEW)]),
        ("paid", "pending", [ShapeEvent("insert", {"id": 1}, NEW)]),
        ("pending", "paid", [ShapeEvent("delete", {"id": 1}, None)]),
        ("paid", "shipped", []),
        (None, "pending", [ShapeEvent("insert", {"id": 1}, NEW)]),  # NULL is not inside
        ("pending", None, [ShapeEvent("delete", {"id": 1}, None)]),
    ],
)
def test_updates_move_rows_in_and_out(
    old_status: str | None, new_status: str | None, expected: list[ShapeEvent]
) -> None:
    s = shape(PENDING)
    new = order(status=new_status, total=11)
    events = s.classify(change(Op.UPDATE, new, order(status=old_status)))
    assert events == [e._replace(row=new) if e.row is NEW else e for e in expected]


def test_inserts_deletes_and_truncates() -> None:
    s = shape(PENDING, columns=("status",))
    assert s.classify(change(Op.INSERT, order(), None)) == [
        ShapeEvent("insert", {"id": 1}, {"id": 1, "status": "pending"})
    ]
    assert s.classify(change(Op.INSERT, order(status="paid"), None)) == []
    assert s.classify(change(Op.DELETE, None, order())) == [ShapeEvent("delete", {"id": 1}, None)]
    assert s.classify(change(Op.DELETE, None, order(status="paid"))) == []
    assert s.classify(change(Op.TRUNCATE, None, None)) == [ShapeEvent("truncate", None, None)]


def test_an_update_of_columns_the_shape_does_not_show_is_not_sent() -> None:
    s = shape(PENDING, columns=("status",))
    assert s.classify(change(Op.UPDATE, order(note="changed"), order())) == []
    assert s.classify(change(Op.UPDATE, order(status="pending"), order(status="pending"))) == []


def test_a_key_change_inside_the_shape_is_a_delete_and_an_insert() -> None:
    s = shape(PENDING)
    events = s.classify(change(Op.UPDATE, order(id=2), order(id=1)))
    assert events == [
        ShapeEvent("delete", {"id": 1}, None),
        ShapeEvent("insert", {"id": 2}, order(id=2)),
    ]


def test_unchanged_toast_values_come_from_the_old_row() -> None:
    s = shape("note = 'big'")
    new = order(total=12)
    del new["note"]  # an unchanged TOASTed value: pgoutput did not send it
    events = s.classify(
        change(Op.UPDATE, new, order(note="big"), unchanged_toast=frozenset({"note"}))
    )
    assert events == [ShapeEvent("update", {"id": 1}, order(note="big", total=12))]


def test_changes_without_the_old_row_are_problems_not_guesses() -> None:
    s = shape(PENDING)
    problem = s.classify(change(Op.UPDATE, order(), None))
    assert isinstance(problem, ShapeProblem)
    assert "REPLICA IDENTITY FULL" in problem.message
    # A key-only old row (REPLICA IDENTITY DEFAULT) lacks the filter's column.
    problem = s.classify(change(Op.DELETE, None, {"id": 1}))
    assert isinstance(problem, ShapeProblem)
    assert "lacks column 'status'" in problem.message
    # Without a filter the key is enough.
    everything = shape()
    assert everything.classify(change(Op.DELETE, None, {"id": 1})) == [
        ShapeEvent("delete", {"id": 1}, None)
    ]
    new = order()
    del new["note"]
    problem = everything.classify(change(Op.UPDATE, new, None, unchanged_toast=frozenset({"note"})))
    assert isinstance(problem, ShapeProblem)
    assert "unchanged TOAST value" in problem.message


_STATUS = st.sampled_from(["pending", "paid", None])
_ops = st.lists(
    st.tuples(
        st.sampled_from(["insert", "update", "delete", "rekey", "truncate"]),
        st.integers(1, 4),
        _STATUS,
        st.integers(0, 3) | st.none(),
    ),
    max_size=25,
)


@given(
    where=st.sampled_from(
        [None, PENDING, "total > 1", "status = 'paid' or total is null", "total in (0, 2)"]
    ),
    ops=_ops,
)
def test_a_copy_kept_by_the_events_equals_the_filtered_table(
    where: str | None, ops: list[tuple[str, int, str | None, int | None]]
) -> None:
    """Replaying random changes (REPLICA IDENTITY FULL) through classify keeps a copy equal to
    the shape's rows of the table, with strict events: no insert of a key present, no update or
    delete of a key absent."""
    s = shape(where, columns=("status",))
    table: dict[int, dict[str, Any]] = {}
    copy: dict[int, dict[str, Any]] = {}
    for op, row_id, status, total in ops:
        changes: list[Change] = []
        if op == "insert" and row_id not in table:
            table[row_id] = order(row_id, status, total=total)
            changes.append(change(Op.INSERT, table[row_id], None))
        elif op == "update" and row_id in table:
            old = table[row_id]
            table[row_id] = {**old, "status": status, "total": total}
            changes.append(change(Op.UPDATE, table[row_id], old))
        elif op == "rekey" and row_id in table and row_id + 10 not in table:
            old = table.pop(row_id)
            table[row_id + 10] = {**old, "id": row_id + 10, "status": status}
            changes.append(change(Op.UPDATE, table[row_id + 10], old))
        elif op == "delete" and row_id in table:
            changes.append(change(Op.DELETE, None, table.pop(row_id)))
        elif op == "truncate":
            table.clear()
            changes.append(change(Op.TRUNCATE, None, None))
        for c in changes:
            events = s.classify(c)
            assert not isinstance(events, ShapeProblem)
            for event in events:
                if event.op == "truncate":
                    copy.clear()
                    continue
                assert event.key is not None
                key = event.key["id"]
                if event.op == "insert":
                    assert key not in copy
                    assert event.row is not None
                    copy[key] = event.row
                elif event.op == "update":
                    assert key in copy
                    assert event.row is not None
                    copy[key] = event.row
                else:
                    assert key in copy
                    del copy[key]
    expected = {k: s.project(r) for k, r in table.items() if s.matches(r)}
    assert copy == expected
