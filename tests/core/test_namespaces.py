"""Channel namespaces: channel names and patterns, configuration checks, access decisions."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncline.apps.chat.sync import ROOM_MEMBERSHIP_QUERY
from syncline.apps.sync import app_namespaces
from syncline.core.codes import ErrorCode
from syncline.core.namespaces import (
    ALLOW,
    NEEDS_TOKEN,
    PARAM_CHARS,
    Action,
    ChannelTemplate,
    ConfigError,
    Decision,
    Deny,
    Namespace,
    NamespaceRegistry,
    NeedsMembershipCheck,
    authorize,
    authorize_subscribe,
    limited_users,
    load_namespaces,
)

# The chat's and the orders dashboard's namespaces are plain data the core is tested with.
REGISTRY = load_namespaces({}, defaults=app_namespaces())


def ns(name: str = "", **options: Any) -> Namespace:
    return Namespace.model_validate({"name": name, **options})


def config_problems(config: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        load_namespaces(config)
    return str(info.value)


# --- channel templates -----------------------------------------------------------------------


def test_template_splits_literals_and_fields() -> None:
    template = ChannelTemplate.parse("chat:{org}.{room_id}")
    assert template.namespace == "chat"
    assert template.fields == ("org", "room_id")
    assert template.literals == ("chat:", ".", "")
    assert template.match("chat:acme.42") == {"org": "acme", "room_id": "42"}
    assert template.match("chat:acme") is None
    assert template.render({"org": "acme", "room_id": "42"}) == "chat:acme.42"


@pytest.mark.parametrize(
    ("text", "namespace"),
    [("orders", ""), ("order-{id}", ""), ("room:{room_id}", "room"), ("a:b:{c}", "a")],
)
def test_template_namespace_is_the_literal_before_the_first_colon(
    text: str, namespace: str
) -> None:
    assert ChannelTemplate.parse(text).namespace == namespace


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "can't be empty"),
        ("room:{1x}", "is not an identifier"),
        ("room:{}", "is not an identifier"),
        ("room:{a}{b}", "literal character between placeholders"),
        ("room:{a}.{a}", "appears twice"),
        ("room:{a", "'{' in 'room:{a' is unbalanced"),
        ("room:a}", "is unbalanced"),
        ("room:a b", "' ' in 'room:a b' is not allowed"),
        ("room:$x", "not allowed (only letters, digits"),
        ("{ns}:x", "must be literal"),
        (":x", "empty namespace"),
    ],
)
def test_invalid_template_is_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        ChannelTemplate.parse(text)


@pytest.mark.parametrize("value", ["a:b", "1.2", "", "a b"])
def test_render_refuses_values_that_would_not_parse_back(value: str) -> None:
    with pytest.raises(ValueError, match="not a valid value"):
        ChannelTemplate.parse("t:{a}.{b}").render({"a": value, "b": "x"})


_SEPARATORS = st.text(alphabet=sorted(PARAM_CHARS | {":"}), min_size=1, max_size=3)
_NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)


@st.composite
def _templates_and_values(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    names = draw(st.lists(_NAMES, min_size=1, max_size=4, unique=True))
    separators = [draw(_SEPARATORS) for _ in names[1:]]
    suffix = draw(st.sampled_from(["", ".x", "-y"]))
    literals = ["ns:", *separators, suffix]
    text = literals[0] + "".join(
        f"{{{n}}}{lit}" for n, lit in zip(names, literals[1:], strict=True)
    )
    values = {}
    for name, following in zip(names, literals[1:], strict=True):
        alphabet = sorted(PARAM_CHARS - {following[:1]})
        values[name] = draw(st.text(alphabet=alphabet, min_size=1, max_size=12))
    return text, values


@given(_templates_and_values())
def test_rendering_then_parsing_a_channel_name_round_trips_the_parameters(
    case: tuple[str, dict[str, str]],
) -> None:
    text, values = case
    template = ChannelTemplate.parse(text)
    channel = template.render(values)
    assert template.match(channel) == values
    assert Namespace(name="ns", channel_pattern=text, max_channel_length=1024).params(channel) == (
        values if len(channel) <= 1024 else None
    )


# --- namespace configuration -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"history_size": 10, "history_ttl": 60, "allow_publish": True},
            "allow_publish = true is refused in a namespace with history",
        ),
        (
            {"allow_publish": True, "client_publish_history": True},
            "client_publish_history = true needs a history",
        ),
        (
            {"history_size": 10, "history_ttl": 60, "client_publish_history": True},
            "client_publish_history = true needs allow_publish = true",
        ),
        ({"history_size": 10}, "history_size and history_ttl go together"),
        ({"history_ttl": 10}, "history_size and history_ttl go together"),
        ({"recover": True}, "recover = true needs a history"),
        ({"allow_history": True}, "allow_history = true needs a history"),
        ({"allow_presence": True}, "allow_presence = true needs presence = true"),
        ({"history_size": -1}, "history_size: Input should be greater than or equal to 0"),
        ({"subscribe": "everyone"}, "subscribe: Input should be 'public'"),
        ({"subscribe": "membership"}, "needs a membership_query: one SELECT statement"),
        (
            {"subscribe": "membership", "membership_query": "DELETE FROM x"},
            "one SELECT statement",
        ),
        (
            {"subscribe": "membership", "membership_query": "SELECT 1; DROP TABLE x"},
            "one SELECT statement",
        ),
        (
            {"subscribe": "membership", "membership_query": "SELECT 1 WHERE a = %s"},
            "may only use %(name)s placeholders",
        ),
        (
            {
                "subscribe": "membership",
                "channel_pattern": "chat:{room_id}",
                "membership_query": "SELECT 1 WHERE a = %(room)s",
            },
            "membership_query has '%(room)s'",
        ),
        (
            {"subscribe": "membership", "membership_query": "SELECT 1 WHERE a = %(user)d"},
            "membership_query has '%(user)d'",
        ),
        ({"membership_query": "SELECT 1"}, "only used with subscribe = 'membership'"),
        ({"channel_pattern": "room:{id}"}, "must start with 'chat:'"),
        ({"channel_pattern": "chat:{user}"}, "may not use ['user']"),
        ({"channel_pattern": "chat:{a}{b}"}, "channel_pattern: put a literal character"),
        ({"subscribe": "personal", "channel_pattern": "chat:{id}"}, "needs a {user} parameter"),
        ({"colour": "blue"}, "colour: unknown option; known options: allow_history"),
    ],
)
def test_invalid_namespace_config_gives_a_clear_message(
    options: dict[str, Any], message: str
) -> None:
    problems = config_problems({"chat": options})
    assert "[namespaces.chat]" in problems
    assert message in problems


def test_publish_with_history_explains_why() -> None:
    problems = config_problems({"chat": {"history_size": 5, "history_ttl": 5, "allow_publish": 1}})
    assert "ephemeral" in problems
    assert "offsets" in problems
    assert "history-less namespace" in problems
    # ... and names the option that allows it, with where the trade-off is written down.
    assert "unless client_publish_history = true" in problems
    assert "docs/topics/client-publish-history.md" in problems


def test_client_publish_into_history_is_an_explicit_option_off_by_default() -> None:
    assert not Namespace().client_publish_history
    registry = load_namespaces(
        {
            "chat": {
                "history_size": 100,
                "history_ttl": 300,
                "recover": True,
                "allow_publish": True,
                "client_publish_history": True,
            }
        }
    )
    chat = registry.get("chat")
    assert chat is not None and chat.client_publish_history and chat.allow_publish
    assert authorize(chat, Action.PUBLISH, "chat:lobby", "7") == ALLOW


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"default": {"subscribe": "personal"}}, "needs a named namespace"),
        ({"default": {"channel_pattern": "a:{b}"}}, "must contain no ':'"),
        ({"bad name": {}}, "namespace name 'bad name' must be 1-64 of"),
        ({"chat": {"name": "other"}}, "must be a table of options (its key is its name)"),
        ({"chat": 3}, "must be a table of options"),
    ],
)
def test_invalid_namespace_table_gives_a_clear_message(
    config: dict[str, Any], message: str
) -> None:
    assert message in config_problems(config)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        load_namespaces({"a": {"recover": True}, "b": {"presence": "maybe"}})
    assert len(info.value.problems) == 2
    assert str(info.value).startswith("invalid namespaces:\n  - [namespaces.a]")


def test_default_namespaces_serve_the_chat_and_the_orders_dashboard() -> None:
    by_name = {n.name: n for n in app_namespaces()}
    assert set(by_name) == {"", "room", "user", "typing"}
    default, room, user, typing = by_name[""], by_name["room"], by_name["user"], by_name["typing"]
    assert (default.subscribe, default.history_size, default.history_ttl) == (
        "authenticated",
        1000,
        3600,
    )
    assert default.recover and room.recover and user.recover
    assert (room.history_size, room.history_ttl, user.history_size) == (1000, 86400, 300)
    assert room.presence and room.join_leave and not user.presence
    assert room.membership_query == typing.membership_query == ROOM_MEMBERSHIP_QUERY
    assert "public.room_members" in ROOM_MEMBERSHIP_QUERY
    assert typing.allow_publish and not typing.history_size and not typing.presence
    assert not (default.allow_publish or room.allow_publish or user.allow_publish)


def test_configured_namespace_replaces_the_builtin_one_whole() -> None:
    registry = load_namespaces(
        {"room": {"subscribe": "public"}, "news": {}}, defaults=app_namespaces()
    )
    room = registry.get("room")
    assert room is not None
    assert room.subscribe == "public"
    assert room.history_size == 0
    assert {n.name for n in registry} == {"", "room", "user", "typing", "news"}
    alone = load_namespaces({"news": {}})
    assert [n.name for n in alone] == ["news"]
    assert alone.resolve("orders") == Deny(
        ErrorCode.UNKNOWN_CHANNEL, "no default namespace is configured"
    )


def test_a_namespace_configured_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="namespace 'a' is configured twice"):
        NamespaceRegistry([ns("a"), ns("a")])


# --- channel names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ("orders", ""),
        ("room:42", "room"),
        ("user:alice@example.com", "user"),
        ("typing:7", "typing"),
        ("room:4:2", ErrorCode.UNKNOWN_CHANNEL),
        ("room:", ErrorCode.UNKNOWN_CHANNEL),
        ("user:", ErrorCode.UNKNOWN_CHANNEL),
        ("nope:1", ErrorCode.UNKNOWN_CHANNEL),
        ("room:4 2", ErrorCode.UNKNOWN_CHANNEL),
        ("room:$42", ErrorCode.UNKNOWN_CHANNEL),
        ("", ErrorCode.BAD_REQUEST),
        ("o" * 256, ErrorCode.LIMIT_EXCEEDED),
        ("room:" + "4" * 251, ErrorCode.LIMIT_EXCEEDED),
    ],
)
def test_channel_resolves_to_its_namespace_or_an_error(channel: str, expected: object) -> None:
    resolved = REGISTRY.resolve(channel)
    if isinstance(resolved, Deny):
        assert resolved.code == expected
    else:
        assert resolved.name == expected


def test_namespace_without_pattern_takes_any_valid_rest() -> None:
    chat = ns("chat")
    assert chat.params("chat:a:b") == {}
    assert chat.params("chat:") is None
    assert chat.params("other:a") is None
    assert ns().params("orders") == {}
    assert ns().params("a:b") is None


# --- access decisions ------------------------------------------------------------------------

MEMBERS = {"subscribe": "membership", "membership_query": ROOM_MEMBERSHIP_QUERY}
ROOM = ns("room", channel_pattern="room:{room_id}", **MEMBERS)
DENIED = ErrorCode.PERMISSION_DENIED
MEMBER_OF_42 = NeedsMembershipCheck(ROOM_MEMBERSHIP_QUERY, {"room_id": "42", "user": "7"})
MEMBER_OF_1 = NeedsMembershipCheck(ROOM_MEMBERSHIP_QUERY, {"room_id": "1", "user": "7"})


@pytest.mark.parametrize(
    ("namespace", "channel", "user", "expected"),
    [
        (ns("n", subscribe="public"), "n:1", None, ALLOW),
        (ns("n", subscribe="public"), "n:1", "u1", ALLOW),
        (ns("n", subscribe="authenticated"), "n:1", "u1", ALLOW),
        (ns("n", subscribe="authenticated"), "n:1", None, DENIED),
        (ns("n", subscribe="authenticated"), "n:1", "", DENIED),
        (ns("user", subscribe="personal"), "user:alice", "alice", ALLOW),
        (ns("user", subscribe="personal"), "user:alice", "bob", DENIED),
        (ns("user", subscribe="personal"), "user:alice", None, DENIED),
        (ns("n", subscribe="token"), "n:1", "u1", NEEDS_TOKEN),
        (ns("n", subscribe="token"), "n:1", None, NEEDS_TOKEN),
        (ROOM, "room:42", None, DENIED),
        (ROOM, "room:42", "7", MEMBER_OF_42),
        (ROOM, "room:a:b", "7", ErrorCode.UNKNOWN_CHANNEL),
        (ROOM, "user:7", "7", ErrorCode.UNKNOWN_CHANNEL),
        (ns("n", max_channel_length=4), "n:12", "u", ALLOW),
        (ns("n", max_channel_length=4), "n:123", "u", ErrorCode.LIMIT_EXCEEDED),
    ],
)
def test_subscribe_decision_follows_the_namespace_policy(
    namespace: Namespace, channel: str, user: str | None, expected: object
) -> None:
    assert_decision(authorize_subscribe(namespace, channel, user), expected)


def assert_decision(decision: Decision, expected: object) -> None:
    if isinstance(expected, ErrorCode):
        assert isinstance(decision, Deny), decision
        assert decision.code == expected
        assert decision.reason
    else:
        assert decision == expected


def test_membership_params_are_the_ones_the_query_uses() -> None:
    query = "SELECT 1 FROM acl WHERE channel = %(channel)s AND who = %(user)s AND 100%% = 100%%"
    chat = ns(
        "chat", channel_pattern="chat:{org}.{room}", subscribe="membership", membership_query=query
    )
    decision = authorize_subscribe(chat, "chat:acme.7", "u1")
    assert decision == NeedsMembershipCheck(query, {"channel": "chat:acme.7", "user": "u1"})


TYPING = ns("typing", channel_pattern="typing:{room_id}", allow_publish=True, **MEMBERS)
STORED = {"history_size": 10, "history_ttl": 60}
FEED = ns("feed", **STORED, allow_history=True, presence=True, allow_presence=True)
SECRET = ns("secret", subscribe="token", **STORED, allow_history=True)


@pytest.mark.parametrize(
    ("namespace", "action", "channel", "user", "subscribed", "expected"),
    [
        (TYPING, Action.PUBLISH, "typing:1", "7", False, MEMBER_OF_1),
        (TYPING, Action.PUBLISH, "typing:1", "7", True, ALLOW),
        (TYPING, Action.PUBLISH, "typing:1", None, False, DENIED),
        (ROOM, Action.PUBLISH, "room:1", "7", True, DENIED),
        (TYPING, Action.HISTORY, "typing:1", "7", True, ErrorCode.NOT_AVAILABLE),
        (TYPING, Action.PRESENCE, "typing:1", "7", True, ErrorCode.NOT_AVAILABLE),
        (FEED, Action.HISTORY, "feed:1", "u", False, ALLOW),
        (FEED, Action.HISTORY, "feed:1", None, False, DENIED),
        (FEED, Action.PRESENCE, "feed:1", "u", True, ALLOW),
        (ns("n", **STORED), Action.HISTORY, "n:1", "u", True, DENIED),
        (ns("n", presence=True), Action.PRESENCE, "n:1", "u", True, DENIED),
        (SECRET, Action.HISTORY, "secret:1", "u", False, DENIED),
        (SECRET, Action.HISTORY, "secret:1", "u", True, ALLOW),
        (SECRET, Action.SUBSCRIBE, "secret:1", "u", False, NEEDS_TOKEN),
        (FEED, Action.HISTORY, "other:1", "u", False, ErrorCode.UNKNOWN_CHANNEL),
    ],
)
def test_publish_history_and_presence_need_the_option_then_subscribe_access(
    namespace: Namespace,
    action: Action,
    channel: str,
    user: str | None,
    subscribed: bool,
    expected: object,
) -> None:
    assert_decision(authorize(namespace, action, channel, user, subscribed=subscribed), expected)


def test_default_registry_decisions_for_the_chat() -> None:
    room = REGISTRY.resolve("room:42")
    orders = REGISTRY.resolve("orders")
    assert isinstance(room, Namespace)
    assert isinstance(orders, Namespace)
    assert isinstance(authorize_subscribe(room, "room:42", "7"), NeedsMembershipCheck)
    assert authorize_subscribe(orders, "orders", "7") is ALLOW
    assert_decision(authorize_subscribe(orders, "orders", None), DENIED)
    assert_decision(authorize(room, Action.PUBLISH, "room:42", "7", subscribed=True), DENIED)


@pytest.mark.parametrize(
    ("channel", "table", "op", "expected"),
    [
        ("room:1", "room_members", "delete", True),
        ("room:1", "ROOM_MEMBERS", "update", True),
        ("room:1", "room_members", "truncate", True),
        ("room:1", "room_members", "insert", False),  # an insert only adds members
        ("room:1", "messages", "delete", False),  # not a table the membership query reads
        ("typing:1", "room_members", "delete", True),
        ("orders", "room_members", "delete", False),  # no membership query
        ("user:7", "room_members", "delete", False),  # personal: no query
        ("nope:1", "room_members", "delete", False),  # no such namespace
    ],
)
def test_changes_that_may_remove_a_member_are_recognised(
    channel: str, table: str, op: str, expected: bool
) -> None:
    assert REGISTRY.may_revoke_membership(channel, table, op) is expected


# --- user-limited channels (Centrifugo's '#' boundary) ------------------------------------------

LIMITED = NamespaceRegistry(
    [
        ns("", allow_user_limited_channels=True),  # Centrifugo's `dialog#42,43`, `#42`
        ns("personal", allow_user_limited_channels=True, subscribe="token"),
        ns("room", subscribe="membership", membership_query="SELECT 1"),
    ]
)


@pytest.mark.parametrize(
    ("channel", "users"),
    [
        ("dialog#42,43", ("42", "43")),
        ("#42", ("42",)),
        ("personal:#42", ("42",)),
        ("chat:dm.a#ann@example.org,bob", ("ann@example.org", "bob")),
    ],
)
def test_the_users_of_a_user_limited_channel(channel: str, users: tuple[str, ...]) -> None:
    assert limited_users(channel) == users


@pytest.mark.parametrize(
    "channel",
    ["dialog#", "dialog#42,", "dialog#,42", "dialog#42,,43", "a#b#42", "dialog#4:2", "dialog#4 2"],
)
def test_malformed_user_limited_channels_are_refused(channel: str) -> None:
    assert limited_users(channel) is None
    found = LIMITED.resolve(channel)
    assert isinstance(found, Deny)
    assert found.code is ErrorCode.UNKNOWN_CHANNEL


@pytest.mark.parametrize(
    ("channel", "user", "allowed"),
    [
        ("dialog#42,43", "42", True),
        ("dialog#42,43", "43", True),
        ("dialog#42,43", "44", False),
        ("dialog#42,43", "", False),  # anonymous is nobody's user id
        ("dialog#42,43", None, False),
        ("#42", "42", True),
        # The namespace wants a token; the user list is permission enough (Centrifugo's rule).
        ("personal:#42", "42", True),
        ("personal:#42", "4", False),
    ],
)
def test_only_the_listed_users_may_subscribe(channel: str, user: str | None, allowed: bool) -> None:
    namespace = LIMITED.resolve(channel)
    assert isinstance(namespace, Namespace)
    decision = authorize_subscribe(namespace, channel, user)
    if allowed:
        assert decision == ALLOW
    else:
        assert isinstance(decision, Deny)
        assert decision.code is ErrorCode.PERMISSION_DENIED


def test_other_actions_on_a_user_limited_channel_need_their_option_and_the_user() -> None:
    namespace = ns("", allow_user_limited_channels=True, allow_publish=True)
    assert authorize(namespace, Action.PUBLISH, "d#1,2", "2") == ALLOW
    denied = authorize(namespace, Action.PUBLISH, "d#1,2", "3")
    assert isinstance(denied, Deny) and denied.code is ErrorCode.PERMISSION_DENIED
    no_history = authorize(namespace, Action.HISTORY, "d#1,2", "1")
    assert isinstance(no_history, Deny) and no_history.code is ErrorCode.NOT_AVAILABLE


def test_hash_is_refused_where_user_limited_channels_are_not_allowed() -> None:
    found = REGISTRY.resolve("room:1#7")  # the chat's namespaces don't allow them
    assert isinstance(found, Deny)
    assert found.code is ErrorCode.UNKNOWN_CHANNEL
    assert "allow_user_limited_channels" in found.reason
    assert isinstance(LIMITED.resolve("room:1#7"), Deny)
    plain = NamespaceRegistry([ns("")])
    assert isinstance(plain.resolve("#42"), Deny)


def test_a_user_limited_channel_is_not_held_to_the_namespace_pattern() -> None:
    registry = NamespaceRegistry(
        [ns("chat", channel_pattern="chat:{room}", allow_user_limited_channels=True)]
    )
    assert registry.resolve("chat:lobby") == registry.get("chat")
    assert registry.resolve("chat:#1,2") == registry.get("chat")
    namespace = registry.get("chat")
    assert namespace is not None
    assert authorize_subscribe(namespace, "chat:#1,2", "1") == ALLOW


def test_a_personal_channel_that_subscribes_nobody_is_a_config_error() -> None:
    assert LIMITED.personal_channel_problem("#{sub}") is None
    assert LIMITED.personal_channel_problem("personal:#{sub}") is None
    assert LIMITED.personal_channel_problem("") is None
    assert REGISTRY.personal_channel_problem("user:{sub}") is None
    problem = REGISTRY.personal_channel_problem("#{sub}")
    assert problem is not None
    assert problem.startswith("personal_channel '#{sub}' would subscribe nobody: '#42'")
    assert problem.endswith("does not allow them (allow_user_limited_channels = true)")
    no_default = NamespaceRegistry([ns("user", subscribe="personal")])
    problem = no_default.personal_channel_problem("#{sub}")
    assert problem is not None and "no default namespace" in problem
    assert problem.endswith("needs a namespace with allow_user_limited_channels = true")
    assert REGISTRY.personal_channel_problem("nope:{sub}") is not None


# --- delta compression (Centrifugo's allowed_delta_types) -----------------------------------


def test_delta_is_off_unless_the_namespace_allows_fossil() -> None:
    assert ns().allowed_delta_types == ()
    registry = load_namespaces({"default": {"allowed_delta_types": ["fossil"]}})
    default = registry.get("")
    assert default is not None and default.allowed_delta_types == ("fossil",)


def test_an_unknown_delta_type_is_a_config_problem() -> None:
    problems = config_problems({"live": {"allowed_delta_types": ["xdelta"]}})
    assert "[namespaces.live] allowed_delta_types.0" in problems
    assert "'fossil'" in problems
