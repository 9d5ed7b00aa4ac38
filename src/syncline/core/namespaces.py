"""Channel namespaces: per-namespace options, channel name rules and access decisions."""

from __future__ import annotations

import enum
import re
import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from syncline.core.centrifugo_options import parse_duration_s, translate
from syncline.core.codes import ErrorCode

DEFAULT_NAMESPACE = ""
# The namespace of live queries' channels (shape:<key>.<registration>; docs/topics/shapes.md).
SHAPE_NAMESPACE = "shape"
# The key of the default namespace's table in syncline.toml: `[namespaces.default]`.
DEFAULT_NAMESPACE_KEY = "default"
NAMESPACE_SEPARATOR = ":"
# Centrifuge's default limit: room for a namespace and a couple of UUIDs.
DEFAULT_MAX_CHANNEL_LENGTH = 255
# Checked before anything else, so that an absurd name costs one len() and no regex.
MAX_CHANNEL_LENGTH = 1024
# The memory engine keeps history in RAM per channel; a client further behind than this is
# better served by reloading its state over REST than by a replay.
MAX_HISTORY_SIZE = 100_000
MAX_HISTORY_TTL = 30 * 24 * 3600

# A small, log- and Redis-key-safe alphabet: nothing ever needs escaping, and the characters
# Centrifugo gives meaning to ($ private, * wildcard) stay unused; '#' and ',' only where they
# mean what they mean in Centrifugo (below). A channel name in a URL is percent-encoded.
CHANNEL_PUNCTUATION = "_.-@=+"
PARAM_CHARS = frozenset(string.ascii_letters + string.digits + CHANNEL_PUNCTUATION)
CHANNEL_CHARS = PARAM_CHARS | {NAMESPACE_SEPARATOR}
_CHANNEL_RE = re.compile(r"[A-Za-z0-9_.\-@=+:]+")
# Centrifugo's user-limited channels: `dialog#42,43` may be subscribed by users 42 and 43
# only, in a namespace with allow_user_limited_channels. One '#', then a list of user ids
# (each of the parameter alphabet, so never ':', '#' or ','); before it, the namespace and
# an optional name (`#42` and `personal:#42` are personal channels, as Centrifugo makes them).
USER_BOUNDARY = "#"
# A user id as most applications make them, to check that a personal channel can exist.
SAMPLE_USER = "42"
USER_SEPARATOR = ","
_USER_LIMITED_RE = re.compile(
    r"(?P<base>(?:[A-Za-z0-9_.\-@=+]+:)?[A-Za-z0-9_.\-@=+:]*)#"
    r"(?P<users>[A-Za-z0-9_.\-@=+]+(?:,[A-Za-z0-9_.\-@=+]+)*)"
)
_NAMESPACE_NAME_RE = re.compile(r"[A-Za-z0-9_.\-@=+]{1,64}")
_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")
_QUERY_PERCENT_RE = re.compile(r"%(?:\((?P<name>[^)]*)\)(?P<conv>.?)|(?P<other>.?))", re.DOTALL)
_QUERY_START_RE = re.compile(r"\s*(select|with)\b", re.IGNORECASE)
_ALLOWED_TEXT = f"letters, digits, {' '.join(CHANNEL_PUNCTUATION)} and ':'"


