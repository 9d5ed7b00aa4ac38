"""Shape filters: a small SQL-like language, parsed, type-checked and normalized by Syncline.

The grammar (keywords case-insensitive; docs/topics/shapes.md has examples)::

    filter     := disjunct ("or" disjunct)*
    disjunct   := term ("and" term)*
    term       := "(" filter ")" | comparison
    comparison := column ("=" | "!=" | "<>" | "<" | "<=" | ">" | ">=") constant
                | column ["not"] "in" "(" constant ("," constant)* ")"
                | column "is" ["not"] "null"
    column     := identifier | "quoted identifier"      -- unquoted names fold to lower case
    constant   := number | 'string' ('' for a quote) | true | false | {placeholder}

A filter is never pasted into SQL: it is parsed here into a tree, checked against the table's
column types (constants converted once, see :mod:`.values`), and rendered back as SQL text whose
constants are all query parameters. Placeholders (``{sub}``) are only for row policies, which
the server writes; a client's filter cannot contain one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from syncline.core.changes import Row
from syncline.core.shapes.values import (
    SUPPORTED_TYPES,
    ConstantError,
    Literal,
    ValueType,
    value_type,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_FILTER_LENGTH",
    "MAX_IN_VALUES",
    "MAX_TERMS",
    "TRUE",
    "Comparison",
    "Expr",
    "FilterError",
    "Ident",
    "Junction",
    "Membership",
    "NullTest",
    "RawExpr",
    "bind",
    "canonical",
    "columns_of",
    "conjoin",
    "parse",
    "predicate",
    "render_sql",
]

# Limits on what a client may send. A filter is parsed and kept per shape and evaluated for
# every change of its table, so its size is bounded like any other input; these are well above
# what a UI builds (Supabase allows 100 values in an `in` list and no `or` at all).
MAX_FILTER_LENGTH = 4096  # characters
MAX_TERMS = 64  # comparisons in one filter
MAX_DEPTH = 8  # nested parentheses
MAX_IN_VALUES = 100  # constants in one `in (…)` list

_OPS = {"=": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_KEYWORDS = frozenset({"and", "or", "not", "in", "is", "null", "true", "false"})
_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<number>-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<string>'(?:[^']|'')*')
      | (?P<qident>"(?:[^"]|"")+")
      | (?P<ident>[A-Za-z_][A-Za-z0-9_$]*)
      | (?P<placeholder>\{[A-Za-z_][A-Za-z0-9_]*\})
      | (?P<op><>|!=|<=|>=|=|<|>)
      | (?P<punct>[(),])
    """,
    re.VERBOSE,
)


class FilterError(ValueError):
    """A filter that can't be used; the message names the problem (and where, for syntax)."""


# --- the parsed, unchecked tree --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Placeholder:
    """``{name}`` in a row policy, filled per user by :func:`bind`."""

    name: str


Constant: TypeAlias = Literal | Placeholder


@dataclass(frozen=True, slots=True)
class RawComparison:
    column: str
    op: str
    value: Constant


@dataclass(frozen=True, slots=True)
class RawMembership:
    column: str
    values: tuple[Constant, ...]
    negated: bool


@dataclass(frozen=True, slots=True)
class RawJunction:
    op: str  # "and" | "or"
    items: tuple[RawExpr, ...]


@dataclass(frozen=True, slots=True)
class NullTest:
    """``column is [not] null``; the same node before and after type-checking."""

    column: str
    negated: bool


RawExpr: TypeAlias = RawComparison | RawMembership | RawJunction | NullTest


# --- the checked tree ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Comparison:
    """``column op constant``, the constant converted to the column's type."""

    column: str
    op: str
    type: ValueType
    value: Any  # the parsed constant, rendered into SQL by type.sql_text
    key: Any  # type.key(value), what row values' keys are compared with


@dataclass(frozen=True, slots=True)
class Membership:
    """``column [not] in (constants)``; ``values`` sorted by key, without duplicates."""

    column: str
    type: ValueType
    values: tuple[Any, ...]
    keys: frozenset[Any]
    negated: bool


@dataclass(frozen=True, slots=True)
class Junction:
    """``and``/``or`` of two or more items; an ``and`` of none is the filter that is always true."""

    op: str
    items: tuple[Expr, ...]


Expr: TypeAlias = Comparison | Membership | NullTest | Junction
TRUE = Junction("and", ())


