"""Column types that shape filters can compare: constants in, comparable keys out.

A filter compares a column with constants. Each supported PostgreSQL type (by its pg_type name,
a domain by its base type's) has a ``ValueType`` that

* turns a constant of the filter text into the column's value once, when the shape is opened,
  refusing what PostgreSQL would refuse (``int2`` out of range, 30 February);
* gives a *key* for both that constant and a row value as capture decodes it (see
  :mod:`syncline.core.pgvalues`: ints, floats, decimal text, ISO date-time text), such that
  Python's ``==`` and ``<`` on keys agree with PostgreSQL's operators on the values;
* renders the constant as the text the snapshot query casts back to the column's type.

Where PostgreSQL's order is not Python's, the key fixes it: NaN is equal to itself and above
every number (as in PostgreSQL), ``float4`` values are compared at single precision, ``char(n)``
ignores trailing spaces, and date-times become integers (microseconds or days, any year, BC
included, ±infinity at the ends). Text is ordered by code point, which is PostgreSQL's ``"C"``
collation: the rendered SQL says ``COLLATE "C"`` for ``<``/``>`` on text, so both sides agree
whatever the database's default collation is.
"""

from __future__ import annotations

import re
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["SUPPORTED_TYPES", "Literal", "ValueType", "value_type"]


class ConstantError(ValueError):
    """A constant that the column's type does not accept; the message says why."""


@dataclass(frozen=True, slots=True)
class Literal:
    """A constant as written in a filter: its kind ('number', 'string', 'bool') and text."""

    kind: str
    text: str


@dataclass(frozen=True, slots=True)
class ValueType:
    """How a filter compares values of one PostgreSQL type (see the module docstring)."""

    name: str  # pg_type name, e.g. "int4"
    literal: str  # the literal kind a constant must be written as: number, string or bool
    parse: Callable[[str], Any]  # constant text → value; ConstantError when refused
    key: Callable[[Any], Any]  # a value (constant or decoded row value) → comparable key
    sql_text: Callable[[Any], str]  # a parsed constant → text that casts back to it
    ordered_text: bool = False  # ordering needs COLLATE "C" in SQL (text types)

    def constant(self, literal: Literal) -> Any:
        """The value of a constant written in a filter, checked against this type."""
        if literal.kind != self.literal:
            article = "an" if self.literal[0] in "aeiou" else "a"
            raise ConstantError(f"expects {article} {self.literal}, not {_describe(literal)}")
        return self.parse(literal.text)


def _describe(literal: Literal) -> str:
    if literal.kind == "string":
        return f"the string '{literal.text}'"
    return f"the {literal.kind} {literal.text}"


# --- numbers ---------------------------------------------------------------------------------

_INT_RANGES = {"int2": 16, "int4": 32, "int8": 64}
# Beyond float8's range anyway, and far inside numeric's (131,072 digits before the point).
_MAX_EXPONENT = 1000


def _int_parser(bits: int) -> Callable[[str], int]:
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ConstantError(f"expects an integer, not {text!r}") from None
        if not low <= value <= high:
            raise ConstantError(f"{text} is out of range for int{bits // 8}")
        return value

    return parse


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ConstantError(f"expects a number, not {text!r}") from None
    if not value.is_finite():
        raise ConstantError(f"expects a finite number, not {text!r}")
    if not -_MAX_EXPONENT <= value.adjusted() <= _MAX_EXPONENT:
        raise ConstantError(f"{text} is out of range")
    return value


def _numeric(text: str) -> Decimal:
    """A numeric constant without trailing fractional zeros or exponent: 5.0 and 5 read the
    same, so equal filters share a shape (exact, unlike Decimal.normalize, which rounds)."""
    sign, digits, exponent = _decimal(text).as_tuple()
    assert isinstance(exponent, int)
    while exponent < 0 and len(digits) > 1 and digits[-1] == 0:
        digits, exponent = digits[:-1], exponent + 1
    if exponent < 0 and digits == (0,):
        exponent = 0
    if not any(digits):
        sign = 0
    return Decimal(format(Decimal((sign, digits, exponent)), "f"))


