"""Shapes: which tables a rule exposes, how a client's request becomes a shape, and what each
captured change means for it (insert, update, delete, or nothing)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from syncline.core.changes import Change, Op, Row
from syncline.core.namespaces import (
    SHAPE_NAMESPACE,
    ConfigError,
    Namespace,
    SubscribePolicy,
    describe_errors,
)
from syncline.core.rules import (
    ALL_COLUMNS,
    DENIED_COLUMNS,
    check_column_list,
    check_table_name,
    table_key,
)
from syncline.core.shapes.filters import (
    TRUE,
    Expr,
    FilterError,
    RawExpr,
    bind,
    canonical,
    conjoin,
    parse,
    predicate,
)

__all__ = [
    "POLICY_PLACEHOLDERS",
    "Shape",
    "ShapeEvent",
    "ShapeProblem",
    "ShapeRequest",
    "ShapeRule",
    "ShapeRules",
    "TableSchema",
    "compile_shape",
    "load_shape_rules",
    "shape_namespace",
]

# What a row policy may refer to: the user's id (the token's `sub`).
POLICY_PLACEHOLDERS = frozenset({"sub"})
# Channel names of shapes: the prefix and the length of the hash of the shape's key.
SHAPE_CHANNEL_PREFIX = "shape:"
_KEY_HEX = 32  # 128 bits of SHA-256: no two distinct shapes share a channel
# A shape channel's history: what a reconnecting client recovers from, and what a new
# subscriber's state is joined to while its snapshot is read (docs/topics/shapes.md). Past it
# the client reopens the shape (a new snapshot), which is always correct, only slower.
SHAPE_HISTORY_SIZE = 10_000
SHAPE_HISTORY_TTL_S = 600


def shape_namespace() -> Namespace:
    """The namespace of shape channels, built in: recoverable, subscribed by the shape's users."""
    return Namespace(
        name=SHAPE_NAMESPACE,
        history_size=SHAPE_HISTORY_SIZE,
        history_ttl=SHAPE_HISTORY_TTL_S,
        recover=True,
        subscribe=SubscribePolicy.SHAPE,
    )


class ShapeRule(BaseModel):
    """One ``[[shapes]]`` table of syncline.toml: a table that clients may open shapes on.

    ``columns`` lists what shapes may select and filter on (``"*"`` for every column, the
    deny-listed secret columns excepted; the primary key must be among them). ``policy`` is
    ``"authenticated"`` (any signed-in user sees every row) or ``"row"``: then ``row_filter``,
    a filter with ``{sub}`` for the user's id (``owner_id = {sub}``), is added with ``and`` to
    every shape on the table, so no client filter can widen what a user sees. Membership through
    another table is not supported yet (see docs/topics/shapes.md).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str
    columns: tuple[str, ...] | Literal["*"] = "*"
    policy: Literal["authenticated", "row"]
    row_filter: str | None = None

    _key: tuple[str, str] = PrivateAttr(default=("public", ""))
    _policy: RawExpr | None = PrivateAttr(default=None)

    @field_validator("table")
    @classmethod
    def _check_table(cls, value: str) -> str:
        return check_table_name(value)

    @field_validator("columns", mode="before")
    @classmethod
    def _check_columns(cls, value: Any) -> Any:
        if value == ALL_COLUMNS:
            return value
        return check_column_list(value, "the columns shapes may use")

    @model_validator(mode="after")
    def _compile(self) -> Self:
        self._key = table_key(self.table)
        if self.policy == "row":
            if not self.row_filter:
                raise ValueError("policy 'row' needs a row_filter, e.g. 'owner_id = {sub}'")
            try:
                self._policy = parse(self.row_filter, placeholders=POLICY_PLACEHOLDERS)
            except FilterError as exc:
                raise ValueError(f"row_filter: {exc}") from None
        elif self.row_filter is not None:
            raise ValueError("row_filter is only for policy 'row'")
        return self

    @property
    def table_key(self) -> tuple[str, str]:
        return self._key

    @property
    def row_policy(self) -> RawExpr | None:
        """The parsed row filter (None for 'authenticated')."""
        return self._policy


class ShapeRules:
    """The shape rules by table."""

    def __init__(self, rules: Iterable[ShapeRule]) -> None:
        self.by_table: dict[tuple[str, str], ShapeRule] = {}
        for rule in rules:
            if rule.table_key in self.by_table:
                raise ConfigError("shapes", [f"table {'.'.join(rule.table_key)} appears twice"])
            self.by_table[rule.table_key] = rule

    def get(self, table: str) -> ShapeRule | None:
        try:
            return self.by_table.get(table_key(check_table_name(table)))
        except ValueError:
            return None


def load_shape_rules(config: Iterable[Mapping[str, Any]]) -> ShapeRules:
    """Rules from the ``[[shapes]]`` array of syncline.toml; ConfigError lists every problem."""
    rules: list[ShapeRule] = []
    problems: list[str] = []
    for i, body in enumerate(config):
        try:
            rules.append(ShapeRule.model_validate(body))
        except ValidationError as exc:
            problems += describe_errors(f"shapes[{i}]", exc, ShapeRule)
    if problems:
        raise ConfigError("shapes", problems)
    return ShapeRules(rules)


@dataclass(frozen=True, slots=True)
class TableSchema:
    """A table's columns (name → pg_type name, a domain as its base type), in table order,
    and its primary key; read from the catalog by an adapter."""

    schema: str
    name: str
    columns: Mapping[str, str]
    primary_key: tuple[str, ...]
    replica_identity_full: bool = True


class ShapeRequest(BaseModel):
    """What a client asks for: a table, an optional filter, optional columns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str
    where: str | None = None
    columns: tuple[str, ...] | None = None