@dataclass(frozen=True, slots=True)
class ChannelTemplate:
    """A channel name with ``{name}`` placeholders, such as ``room:{room_id}``.

    Parsing is unambiguous by construction: a value may not contain ':' nor the first
    character of the literal that follows it, so ``match(render(values)) == values`` for
    every set of values that ``render`` accepts. Build one with ``ChannelTemplate.parse``.
    """

    text: str
    literals: tuple[str, ...]  # one more than fields: text before, between and after them
    fields: tuple[str, ...]
    namespace: str
    regex: re.Pattern[str]
    value_patterns: tuple[re.Pattern[str], ...]

    @classmethod
    def parse(cls, text: str) -> ChannelTemplate:
        if not text:
            raise ValueError("a channel name can't be empty")
        literals: list[str] = []
        fields: list[str] = []
        pos = 0
        for m in _PLACEHOLDER_RE.finditer(text):
            literals.append(text[pos : m.start()])
            name = m.group(1)
            if not _IDENTIFIER_RE.fullmatch(name):
                raise ValueError(f"placeholder {{{name}}} in {text!r} is not an identifier")
            if name in fields:
                raise ValueError(f"placeholder {{{name}}} appears twice in {text!r}")
            if fields and not literals[-1]:
                raise ValueError(f"put a literal character between placeholders in {text!r}")
            fields.append(name)
            pos = m.end()
        literals.append(text[pos:])
        for ch in "".join(literals):
            if ch not in CHANNEL_CHARS:
                what = "unbalanced" if ch in "{}" else f"not allowed (only {_ALLOWED_TEXT})"
                raise ValueError(f"character {ch!r} in {text!r} is {what}")
        namespace, sep, _ = literals[0].partition(NAMESPACE_SEPARATOR)
        if sep and not namespace:
            raise ValueError(f"{text!r} has an empty namespace before ':'")
        if not sep and NAMESPACE_SEPARATOR in text:
            raise ValueError(f"the namespace of {text!r} (before the first ':') must be literal")
        namespace = namespace if sep else DEFAULT_NAMESPACE
        pattern = [re.escape(literals[0])]
        value_patterns = []
        for name, following in zip(fields, literals[1:], strict=True):
            allowed = sorted(PARAM_CHARS - {following[:1]})
            value_class = "[" + "".join(map(re.escape, allowed)) + "]+"
            pattern.append(f"(?P<{name}>{value_class}){re.escape(following)}")
            value_patterns.append(re.compile(value_class))
        regex = re.compile("".join(pattern))
        return cls(text, tuple(literals), tuple(fields), namespace, regex, tuple(value_patterns))

    def render(self, values: Mapping[str, str]) -> str:
        """The channel name for ``values``; ValueError if a value can't be parsed back."""
        parts = [self.literals[0]]
        for i, name in enumerate(self.fields):
            value, following = values[name], self.literals[i + 1]
            if not self.value_patterns[i].fullmatch(value):
                raise ValueError(f"{value!r} is not a valid value for {{{name}}} of {self.text!r}")
            parts += (value, following)
        return "".join(parts)

    def match(self, channel: str) -> dict[str, str] | None:
        """The parameters of ``channel``, or None if this template can't produce it."""
        m = self.regex.fullmatch(channel)
        return None if m is None else {name: m[name] for name in self.fields}


class SubscribePolicy(enum.StrEnum):
    """Who may subscribe to the channels of a namespace."""

    PUBLIC = "public"  # anyone, anonymous connections included
    AUTHENTICATED = "authenticated"  # any connection with a user
    PERSONAL = "personal"  # `ns:{user}` only by that user
    MEMBERSHIP = "membership"  # when membership_query returns a row
    TOKEN = "token"  # only with a subscription token for that channel
    SHAPE = "shape"  # a live query's channel: whoever may see that shape (gateway asks)


@dataclass(frozen=True, slots=True)
class Allow:
    """The action is allowed."""


@dataclass(frozen=True, slots=True)
class Deny:
    """The action is refused; ``code`` is the Centrifuge error code to reply with."""

    code: ErrorCode
    reason: str  # for logs; clients get the code's standard message


@dataclass(frozen=True, slots=True)
class NeedsMembershipCheck:
    """Allowed if ``query`` run with ``params`` returns at least one row (gateway runs it)."""

    query: str
    params: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class NeedsShapeCheck(NeedsMembershipCheck):
    """Allowed if the shape of ``params["channel"]`` is open and ``params["user"]`` may see it
    (the gateway asks the shape service; a membership check with no query to run)."""


@dataclass(frozen=True, slots=True)
class NeedsToken:
    """Allowed only with a valid subscription token for the channel (gateway checks it)."""


Decision = Allow | Deny | NeedsMembershipCheck | NeedsToken
ALLOW = Allow()
NEEDS_TOKEN = NeedsToken()


