"""Sync rules: which table changes go to which channels, with which columns; pure routing."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from syncline.core.changes import Change, CommitPosition, Op, Row
from syncline.core.namespaces import (
    ChannelTemplate,
    ConfigError,
    Deny,
    Namespace,
    NamespaceRegistry,
    describe_errors,
)

# Columns that are never published, whatever a rule says — not even with columns = "*".
# Compared case-insensitively. A rule that lists one of them explicitly is refused.
_DENIED = """password password_hash passwd token token_hash access_token refresh_token
    refresh_token_hash secret secret_key api_key private_key"""
DENIED_COLUMNS = frozenset(_DENIED.split())
ROW_OPS = frozenset({Op.INSERT, Op.UPDATE, Op.DELETE, Op.TRUNCATE})
ALL_COLUMNS = "*"
_IDENT = r"[A-Za-z_][A-Za-z0-9_$]*"
_TABLE_RE = re.compile(rf"(?:(?P<schema>{_IDENT})\.)?(?P<table>{_IDENT})")
_COLUMN_RE = re.compile(_IDENT)
_EPOCH = datetime(1970, 1, 1)
_ABSENT = object()
# Enum attribute access and hashing are slow in Python 3.11; the hot path compares these.
_INSERT, _DELETE, _TRUNCATE, _MESSAGE = Op.INSERT, Op.DELETE, Op.TRUNCATE, Op.MESSAGE


class ReplicaIdentity(enum.StrEnum):
    """The REPLICA IDENTITY a table needs so that its rules can route every change."""

    DEFAULT = "default"
    FULL = "full"


class RoutingReason(enum.Enum):
    """Why a publication was not made; values are metric labels. Not a str, unlike channels."""

    NULL_VALUE = "null_value"
    MISSING_COLUMN = "missing_column"
    NEEDS_REPLICA_IDENTITY_FULL = "needs_replica_identity_full"
    MISSING_ROW = "missing_row"
    BAD_VALUE = "bad_value"
    INVALID_CHANNEL = "invalid_channel"
    TRUNCATE_UNROUTABLE = "truncate_unroutable"
    BAD_MESSAGE = "bad_message"


@dataclass(frozen=True, slots=True)
class RoutingError:
    """A publication that was not made, and why: returned by ``route``, never raised."""

    reason: RoutingReason
    table: str  # schema.table; empty for a MESSAGE
    channel: str  # the rule's channel template, or the MESSAGE's channel
    message: str


class Routed(NamedTuple):
    """One publication: the channel and its data (a dict, except for MESSAGE data)."""

    channel: str
    payload: Any


def check_table_name(value: str) -> str:
    """``value`` if it names a table as rules do (``schema.table`` or ``table``)."""
    if not _TABLE_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not 'schema.table' or 'table' (for public.table)")
    return value


def table_key(table: str) -> tuple[str, str]:
    """(schema, table) of a checked table name; ``public`` when it names no schema."""
    m = _TABLE_RE.fullmatch(table)
    assert m is not None
    return (m["schema"] or "public", m["table"])


def check_column_list(value: Any, what: str) -> tuple[str, ...]:
    """A non-empty list of distinct column identifiers, none on the deny-list; ``what`` the
    columns are, for the error."""
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"columns must list {what} (or be '*' for all)")
    for column in value:
        if not isinstance(column, str) or not _COLUMN_RE.fullmatch(column):
            raise ValueError(f"column {column!r} is not an identifier")
        if column.lower() in DENIED_COLUMNS:
            raise ValueError(
                f"column {column!r} can never be published: it is on the deny-list of "
                f"secret columns ({', '.join(sorted(DENIED_COLUMNS))})"
            )
    if len(set(value)) != len(value):
        raise ValueError("columns lists a column twice")
    return tuple(value)


class Rule(BaseModel):
    """One sync rule, as in a ``[[rules]]`` table of syncline.toml.

    ``table`` is ``schema.table`` or ``table`` (meaning ``public.table``). ``channel`` is a
    channel name with ``{column}`` placeholders filled from the row, e.g. ``room:{room_id}``.
    ``columns`` lists the published columns, or is ``"*"`` for all of them; columns named
    in DENIED_COLUMNS (password, password_hash, token, secret, …) are never published, not
    even with ``"*"``. ``ops`` limits the operations (default: insert, update, delete,
    truncate). A truncate can't be sent to every channel a template with placeholders can
    produce; ``truncate_channel`` names one fixed channel to announce it on instead.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str
    channel: str
    columns: tuple[str, ...] | Literal["*"]
    ops: frozenset[Op] = ROW_OPS
    truncate_channel: str | None = None

    _key: tuple[str, str] = PrivateAttr(default=("public", ""))
    _template: ChannelTemplate | None = PrivateAttr(default=None)

    @field_validator("table")
    @classmethod
    def _check_table(cls, value: str) -> str:
        return check_table_name(value)

    @field_validator("columns", mode="before")
    @classmethod
    def _check_columns(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value != ALL_COLUMNS:
                raise ValueError(f"columns must be a list of column names or '*', not {value!r}")
            return value
        return check_column_list(value, "the published columns")

    @field_validator("ops")
    @classmethod
    def _check_ops(cls, value: frozenset[Op]) -> frozenset[Op]:
        if not value or Op.MESSAGE in value:
            raise ValueError(
                "ops must list some of insert, update, delete and truncate ('message' is not "
                "a row operation: transactional messages reach their channel without rules)"
            )
        return value

    @model_validator(mode="after")
    def _compile(self) -> Self:
        self._key = table_key(self.table)
        self._template = template = ChannelTemplate.parse(self.channel)
        if self.truncate_channel is not None:
            if ChannelTemplate.parse(self.truncate_channel).fields:
                raise ValueError("truncate_channel must be a fixed channel name, no placeholders")
            if not template.fields:
                raise ValueError(
                    f"truncate_channel is only for templated channels, not {self.channel!r}"
                )
            if Op.TRUNCATE not in self.ops:
                raise ValueError("truncate_channel is set but 'truncate' is not in ops")
        return self

    @property
    def table_key(self) -> tuple[str, str]:
        """(schema, table), as a Change names them."""
        return self._key

    @property
    def qualified_table(self) -> str:
        return ".".join(self._key)

    @property
    def template(self) -> ChannelTemplate:
        assert self._template is not None
        return self._template


def load_rules(config: Iterable[Mapping[str, Any]]) -> list[Rule]:
    """Rules from the ``[[rules]]`` array of syncline.toml; ConfigError lists every problem."""
    rules: list[Rule] = []
    problems: list[str] = []
    for i, body in enumerate(config):
        try:
            rules.append(Rule.model_validate(body))
        except ValidationError as exc:
            problems += describe_errors(f"rules[{i}]", exc, Rule)
    if problems:
        raise ConfigError("sync rules", problems)
    return rules


def validate_rules(rules: Iterable[Rule], registry: NamespaceRegistry) -> None:
    """Check rules against the namespaces; ConfigError lists every problem."""
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for rule in rules:
        where = f"rule {rule.qualified_table} → {rule.channel}:"
        key = (rule.qualified_table, rule.channel)
        if key in seen:
            problems.append(f"{where} appears twice, so every change would be published twice")
        seen.add(key)
        template = rule.template
        ns = registry.get(template.namespace)
        if ns is None:
            known = ", ".join(n.name or "default" for n in registry)
            name = template.namespace or "default"
            problems.append(f"{where} no namespace {name!r} is configured (configured: {known})")
            continue
        sample = "1".join(template.literals)  # every placeholder set to "1"
        if not ns.accepts(sample):
            pattern = ns.template.text if ns.template else None
            problems.append(
                f"{where} {rule.channel!r} can't produce channels of {ns.label} "
                f"(pattern {pattern!r}, max length {ns.max_channel_length})"
            )
        if rule.truncate_channel is not None:
            resolved = registry.resolve(rule.truncate_channel)
            if isinstance(resolved, Deny):
                problems.append(f"{where} truncate_channel: {resolved.reason}")
    if problems:
        raise ConfigError("sync rules", problems)


def required_replica_identity(rule: Rule, key_columns: Collection[str] = ()) -> ReplicaIdentity:
    """The REPLICA IDENTITY ``rule``'s table needs so that deletes and moves are routable.

    A delete carries only the replica identity of the old row, so a placeholder column that
    is not in ``key_columns`` needs FULL (which also fills in unchanged TOAST values).
    """
    if all(field in key_columns for field in rule.template.fields):
        return ReplicaIdentity.DEFAULT
    return ReplicaIdentity.FULL


def format_commit_time(commit_time_us: int) -> str:
    """RFC 3339 in UTC as to_jsonb() writes a timestamptz (the rows' own times, and REST's):
    ``2025-01-31T12:00:00.1234+00:00``, the fraction without trailing zeros, none if whole."""
    second, micros = divmod(commit_time_us, 1_000_000)
    moment = _EPOCH + timedelta(seconds=second)
    return moment.isoformat(timespec="seconds") + _fraction(micros) + "+00:00"


def _fraction(micros: int) -> str:
    return f".{micros:06d}".rstrip("0") if micros else ""


def _channel_part(value: object) -> str | RoutingReason:
    kind = type(value)
    if kind is str or kind is int or kind is float:
        return str(value)
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return RoutingReason.NULL_VALUE
    return RoutingReason.MISSING_COLUMN if value is _ABSENT else RoutingReason.BAD_VALUE


_R = RoutingReason
_MESSAGES = {
    _R.NULL_VALUE: "a placeholder column is null, so the row is in no channel",
    _R.MISSING_COLUMN: "a placeholder column is not in the row (if it is an unchanged TOAST "
    "value, the table needs REPLICA IDENTITY FULL)",
    _R.NEEDS_REPLICA_IDENTITY_FULL: "a placeholder column is not in the old row, which holds "
    "only the replica identity: ALTER TABLE {table} REPLICA IDENTITY FULL, or key the column",
    _R.MISSING_ROW: "no row to route by (REPLICA IDENTITY NOTHING sends no old row)",
    _R.BAD_VALUE: "a placeholder column holds an object or an array",
    _R.INVALID_CHANNEL: "the name is not a valid channel of its namespace (see its pattern)",
    _R.TRUNCATE_UNROUTABLE: "a truncate can't reach every channel of a template with "
    "placeholders; set truncate_channel on the rule to announce it on one channel",
}

_Meta = dict[str, Any]  # lsn, xid and commit_time: shared by the publications of a change
_Obj = dict[str, Any] | None
_Names = list[str] | None
_Out = list[Routed | RoutingError]


class _Route:
    """One rule, compiled for routing: its template split, its column filter resolved."""

    def __init__(self, rule: Rule, namespace: Namespace) -> None:
        self.rule = rule
        self.ops = tuple(rule.ops)  # `in` on a tuple compares identity first: no slow enum hash
        self.fields = rule.template.fields
        self.prefix = rule.template.literals[0]
        self.pairs = tuple(zip(self.fields, rule.template.literals[1:], strict=True))
        self.static = None if self.fields else rule.channel
        self.truncate_channel = rule.truncate_channel
        template, max_length = namespace.template, namespace.max_channel_length
        self.accepts: Callable[[str], object] = namespace.accepts
        if template is not None:  # the hot path: skip pydantic's slow private attributes
            fullmatch = template.regex.fullmatch
            self.accepts = lambda channel: len(channel) <= max_length and fullmatch(channel)
        schema, table = rule.table_key
        self.table_label = table if schema == "public" else rule.qualified_table
        self.columns = None if rule.columns == ALL_COLUMNS else rule.columns

    def channel(self, row: Row) -> str | RoutingReason:
        if self.static is not None:
            return self.static
        channel = self.prefix
        for field, literal in self.pairs:
            part = _channel_part(row.get(field, _ABSENT))
            if not isinstance(part, str):  # faster than isinstance(part, RoutingReason)
                return part
            channel += part + literal
        return channel if self.accepts(channel) else RoutingReason.INVALID_CHANNEL

    def published(self, row: Row) -> dict[str, Any]:
        if self.columns is not None:
            try:
                return {name: row[name] for name in self.columns}
            except KeyError:  # only when the capture source sent a partial row
                return {name: row[name] for name in self.columns if name in row}
        return {name: v for name, v in row.items() if name.lower() not in DENIED_COLUMNS}

    def new_row(
        self, row: Row, old: Row | None, toast: frozenset[str]
    ) -> tuple[dict[str, Any], list[str] | None]:
        """The published new row; unchanged TOAST values come from ``old`` or are listed."""
        published = self.published(row)
        if not toast:
            return published, None
        unchanged = []
        for name in self.published(dict.fromkeys(toast)):
            if old is not None and name in old:
                published[name] = old[name]
            else:
                published.pop(name, None)
                unchanged.append(name)
        return published, sorted(unchanged) or None

    def routing_row(self, row: Row, old: Row | None, toast: frozenset[str]) -> Row:
        if not toast or toast.isdisjoint(self.fields):
            return row
        merged = dict(row)
        for field in toast.intersection(self.fields):
            if old is not None and field in old:
                merged[field] = old[field]
            else:
                merged.pop(field, None)
        return merged

    def fail(self, out: _Out, reason: RoutingReason, change: Change) -> None:
        table = f"{change.schema}.{change.table}"
        text = _MESSAGES[reason].format(table=table)
        message = f"{change.op} on {table} not published to {self.rule.channel}: {text}"
        out.append(RoutingError(reason, table, self.rule.channel, message))

    def publish(
        self, channel: str, op: str, row: _Obj, old: _Obj, meta: _Meta, unchanged: _Names = None
    ) -> Routed:
        payload = {"table": self.table_label, "op": op, "row": row, "old": old, **meta}
        if unchanged:
            payload["unchanged"] = unchanged
        return Routed(channel, payload)

    def route(self, change: Change, meta: _Meta, out: _Out) -> None:
        op, row, old = change.op, change.row, change.old
        if op is _TRUNCATE:
            channel = self.static or self.truncate_channel
            if channel is None:
                return self.fail(out, RoutingReason.TRUNCATE_UNROUTABLE, change)
            return out.append(self.publish(channel, "truncate", None, None, meta))
        if op is _DELETE:
            return self._delete(change, old, meta, out)
        if row is None:
            return self.fail(out, RoutingReason.MISSING_ROW, change)
        toast = change.unchanged_toast
        new = self.channel(self.routing_row(row, old, toast))
        published, unchanged = self.new_row(row, old, toast)
        if op is _INSERT:
            if not isinstance(new, str):
                return self.fail(out, new, change)
            return out.append(self.publish(new, "insert", published, None, meta, unchanged))
        # An update moves the row between channels when the routing columns changed; that
        # is visible only when the old row holds them (REPLICA IDENTITY FULL or a key change).
        prev: str | RoutingReason | None = None
        if self.fields and old is not None and all(field in old for field in self.fields):
            prev = self.channel(old)
        old_published = None if old is None else self.published(old)
        if isinstance(prev, str) and prev != new:
            out.append(self.publish(prev, "delete", None, old_published, meta))
        if not isinstance(new, str):
            # A routing column set to null moves the row out of every channel: not an error.
            if new is not RoutingReason.NULL_VALUE or not isinstance(prev, str):
                self.fail(out, new, change)
        elif prev is None or prev == new:
            out.append(self.publish(new, "update", published, old_published, meta, unchanged))
        else:
            out.append(self.publish(new, "insert", published, None, meta, unchanged))
        return None

    def _delete(self, change: Change, old: Row | None, meta: _Meta, out: _Out) -> None:
        if self.static is not None:
            old_published = None if old is None else self.published(old)
            return out.append(self.publish(self.static, "delete", None, old_published, meta))
        if old is None:
            return self.fail(out, RoutingReason.MISSING_ROW, change)
        channel = self.channel(old)
        if channel is RoutingReason.MISSING_COLUMN:
            channel = RoutingReason.NEEDS_REPLICA_IDENTITY_FULL
        if not isinstance(channel, str):
            return self.fail(out, channel, change)
        return out.append(self.publish(channel, "delete", None, self.published(old), meta))


class RuleSet:
    """Rules checked against the namespaces and compiled for routing.

    ``route`` turns one Change into publications. Each payload is a dict::

        {"table": "messages",   # schema.table unless the schema is public
         "op": "insert" | "update" | "delete" | "truncate",
         "row": {...} | None,   # the published columns of the new row
         "old": {...} | None,   # the published columns of the old row, when PostgreSQL sent it
         "lsn": "…",            # position_format(change.position), str(position) by default
         "xid": 1234,
         "commit_time": "2025-01-31T12:00:00.123456Z",
         "unchanged": ["body"]} # only if some columns are left out of "row", see below

    An unchanged TOAST value (a large value an update didn't touch) is never published as
    null: it is taken from the old row if PostgreSQL sent one (REPLICA IDENTITY FULL), else
    left out of ``row`` and named in ``unchanged``; the client keeps its current value. An
    update whose routing columns changed is a delete (``row`` null) on the old channel and
    an insert on the new one. A MESSAGE change goes to its own channel with its data as the
    payload, no rule needed. What can't be routed comes back as RoutingError values.
    """

    __slots__ = ("_by_table", "_position_format", "_registry", "_second", "_second_text", "rules")

    def __init__(
        self,
        rules: Iterable[Rule],
        registry: NamespaceRegistry,
        *,
        position_format: Callable[[CommitPosition], str] = str,
    ) -> None:
        self.rules = tuple(rules)
        validate_rules(self.rules, registry)
        self._registry = registry
        self._position_format = position_format
        self._by_table: dict[tuple[str, str], list[_Route]] = {}
        for rule in self.rules:
            namespace = registry.get(rule.template.namespace)
            assert namespace is not None
            self._by_table.setdefault(rule.table_key, []).append(_Route(rule, namespace))
        # Changes come in bursts within one second: format the date and time once per second.
        self._second: int | None = None
        self._second_text = ""

    def tables(self) -> list[tuple[str, str]]:
        """The (schema, table) pairs that have rules: what capture must watch."""
        return list(self._by_table)

    def route(self, change: Change) -> list[Routed | RoutingError]:
        op = change.op
        if op is _MESSAGE:
            return self._route_message(change)
        routes = self._by_table.get((change.schema, change.table))
        if routes is None:
            return []
        second, micros = divmod(change.commit_time_us, 1_000_000)
        if second != self._second:
            self._second = second
            self._second_text = format_commit_time(second * 1_000_000)[: -len("+00:00")]
        commit_time = f"{self._second_text}{_fraction(micros)}+00:00"
        lsn = self._position_format(change.position)
        meta = {"lsn": lsn, "xid": change.xid, "commit_time": commit_time}
        out: _Out = []
        for r in routes:
            if op in r.ops:
                r.route(change, meta, out)
        return out

    def _route_message(self, change: Change) -> list[Routed | RoutingError]:
        channel, row = change.channel, change.row
        if not channel or row is None or "data" not in row:
            text = "a MESSAGE change needs a channel and row['data']"
            return [RoutingError(RoutingReason.BAD_MESSAGE, "", channel or "", text)]
        resolved = self._registry.resolve(channel)
        if isinstance(resolved, Deny):
            text = f"message to {channel!r} not published: {resolved.reason}"
            return [RoutingError(RoutingReason.INVALID_CHANNEL, "", channel, text)]
        return [Routed(channel, row["data"])]


def route(change: Change, rules: RuleSet) -> list[Routed | RoutingError]:
    """The publications of ``change`` under ``rules``, and the ones that couldn't be made."""
    return rules.route(change)
