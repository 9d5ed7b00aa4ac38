"""Constants and row values of each supported type compare as PostgreSQL compares them."""

from __future__ import annotations

import pytest

from syncline.core.shapes.values import ConstantError, Literal, value_type


def vt(name: str):  # type: ignore[no-untyped-def]
    found = value_type(name)
    assert found is not None
    return found


def key(name: str, value: object) -> object:
    return vt(name).key(value)


def const(name: str, kind: str, text: str) -> object:
    return vt(name).key(vt(name).constant(Literal(kind, text)))


def test_numeric_nan_equals_itself_and_sorts_above_infinity() -> None:
    nan, inf, big = key("numeric", "NaN"), key("numeric", "Infinity"), key("numeric", 10**30)
    assert nan == key("numeric", "NaN")
    assert big < inf < nan  # type: ignore[operator]
    assert key("numeric", "-Infinity") < key("numeric", -(10**30))  # type: ignore[operator]
    # An int, a float (exact decimal text ≤ 15 digits) and decimal text compare exactly.
    assert key("numeric", 1.5) == const("numeric", "number", "1.50")
    assert key("numeric", "0.10000000000000000001") > const("numeric", "number", "0.1")  # type: ignore[operator]


def test_float4_compares_at_single_precision_and_nan_like_postgres() -> None:
    # The text "0.1" of a float4 parses to the double 0.1, which is not the float4 0.1.
    assert key("float4", 0.1) == const("float4", "number", "0.1")
    assert key("float8", 0.1) != key("float8", 0.10000000149011612)
    assert key("float8", "NaN") == key("float8", "NaN")
    assert key("float8", "Infinity") < key("float8", "NaN")  # type: ignore[operator]
    assert key("float8", -0.0) == const("float8", "number", "0")
    with pytest.raises(ConstantError, match="out of range for float4"):
        vt("float4").constant(Literal("number", "1e39"))


def test_char_n_ignores_trailing_spaces() -> None:
    assert key("bpchar", "ab  ") == const("bpchar", "string", "ab")
    assert key("text", "ab  ") != key("text", "ab")


def test_uuid_constants_are_canonical() -> None:
    upper = vt("uuid").constant(Literal("string", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"))
    assert upper == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    with pytest.raises(ConstantError, match="expects a UUID"):
        vt("uuid").constant(Literal("string", "nope"))


def test_dates_and_times_any_year_bc_and_infinity() -> None:
    assert key("date", "0044-03-15 BC") < key("date", "0001-01-01")  # type: ignore[operator]
    assert key("date", "0001-12-31 BC") < key("date", "0001-01-01")  # type: ignore[operator]
    assert key("date", "10000-01-01") < key("date", "infinity")  # type: ignore[operator]
    assert key("date", "-infinity") < key("date", "0044-03-15 BC")  # type: ignore[operator]
    assert const("date", "string", "2024-02-29") == key("date", "2024-02-29")
    # A timestamptz constant in any offset is the same instant in UTC, as the row is.
    assert const("timestamptz", "string", "2024-01-31T14:00:00+02:00") == key(
        "timestamptz", "2024-01-31T12:00:00+00:00"
    )
    assert const("timestamptz", "string", "2024-01-31T12:00:00Z") == key(
        "timestamptz", "2024-01-31T12:00:00+00:00"
    )
    assert key("timestamp", "2024-01-31T12:00:00.5") > key("timestamp", "2024-01-31T12:00:00.49")  # type: ignore[operator]
    assert vt("timestamptz").sql_text(vt("timestamptz").parse("0044-03-15T10:00:00 BC")) == (
        "0044-03-15T10:00:00+00:00 BC"
    )
    assert vt("timestamp").sql_text(vt("timestamp").parse("2024-01-31 12:00:00.250")) == (
        "2024-01-31T12:00:00.25"
    )


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("date", "2023-02-29", "is not a valid date"),
        ("date", "2024-01-31T00:00", "expects a date without a time"),
        ("timestamp", "2024-01-31T00:00+02:00", "has a time zone, which PostgreSQL ignores"),
        ("timestamp", "0000-01-01T00:00", "there is no year 0"),
        ("timestamptz", "2024-01-31T00:00:61", "is not a valid time of day"),
        ("timestamptz", "2024-01-31T00:00:00.1234567", "expects an ISO 8601 timestamptz"),
        ("int2", "40000", "out of range for int2"),
    ],
)
def test_constants_postgres_would_refuse_are_refused(name: str, text: str, message: str) -> None:
    kind = "number" if name.startswith("int") else "string"
    with pytest.raises(ConstantError, match=message):
        vt(name).constant(Literal(kind, text))


def test_unsupported_types_have_no_value_type() -> None:
    assert value_type("jsonb") is None
    assert value_type("interval") is None
    assert value_type("_int4") is None