class Namespace(BaseModel):
    """Options of a channel namespace, as in ``[namespaces.<name>]`` of syncline.toml.

    A channel ``ns:rest`` belongs to namespace ``ns``, one without ':' to the default namespace
    (name ``""``, table ``[namespaces.default]``). ``channel_pattern`` (e.g. ``room:{room_id}``)
    names the parameters a membership query uses; a channel that doesn't match it is not a
    channel of the namespace. A personal namespace's pattern is ``<name>:{user}`` by default.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = DEFAULT_NAMESPACE
    history_size: int = Field(default=0, ge=0, le=MAX_HISTORY_SIZE)
    # Seconds, or a duration as Centrifugo writes it ("300s", "1h30m").
    history_ttl: Annotated[int, BeforeValidator(parse_duration_s)] = Field(
        default=0, ge=0, le=MAX_HISTORY_TTL
    )
    recover: bool = False
    presence: bool = False
    join_leave: bool = False
    subscribe: SubscribePolicy = SubscribePolicy.AUTHENTICATED
    membership_query: str | None = None
    channel_pattern: str | None = None
    allow_publish: bool = False
    # Client publications take offsets and enter history like captured changes (Centrifugo's
    # behaviour); off by default, see docs/topics/client-publish-history.md for the trade-off.
    client_publish_history: bool = False
    allow_history: bool = False
    allow_presence: bool = False
    allow_user_limited_channels: bool = False
    # Delta encodings a subscriber may ask for (Centrifugo's option; fossil is the only one):
    # it then gets publications as fossil deltas against the previous one when shorter.
    allowed_delta_types: tuple[Literal["fossil"], ...] = ()
    max_channel_length: int = Field(default=DEFAULT_MAX_CHANNEL_LENGTH, ge=1, le=MAX_CHANNEL_LENGTH)

    _template: ChannelTemplate | None = PrivateAttr(default=None)
    _query_params: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _check(self) -> Self:
        self._check_name_and_history()
        self._check_policy()
        self._check_query()
        return self

    def _check_name_and_history(self) -> None:
        if self.name and not _NAMESPACE_NAME_RE.fullmatch(self.name):
            raise ValueError(f"namespace name {self.name!r} must be 1-64 of {_ALLOWED_TEXT[:-8]}")
        if self.name == DEFAULT_NAMESPACE_KEY:
            raise ValueError("the name 'default' is kept for the default namespace")
        if bool(self.history_size) != bool(self.history_ttl):
            raise ValueError("history_size and history_ttl go together: both > 0, or both 0")
        for flag in ("recover", "allow_history", "client_publish_history"):
            if getattr(self, flag) and not self.history_size:
                raise ValueError(f"{flag} = true needs a history (history_size > 0)")
        if self.allow_presence and not self.presence:
            raise ValueError("allow_presence = true needs presence = true")
        if self.join_leave and not self.presence:
            # Joins and leaves are announced from presence: without it there would be none.
            raise ValueError("join_leave = true needs presence = true")
        if self.client_publish_history and not self.allow_publish:
            raise ValueError("client_publish_history = true needs allow_publish = true")
        if self.allow_publish and self.history_size and not self.client_publish_history:
            raise ValueError(
                "allow_publish = true is refused in a namespace with history "
                f"(history_size = {self.history_size}) unless client_publish_history = true: "
                "by default a client publication is an ephemeral event with no commit "
                "position, and it would take offsets in a channel whose offsets stand for "
                "committed changes, and recovery would replay it as data. Write persistent "
                "data to PostgreSQL (capture publishes it) and send ephemeral events to a "
                "history-less namespace such as 'typing'; or, to keep client publications in "
                "history as Centrifugo does (as durable as the engine, not as PostgreSQL), set "
                "client_publish_history = true (docs/topics/client-publish-history.md)"
            )

    def _check_policy(self) -> None:
        pattern = self.channel_pattern
        if (self.subscribe is SubscribePolicy.SHAPE) != (self.name == SHAPE_NAMESPACE):
            raise ValueError(
                f"subscribe = 'shape' belongs to the namespace {SHAPE_NAMESPACE!r} (live queries),"
                " and that namespace needs it"
            )
        if self.subscribe is SubscribePolicy.PERSONAL:
            if self.is_default:
                raise ValueError("subscribe = 'personal' needs a named namespace (user:{user})")
            pattern = pattern or f"{self.name}:{{user}}"
        if pattern is None:
            return
        try:
            template = ChannelTemplate.parse(pattern)
        except ValueError as exc:
            raise ValueError(f"channel_pattern: {exc}") from None
        if template.namespace != self.name:
            expected = f"start with '{self.name}:'" if self.name else "contain no ':'"
            raise ValueError(f"channel_pattern {pattern!r} must {expected}")
        if sum(map(len, template.literals)) + len(template.fields) > self.max_channel_length:
            raise ValueError(f"channel_pattern {pattern!r} is longer than max_channel_length")
        personal = {"user"} if self.subscribe is SubscribePolicy.PERSONAL else set()
        if personal - set(template.fields):
            raise ValueError(f"personal channel_pattern {pattern!r} needs a {{user}} parameter")
        if reserved := ({"user", "channel"} - personal) & set(template.fields):
            raise ValueError(
                f"channel_pattern {pattern!r} may not use {sorted(reserved)}: "
                "the server sets user and channel"
            )
        self._template = template

    def _check_query(self) -> None:
        query = self.membership_query
        if self.subscribe is not SubscribePolicy.MEMBERSHIP:
            if query is not None:
                raise ValueError("membership_query is only used with subscribe = 'membership'")
            return
        if not query or not _QUERY_START_RE.match(query) or ";" in query.rstrip().rstrip(";"):
            raise ValueError(
                "subscribe = 'membership' needs a membership_query: one SELECT statement that "
                "returns a row for a member, e.g. SELECT 1 FROM room_members WHERE "
                "room_id = %(room_id)s AND user_id = %(user)s"
            )
        known = {"user", "channel", *(self._template.fields if self._template else ())}
        used: list[str] = []
        for m in _QUERY_PERCENT_RE.finditer(query):
            name = m["name"]
            if name is None and m["other"] == "%":
                continue
            if name is None or m["conv"] != "s" or name not in known:
                raise ValueError(
                    f"membership_query has {m[0]!r}; it may only use %(name)s placeholders with "
                    f"a name in {sorted(known)} (the channel_pattern's parameters, user and "
                    "channel), and %% for a literal percent sign"
                )
            if name not in used:
                used.append(name)
        self._query_params = tuple(used)

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_NAMESPACE

    @property
    def label(self) -> str:
        return f"namespace {self.name!r}" if self.name else "the default namespace"

    @property
    def template(self) -> ChannelTemplate | None:
        return self._template

    def params(self, channel: str) -> dict[str, str] | None:
        """The channel's pattern parameters, or None if it is not a channel of this namespace."""
        if self._template is None or len(channel) > self.max_channel_length:
            return {} if self.accepts(channel) else None
        if USER_BOUNDARY in channel:
            return {} if self.accepts(channel) else None
        return self._template.match(channel)

    def accepts(self, channel: str) -> bool:
        """Whether ``channel`` is a valid channel name of this namespace."""
        template = self._template
        if len(channel) > self.max_channel_length:
            return False
        if USER_BOUNDARY in channel:
            # The pattern is not applied: the user list alone decides who may subscribe.
            return (
                self.allow_user_limited_channels and limited_users(channel, self.name) is not None
            )
        if template is not None:
            return template.regex.fullmatch(channel) is not None
        name, sep, rest = channel.partition(NAMESPACE_SEPARATOR)
        if not self.name:  # the default namespace: no ':' at all
            return not sep and _CHANNEL_RE.fullmatch(channel) is not None
        return name == self.name and _CHANNEL_RE.fullmatch(rest) is not None


