"""Text-format PostgreSQL values to the JSON values that ``to_jsonb()`` gives for their types.

pgoutput sends each column in its type's text output format, rendered with the walsender
session's settings; the replication connection must use ``TimeZone=UTC``, ``DateStyle=ISO``,
``IntervalStyle=postgres``, ``extra_float_digits`` ≥ 1 and ``client_encoding=UTF8``, which
is what these conversions assume. Each mapping is checked against PostgreSQL 18 by the table
in ``tests/core/test_pgvalues.py``.

Where a Python value cannot carry the exact number that ``to_jsonb()`` writes, we choose:

* ``numeric``: an ``int`` when integral and within the 64-bit range a JSON encoder such as
  orjson accepts; a ``float`` when that float prints back as the same decimal value (always
  true up to 15 significant digits); otherwise the decimal text, so that no digit is silently
  lost. ``NaN`` and ``±Infinity`` are strings, as in ``to_jsonb()``.
* ``float4``/``float8``: a ``float`` (the same double; ``to_jsonb()`` spells ``1e+100`` out
  in full digits); ``NaN`` and ``±Infinity`` are strings.
* ``json``/``jsonb``: parsed as a JSON parser would (orjson, for speed), numbers with a
  fraction or exponent as floats; like ``numeric``, a number that no 64-bit integer or
  double holds exactly is kept as its decimal text.

Types we do not know (domains, enums, composites, arrays of those, extension types) keep
their text, which is also what ``to_jsonb()`` gives for most of them; a domain can be mapped
to its base type with the ``aliases`` argument of :func:`converter_for` (the transaction
assembler does so from pgoutput's Type messages, see :func:`builtin_type_oid`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TypeAlias

import orjson

__all__ = ["Converter", "builtin_type_oid", "converter_for", "parse_array", "to_json_value"]

# Turns the text of a non-NULL value into its JSON value; None in place of a converter means
# the text itself is the value, which saves a call per column for text-like types.
Converter: TypeAlias = Callable[[str], Any]

_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 64) - 1
_NOT_FINITE_ENDS = ("N", "y")  # last letter of NaN, Infinity, -Infinity


def _bool(text: str) -> bool:
    return text == "t"


def _float(text: str) -> float | str:
    if text[-1] in _NOT_FINITE_ENDS:
        return text
    return float(text)


def _integral(whole: str, text: str) -> int | str:
    value = int(whole)
    return value if _INT_MIN <= value <= _INT_MAX else text


def _numeric(text: str) -> int | float | str:
    whole, dot, frac = text.partition(".")
    if not dot:
        if text[-1] in _NOT_FINITE_ENDS:
            return text
        return _integral(text, text)
    if not frac.strip("0"):
        return _integral(whole, text)
    # A decimal of at most 15 significant digits survives the trip through a double; the
    # length bound keeps it far from the double's overflow and subnormal range.
    if len((whole.lstrip("-") + frac).strip("0")) <= 15 and len(text) < 300:
        return float(text)
    value = float(text)
    return value if Decimal(repr(value)) == Decimal(text) else text


# A number with 16 or more digits may not survive orjson (doubles hold 15 to 17 digits, and
# orjson turns integers beyond 64 bits into doubles), so such a document takes the exact path.
_LONG_NUMBER = re.compile(r"(?:\d\.?){16}")
_INFINITIES = (float("inf"), float("-inf"))


def _json_int(text: str) -> int | str:
    return _integral(text, text)


def _json_float(text: str) -> float | str:
    value = float(text)
    if value in _INFINITIES or Decimal(repr(value)) != Decimal(text):
        return text
    return value


def _json(text: str) -> Any:
    if _LONG_NUMBER.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # a number beyond a double's range, which PostgreSQL accepts
    return json.loads(text, parse_int=_json_int, parse_float=_json_float)


def _timestamp(text: str) -> str:
    return text.replace(" ", "T", 1)


def _timestamptz(text: str) -> str:
    if text.endswith("+00"):
        return text.replace(" ", "T", 1) + ":00"
    era = ""
    if text.endswith(" BC"):
        text, era = text[:-3], " BC"
    text = text.replace(" ", "T", 1)
    # The text output writes a zone offset of whole hours as ±HH, to_jsonb() as ±HH:MM.
    sign = max(text.rfind("+"), text.rfind("-"))
    if sign > 10 and len(text) - sign == 3:
        text += ":00"
    return text + era


_INT2, _INT4, _INT8, _OID = 21, 23, 20, 26

# Scalar types whose JSON value is not simply their text. time, timetz, interval, bytea,
# uuid, date and the text types render as their text in to_jsonb(), so they need no entry.
_SCALARS: dict[int, Converter] = {
    16: _bool,
    _INT2: int,
    _INT4: int,
    _INT8: int,
    700: _float,
    701: _float,
    1700: _numeric,
    114: _json,
    3802: _json,
    1114: _timestamp,
    1184: _timestamptz,
}

# Names of the element types below, as pg_type spells them.
_NAMES: dict[int, str] = {
    16: "bool",
    17: "bytea",
    18: "char",
    19: "name",
    20: "int8",
    21: "int2",
    23: "int4",
    25: "text",
    26: "oid",
    114: "json",
    650: "cidr",
    700: "float4",
    701: "float8",
    790: "money",
    829: "macaddr",
    869: "inet",
    1042: "bpchar",
    1043: "varchar",
    1082: "date",
    1083: "time",
    1114: "timestamp",
    1184: "timestamptz",
    1186: "interval",
    1266: "timetz",
    1560: "bit",
    1562: "varbit",
    1700: "numeric",
    2950: "uuid",
    3802: "jsonb",
}

# Array type → element type, for the element types whose arrays are common in tables; the
# array type's name is its element's with a leading underscore.
_ARRAYS: dict[int, int] = {
    1000: 16,
    1001: 17,
    1002: 18,
    1003: 19,
    1005: 21,
    1007: 23,
    1016: 20,
    1028: 26,
    1021: 700,
    1022: 701,
    1231: 1700,
    1009: 25,
    1014: 1042,
    1015: 1043,
    2951: 2950,
    199: 114,
    3807: 3802,
    1182: 1082,
    1183: 1083,
    1270: 1266,
    1115: 1114,
    1185: 1184,
    1187: 1186,
    1041: 869,
    651: 650,
    1040: 829,
    791: 790,
    1561: 1560,
    1563: 1562,
}

# int2vector and oidvector are arrays to to_jsonb(), but print as space-separated lists.
_VECTORS: dict[int, int] = {22: _INT2, 30: _OID}


def parse_array(text: str, element: Converter | None = None) -> list[Any]:
    """Parse the text output of a one- or more-dimensional array into nested lists.

    ``element`` converts each non-NULL element's text; explicit bounds (``[0:1]={…}``) are
    dropped, as ``to_jsonb()`` drops them.
    """
    if text[0] == "[":
        text = text[text.index("=") + 1 :]
    body = text[1:-1]
    if text[-1] == "}" and '"' not in body and "{" not in body and "}" not in body:
        # One dimension and nothing quoted: the common case, done without a character loop.
        if text[0] != "{":
            raise ValueError(f"malformed array: {text!r}")
        if not body:
            return []
        items = body.split(",")
        if element is None:
            return [None if item == "NULL" else item for item in items]
        return [None if item == "NULL" else element(item) for item in items]
    value, end = _parse_array_at(text, 0, element)
    if end != len(text):
        raise ValueError(f"malformed array: {text!r}")
    return value


def _parse_array_at(text: str, pos: int, element: Converter | None) -> tuple[list[Any], int]:
    if text[pos] != "{":
        raise ValueError(f"malformed array: {text!r}")
    pos += 1
    items: list[Any] = []
    if text[pos] == "}":
        return items, pos + 1
    while True:
        char = text[pos]
        if char == "{":
            nested, pos = _parse_array_at(text, pos, element)
            items.append(nested)
        elif char == '"':
            chars: list[str] = []
            pos += 1
            while (char := text[pos]) != '"':
                if char == "\\":
                    pos += 1
                    char = text[pos]
                chars.append(char)
                pos += 1
            pos += 1
            item = "".join(chars)
            items.append(item if element is None else element(item))
        else:
            end = pos
            while text[end] not in ",}":
                end += 1
            item = text[pos:end]
            pos = end
            if item == "NULL":
                items.append(None)
            else:
                items.append(item if element is None else element(item))
        char = text[pos]
        pos += 1
        if char == "}":
            return items, pos
        if char != ",":
            raise ValueError(f"malformed array: {text!r}")


def _array_converter(element_oid: int) -> Converter:
    element = _SCALARS.get(element_oid)

    def convert(text: str) -> list[Any]:
        return parse_array(text, element)

    return convert


def _vector_converter(element_oid: int) -> Converter:
    element = _SCALARS.get(element_oid)

    def convert(text: str) -> list[Any]:
        items = text.split()
        return items if element is None else [element(item) for item in items]

    return convert


_CONVERTERS: dict[int, Converter] = {
    **_SCALARS,
    **{oid: _array_converter(elem) for oid, elem in _ARRAYS.items()},
    **{oid: _vector_converter(elem) for oid, elem in _VECTORS.items()},
}


_BUILTIN_OIDS: dict[str, int] = {
    **{name: oid for oid, name in _NAMES.items()},
    **{"_" + _NAMES[elem]: oid for oid, elem in _ARRAYS.items()},
    "int2vector": 22,
    "oidvector": 30,
}


def builtin_type_oid(name: str) -> int | None:
    """The OID of a pg_catalog type this module converts, by name (``int4``, ``_text``).

    pgoutput describes a domain column by a Type message that names the domain's base type,
    so this lets a domain over a built-in type convert like its base type.
    """
    return _BUILTIN_OIDS.get(name)


def converter_for(type_oid: int, aliases: Mapping[int, int] | None = None) -> Converter | None:
    """The converter for values of a type, or None when the text is the JSON value.

    ``aliases`` maps types this module cannot know (a domain, say) to a type it knows (the
    domain's base type), the way to_jsonb() looks through domains.
    """
    if aliases:
        type_oid = aliases.get(type_oid, type_oid)
    return _CONVERTERS.get(type_oid)


def to_json_value(type_oid: int, text: str | None) -> Any:
    """The JSON value of one value in text format (None for SQL NULL)."""
    if text is None:
        return None
    convert = _CONVERTERS.get(type_oid)
    return text if convert is None else convert(text)
