"""Text-format values to JSON, checked against what PostgreSQL 18's to_jsonb() gives."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncline.core.pgvalues import builtin_type_oid, converter_for, parse_array, to_json_value

NUMERIC = 1700
# numeric, numeric[], json, jsonb, json[], jsonb[]: types whose numbers may be too long or too
# large for Python's int64/double, which we then keep as exact decimal text.
EXACT_TEXT_TYPES = (NUMERIC, 1231, 114, 3802, 199, 3807)

# (SQL type, type OID, the value as pgoutput sent it, to_jsonb() of the same value), captured
# by fixtures/pgoutput/capture.py from PostgreSQL 18.6 with TimeZone=UTC, DateStyle=ISO and
# IntervalStyle=postgres, except the timestamptz@zone rows, rendered under other time zones.
TO_JSONB = [
    ("bool", 16, "t", "true"),
    ("int2", 21, "0", "0"),
    ("int4", 23, "0", "0"),
    ("int8", 20, "-9223372036854775808", "-9223372036854775808"),
    ("oid", 26, "0", '"0"'),
    ("float4", 700, "0.1", "0.1"),
    ("float8", 701, "0.1", "0.1"),
    ("numeric", 1700, "0", "0"),
    ("numeric(10,2)", 1700, "5.00", "5.00"),
    ("json", 114, '{"b": 1, "a": [1, 2.50, null, true], "a": 3}', '{"a": 3, "b": 1}'),
    (
        "jsonb",
        3802,
        '{"a": {"b": [1, "x", null]}, "c": 1.50}',
        '{"a": {"b": [1, "x", null]}, "c": 1.50}',
    ),
    ("text", 25, "hello", '"hello"'),
    ("varchar(10)", 1043, "abc", '"abc"'),
    ("char(5)", 1042, "ab   ", '"ab   "'),
    ("name", 19, "pg_class", '"pg_class"'),
    ('"char"', 18, "x", '"x"'),
    (
        "uuid",
        2950,
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        '"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"',
    ),
    ("timestamp", 1114, "2026-11-23 19:04:04.123456", '"2026-11-23T19:04:04.123456"'),
    ("timestamptz", 1184, "2026-11-23 19:04:04.123456+00", '"2026-11-23T19:04:04.123456+00:00"'),
    ("date", 1082, "2026-11-23", '"2026-11-23"'),
    ("time", 1083, "19:04:04.123456", '"19:04:04.123456"'),
    ("timetz", 1266, "19:04:04.123456+05:30", '"19:04:04.123456+05:30"'),
    ("interval", 1186, "1 year 2 mons 3 days 04:05:06.789", '"1 year 2 mons 3 days 04:05:06.789"'),
    ("bytea", 17, "\\x0102ff", '"\\\\x0102ff"'),
    ("money", 790, "$1.50", '"$1.50"'),
    ("inet", 869, "192.168.0.1/24", '"192.168.0.1/24"'),
    ("cidr", 650, "10.0.0.0/8", '"10.0.0.0/8"'),
    ("macaddr", 829, "08:00:2b:01:02:03", '"08:00:2b:01:02:03"'),
    ("bit(3)", 1560, "101", '"101"'),
    ("varbit", 1562, "1", '"1"'),
    ("int4range", 3904, "[1,5)", '"[1,5)"'),
    ("point", 600, "(1,2.5)", '"(1,2.5)"'),
    ("tsvector", 3614, "'a' 'cat' 'fat'", "\"'a' 'cat' 'fat'\""),
    ("xid", 28, "123", '"123"'),
    ("int4[]", 1007, "{1,2,NULL}", "[1, 2, null]"),
    ("int2[]", 1005, "{1,-2}", "[1, -2]"),
    ("int8[]", 1016, "{9223372036854775807}", "[9223372036854775807]"),
    (
        "text[]",
        1009,
        '{"a,b","c\\"d","NULL",NULL,"",x," sp ","{}","back\\\\slash"}',
        '["a,b", "c\\"d", "NULL", null, "", "x", " sp ", "{}", "back\\\\slash"]',
    ),
    ("varchar[]", 1015, "{a,B}", '["a", "B"]'),
    ("char(2)[]", 1014, '{"a ",bb}', '["a ", "bb"]'),
    ("bool[]", 1000, "{t,f,NULL}", "[true, false, null]"),
    ("float4[]", 1021, "{1.5,NaN}", '[1.5, "NaN"]'),
    (
        "float8[]",
        1022,
        "{1.5,NaN,Infinity,-Infinity,1e+100}",
        '[1.5, "NaN", "Infinity", "-Infinity", 10000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000]',  # noqa: E501
    ),
    (
        "numeric[]",
        1231,
        "{1.10,NaN,-3,123456789012345678901234567890.5}",
        '[1.10, "NaN", -3, 123456789012345678901234567890.5]',
    ),
    (
        "uuid[]",
        2951,
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
        '["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]',
    ),
    (
        "timestamptz[]",
        1185,
        '{"2026-11-23 19:04:04+00",infinity}',
        '["2026-11-23T19:04:04+00:00", "infinity"]',
    ),
    ("timestamp[]", 1115, '{"2026-11-23 19:04:04.5"}', '["2026-11-23T19:04:04.5"]'),
    ("date[]", 1182, "{2026-11-23,NULL}", '["2026-11-23", null]'),
    ("time[]", 1183, "{12:00:01}", '["12:00:01"]'),
    ("timetz[]", 1270, "{12:00:01+01}", '["12:00:01+01"]'),
    ("interval[]", 1187, '{"1 day",-00:00:01}', '["1 day", "-00:00:01"]'),
    ("jsonb[]", 3807, '{"{\\"a\\": 1}","[1, \\"x\\"]","null"}', '[{"a": 1}, [1, "x"], null]'),
    ("json[]", 199, '{"{\\"a\\": 1, \\"a\\": 2}"}', '[{"a": 2}]'),
    ("bytea[]", 1001, '{"\\\\x01","\\\\x"}', '["\\\\x01", "\\\\x"]'),
    ("inet[]", 1041, "{10.0.0.1}", '["10.0.0.1"]'),
    ("money[]", 791, "{$1.50}", '["$1.50"]'),
    ("oid[]", 1028, "{1,2}", '["1", "2"]'),
    ("name[]", 1003, "{a,b}", '["a", "b"]'),
    ('"char"[]', 1002, "{a,b}", '["a", "b"]'),
    ("bit(1)[]", 1561, "{1,0}", '["1", "0"]'),
    ("int2vector", 22, "1 2", "[1, 2]"),
    ("oidvector", 30, "1 2", '["1", "2"]'),
    ("bool", 16, "f", "false"),
    ("int2", 21, "-32768", "-32768"),
    ("int4", 23, "-2147483648", "-2147483648"),
    ("int8", 20, "9223372036854775807", "9223372036854775807"),
    ("oid", 26, "4294967295", '"4294967295"'),
    ("float4", 700, "0", "0"),
    (
        "float8",
        701,
        "1e+100",
        "10000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    ),
    ("numeric", 1700, "1.10", "1.10"),
    ("numeric(10,2)", 1700, "5.50", "5.50"),
    ("json", 114, "[]", "[]"),
    ("jsonb", 3802, "null", "null"),
    ("text", 25, "", '""'),
    ("varchar(10)", 1043, " x ", '" x "'),
    ("char(5)", 1042, "abcde", '"abcde"'),
    ("timestamp", 1114, "2026-11-23 19:04:04", '"2026-11-23T19:04:04"'),
    ("timestamptz", 1184, "2026-11-23 19:04:04+00", '"2026-11-23T19:04:04+00:00"'),
    ("date", 1082, "infinity", '"infinity"'),
    ("time", 1083, "00:00:00", '"00:00:00"'),
    ("timetz", 1266, "12:00:00+00", '"12:00:00+00"'),
    ("interval", 1186, "-1 days", '"-1 days"'),
    ("bytea", 17, "\\x", '"\\\\x"'),
    ("money", 790, "-$1,234,567.89", '"-$1,234,567.89"'),
    ("inet", 869, "::1", '"::1"'),
    ("int4range", 3904, "empty", '"empty"'),
    ("int4[]", 1007, "{{1,2},{3,4}}", "[[1, 2], [3, 4]]"),
    ("text[]", 1009, "{{a,b},{c,d}}", '[["a", "b"], ["c", "d"]]'),
    ("int2", 21, "32767", "32767"),
    ("int4", 23, "2147483647", "2147483647"),
    ("int8", 20, "42", "42"),
    ("float4", 700, "3.4e+38", "340000000000000000000000000000000000000"),
    ("float8", 701, "1.5e-10", "0.00000000015"),
    ("numeric", 1700, "-5.00", "-5.00"),
    ("numeric(10,2)", 1700, "1234.56", "1234.56"),
    ("json", 114, '"str"', '"str"'),
    ("jsonb", 3802, "[true, false]", "[true, false]"),
    ("text", 25, 'quote " and \\ backslash', '"quote \\" and \\\\ backslash"'),
    ("timestamp", 1114, "infinity", '"infinity"'),
    ("timestamptz", 1184, "infinity", '"infinity"'),
    ("date", 1082, "0044-03-15 BC", '"0044-03-15 BC"'),
    ("time", 1083, "24:00:00", '"24:00:00"'),
    ("timetz", 1266, "12:00:00-03:30:52", '"12:00:00-03:30:52"'),
    ("interval", 1186, "00:00:00", '"00:00:00"'),
    ("bytea", 17, "\\x", '"\\\\x"'),
    ("int4[]", 1007, "{}", "[]"),
    ("text[]", 1009, "{}", "[]"),
    ("float4", 700, "1e-45", "0.000000000000000000000000000000000000000000001"),
    ("float8", 701, "NaN", '"NaN"'),
    ("numeric", 1700, "NaN", '"NaN"'),
    ("numeric(10,2)", 1700, "-0.01", "-0.01"),
    ("json", 114, "123456789", "123456789"),
    ("jsonb", 3802, '"été"', '"été"'),
    ("text", 25, "ünïcødé 🎉", '"ünïcødé 🎉"'),
    ("timestamp", 1114, "-infinity", '"-infinity"'),
    ("timestamptz", 1184, "-infinity", '"-infinity"'),
    ("date", 1082, "-infinity", '"-infinity"'),
    ("interval", 1186, "1 year 2 mons", '"1 year 2 mons"'),
    ("int4[]", 1007, "[0:1]={5,6}", "[5, 6]"),
    ("float4", 700, "NaN", '"NaN"'),
    ("float8", 701, "Infinity", '"Infinity"'),
    ("numeric", 1700, "Infinity", '"Infinity"'),
    ("json", 114, '{"k": {"n": -1.5e3}}', '{"k": {"n": -1500}}'),
    (
        "jsonb",
        3802,
        '{"e": 10000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000, "f": 0.1234567890123456789, "ok": 12345678.5, "big": 123456789012345678901234567890, "neg": -9223372036854775808, "tiny": 0.0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001}',  # noqa: E501
        '{"e": 10000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000, "f": 0.1234567890123456789, "ok": 12345678.5, "big": 123456789012345678901234567890, "neg": -9223372036854775808, "tiny": 0.0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001}',  # noqa: E501
    ),
    ("text", 25, "line\nbreak\ttab", '"line\\nbreak\\ttab"'),
    ("timestamp", 1114, "0044-03-15 12:00:00 BC", '"0044-03-15T12:00:00 BC"'),
    ("timestamptz", 1184, "0044-03-15 12:00:00+00 BC", '"0044-03-15T12:00:00+00:00 BC"'),
    ("interval", 1186, "-00:00:01", '"-00:00:01"'),
    ("float4", 700, "Infinity", '"Infinity"'),
    ("float8", 701, "-Infinity", '"-Infinity"'),
    ("numeric", 1700, "-Infinity", '"-Infinity"'),
    (
        "json",
        114,
        '{"big": 123456789012345678901234567890, "f": 0.1234567890123456789, "e": 1e400, "ok": 12345678.5, "neg": -9223372036854775808, "tiny": 1e-400}',  # noqa: E501
        '{"e": 10000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000, "f": 0.1234567890123456789, "ok": 12345678.5, "big": 123456789012345678901234567890, "neg": -9223372036854775808, "tiny": 0.0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001}',  # noqa: E501
    ),
    ("text", 25, "NULL", '"NULL"'),
    ("timestamp", 1114, "12026-01-01 00:00:00", '"12026-01-01T00:00:00"'),
    ("timestamptz", 1184, "12026-01-01 00:00:00+00", '"12026-01-01T00:00:00+00:00"'),
    ("float4", 700, "-Infinity", '"-Infinity"'),
    ("float8", 701, "0", "0"),
    ("numeric", 1700, "1000000000000000000000000000000", "1000000000000000000000000000000"),
    ("timestamp", 1114, "2000-01-01 00:00:00.5", '"2000-01-01T00:00:00.5"'),
    ("timestamptz", 1184, "2000-01-01 05:29:59.999999+00", '"2000-01-01T05:29:59.999999+00:00"'),
    (
        "float8",
        701,
        "5e-324",
        "0.000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000005",
    ),
    ("numeric", 1700, "9223372036854775807", "9223372036854775807"),
    (
        "float8",
        701,
        "1.7976931348623157e+308",
        "179769313486231570000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    ),
    ("numeric", 1700, "18446744073709551615", "18446744073709551615"),
    ("float8", 701, "123456789.123", "123456789.123"),
    ("numeric", 1700, "18446744073709551616", "18446744073709551616"),
    ("numeric", 1700, "-9223372036854775808", "-9223372036854775808"),
    ("numeric", 1700, "0.000000000000000000001", "0.000000000000000000001"),
    (
        "numeric",
        1700,
        "123456789012345678901234567890.123456789",
        "123456789012345678901234567890.123456789",
    ),
    ("numeric", 1700, "0.1234567890123456789", "0.1234567890123456789"),
    ("numeric", 1700, "3.14159", "3.14159"),
    ("numeric", 1700, "0.30000000000000004", "0.30000000000000004"),
    ("numeric", 1700, "12345678901234.5", "12345678901234.5"),
    ("numeric", 1700, "1234567890123456.7", "1234567890123456.7"),
    ("numeric", 1700, "-0.001", "-0.001"),
    (
        "timestamptz@Asia/Kolkata",
        1184,
        "2026-11-24 00:34:04.5+05:30",
        '"2026-11-24T00:34:04.5+05:30"',
    ),
    (
        "timestamptz@Asia/Kolkata",
        1184,
        "1900-01-01 05:21:10+05:21:10",
        '"1900-01-01T05:21:10+05:21:10"',
    ),
    (
        "timestamptz@Asia/Kolkata",
        1184,
        "0044-03-15 17:53:28+05:53:28 BC",
        '"0044-03-15T17:53:28+05:53:28 BC"',
    ),
    ("timestamptz@Europe/Paris", 1184, "2026-11-23 20:04:04.5+01", '"2026-11-23T20:04:04.5+01:00"'),
    (
        "timestamptz@Europe/Paris",
        1184,
        "1900-01-01 00:09:21+00:09:21",
        '"1900-01-01T00:09:21+00:09:21"',
    ),
    (
        "timestamptz@Europe/Paris",
        1184,
        "0044-03-15 12:09:21+00:09:21 BC",
        '"0044-03-15T12:09:21+00:09:21 BC"',
    ),
    (
        "timestamptz@America/St_Johns",
        1184,
        "2026-11-23 15:34:04.5-03:30",
        '"2026-11-23T15:34:04.5-03:30"',
    ),
    (
        "timestamptz@America/St_Johns",
        1184,
        "1899-12-31 20:29:08-03:30:52",
        '"1899-12-31T20:29:08-03:30:52"',
    ),
    (
        "timestamptz@America/St_Johns",
        1184,
        "0044-03-15 08:29:08-03:30:52 BC",
        '"0044-03-15T08:29:08-03:30:52 BC"',
    ),
]

# Types a converter cannot know from the OID alone. to_jsonb() looks into the catalog; we keep
# the text, unless a domain is mapped to its base type (the assembler does so from pgoutput's
# Type messages). (SQL type, text, to_jsonb(), what we give)
USER_TYPES = [
    ("mood (enum)", "happy", '"happy"', "happy"),
    ("mood[] (array of enum)", "{happy,sad}", '["happy", "sad"]', "{happy,sad}"),
    ("posint (domain over int4)", "5", "5", "5"),
    ("pair (composite)", "(1,x)", '{"a": 1, "b": "x"}', "(1,x)"),
]
USER_TYPE_OID = 16_384  # the first OID a user object can get


def json_equal(ours: Any, theirs: Any, *, decimal_text: bool = False) -> bool:
    """Whether our value is the JSON value to_jsonb() wrote, numbers compared exactly.

    ``theirs`` is parsed with Decimal for numbers. With ``decimal_text`` a number may be our
    exact decimal text instead: the numeric policy of pgvalues for values no double can hold.
    """
    if theirs is None or isinstance(theirs, bool):
        return ours is theirs
    if isinstance(theirs, (int, Decimal)):
        if isinstance(ours, bool):
            return False
        if isinstance(ours, int):
            return Decimal(ours) == theirs
        if isinstance(ours, float):
            return Decimal(repr(ours)) == theirs
        return decimal_text and isinstance(ours, str) and Decimal(ours) == theirs
    if isinstance(theirs, str):
        return bool(ours == theirs)
    if isinstance(theirs, list):
        return (
            isinstance(ours, list)
            and len(ours) == len(theirs)
            and all(
                json_equal(a, b, decimal_text=decimal_text)
                for a, b in zip(ours, theirs, strict=True)
            )
        )
    assert isinstance(theirs, dict)
    return (
        isinstance(ours, dict)
        and ours.keys() == theirs.keys()
        and all(json_equal(ours[k], theirs[k], decimal_text=decimal_text) for k in theirs)
    )


def parse_jsonb(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


@pytest.mark.parametrize(("sqltype", "oid", "text", "jsonb"), TO_JSONB)
def test_value_is_what_to_jsonb_gives(sqltype: str, oid: int, text: str, jsonb: str) -> None:
    ours = to_json_value(oid, text)
    exact_text = oid in EXACT_TEXT_TYPES
    assert json_equal(ours, parse_jsonb(jsonb), decimal_text=exact_text), (sqltype, text, ours)


def test_table_covers_the_common_types() -> None:
    oids = {oid for _, oid, _, _ in TO_JSONB}
    for name in (
        "bool",
        "int2",
        "int4",
        "int8",
        "float4",
        "float8",
        "numeric",
        "json",
        "jsonb",
        "text",
        "varchar",
        "bpchar",
        "name",
        "uuid",
        "char",
        "timestamp",
        "timestamptz",
        "date",
        "time",
        "timetz",
        "interval",
        "bytea",
        "_int4",
        "_text",
        "_jsonb",
    ):
        assert builtin_type_oid(name) in oids, name


@pytest.mark.parametrize(("sqltype", "text", "jsonb", "ours"), USER_TYPES)
def test_user_types_keep_their_text(sqltype: str, text: str, jsonb: str, ours: str) -> None:
    assert to_json_value(USER_TYPE_OID, text) == ours
    assert json.loads(jsonb) is not None


def test_domain_converts_like_its_base_type_when_mapped() -> None:
    convert = converter_for(USER_TYPE_OID, {USER_TYPE_OID: builtin_type_oid("int4") or 0})
    assert convert is not None
    assert convert("5") == 5


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5.00", 5),
        ("-0.00", 0),
        ("1.10", 1.1),
        ("0.30000000000000004", 0.30000000000000004),
        ("9223372036854775807", 9223372036854775807),
        ("18446744073709551615", 18446744073709551615),
        ("18446744073709551616", "18446744073709551616"),
        ("-9223372036854775809", "-9223372036854775809"),
        ("1234567890123456.7", "1234567890123456.7"),
        ("NaN", "NaN"),
        ("-Infinity", "-Infinity"),
    ],
)
def test_numeric_policy(text: str, value: Any) -> None:
    ours = to_json_value(NUMERIC, text)
    assert ours == value
    assert type(ours) is type(value)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"a": [1, 2.5, null]}', {"a": [1, 2.5, None]}),
        ("[1e400, -1e400, 1e-400, 5e-324]", ["1e400", "-1e400", "1e-400", 5e-324]),
        ("[18446744073709551616, -9223372036854775808]", ["18446744073709551616", -(2**63)]),
        (
            "[0.1234567890123456789, 0.30000000000000004]",
            ["0.1234567890123456789", 0.30000000000000004],
        ),
        ('{"id": "12345678901234567890"}', {"id": "12345678901234567890"}),
    ],
)
def test_json_numbers_follow_the_numeric_policy(text: str, value: Any) -> None:
    assert to_json_value(3802, text) == value
    assert to_json_value(114, text) == value


@given(
    st.integers(0, 30).flatmap(
        lambda places: st.decimals(allow_nan=False, allow_infinity=False, places=places)
    )
)
def test_numeric_is_exact_or_kept_as_text(number: Decimal) -> None:
    text = format(number, "f")
    ours = to_json_value(NUMERIC, text)
    if isinstance(ours, str):
        assert ours == text
    elif isinstance(ours, float):
        assert Decimal(repr(ours)) == number
    else:
        assert Decimal(ours) == number


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float8_text_round_trips(number: float) -> None:
    assert to_json_value(701, repr(number)) == number


def test_null_is_none_for_every_type() -> None:
    assert all(to_json_value(oid, None) is None for _, oid, _, _ in TO_JSONB)


def test_text_like_types_need_no_converter() -> None:
    for oid in (25, 1043, 1042, 19, 18, 2950, 1082, 1083, 1266, 1186, 17, 26, USER_TYPE_OID):
        assert converter_for(oid) is None


def test_builtin_type_names() -> None:
    assert builtin_type_oid("int4") == 23
    assert builtin_type_oid("_int4") == 1007
    assert builtin_type_oid("_timestamptz") == 1185
    assert builtin_type_oid("int2vector") == 22
    assert builtin_type_oid("mood") is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("{}", []),
        ("{{}}", [[]]),
        ('{""}', [""]),
        ("{NULL}", [None]),
        ('{"NULL"}', ["NULL"]),
        ('{"a\\\\b","c\\"d"}', ["a\\b", 'c"d']),
        ('{{a,NULL},{"x y",b}}', [["a", None], ["x y", "b"]]),
        ("[1:2][3:4]={{a,b},{c,d}}", [["a", "b"], ["c", "d"]]),
    ],
)
def test_parse_array(text: str, value: list[Any]) -> None:
    assert parse_array(text) == value


@pytest.mark.parametrize("text", ["{a", "{a}x", '{"a"b}', "a", "a}"])
def test_parse_array_refuses_malformed_text(text: str) -> None:
    with pytest.raises((ValueError, IndexError)):
        parse_array(text)


def array_literal(items: list[str | None]) -> str:
    """Render items the way PostgreSQL's array_out does for text[]."""
    rendered = []
    for item in items:
        if item is None:
            rendered.append("NULL")
        elif item == "" or item.upper() == "NULL" or any(c in item for c in '{},"\\ \t\n\r\v\f'):
            rendered.append('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            rendered.append(item)
    return "{" + ",".join(rendered) + "}"


@given(st.lists(st.one_of(st.none(), st.text())))
def test_text_arrays_round_trip(items: list[str | None]) -> None:
    assert parse_array(array_literal(items)) == items
    assert to_json_value(1009, array_literal(items)) == items


@given(st.lists(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=2, max_size=2), min_size=1))
def test_two_dimensional_int_arrays(rows: list[list[int]]) -> None:
    text = "{" + ",".join("{" + ",".join(map(str, row)) + "}" for row in rows) + "}"
    assert to_json_value(1016, text) == rows