def limited_users(channel: str, namespace: str | None = None) -> tuple[str, ...] | None:
    """The users of a user-limited channel (``dialog#42,43`` → 42, 43), or None if ``channel``
    is not a well-formed one (of ``namespace``, when given)."""
    m = _USER_LIMITED_RE.fullmatch(channel)
    if m is None:
        return None
    name, sep, _ = m["base"].partition(NAMESPACE_SEPARATOR)
    if namespace is not None and (name if sep else DEFAULT_NAMESPACE) != namespace:
        return None
    return tuple(m["users"].split(USER_SEPARATOR))


def _not_in_namespace(namespace: Namespace, channel: str) -> Deny:
    if len(channel) > namespace.max_channel_length:
        return Deny(
            ErrorCode.LIMIT_EXCEEDED, f"channel name longer than {namespace.max_channel_length}"
        )
    if USER_BOUNDARY in channel and not namespace.allow_user_limited_channels:
        why = f"'#' marks a user-limited channel; {namespace.label} does not allow them"
        return Deny(ErrorCode.UNKNOWN_CHANNEL, f"{why} (allow_user_limited_channels = true)")
    shape = f"pattern {namespace.template.text!r}" if namespace.template else "name rules"
    why = f"{channel!r} does not fit the {shape} of {namespace.label}"
    return Deny(ErrorCode.UNKNOWN_CHANNEL, why)