class ShapeEvent(NamedTuple):
    """What one change means for one shape: ``op`` is insert, update, delete or truncate.

    ``key`` is the row's primary key (None for truncate); ``row`` the shape's columns of the
    new row (insert, update) or None.
    """

    op: str
    key: dict[str, Any] | None
    row: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class ShapeProblem:
    """A change the shape can't account for exactly: its stream must end, clients reopen."""

    message: str


@dataclass(frozen=True, slots=True, eq=False)
class Shape:
    """A compiled shape. Equal ``key`` means the same rows, columns and authorization."""

    schema: str
    table: str
    columns: tuple[str, ...]
    primary_key: tuple[str, ...]
    filter: Expr
    where: str  # the canonical filter, policy included ("true" when there is none)
    key: str  # channel name: shape:<hash of table, columns and where>
    _test: Any = field(repr=False)
    _trivial: bool = field(repr=False, default=False)  # no filter: every row is inside

    def matches(self, row: Row) -> bool:
        """Whether a complete row is in the shape (KeyError if a needed column is missing)."""
        return self._test(row) is True

    def project(self, row: Row) -> dict[str, Any]:
        return {name: row[name] for name in self.columns}

    def row_key(self, row: Row) -> dict[str, Any]:
        return {name: row[name] for name in self.primary_key}

    def classify(self, change: Change) -> list[ShapeEvent] | ShapeProblem:
        """The events ``change`` causes in this shape (none when it doesn't touch it).

        An update moves a row in (insert), out (delete), or within the shape (update, unless
        none of the shape's columns changed, or delete then insert when its key changed).
        Needs the old row's filtered columns: tables with shapes use REPLICA IDENTITY FULL.
        """
        op = change.op
        if op is _UPDATE:
            return self._update(change)
        if op is _INSERT:
            new = change.row
            if new is None:
                return ShapeProblem("an insert without its row")
            inside = self._inside(new, "new")
            if inside is True:
                return [ShapeEvent("insert", self.row_key(new), self.project(new))]
            return [] if inside is False else inside
        if op is _DELETE:
            old = change.old
            if old is None:
                return self._need_full(change)
            was = self._inside(old, "old")
            if was is True:
                return [ShapeEvent("delete", self.row_key(old), None)]
            return [] if was is False else was
        if op is _TRUNCATE:
            return [ShapeEvent("truncate", None, None)]
        return []  # a MESSAGE belongs to no table

    def _update(self, change: Change) -> list[ShapeEvent] | ShapeProblem:
        old, new = change.old, change.row
        if new is None:
            return ShapeProblem("an update without its new row")
        if old is None:
            if not self._trivial:
                return self._need_full(change)
            was: bool | ShapeProblem = True
        else:
            was = self._inside(old, "old")
            if was is not True and was is not False:
                return was
        if change.unchanged_toast:
            new = _fill_toast(new, old, change.unchanged_toast)
        now = self._inside(new, "new")
        if now is False:
            if not was:
                return []
            return [ShapeEvent("delete", self.row_key(new if old is None else old), None)]
        if now is not True:
            return now
        try:
            projected = self.project(new)
        except KeyError as exc:
            return ShapeProblem(_missing(change, exc.args[0], "new"))
        new_key = self.row_key(new)
        if not was:
            return [ShapeEvent("insert", new_key, projected)]
        if old is None:
            return [ShapeEvent("update", new_key, projected)]
        old_key = {k: old.get(k) for k in self.primary_key}
        if old_key != new_key:
            return [ShapeEvent("delete", old_key, None), ShapeEvent("insert", new_key, projected)]
        for name, value in projected.items():
            if old.get(name, _ABSENT) != value:
                return [ShapeEvent("update", new_key, projected)]
        return []  # nothing the shape shows changed

    def _inside(self, row: Row, which: str) -> bool | ShapeProblem:
        try:
            return self._test(row) is True
        except KeyError as exc:
            return ShapeProblem(f"the {which} row lacks column {exc.args[0]!r} of the filter")

    def _need_full(self, change: Change) -> ShapeProblem:
        return ShapeProblem(
            f"{change.op} on {change.schema}.{change.table} came without the old row: tables "
            f"with shapes need REPLICA IDENTITY FULL"
        )