# --- parsing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # number, string, qident, ident, keyword, placeholder, op, punct, end
    text: str
    pos: int

    def shown(self) -> str:
        return "the end of the filter" if self.kind == "end" else repr(self.text)


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise FilterError(f"unexpected character {text[pos]!r} at character {pos + 1}")
        kind = m.lastgroup
        assert kind is not None
        if kind == "ident" and m[0].lower() in _KEYWORDS:
            kind = "keyword"
        if kind != "space":
            tokens.append(_Token(kind, m[0], pos))
        pos = m.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str, placeholders: frozenset[str]) -> None:
        self.tokens = _tokens(text)
        self.i = 0
        self.terms = 0
        self.placeholders = placeholders

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def fail(self, token: _Token, message: str) -> FilterError:
        return FilterError(f"{message} (at character {token.pos + 1})")

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token.kind == "keyword" and token.text.lower() == word:
            self.i += 1
            return True
        return False

    def expect_punct(self, char: str, after: str) -> None:
        token = self.take()
        if token.kind != "punct" or token.text != char:
            raise self.fail(token, f"expected {char!r} {after}, got {token.shown()}")

    def filter(self, depth: int) -> RawExpr:
        items = [self.conjunction(depth)]
        while self.keyword("or"):
            items.append(self.conjunction(depth))
        return items[0] if len(items) == 1 else RawJunction("or", tuple(items))

    def conjunction(self, depth: int) -> RawExpr:
        items = [self.term(depth)]
        while self.keyword("and"):
            items.append(self.term(depth))
        return items[0] if len(items) == 1 else RawJunction("and", tuple(items))

    def term(self, depth: int) -> RawExpr:
        token = self.peek()
        if token.kind == "punct" and token.text == "(":
            if depth >= MAX_DEPTH:
                raise self.fail(token, f"parentheses nested deeper than {MAX_DEPTH}")
            self.i += 1
            inner = self.filter(depth + 1)
            self.expect_punct(")", "to close the parenthesis")
            return inner
        return self.comparison()

    def comparison(self) -> RawExpr:
        token = self.take()
        if token.kind == "ident":
            column = token.text.lower()
        elif token.kind == "qident":
            column = token.text[1:-1].replace('""', '"')
        elif token.kind in ("number", "string", "placeholder") or token.text.lower() in (
            "true",
            "false",
            "null",
        ):
            raise self.fail(
                token,
                f"a comparison starts with a column name, not {token.shown()} "
                "(write status = 'open', not 'open' = status)",
            )
        else:
            raise self.fail(token, f"expected a column name, got {token.shown()}")
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise self.fail(token, f"more than {MAX_TERMS} comparisons")
        op = self.take()
        if op.kind == "op":
            value = self.constant(f"after {column} {op.text}")
            return RawComparison(column, _OPS[op.text], value)
        if op.kind == "keyword":
            word = op.text.lower()
            if word == "is":
                negated = self.keyword("not")
                after = self.take()
                if after.kind != "keyword" or after.text.lower() != "null":
                    raise self.fail(after, f"expected null after 'is', got {after.shown()}")
                return NullTest(column, negated)
            negated = word == "not"
            if negated and not self.keyword("in"):
                raise self.fail(self.peek(), "expected 'in' after 'not'")
            if word in ("in", "not"):
                return self.membership(column, negated)
        raise self.fail(
            op,
            f"expected an operator (=, !=, <, <=, >, >=, in, not in, is null, is not null) "
            f"after {column}, got {op.shown()}",
        )

    def membership(self, column: str, negated: bool) -> RawMembership:
        self.expect_punct("(", "after 'in'")
        values = [self.constant("in the 'in' list")]
        while True:
            token = self.take()
            if token.kind == "punct" and token.text == ")":
                return RawMembership(column, tuple(values), negated)
            if token.kind != "punct" or token.text != ",":
                raise self.fail(token, f"expected ',' or ')' in the 'in' list, got {token.shown()}")
            if len(values) == MAX_IN_VALUES:
                raise self.fail(token, f"more than {MAX_IN_VALUES} values in an 'in' list")
            values.append(self.constant("in the 'in' list"))

    def constant(self, where: str) -> Constant:
        token = self.take()
        if token.kind == "number":
            return Literal("number", token.text)
        if token.kind == "string":
            return Literal("string", token.text[1:-1].replace("''", "'"))
        if token.kind == "placeholder":
            name = token.text[1:-1]
            if name not in self.placeholders:
                if not self.placeholders:
                    raise self.fail(token, f"placeholders like {token.text} are not allowed here")
                allowed = ", ".join("{" + p + "}" for p in sorted(self.placeholders))
                raise self.fail(token, f"unknown placeholder {token.text} (allowed: {allowed})")
            return Placeholder(name)
        if token.kind == "keyword" and token.text.lower() in ("true", "false"):
            return Literal("bool", token.text.lower())
        if token.kind == "keyword" and token.text.lower() == "null":
            raise self.fail(token, "compare with null using 'is null' or 'is not null'")
        raise self.fail(token, f"expected a constant {where}, got {token.shown()}")