class Action(enum.StrEnum):
    """What a client asks to do with a channel."""

    SUBSCRIBE = "subscribe"
    PUBLISH = "publish"
    HISTORY = "history"
    PRESENCE = "presence"  # presence and presence_stats


def authorize(
    namespace: Namespace,
    action: Action,
    channel: str,
    user: str | None,
    *,
    subscribed: bool = False,
) -> Decision:
    """Whether ``user`` (None or "" when anonymous) may do ``action`` on ``channel``.

    Publishing and reading history or presence need the namespace's option, then the same
    access as subscribing, except that a current subscriber is allowed at once: it passed
    the subscribe check and is unsubscribed when it stops passing. A token namespace lets
    only subscribers do them, as the commands carry no token.
    """
    label = namespace.label
    if action is Action.PUBLISH and not namespace.allow_publish:
        return Deny(ErrorCode.PERMISSION_DENIED, f"clients can't publish in {label}")
    if action is Action.HISTORY:
        if not namespace.history_size:
            return Deny(ErrorCode.NOT_AVAILABLE, f"{label} keeps no history")
        if not namespace.allow_history:
            return Deny(ErrorCode.PERMISSION_DENIED, f"clients can't read history in {label}")
    if action is Action.PRESENCE:
        if not namespace.presence:
            return Deny(ErrorCode.NOT_AVAILABLE, f"{label} keeps no presence")
        if not namespace.allow_presence:
            return Deny(ErrorCode.PERMISSION_DENIED, f"clients can't read presence in {label}")
    if subscribed and action is not Action.SUBSCRIBE:
        return ALLOW
    if USER_BOUNDARY in channel and namespace.allow_user_limited_channels:
        # Centrifugo's rule: the listed users, and nobody else, whatever the policy says.
        users = limited_users(channel, namespace.name)
        if users is None:
            return _not_in_namespace(namespace, channel)
        if user and user in users:
            return ALLOW
        return Deny(ErrorCode.PERMISSION_DENIED, f"{channel!r} is limited to other users")
    params = namespace.params(channel)
    if params is None:
        return _not_in_namespace(namespace, channel)
    policy = namespace.subscribe
    if policy is SubscribePolicy.TOKEN:
        if action is Action.SUBSCRIBE:
            return NEEDS_TOKEN
        return Deny(ErrorCode.PERMISSION_DENIED, f"{action} in {label} needs a subscription first")
    if policy is SubscribePolicy.PUBLIC:
        return ALLOW
    if not user:  # None, or the empty `sub` claim of a Centrifuge anonymous connection
        return Deny(ErrorCode.PERMISSION_DENIED, f"anonymous connection; {label} is {policy}")
    if policy is SubscribePolicy.AUTHENTICATED:
        return ALLOW
    if policy is SubscribePolicy.SHAPE:
        return NeedsShapeCheck("", {"channel": channel, "user": user})
    if policy is SubscribePolicy.PERSONAL:
        if params["user"] == user:
            return ALLOW
        return Deny(
            ErrorCode.PERMISSION_DENIED, f"{channel!r} is the personal channel of another user"
        )
    assert namespace.membership_query is not None
    values = {**params, "user": user, "channel": channel}
    query_params = {name: values[name] for name in namespace._query_params}
    return NeedsMembershipCheck(namespace.membership_query, query_params)