_ABSENT = object()
# Enum attribute access is slow in Python 3.11; classify compares these on every change.
_INSERT, _UPDATE, _DELETE, _TRUNCATE = Op.INSERT, Op.UPDATE, Op.DELETE, Op.TRUNCATE


def _fill_toast(new: Row, old: Row | None, toast: frozenset[str]) -> Row:
    if not toast or old is None:
        return new
    filled = dict(new)
    for name in toast:
        if name in old:
            filled[name] = old[name]
    return filled


def _missing(change: Change, column: str, which: str) -> str:
    hint = " (an unchanged TOAST value: the table needs REPLICA IDENTITY FULL)"
    toast = hint if column in change.unchanged_toast else ""
    return f"the {which} row of a {change.op} lacks column {column!r}{toast}"


def _exposed(rule: ShapeRule, table: TableSchema) -> tuple[str, ...]:
    if rule.columns == ALL_COLUMNS:
        return tuple(c for c in table.columns if c.lower() not in DENIED_COLUMNS)
    return tuple(c for c in table.columns if c in rule.columns)


def compile_shape(
    request: ShapeRequest, rule: ShapeRule, table: TableSchema, sub: str | None
) -> Shape:
    """The shape a user (``sub``; None when anonymous) asked for, or FilterError saying why not.

    The client's filter may use only the rule's columns; the row policy, bound to ``sub``, is
    added with ``and``. The shape's columns are the ones asked for (all the rule's by default)
    plus the primary key, in table order.
    """
    if sub is None:
        raise FilterError("shapes are for signed-in users")
    exposed = _exposed(rule, table)
    if rule.columns != ALL_COLUMNS:
        unknown = [c for c in rule.columns if c not in table.columns]
        if unknown:
            raise FilterError(f"the shape rule names columns the table lacks: {unknown}")
    if not table.primary_key or any(c not in exposed for c in table.primary_key):
        raise FilterError(
            f"table {table.schema}.{table.name} needs a primary key among the shape rule's columns"
        )
    if not table.replica_identity_full:
        raise FilterError(
            f"table {table.schema}.{table.name} needs REPLICA IDENTITY FULL for shapes"
        )
    if request.columns is None:
        wanted = set(exposed)
    else:
        for column in request.columns:
            if column not in exposed:
                raise FilterError(f"unknown column {column!r} (columns: {', '.join(exposed)})")
        wanted = set(request.columns) | set(table.primary_key)
    columns = tuple(c for c in table.columns if c in wanted)
    types = {c: table.columns[c] for c in exposed}
    client = TRUE if request.where is None else bind(parse(request.where), types)
    policy = rule.row_policy
    combined = client
    if policy is not None:
        try:
            bound = bind(policy, table.columns, {"sub": sub})
        except FilterError as exc:
            # A sub that the policy's column type can't hold sees no row: refuse plainly.
            raise FilterError(f"the row policy does not admit this user: {exc}") from None
        combined = conjoin(client, bound)
    where = canonical(combined)
    identity = "\x00".join((table.schema, table.name, ",".join(columns), where))
    digest = hashlib.sha256(identity.encode()).hexdigest()[:_KEY_HEX]
    return Shape(
        schema=table.schema,
        table=table.name,
        columns=columns,
        primary_key=table.primary_key,
        filter=combined,
        where=where,
        key=SHAPE_CHANNEL_PREFIX + digest,
        _test=predicate(combined),
        _trivial=combined == TRUE,
    )
