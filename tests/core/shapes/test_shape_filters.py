"""Shape filters: the grammar, its errors, the normal form, and SQL's three-valued logic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncline.core.shapes.filters import (
    MAX_DEPTH,
    MAX_FILTER_LENGTH,
    MAX_IN_VALUES,
    MAX_TERMS,
    TRUE,
    FilterError,
    Ident,
    bind,
    canonical,
    columns_of,
    conjoin,
    parse,
    predicate,
    render_sql,
)

TYPES = {
    "id": "int8",
    "status": "text",
    "total": "numeric",
    "at": "timestamptz",
    "code": "bpchar",
    "Mixed Case": "text",
    "tags": "_text",
}


def check(text: str) -> str:
    return canonical(bind(parse(text), TYPES))


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("status = 'open'", "status = 'open'"),
        ("STATUS='open'", "status = 'open'"),
        ("status <> 'x'", "status != 'x'"),
        ("id in (3, 1, 2, 1)", "id in (1, 2, 3)"),
        ("id not in (2)", "id not in (2)"),
        ("total is null", "total is null"),
        ("total IS NOT NULL", "total is not null"),
        ("status = 'it''s'", "status = 'it''s'"),
        ("\"Mixed Case\" >= 'a'", "\"Mixed Case\" >= 'a'"),
        ("id = -5", "id = -5"),
        ("total > 1.50", "total > 1.5"),
        ("at < '2024-01-31T12:00:00+02:00'", "at < '2024-01-31T10:00:00+00:00'"),
        ("at < '2024-01-31 12:00'", "at < '2024-01-31T12:00:00+00:00'"),
        ("b_or_a", None),
    ],
)
def test_filters_parse_to_their_normal_form(text: str, normal: str | None) -> None:
    if normal is None:
        with pytest.raises(FilterError):
            check(text)
        return
    assert check(text) == normal


def test_and_or_are_flattened_deduplicated_and_sorted() -> None:
    a = check("status = 'a' and (id = 1 and status = 'a')")
    b = check("id = 1 and status = 'a'")
    assert a == b == "id = 1 and status = 'a'"
    assert check("(id = 2 or id = 1) and total > 0") == "(id = 1 or id = 2) and total > 0"
    assert check("((id = 1))") == "id = 1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the filter is empty"),
        ("status =", "expected a constant after status =, got the end of the filter"),
        ("'open' = status", "a comparison starts with a column name"),
        ("nope = 1", "unknown column 'nope' (columns: Mixed Case, at, code, id, status,"),
        ("id = 'x'", "column 'id' (int8) expects a number, not the string 'x'"),
        ("status = 1", "column 'status' (text) expects a string, not the number 1"),
        ("id = true", "column 'id' (int8) expects a number, not the bool true"),
        ("id = null", "compare with null using 'is null' or 'is not null' (at character 6)"),
        ("id = 1.5", "column 'id' (int8) expects an integer"),
        ("id = 9223372036854775808", "out of range for int8"),
        ("total = 1e5000", "out of range"),
        ("status = {sub}", "placeholders like {sub} are not allowed here (at character 10)"),
        ("at = '2023-02-29T00:00:00Z'", "is not a valid date"),
        ("at = 'yesterday'", "expects an ISO 8601 timestamptz such as '2024-01-31T12:00:00Z'"),
        ("at = '2024-01-01T24:00:00Z'", "is not a valid time of day"),
        ("tags = 'a'", "column 'tags' is of type _text, which filters can't compare"),
        ("id = 1 and", "expected a column name, got the end of the filter (at character 11)"),
        ("id = 1 id = 2", "expected 'and', 'or' or the end, got 'id' (at character 8)"),
        ("id in ()", "expected a constant in the 'in' list, got ')'"),
        ("id in (1 2)", "expected ',' or ')' in the 'in' list, got '2'"),
        ("id ~ 1", "unexpected character '~' at character 4"),
        ("id like 'a'", "expected an operator (=, !=, <, <=, >, >=, in, not in, is null"),
        ("id is 1", "expected null after 'is', got '1'"),
        ("id not 1", "expected 'in' after 'not'"),
        ("(id = 1", "expected ')' to close the parenthesis, got the end of the filter"),
        ("status = 'unterminated", 'unexpected character "\'" at character 10'),
        ("status = 'a\x00'", "cannot hold the NUL character"),
    ],
)
def test_bad_filters_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        check(text)
    assert message in str(caught.value)


def test_limits() -> None:
    with pytest.raises(FilterError, match=f"longer than {MAX_FILTER_LENGTH}"):
        parse("id = 1" + " " * MAX_FILTER_LENGTH)
    with pytest.raises(FilterError, match=f"more than {MAX_TERMS} comparisons"):
        parse(" or ".join(["id = 1"] * (MAX_TERMS + 1)))
    parse(" or ".join(["id = 1"] * MAX_TERMS))
    deep = "(" * (MAX_DEPTH + 1) + "id = 1" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(FilterError, match=f"nested deeper than {MAX_DEPTH}"):
        parse(deep)
    parse("(" * MAX_DEPTH + "id = 1" + ")" * MAX_DEPTH)
    with pytest.raises(FilterError, match=f"more than {MAX_IN_VALUES} values"):
        parse(f"id in ({', '.join(['1'] * (MAX_IN_VALUES + 1))})")


def test_placeholders_only_where_allowed_and_bound_per_user() -> None:
    tree = parse("id = {sub}", placeholders={"sub"})
    assert canonical(bind(tree, TYPES, {"sub": "42"})) == "id = 42"
    with pytest.raises(FilterError, match=r"column 'id' \(int8\) expects an integer, not 'bob'"):
        bind(tree, TYPES, {"sub": "bob"})
    with pytest.raises(FilterError, match=r"no value for the placeholder \{sub\}"):
        bind(tree, TYPES)
    with pytest.raises(FilterError, match=r"unknown placeholder \{user\} \(allowed: \{sub\}\)"):
        parse("id = {user}", placeholders={"sub"})
    # A bound value is a constant, never SQL: quotes in it stay inside the string.
    tree = parse("status = {sub}", placeholders={"sub"})
    assert canonical(bind(tree, TYPES, {"sub": "x' or '1'='1"})) == "status = 'x'' or ''1''=''1'"


def _rows() -> list[dict[str, object]]:
    return [{"id": i, "status": s} for i in (1, None) for s in ("a", None)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # id: 1, 1, NULL, NULL; status: 'a', NULL, 'a', NULL
        ("id = 1", [True, True, None, None]),
        ("id != 1", [False, False, None, None]),
        ("id in (1)", [True, True, None, None]),
        ("id not in (2)", [True, True, None, None]),
        ("id is null", [False, False, True, True]),
        ("id is not null", [True, True, False, False]),
        ("id = 1 and status = 'a'", [True, None, None, None]),
        ("id = 2 and status = 'a'", [False, False, None, None]),
        ("id = 2 and status = 'b'", [False, False, False, None]),
        ("id = 1 or status = 'a'", [True, True, True, None]),
        ("id = 2 or status = 'a'", [True, None, True, None]),
        ("id = 2 or status = 'b'", [False, None, None, None]),
    ],
)
def test_three_valued_logic(text: str, expected: list[bool | None]) -> None:
    test = predicate(bind(parse(text), TYPES))
    assert [test(row) for row in _rows()] == expected


def test_a_missing_column_is_an_error_not_a_null() -> None:
    test = predicate(bind(parse("status = 'a'"), TYPES))
    with pytest.raises(KeyError):
        test({"id": 1})


def test_conjoin_and_columns() -> None:
    client = bind(parse("status = 'a' or total > 1"), TYPES)
    policy = bind(parse("id = 7"), TYPES)
    both = conjoin(client, policy)
    assert canonical(both) == "(status = 'a' or total > 1) and id = 7"
    assert conjoin(TRUE, policy) == policy
    assert columns_of(both) == {"status", "total", "id"}
    assert canonical(TRUE) == "true"


def test_sql_is_parts_and_parameters_never_constants() -> None:
    expr = bind(parse("status < 'x''; drop table t; --' and id in (1, 2)"), TYPES)
    parts, params = render_sql(expr)
    text = "".join(part if isinstance(part, str) else "<ident>" for part in parts)
    assert text == (
        "(<ident> IN (CAST(%s AS <ident>), CAST(%s AS <ident>)) AND "
        '<ident> COLLATE "C" < CAST(%s AS <ident>))'
    )
    assert params == ["1", "2", "x'; drop table t; --"]
    idents = [part for part in parts if isinstance(part, Ident)]
    assert idents[0] == Ident(("id",))
    assert Ident(("pg_catalog", "text")) in idents
    assert render_sql(TRUE) == (["TRUE"], [])


_columns = st.sampled_from(["id", "status", "total", "code", '"Mixed Case"'])
_constants = {
    "id": st.integers(-5, 5).map(str),
    "status": st.sampled_from(["'a'", "'b'", "''", "'it''s'"]),
    "total": st.sampled_from(["1", "1.0", "2.50", "-3"]),
    "code": st.sampled_from(["'a'", "'a '", "'b'"]),
    '"Mixed Case"': st.sampled_from(["'x'", "'y'"]),
}


@st.composite
def _filters(draw: st.DrawFn, depth: int = 0) -> str:
    if depth < 3 and draw(st.booleans()):
        items = draw(st.lists(_filters(depth + 1), min_size=2, max_size=3))
        return "(" + f" {draw(st.sampled_from(['and', 'or']))} ".join(items) + ")"
    column = draw(_columns)
    op = draw(st.sampled_from(["=", "!=", "<", ">=", "in", "null"]))
    if op == "null":
        return f"{column} is null"
    if op == "in":
        return f"{column} in ({', '.join(draw(st.lists(_constants[column], min_size=1)))})"
    return f"{column} {op} {draw(_constants[column])}"


@given(_filters())
def test_the_normal_form_is_a_fixed_point(text: str) -> None:
    normal = check(text)
    assert check(normal) == normal
