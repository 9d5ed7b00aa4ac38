"""Sync rules: routing changes to channels, filtering columns, and checking rule configs."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncline.apps.chat.sync import MESSAGE_COLUMNS
from syncline.apps.sync import app_namespaces
from syncline.apps.sync import app_rules as default_rules
from syncline.core.changes import Change, CommitPosition, Lsn, Op, Row
from syncline.core.namespaces import PARAM_CHARS, ConfigError, load_namespaces
from syncline.core.rules import (
    DENIED_COLUMNS,
    ReplicaIdentity,
    Routed,
    RoutingError,
    RoutingReason,
    Rule,
    RuleSet,
    format_commit_time,
    load_rules,
    required_replica_identity,
    route,
    validate_rules,
)

# The applications' namespaces and rules are plain data the core is tested with.
REGISTRY = load_namespaces({}, defaults=app_namespaces())
DEFAULTS = RuleSet(default_rules(), REGISTRY)
POSITION = CommitPosition(0x16B374D848, 3)
COMMIT_US = 1_700_000_000_123_456
COMMIT_TIME = "2023-11-14T22:13:20.123456+00:00"
MESSAGE = {
    "id": 1,
    "room_id": 42,
    "user_id": 7,
    "body": "hello",
    "client_msg_id": "c1",
    "created_at": "2025-01-01T00:00:00Z",
    "edited_at": None,
    "deleted_at": None,
}


def change(
    op: Op,
    row: Row | None = None,
    old: Row | None = None,
    *,
    table: str = "messages",
    schema: str = "public",
    toast: frozenset[str] = frozenset(),
    channel: str | None = None,
) -> Change:
    return Change(schema, table, op, row, old, POSITION, 77, COMMIT_US, toast, channel)


def payload(op: str, row: Row | None, old: Row | None, table: str = "messages") -> dict[str, Any]:
    return {
        "table": table,
        "op": op,
        "row": row,
        "old": old,
        "lsn": str(POSITION),
        "xid": 77,
        "commit_time": COMMIT_TIME,
    }


def ruleset(*rules: dict[str, Any]) -> RuleSet:
    return RuleSet(load_rules(rules), REGISTRY)


def only_routed(result: list[Routed | RoutingError]) -> Routed:
    assert len(result) == 1, result
    routed = result[0]
    assert isinstance(routed, Routed)
    return routed


def only_error(result: list[Routed | RoutingError]) -> RoutingError:
    assert len(result) == 1, result
    error = result[0]
    assert isinstance(error, RoutingError)
    return error


# --- routing ---------------------------------------------------------------------------------


def test_inserted_message_is_published_to_its_room() -> None:
    assert route(change(Op.INSERT, MESSAGE), DEFAULTS) == [
        Routed("room:42", payload("insert", MESSAGE, None))
    ]


def test_payload_carries_the_formatted_position_and_commit_time() -> None:
    rules = RuleSet(default_rules(), REGISTRY, position_format=lambda p: f"{Lsn(p.commit)}")
    channel, data = only_routed(rules.route(change(Op.INSERT, MESSAGE)))
    assert channel == "room:42"
    assert data["lsn"] == "16/B374D848"
    assert data["commit_time"] == COMMIT_TIME
    assert data["xid"] == 77


@pytest.mark.parametrize(
    ("us", "text"),
    [
        (0, "1970-01-01T00:00:00+00:00"),
        (1, "1970-01-01T00:00:00.000001+00:00"),
        (120_000, "1970-01-01T00:00:00.12+00:00"),
        (COMMIT_US, COMMIT_TIME),
        (-1, "1969-12-31T23:59:59.999999+00:00"),
    ],
)
def test_commit_time_is_rfc_3339_utc_as_to_jsonb_writes_it(us: int, text: str) -> None:
    assert format_commit_time(us) == text


@given(st.lists(st.integers(min_value=0, max_value=4_000_000_000_000_000), min_size=1))
def test_commit_time_of_every_publication_matches_the_reference_format(times: list[int]) -> None:
    rules = RuleSet(default_rules(), REGISTRY)
    for us in times:
        row = {"id": 1, "status": "new"}
        c = Change("public", "orders", Op.INSERT, row, None, POSITION, 1, us)
        _, data = only_routed(rules.route(c))
        assert data["commit_time"] == format_commit_time(us)


def test_message_moved_to_another_room_deletes_then_inserts() -> None:
    moved = {**MESSAGE, "room_id": 43}
    assert DEFAULTS.route(change(Op.UPDATE, moved, MESSAGE)) == [
        Routed("room:42", payload("delete", None, MESSAGE)),
        Routed("room:43", payload("insert", moved, None)),
    ]


def test_update_in_the_same_room_is_one_update_with_the_old_row() -> None:
    edited = {**MESSAGE, "body": "hello!"}
    assert DEFAULTS.route(change(Op.UPDATE, edited, MESSAGE)) == [
        Routed("room:42", payload("update", edited, MESSAGE))
    ]


def test_update_without_old_row_goes_to_the_new_rows_channel() -> None:
    assert DEFAULTS.route(change(Op.UPDATE, MESSAGE, None)) == [
        Routed("room:42", payload("update", MESSAGE, None))
    ]


def test_update_whose_old_key_lacks_the_routing_column_goes_to_the_new_channel() -> None:
    assert DEFAULTS.route(change(Op.UPDATE, MESSAGE, {"id": 0})) == [
        Routed("room:42", payload("update", MESSAGE, {"id": 0}))
    ]


def test_routing_column_set_to_null_deletes_from_the_old_channel_only() -> None:
    orphan = {**MESSAGE, "room_id": None}
    assert DEFAULTS.route(change(Op.UPDATE, orphan, MESSAGE)) == [
        Routed("room:42", payload("delete", None, MESSAGE))
    ]


def test_row_whose_routing_column_leaves_null_is_inserted_in_its_new_channel() -> None:
    orphan = {**MESSAGE, "room_id": None}
    assert DEFAULTS.route(change(Op.UPDATE, MESSAGE, orphan)) == [
        Routed("room:42", payload("insert", MESSAGE, None))
    ]


def test_deleted_message_is_published_to_the_room_of_its_old_row() -> None:
    assert DEFAULTS.route(change(Op.DELETE, None, MESSAGE)) == [
        Routed("room:42", payload("delete", None, MESSAGE))
    ]


def test_delete_without_routing_column_needs_replica_identity_full() -> None:
    error = only_error(DEFAULTS.route(change(Op.DELETE, None, {"id": 1})))
    assert error.reason is RoutingReason.NEEDS_REPLICA_IDENTITY_FULL
    assert error.table == "public.messages"
    assert error.channel == "room:{room_id}"
    assert "ALTER TABLE public.messages REPLICA IDENTITY FULL" in error.message


def test_delete_without_any_old_row_is_reported() -> None:
    error = only_error(DEFAULTS.route(change(Op.DELETE, None, None)))
    assert error.reason is RoutingReason.MISSING_ROW
    assert "REPLICA IDENTITY NOTHING" in error.message


@pytest.mark.parametrize(
    ("room_id", "reason"),
    [
        (None, RoutingReason.NULL_VALUE),
        ({"a": 1}, RoutingReason.BAD_VALUE),
        ([1], RoutingReason.BAD_VALUE),
        ("4 2", RoutingReason.INVALID_CHANNEL),
        ("4:2", RoutingReason.INVALID_CHANNEL),
        ("9" * 300, RoutingReason.INVALID_CHANNEL),
    ],
)
def test_row_that_cannot_name_a_channel_is_skipped_with_a_reason(
    room_id: object, reason: RoutingReason
) -> None:
    error = only_error(DEFAULTS.route(change(Op.INSERT, {**MESSAGE, "room_id": room_id})))
    assert error.reason is reason
    assert error.message.startswith("insert on public.messages not published to room:{room_id}")


def test_row_without_the_routing_column_is_skipped_with_a_reason() -> None:
    error = only_error(DEFAULTS.route(change(Op.INSERT, {"id": 1})))
    assert error.reason is RoutingReason.MISSING_COLUMN


@pytest.mark.parametrize(
    ("value", "channel"),
    [(42, "room:42"), ("42", "room:42"), (-1, "room:-1"), (True, "room:true"), (1.5, "room:1.5")],
)
def test_placeholder_values_render_as_text(value: object, channel: str) -> None:
    routed, _ = only_routed(DEFAULTS.route(change(Op.INSERT, {**MESSAGE, "room_id": value})))
    assert routed == channel


def test_room_member_is_published_to_the_room_and_to_the_member() -> None:
    member = {"room_id": 5, "user_id": 9, "role": "admin", "joined_at": "t"}
    result = DEFAULTS.route(change(Op.INSERT, member, table="room_members"))
    assert [r.channel for r in result if isinstance(r, Routed)] == ["room:5", "user:9"]


def test_table_without_rules_routes_nowhere() -> None:
    assert DEFAULTS.route(change(Op.INSERT, MESSAGE, table="audit_log")) == []
    assert DEFAULTS.route(change(Op.INSERT, MESSAGE, schema="chat")) == []


def test_table_outside_public_is_named_with_its_schema() -> None:
    rules = ruleset({"table": "audit.events", "channel": "audit", "columns": ["id"]})
    _, data = only_routed(
        rules.route(change(Op.INSERT, {"id": 1, "x": 2}, table="events", schema="audit"))
    )
    assert data["table"] == "audit.events"
    assert data["row"] == {"id": 1}


def test_rule_routes_only_its_ops() -> None:
    rules = ruleset({"table": "orders", "channel": "orders", "columns": "*", "ops": ["insert"]})
    assert len(rules.route(change(Op.INSERT, {"id": 1}, table="orders"))) == 1
    assert rules.route(change(Op.UPDATE, {"id": 1}, table="orders")) == []
    assert rules.route(change(Op.DELETE, None, {"id": 1}, table="orders")) == []


# --- columns ---------------------------------------------------------------------------------


def test_only_the_listed_columns_are_published() -> None:
    row = {**MESSAGE, "internal_note": "x", "room_id": 1}
    _, data = only_routed(DEFAULTS.route(change(Op.INSERT, row)))
    assert tuple(data["row"]) == MESSAGE_COLUMNS


def test_password_hash_never_published_even_with_star() -> None:
    rules = ruleset({"table": "users", "channel": "users", "columns": "*"})
    user = {"id": 1, "name": "ann"} | dict.fromkeys(DENIED_COLUMNS, "s3cret") | {"Password": "x"}
    result = rules.route(change(Op.UPDATE, user, user, table="users"))
    _, data = only_routed(result)
    assert data["row"] == data["old"] == {"id": 1, "name": "ann"}


@pytest.mark.parametrize("column", ["password_hash", "token", "refresh_token_hash", "Secret"])
def test_secret_column_listed_in_a_rule_is_refused(column: str) -> None:
    with pytest.raises(ConfigError, match=f"column '{column}' can never be published"):
        load_rules([{"table": "users", "channel": "users", "columns": ["id", column]}])


def test_unchanged_toast_filled_from_old_row() -> None:
    row = {**MESSAGE, "body": None}
    old = {**MESSAGE, "body": "a long body"}
    _, data = only_routed(DEFAULTS.route(change(Op.UPDATE, row, old, toast=frozenset({"body"}))))
    assert data["row"]["body"] == "a long body"
    assert "unchanged" not in data


def test_unchanged_toast_without_old_row_is_listed_never_null() -> None:
    row = {k: v for k, v in MESSAGE.items() if k != "body"}
    _, data = only_routed(DEFAULTS.route(change(Op.UPDATE, row, None, toast=frozenset({"body"}))))
    assert "body" not in data["row"]
    assert data["unchanged"] == ["body"]


def test_unchanged_toast_that_is_not_published_is_not_listed() -> None:
    row = {**MESSAGE, "search_vector": None}
    toast = frozenset({"search_vector", "body"})
    _, data = only_routed(DEFAULTS.route(change(Op.UPDATE, row, None, toast=toast)))
    assert data["unchanged"] == ["body"]
    assert "search_vector" not in data["row"]


def test_unchanged_toast_routing_column_is_taken_from_the_old_row() -> None:
    rules = ruleset({"table": "docs", "channel": "room:{slug}", "columns": ["id"]})
    row = {"id": 1}
    channel, _ = only_routed(
        rules.route(
            change(Op.UPDATE, row, {"id": 1, "slug": "a"}, table="docs", toast=frozenset({"slug"}))
        )
    )
    assert channel == "room:a"
    error = only_error(rules.route(change(Op.UPDATE, row, table="docs", toast=frozenset({"slug"}))))
    assert error.reason is RoutingReason.MISSING_COLUMN
    assert "REPLICA IDENTITY FULL" in error.message


# --- truncate and transactional messages ------------------------------------------------------


def test_truncate_is_published_on_a_fixed_channel() -> None:
    assert DEFAULTS.route(change(Op.TRUNCATE, table="orders")) == [
        Routed("orders", payload("truncate", None, None, table="orders"))
    ]


def test_truncate_of_a_templated_channel_is_dropped_with_a_reason() -> None:
    error = only_error(DEFAULTS.route(change(Op.TRUNCATE)))
    assert error.reason is RoutingReason.TRUNCATE_UNROUTABLE
    assert "truncate_channel" in error.message


def test_truncate_goes_to_the_rules_truncate_channel() -> None:
    rules = ruleset(
        {
            "table": "messages",
            "channel": "room:{room_id}",
            "columns": "*",
            "truncate_channel": "rooms",
        }
    )
    channel, data = only_routed(rules.route(change(Op.TRUNCATE)))
    assert (channel, data["op"], data["row"]) == ("rooms", "truncate", None)


def test_transactional_message_goes_to_its_channel_as_is() -> None:
    data = {"kind": "reindex", "n": [1, 2]}
    message = change(Op.MESSAGE, {"data": data}, table="", channel="room:9")
    assert DEFAULTS.route(message) == [Routed("room:9", data)]


@pytest.mark.parametrize(
    ("channel", "row", "reason"),
    [
        (None, {"data": 1}, RoutingReason.BAD_MESSAGE),
        ("room:9", None, RoutingReason.BAD_MESSAGE),
        ("room:9", {"other": 1}, RoutingReason.BAD_MESSAGE),
        ("nowhere:9", {"data": 1}, RoutingReason.INVALID_CHANNEL),
        ("room:a b", {"data": 1}, RoutingReason.INVALID_CHANNEL),
    ],
)
def test_unroutable_message_is_reported(
    channel: str | None, row: Row | None, reason: RoutingReason
) -> None:
    message = change(Op.MESSAGE, row, table="", channel=channel)
    assert only_error(DEFAULTS.route(message)).reason is reason


# --- rule configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"channel": "orders", "columns": "*"}, "table: Field required"),
        ({"table": "orders", "channel": "orders"}, "columns: Field required"),
        ({"table": "a.b.c", "channel": "orders", "columns": "*"}, "is not 'schema.table'"),
        ({"table": "orders", "channel": "orders", "columns": "id"}, "list of column names or '*'"),
        ({"table": "orders", "channel": "orders", "columns": []}, "must list the published"),
        ({"table": "orders", "channel": "orders", "columns": ["a b"]}, "'a b' is not an ident"),
        ({"table": "orders", "channel": "orders", "columns": ["a", "a"]}, "a column twice"),
        ({"table": "t", "channel": "room:{1d}", "columns": "*"}, "is not an identifier"),
        ({"table": "t", "channel": "room:{a}{b}", "columns": "*"}, "literal character between"),
        ({"table": "t", "channel": "o", "columns": "*", "ops": []}, "ops must list some of"),
        ({"table": "t", "channel": "o", "columns": "*", "ops": ["message"]}, "not a row operation"),
        ({"table": "t", "channel": "o", "columns": "*", "ops": ["upsert"]}, "ops.0: Input should"),
        ({"table": "t", "channel": "o", "columns": "*", "where": "x"}, "where: unknown option"),
        (
            {"table": "t", "channel": "o", "columns": "*", "truncate_channel": "p"},
            "only for templated channels",
        ),
        (
            {"table": "t", "channel": "room:{id}", "columns": "*", "truncate_channel": "r:{id}"},
            "must be a fixed channel name",
        ),
        (
            {
                "table": "t",
                "channel": "room:{id}",
                "columns": "*",
                "truncate_channel": "rooms",
                "ops": ["insert"],
            },
            "'truncate' is not in ops",
        ),
    ],
)
def test_invalid_rule_gives_a_clear_message(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_rules([{"table": "ok", "channel": "ok", "columns": "*"}, rule])
    assert "[rules[1]]" in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"table": "t", "channel": "rom:{id}", "columns": "*"}], "no namespace 'rom'"),
        (
            [{"table": "t", "channel": "room:{a}:{b}", "columns": "*"}],
            "'room:{a}:{b}' can't produce channels of namespace 'room'",
        ),
        (
            [{"table": "t", "channel": "room:{id}", "columns": "*", "truncate_channel": "x:y"}],
            "truncate_channel: no namespace 'x' is configured",
        ),
        ([{"table": "t", "channel": "o", "columns": "*"}] * 2, "appears twice"),
    ],
)
def test_rule_that_does_not_fit_the_namespaces_is_refused(
    rules: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ConfigError, match="invalid sync rules") as info:
        validate_rules(load_rules(rules), REGISTRY)
    assert message in str(info.value)


def test_default_namespace_missing_refuses_a_rule_for_orders() -> None:
    registry = load_namespaces({"room": {}})
    with pytest.raises(ConfigError, match="no namespace 'default' is configured"):
        RuleSet(default_rules(), registry)


def test_default_rules_cover_the_chat_and_orders_tables() -> None:
    assert DEFAULTS.tables() == [
        ("public", "messages"),
        ("public", "room_members"),
        ("public", "orders"),
    ]


@pytest.mark.parametrize(
    ("channel", "key", "identity"),
    [
        ("orders", (), ReplicaIdentity.DEFAULT),
        ("room:{room_id}", ("id",), ReplicaIdentity.FULL),
        ("room:{room_id}", ("room_id", "user_id"), ReplicaIdentity.DEFAULT),
        ("user:{user_id}", ("room_id", "user_id"), ReplicaIdentity.DEFAULT),
    ],
)
def test_required_replica_identity_depends_on_the_key(
    channel: str, key: tuple[str, ...], identity: ReplicaIdentity
) -> None:
    rule = Rule.model_validate({"table": "t", "channel": channel, "columns": "*"})
    assert required_replica_identity(rule, key) is identity


# --- properties ------------------------------------------------------------------------------

_ROOM_IDS = st.integers(min_value=-(2**63), max_value=2**63) | st.text(
    alphabet=sorted(PARAM_CHARS), min_size=1, max_size=40
)


@given(_ROOM_IDS)
def test_routed_channel_parses_back_to_the_row_value(room_id: int | str) -> None:
    channel, _ = only_routed(DEFAULTS.route(change(Op.INSERT, {**MESSAGE, "room_id": room_id})))
    room = REGISTRY.get("room")
    assert room is not None
    assert room.params(channel) == {"room_id": str(room_id)}