def authorize_subscribe(namespace: Namespace, channel: str, user: str | None) -> Decision:
    """Whether ``user`` (None or "" when anonymous) may subscribe to ``channel``."""
    return authorize(namespace, Action.SUBSCRIBE, channel, user)


_TABLE_IN_QUERY = re.compile(r"\b(?:from|join)\s+(?:\w+\.)?(\w+)", re.IGNORECASE)
# Row operations after which a member may no longer be one (an insert only adds members).
_MEMBERSHIP_LOSING_OPS = frozenset({"delete", "update", "truncate"})


def membership_tables(namespace: Namespace) -> frozenset[str]:
    """The tables (lower-case, schema dropped) that ``namespace``'s membership query reads."""
    return frozenset(t.lower() for t in _TABLE_IN_QUERY.findall(namespace.membership_query or ""))


class NamespaceRegistry:
    """The configured namespaces; resolves a channel name to its namespace.

    A gateway resolves the channel (a Deny is its error reply), then calls ``authorize``.
    """

    __slots__ = ("_default", "_max_length", "_membership_tables", "_named", "notes")

    def __init__(self, namespaces: Iterable[Namespace], *, notes: Iterable[str] = ()) -> None:
        # What reading Centrifugo's options noted (accepted, with a difference worth saying).
        self.notes = tuple(notes)
        self._default: Namespace | None = None
        self._named: dict[str, Namespace] = {}
        for ns in namespaces:
            if ns.name in self:
                raise ValueError(f"{ns.label} is configured twice")
            if ns.is_default:
                self._default = ns
            else:
                self._named[ns.name] = ns
        self._max_length = max((ns.max_channel_length for ns in self), default=0)
        self._membership_tables = {ns.name: membership_tables(ns) for ns in self}

    def __contains__(self, name: object) -> bool:
        return self._default is not None if name == DEFAULT_NAMESPACE else name in self._named

    def __iter__(self) -> Iterator[Namespace]:
        if self._default is not None:
            yield self._default
        yield from self._named.values()

    def get(self, name: str) -> Namespace | None:
        return self._default if name == DEFAULT_NAMESPACE else self._named.get(name)

    def may_revoke_membership(self, channel: str, table: str, op: str) -> bool:
        """Whether a captured ``op`` on ``table``, published in ``channel``, may have removed
        a member of it: then its subscribers must be re-checked."""
        if op not in _MEMBERSHIP_LOSING_OPS:
            return False
        namespace = self.resolve(channel)
        if not isinstance(namespace, Namespace):
            return False
        return table.lower() in self._membership_tables.get(namespace.name, ())

    def personal_channel_problem(self, template: str) -> str | None:
        """Why the setting ``personal_channel`` (``{sub}`` stands for the user) would
        subscribe nobody, or None when it works: a config that does nothing is an error."""
        if not template:
            return None
        rendered = template.replace("{sub}", SAMPLE_USER)
        found = self.resolve(rendered)
        if isinstance(found, Deny):
            hint = ""
            if USER_BOUNDARY in rendered and "allow_user_limited_channels" not in found.reason:
                hint = (
                    "; a user-limited channel needs a namespace with "
                    "allow_user_limited_channels = true"
                )
            return (
                f"personal_channel {template!r} would subscribe nobody: {rendered!r} (for user "
                f"{SAMPLE_USER!r}) is not a valid channel: {found.reason}{hint}"
            )
        return None

    def resolve(self, channel: str) -> Namespace | Deny:
        """The namespace of ``channel``, or why it is not a valid channel name."""
        if not channel:
            return Deny(ErrorCode.BAD_REQUEST, "empty channel name")
        if len(channel) > self._max_length:
            return Deny(ErrorCode.LIMIT_EXCEEDED, f"channel name longer than {self._max_length}")
        if USER_BOUNDARY in channel:
            if _USER_LIMITED_RE.fullmatch(channel) is None:
                return Deny(
                    ErrorCode.UNKNOWN_CHANNEL,
                    f"a user-limited channel is <name>#<user>[,<user>...], of {_ALLOWED_TEXT}",
                )
        elif not _CHANNEL_RE.fullmatch(channel):
            return Deny(ErrorCode.UNKNOWN_CHANNEL, f"channel names may only use {_ALLOWED_TEXT}")
        name, sep, _ = channel.partition(NAMESPACE_SEPARATOR)
        ns = self._named.get(name) if sep else self._default
        if ns is None:
            what = f"namespace {name!r}" if sep else "default namespace"
            return Deny(ErrorCode.UNKNOWN_CHANNEL, f"no {what} is configured")
        if not ns.accepts(channel):
            return _not_in_namespace(ns, channel)
        return ns