def _numeric_key(value: Any) -> tuple[int, Decimal]:
    # PostgreSQL: NaN equals NaN and sorts above everything, +Infinity included.
    if type(value) is str:
        if value == "NaN":
            return (1, Decimal(0))
        return (0, Decimal(value))
    if type(value) is float:
        # pgvalues makes a float only when repr() gives back the exact decimal text.
        return (0, Decimal(repr(value)))
    return (0, Decimal(value))


def _float_key(value: Any) -> tuple[int, float]:
    if type(value) is str:  # NaN, Infinity, -Infinity: as to_jsonb() writes them
        if value == "NaN":
            return (1, 0.0)
        return (0, float(value))
    return (0, float(value))


def _single(value: float) -> float:
    return float(struct.unpack("f", struct.pack("f", value))[0])


def _float4_key(value: Any) -> tuple[int, float]:
    # The text of a float4 parses to the nearest double, not the float4 itself: round back.
    rank, number = _float_key(value)
    return (rank, _single(number))


def _float_parser(single: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(_decimal(text))
        if value in (float("inf"), float("-inf")):
            raise ConstantError(f"{text} is out of range for {'float4' if single else 'float8'}")
        if single:
            value = _single(value)  # rounds to ±inf beyond float4's range
            if value in (float("inf"), float("-inf")):
                raise ConstantError(f"{text} is out of range for float4")
        return value

    return parse


def _bool(text: str) -> bool:
    return text == "true"


# --- text and uuid ---------------------------------------------------------------------------


def _text(text: str) -> str:
    if "\x00" in text:
        raise ConstantError("a string cannot hold the NUL character")
    return text


def _bpchar_key(value: Any) -> str:
    return str(value).rstrip(" ")


def _uuid(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ConstantError(f"expects a UUID, not {text!r}") from None


def _same(value: Any) -> Any:
    return value


# --- dates and times -------------------------------------------------------------------------

_DAY_US = 86_400_000_000
_DATE_TIME = re.compile(
    r"(\d{4,})-(\d\d)-(\d\d)"
    r"(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,6}))?)?)?"
    r"(?:(Z)|([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?)?"
    r"( BC)?"
)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date; ``year`` astronomical (1 BC = 0)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(days: int) -> tuple[int, int, int]:
    days += 719468
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (month <= 2), month, day


def _month_days(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


_INFINITE_KEYS = {"infinity": (1, 0), "-infinity": (-1, 0)}


def _date_time_key(value: Any) -> tuple[int, int]:
    """(rank, microseconds since 1970 in UTC) of a decoded date, timestamp or timestamptz."""
    text = str(value)
    infinite = _INFINITE_KEYS.get(text)
    if infinite is not None:
        return infinite
    m = _DATE_TIME.fullmatch(text)
    if m is None:
        raise ValueError(f"not a date or time: {text!r}")
    return (0, _micros(m))


def _micros(m: re.Match[str]) -> int:
    year, month, day = int(m[1]), int(m[2]), int(m[3])
    if m[13]:  # BC: 1 BC is year 0 in the proleptic calendar PostgreSQL uses
        year = 1 - year
    micros = _days_from_civil(year, month, day) * _DAY_US
    if m[4]:
        fraction = (m[7] or "").ljust(6, "0")
        seconds = int(m[4]) * 3600 + int(m[5]) * 60 + int(m[6] or 0)
        micros += seconds * 1_000_000 + int(fraction)
    if m[9]:
        offset = int(m[10]) * 3600 + int(m[11] or 0) * 60 + int(m[12] or 0)
        micros -= (offset if m[9] == "+" else -offset) * 1_000_000
    return micros


def _date_time_parser(kind: str) -> Callable[[str], tuple[int, int]]:
    """Parses ISO 8601 constants (years 1 to 9999; optional ' BC') into the key form."""

    def parse(text: str) -> tuple[int, int]:
        stripped = text.strip()
        if stripped.lower() in _INFINITE_KEYS:
            return _INFINITE_KEYS[stripped.lower()]
        m = _DATE_TIME.fullmatch(stripped)
        if m is None or len(m[1]) != 4:
            example = {"date": "2024-01-31", "timestamp": "2024-01-31T12:00:00"}.get(
                kind, "2024-01-31T12:00:00Z"
            )
            raise ConstantError(f"expects an ISO 8601 {kind} such as '{example}', not {text!r}")
        year, month, day = int(m[1]), int(m[2]), int(m[3])
        if not (1 <= month <= 12 and 1 <= day <= _month_days(1 - year if m[13] else year, month)):
            raise ConstantError(f"{text!r} is not a valid date")
        if year == 0:
            raise ConstantError(f"{text!r}: there is no year 0")
        if m[4] and (int(m[4]) > 23 or int(m[5]) > 59 or int(m[6] or 0) > 59):
            raise ConstantError(f"{text!r} is not a valid time of day")
        zoned = m[8] or m[9]
        if kind == "date" and (m[4] or zoned):
            raise ConstantError(f"expects a date without a time, not {text!r}")
        if kind == "timestamp" and zoned:
            raise ConstantError(
                f"{text!r} has a time zone, which PostgreSQL ignores for timestamp "
                "(without time zone): write the time without one"
            )
        # A timestamptz without an offset is taken as UTC (documented), never as the zone of
        # whichever session reads it.
        micros = _micros(m)
        return (0, micros // _DAY_US if kind == "date" else micros)

    return parse


def _date_key(value: Any) -> tuple[int, int]:
    rank, micros = _date_time_key(value)
    return (rank, micros // _DAY_US)


def _date_time_text(kind: str) -> Callable[[Any], str]:
    def render(value: tuple[int, int]) -> str:
        rank, number = value
        if rank:
            return "infinity" if rank > 0 else "-infinity"
        days, micros = (number, 0) if kind == "date" else divmod(number, _DAY_US)
        year, month, day = _civil_from_days(days)
        era = "" if year > 0 else " BC"
        text = f"{year if year > 0 else 1 - year:04d}-{month:02d}-{day:02d}"
        if kind != "date":
            seconds, fraction = divmod(micros, 1_000_000)
            hours, rest = divmod(seconds, 3600)
            text += f"T{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
            if fraction:
                text += f".{fraction:06d}".rstrip("0")
            if kind == "timestamptz":
                text += "+00:00"
        return text + era

    return render


# --- the table ---------------------------------------------------------------------------------


def _types() -> dict[str, ValueType]:
    types: dict[str, ValueType] = {}
    for name, bits in _INT_RANGES.items():
        types[name] = ValueType(name, "number", _int_parser(bits), _same, str)
    types["numeric"] = ValueType("numeric", "number", _numeric, _numeric_key, str)
    types["float8"] = ValueType("float8", "number", _float_parser(False), _float_key, repr)
    types["float4"] = ValueType("float4", "number", _float_parser(True), _float4_key, repr)
    types["bool"] = ValueType("bool", "bool", _bool, _same, lambda v: "true" if v else "false")
    for name in ("text", "varchar"):
        types[name] = ValueType(name, "string", _text, _same, str, ordered_text=True)
    types["bpchar"] = ValueType("bpchar", "string", _text, _bpchar_key, str, ordered_text=True)
    types["uuid"] = ValueType("uuid", "string", _uuid, _same, str)
    types["date"] = ValueType(
        "date", "string", _date_time_parser("date"), _date_key_or_self, _date_time_text("date")
    )
    for name in ("timestamp", "timestamptz"):
        types[name] = ValueType(
            name, "string", _date_time_parser(name), _date_time_key_or_self, _date_time_text(name)
        )
    return types


def _date_key_or_self(value: Any) -> tuple[int, int]:
    # Constants are parsed to their key already; row values are text.
    return value if type(value) is tuple else _date_key(value)


def _date_time_key_or_self(value: Any) -> tuple[int, int]:
    return value if type(value) is tuple else _date_time_key(value)


_TYPES = _types()
SUPPORTED_TYPES = tuple(sorted(_TYPES))


def value_type(name: str) -> ValueType | None:
    """The ValueType of a pg_type name, or None when filters can't compare that type."""
    return _TYPES.get(name)
