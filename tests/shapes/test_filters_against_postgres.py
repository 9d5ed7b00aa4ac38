"""The Python evaluator against PostgreSQL itself: the same random filter on the same random
rows selects the same rows in ``SELECT … WHERE <rendered SQL>`` and in ``predicate``.

Rows are read back as capture decodes them (each column's text output through pgvalues), so
this checks the keys of :mod:`syncline.core.shapes.values` against PostgreSQL's operators, the
three-valued logic, and that the rendered SQL casts each constant to exactly the value the
evaluator compares.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from syncline.core.pgvalues import builtin_type_oid, to_json_value
from syncline.core.shapes.filters import bind, canonical, parse, predicate
from syncline.shapes.sql import where_clause

COLUMNS = {
    "i2": "int2",
    "i4": "int4",
    "i8": "int8",
    "n": "numeric",
    "f4": "float4",
    "f8": "float8",
    "b": "bool",
    "t": "text",
    "v": "varchar",
    "c": "bpchar",
    "u": "uuid",
    "d": "date",
    "ts": "timestamp",
    "tz": "timestamptz",
}
DDL = {**COLUMNS, "c": "char(4)"}
TYPES = {"id": "int8", **COLUMNS}


def _float_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


UUIDS = [
    "00000000-0000-0000-0000-000000000000",
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
]
TEXTS = ["", "a", "A", "b", "ab", "a b", "é", "e\u0301", "Z", "😀", "it's"]
OFFSETS = ["+00:00", "Z", "+05:30", "-08:00", "+14:00"]


def _values(column: str, *, constant: bool) -> st.SearchStrategy[tuple[str, str]]:
    """(literal kind, text) of a value of the column's type; constants exclude what the
    filter grammar cannot write (NaN, infinities)."""
    kind = COLUMNS[column]
    s: st.SearchStrategy[Any]
    if kind in ("int2", "int4", "int8"):
        bits = {"int2": 16, "int4": 32, "int8": 64}[kind]
        big = st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
        s = (st.integers(-3, 3) | big).map(lambda i: ("number", str(i)))
    elif kind == "numeric":
        finite = st.sampled_from(["0", "-0.00", "1.5", "1.50", "2", "1e3", "-7.25"]) | st.decimals(
            allow_nan=False, allow_infinity=False, places=4
        ).map(str)
        special = st.sampled_from(["NaN", "Infinity", "-Infinity"])
        s = (finite if constant else finite | special).map(lambda t: ("number", t))
    elif kind in ("float4", "float8"):
        finite_only = constant
        pool = st.sampled_from([0.0, -0.0, 0.1, 1.5, 2.0, -7.25, 1e-40, 3.4e38])
        if kind == "float4":
            floats = st.floats(width=32, allow_nan=not finite_only, allow_infinity=not finite_only)
        else:
            floats = st.floats(allow_nan=not finite_only, allow_infinity=not finite_only)
        floats = pool | floats
        s = floats.map(lambda f: ("number", _float_text(f)))
    elif kind == "bool":
        s = st.booleans().map(lambda b: ("bool", "true" if b else "false"))
    elif kind in ("text", "varchar"):
        chars = st.characters(codec="utf-8", exclude_characters="\x00")
        s = (st.sampled_from(TEXTS) | st.text(chars, max_size=5)).map(lambda t: ("string", t))
    elif kind == "bpchar":
        s = st.sampled_from(["", "a", "a ", "ab", "ab  ", "abcd", "b"]).map(lambda t: ("string", t))
    elif kind == "uuid":
        s = (st.sampled_from(UUIDS) | st.uuids().map(str)).map(lambda t: ("string", t))
    elif kind == "date":
        dates = st.dates().map(lambda d: d.isoformat()) | st.sampled_from(
            ["2020-02-29", "0044-03-15 BC", "0001-01-01 BC"]
        )
        if not constant:
            dates |= st.sampled_from(["infinity", "-infinity", "10000-01-01"])
        s = dates.map(lambda t: ("string", t))
    else:
        times = st.datetimes().map(lambda d: d.isoformat(sep="T" if constant else " "))
        if kind == "timestamptz":
            times = st.tuples(times, st.sampled_from(OFFSETS)).map("".join)
        examples = ["2020-02-29T12:00:00", "0044-03-15T00:00:00 BC"]
        if kind == "timestamptz":
            examples = ["2020-02-29T12:00:00+00:00", "2020-02-29T17:30:00+05:30"]
        s = (times | st.sampled_from(examples)).map(lambda t: ("string", t))
    return s


@st.composite
def rows(draw: st.DrawFn) -> list[dict[str, str | None]]:
    count = draw(st.integers(0, 12))
    out = []
    for i in range(count):
        row: dict[str, str | None] = {"id": str(i)}
        for column in COLUMNS:
            value = draw(st.none() | _values(column, constant=False))
            row[column] = None if value is None else value[1]
        out.append(row)
    return out


def _literal(value: tuple[str, str]) -> str:
    kind, text = value
    return "'" + text.replace("'", "''") + "'" if kind == "string" else text


@st.composite
def filters(draw: st.DrawFn, depth: int = 0) -> str:
    if depth < 3 and draw(st.integers(0, 2)) == 0:
        op = draw(st.sampled_from(["and", "or"]))
        items = draw(st.lists(filters(depth + 1), min_size=2, max_size=3))
        return "(" + f" {op} ".join(items) + ")"
    column = draw(st.sampled_from(list(COLUMNS)))
    op = draw(st.sampled_from(["=", "!=", "<>", "<", "<=", ">", ">=", "in", "not in", "null"]))
    if op == "null":
        return f"{column} is {draw(st.sampled_from(['null', 'not null']))}"
    if op in ("in", "not in"):
        values = draw(st.lists(_values(column, constant=True), min_size=1, max_size=4))
        return f"{column} {op} ({', '.join(_literal(v) for v in values)})"
    return f"{column} {op} {_literal(draw(_values(column, constant=True)))}"


@pytest.fixture(scope="module")
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        # The settings of the replication connection, whose text output pgvalues decodes.
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("SET DateStyle = 'ISO'")
        conn.execute("SET extra_float_digits = 1")
        columns = ", ".join(f"{name} {kind}" for name, kind in DDL.items())
        conn.execute(f"CREATE TABLE shapes_t (id int8 PRIMARY KEY, {columns})")
        yield conn


def _load(conn: psycopg.Connection[Any], data: list[dict[str, str | None]]) -> list[dict[str, Any]]:
    """Insert the rows, and read them back decoded as capture would decode them."""
    names = ["id", *COLUMNS]
    conn.execute("TRUNCATE shapes_t")
    casts = sql.SQL(", ").join(
        sql.SQL("CAST(%s AS {})").format(sql.Identifier("pg_catalog", TYPES[n])) for n in names
    )
    insert = sql.SQL("INSERT INTO shapes_t ({}) VALUES ({})").format(
        sql.SQL(", ").join(map(sql.Identifier, names)), casts
    )
    with conn.cursor() as cur:
        cur.executemany(insert, [[row[n] for n in names] for row in data])
    # format('%s') runs the type's output function, as pgoutput does (a cast to text differs
    # for bool and char(n)); it turns NULL into '', hence the CASE.
    texts = sql.SQL(", ").join(
        sql.SQL("CASE WHEN {0} IS NULL THEN NULL ELSE format('%s', {0}) END").format(
            sql.Identifier(n)
        )
        for n in names
    )
    decoded = []
    for record in conn.execute(sql.SQL("SELECT {} FROM shapes_t").format(texts)).fetchall():
        decoded.append(
            {
                n: to_json_value(builtin_type_oid(TYPES[n]) or 0, text)
                for n, text in zip(names, record, strict=True)
            }
        )
    return decoded


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=rows(), texts=st.lists(filters(), min_size=1, max_size=4))
def test_evaluator_selects_what_postgres_selects(
    conn: psycopg.Connection[Any], data: list[dict[str, str | None]], texts: list[str]
) -> None:
    decoded = _load(conn, data)
    for text in texts:
        expr = bind(parse(text), TYPES)
        where, params = where_clause(expr)
        query = sql.SQL("SELECT id FROM shapes_t WHERE {}").format(where)
        in_postgres = {row[0] for row in conn.execute(query, params).fetchall()}
        test = predicate(expr)
        in_python = {row["id"] for row in decoded if test(row) is True}
        differ = [row for row in decoded if (row["id"] in in_python) != (row["id"] in in_postgres)]
        assert in_python == in_postgres, (text, canonical(expr), params, differ[:2])
        # The normal form means the same: it selects the same rows.
        again = predicate(bind(parse(canonical(expr)), TYPES))
        assert {row["id"] for row in decoded if again(row) is True} == in_python