def parse(text: str, *, placeholders: Iterable[str] = ()) -> RawExpr:
    """Parse a filter into its unchecked tree; FilterError says what is wrong and where."""
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterError(f"the filter is longer than {MAX_FILTER_LENGTH} characters")
    parser = _Parser(text, frozenset(placeholders))
    if parser.peek().kind == "end":
        raise FilterError("the filter is empty (leave it out to get every row)")
    tree = parser.filter(0)
    token = parser.peek()
    if token.kind != "end":
        raise parser.fail(token, f"expected 'and', 'or' or the end, got {token.shown()}")
    return tree


# --- type-checking ---------------------------------------------------------------------------


def bind(
    tree: RawExpr, column_types: Mapping[str, str], params: Mapping[str, str] | None = None
) -> Expr:
    """Check a parsed filter against the columns it may use and convert its constants.

    ``column_types`` maps the usable column names to their pg_type names; ``params`` gives the
    placeholders' values (as text, converted like a constant of the column's type). The result
    is normalized (see :func:`canonical`).
    """
    return _normalize(_bind(tree, column_types, params or {}))


def _value_type(column: str, column_types: Mapping[str, str]) -> ValueType:
    type_name = column_types.get(column)
    if type_name is None:
        known = ", ".join(sorted(column_types)) or "none"
        raise FilterError(f"unknown column {column!r} (columns: {known})")
    vt = value_type(type_name)
    if vt is None:
        supported = ", ".join(SUPPORTED_TYPES)
        raise FilterError(
            f"column {column!r} is of type {type_name}, which filters can't compare "
            f"(supported: {supported})"
        )
    return vt


def _constant(column: str, vt: ValueType, value: Constant, params: Mapping[str, str]) -> Any:
    try:
        if isinstance(value, Placeholder):
            if value.name not in params:
                raise FilterError(f"no value for the placeholder {{{value.name}}}")
            return vt.parse(params[value.name])
        return vt.constant(value)
    except ConstantError as exc:
        raise FilterError(f"column {column!r} ({vt.name}) {exc}") from None


def _bind(tree: RawExpr, column_types: Mapping[str, str], params: Mapping[str, str]) -> Expr:
    if isinstance(tree, RawJunction):
        return Junction(tree.op, tuple(_bind(item, column_types, params) for item in tree.items))
    vt = _value_type(tree.column, column_types)
    if isinstance(tree, NullTest):
        return tree
    if isinstance(tree, RawComparison):
        value = _constant(tree.column, vt, tree.value, params)
        return Comparison(tree.column, tree.op, vt, value, vt.key(value))
    by_key: dict[Any, Any] = {}
    for constant in tree.values:
        value = _constant(tree.column, vt, constant, params)
        by_key.setdefault(vt.key(value), value)
    ordered = sorted(by_key)
    values = tuple(by_key[key] for key in ordered)
    return Membership(tree.column, vt, values, frozenset(ordered), tree.negated)


# --- normal form -----------------------------------------------------------------------------

_BARE = re.compile(r"[a-z_][a-z0-9_$]*")


def _ident(name: str) -> str:
    if _BARE.fullmatch(name) and name not in _KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def _constant_text(vt: ValueType, value: Any) -> str:
    text = vt.sql_text(value)
    if vt.literal == "string":
        return "'" + text.replace("'", "''") + "'"
    return text


def _text(expr: Expr, nested: bool = False) -> str:
    if isinstance(expr, Comparison):
        return f"{_ident(expr.column)} {expr.op} {_constant_text(expr.type, expr.value)}"
    if isinstance(expr, Membership):
        values = ", ".join(_constant_text(expr.type, v) for v in expr.values)
        return f"{_ident(expr.column)} {'not in' if expr.negated else 'in'} ({values})"
    if isinstance(expr, NullTest):
        return f"{_ident(expr.column)} is {'not null' if expr.negated else 'null'}"
    if not expr.items:
        return "true"
    inner = f" {expr.op} ".join(_text(item, True) for item in expr.items)
    return f"({inner})" if nested else inner


def _normalize(expr: Expr) -> Expr:
    """Flatten nested and/or, drop repeated items and sort them by their text.

    ``and`` and ``or`` are commutative and associative in SQL's three-valued logic too, so the
    result means the same for every row, and equal filters written differently share a shape.
    """
    if not isinstance(expr, Junction):
        return expr
    items: dict[str, Expr] = {}
    for item in expr.items:
        item = _normalize(item)
        if isinstance(item, Junction) and item.op == expr.op:
            parts: tuple[Expr, ...] = item.items
        elif item == TRUE and expr.op == "and":
            parts = ()
        else:
            parts = (item,)
        for part in parts:
            items.setdefault(_text(part, True), part)
    if len(items) == 1:
        return next(iter(items.values()))
    return Junction(expr.op, tuple(items[text] for text in sorted(items)))