class ConfigError(ValueError):
    """A configuration that can't be used; ``problems`` lists every reason, one per line."""

    def __init__(self, what: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"invalid {what}:\n" + "\n".join(f"  - {p}" for p in problems))


def describe_errors(where: str, exc: ValidationError, model: type[BaseModel]) -> list[str]:
    """Pydantic's errors as one readable line each, prefixed with the TOML table they're in."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in error["loc"])
        msg = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            msg = (
                f"unknown option; known options: {', '.join(sorted(model.model_fields))}, and "
                "Centrifugo's names of them (docs/topics/centrifugo-config.md)"
            )
        lines.append(f"[{where}] {loc}: {msg}" if loc else f"[{where}] {msg}")
    return lines


def namespace_tables(config: Any) -> tuple[list[tuple[str, str, Mapping[str, Any]]], list[str]]:
    """(where, name, options) of each namespace in syncline.toml's layout (a table of tables,
    keyed by name) or Centrifugo's (a list of tables with a ``name``, where ``where`` starts
    with ``namespaces[``), and the problems."""
    found: list[tuple[str, str, Mapping[str, Any]]] = []
    problems: list[str] = []
    if isinstance(config, Mapping):
        for key, body in config.items():
            where = f"namespaces.{key}"
            if not isinstance(body, Mapping) or "name" in body:
                problems.append(f"[{where}] must be a table of options (its key is its name)")
            else:
                found.append((where, str(key), body))
    elif isinstance(config, list):
        for i, item in enumerate(config):
            where = f"namespaces[{i}]"
            name = item.get("name") if isinstance(item, Mapping) else None
            if not isinstance(name, str) or not name:
                problems.append(f"[{where}] must be a table with a name, as in Centrifugo")
            else:
                assert isinstance(item, Mapping)
                where = f"namespaces[{i}] ({name})"
                found.append((where, name, {k: v for k, v in item.items() if k != "name"}))
    else:
        problems.append(
            "namespaces must be a table of namespace tables, or a list of them with a name "
            "each (Centrifugo's layout)"
        )
    return found, problems


def load_namespaces(config: Any, *, defaults: Iterable[Namespace] = ()) -> NamespaceRegistry:
    """Build the registry from the ``namespaces`` of syncline.toml.

    Each ``[namespaces.NAME]`` table (or each ``[[namespaces]]`` with a ``name``, Centrifugo's
    layout) is a namespace; ``default`` is the namespace of channels without ':'. Options are
    Syncline's or Centrifugo's names of them (core/centrifugo_options.py). ``defaults`` are the
    namespaces the applications register (the core knows none); a configured namespace replaces
    the default one of its name as a whole (options are not merged). ConfigError lists problems.
    """
    tables, problems = namespace_tables(config)
    result = {ns.name: ns for ns in defaults}
    configured: set[str] = set()
    notes: list[str] = []
    for where, key, body in tables:
        name = DEFAULT_NAMESPACE if key == DEFAULT_NAMESPACE_KEY else key
        if name in configured:
            problems.append(f"[{where}] configures {key!r} a second time")
            continue
        configured.add(name)
        translation = translate(
            body, centrifugo=where.startswith("namespaces["), known=Namespace.model_fields
        )
        problems += [f"[{where}] {problem}" for problem in translation.problems]
        notes += [f"[{where}] {note}" for note in translation.notes]
        try:
            result[name] = Namespace.model_validate({**translation.options, "name": name})
        except ValidationError as exc:
            problems += describe_errors(where, exc, Namespace)
    if problems:
        raise ConfigError("namespaces", problems)
    return NamespaceRegistry(result.values(), notes=notes)