def canonical(expr: Expr) -> str:
    """The normal form's text: equal for filters that differ only in spelling or order.

    It is itself a valid filter, which parses back to the same normal form.
    """
    return _text(expr)


def conjoin(*exprs: Expr) -> Expr:
    """``a and b and …``, normalized: how a row policy is added to a client's filter."""
    return _normalize(Junction("and", exprs))


def columns_of(expr: Expr) -> frozenset[str]:
    """The columns a filter reads."""
    if isinstance(expr, Junction):
        return frozenset().union(*(columns_of(item) for item in expr.items))
    return frozenset({expr.column})


# --- evaluation ------------------------------------------------------------------------------

Predicate: TypeAlias = Callable[[Row], "bool | None"]


def predicate(expr: Expr) -> Predicate:
    """A function of a row that gives True, False or None (SQL's unknown), as WHERE would.

    Only True selects a row. A comparison with a NULL value is unknown; ``and``/``or`` follow
    SQL's three-valued logic. A column missing from the row raises KeyError: the caller must
    know the row is incomplete (an unchanged TOAST value, a key-only old row).
    """
    if isinstance(expr, Comparison):
        return _comparison(expr)
    if isinstance(expr, Membership):
        return _membership(expr)
    if isinstance(expr, NullTest):
        column, negated = expr.column, expr.negated
        if negated:
            return lambda row: row[column] is not None
        return lambda row: row[column] is None
    return _junction(expr)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: bool(a == b),
    "!=": lambda a, b: bool(a != b),
    "<": lambda a, b: bool(a < b),
    "<=": lambda a, b: bool(a <= b),
    ">": lambda a, b: bool(a > b),
    ">=": lambda a, b: bool(a >= b),
}


def _comparison(expr: Comparison) -> Predicate:
    column, key, target, compare = expr.column, expr.type.key, expr.key, _COMPARE[expr.op]

    def test(row: Row) -> bool | None:
        value = row[column]
        if value is None:
            return None
        return compare(key(value), target)

    return test


def _membership(expr: Membership) -> Predicate:
    column, key, keys, negated = expr.column, expr.type.key, expr.keys, expr.negated

    def test(row: Row) -> bool | None:
        value = row[column]
        if value is None:
            return None
        return (key(value) in keys) is not negated

    return test


def _junction(expr: Junction) -> Predicate:
    tests = tuple(predicate(item) for item in expr.items)
    # In `and`, False decides; in `or`, True does. Unknown wins over the other value.
    decisive = expr.op != "and"

    def test(row: Row) -> bool | None:
        unknown = False
        for item in tests:
            result = item(row)
            if result is decisive:
                return decisive
            if result is None:
                unknown = True
        return None if unknown else not decisive

    return test


# --- SQL -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ident:
    """An SQL identifier, possibly qualified; an adapter quotes it (psycopg's sql.Identifier)."""

    names: tuple[str, ...]


SqlPart: TypeAlias = str | Ident
_C_COLLATION = 'COLLATE "C" '


def render_sql(expr: Expr) -> tuple[list[SqlPart], list[str]]:
    """The filter as SQL: text parts (with ``%s`` for each parameter) and identifiers, and the
    parameters, each the text of a constant that the SQL casts to the column's type.

    Casting the text back to the column's type makes PostgreSQL compare exactly the constant
    Syncline compares (a float4 constant rounded to single precision, a timestamptz in UTC).
    Ordering on text uses ``COLLATE "C"`` (code point order, as the evaluator).
    """
    parts: list[SqlPart] = []
    params: list[str] = []
    _render(expr, parts, params)
    return parts, params


def _param(vt: ValueType, value: Any, parts: list[SqlPart], params: list[str]) -> None:
    parts += ["CAST(%s AS ", Ident(("pg_catalog", vt.name)), ")"]
    params.append(vt.sql_text(value))


def _render(expr: Expr, parts: list[SqlPart], params: list[str]) -> None:
    if isinstance(expr, Junction):
        if not expr.items:
            parts.append("TRUE")
            return
        parts.append("(")
        for i, item in enumerate(expr.items):
            if i:
                parts.append(f" {expr.op.upper()} ")
            _render(item, parts, params)
        parts.append(")")
        return
    parts.append(Ident((expr.column,)))
    if isinstance(expr, NullTest):
        parts.append(" IS NOT NULL" if expr.negated else " IS NULL")
    elif isinstance(expr, Comparison):
        ordered = expr.op not in ("=", "!=") and expr.type.ordered_text
        parts.append(f" {_C_COLLATION}{expr.op} " if ordered else f" {expr.op} ")
        _param(expr.type, expr.value, parts, params)
    else:
        parts.append(" NOT IN (" if expr.negated else " IN (")
        for i, value in enumerate(expr.values):
            if i:
                parts.append(", ")
            _param(expr.type, value, parts, params)
        parts.append(")")
