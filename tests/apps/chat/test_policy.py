"""The chat's pure rules on plain data: permissions, direct keys, cursors, input limits."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from syncline.apps.chat import policy
from syncline.apps.chat.models import (
    MAX_BODY_LENGTH,
    CreateRoom,
    RpcSend,
    RpcTyping,
    SendMessage,
)
from syncline.apps.chat.presence import OnlineStatus, user_id_of
from syncline.apps.chat.typing import TypingLimiter
from syncline.apps.errors import AppError
from syncline.core.log import ClientInfo
from syncline.presence import MemoryPresenceStore, online_key


def test_direct_key_is_the_same_from_both_sides() -> None:
    assert policy.direct_key(7, 3) == policy.direct_key(3, 7) == "3:7"
    # Numeric order, not text order: 10 sorts after 9.
    assert policy.direct_key(10, 9) == "9:10"


def test_no_direct_room_with_oneself() -> None:
    with pytest.raises(AppError) as err:
        policy.direct_key(5, 5)
    assert (err.value.status, err.value.code) == (400, "invalid_peer")


def test_only_the_author_edits() -> None:
    assert policy.can_edit(author_id=1, user_id=1)
    assert not policy.can_edit(author_id=1, user_id=2)


@pytest.mark.parametrize(
    ("author", "user", "role", "kind", "allowed"),
    [
        (1, 1, "member", "group", True),  # the author
        (1, 1, "member", "global", True),
        (1, 2, "member", "group", False),  # another member
        (1, 2, "owner", "group", True),  # the group's owner deletes any
        (1, 2, "owner", "direct", False),  # owners exist only in groups
        (1, 2, "owner", "global", False),
    ],
)
def test_who_deletes(
    author: int, user: int, role: policy.Role, kind: policy.Kind, allowed: bool
) -> None:
    assert policy.can_delete(author_id=author, user_id=user, role=role, kind=kind) is allowed


def test_renaming_inviting_and_leaving_by_room_kind() -> None:
    assert policy.can_rename(role="owner", kind="group")
    assert not policy.can_rename(role="member", kind="group")
    assert not policy.can_rename(role="owner", kind="direct")
    assert [policy.can_invite(k) for k in ("global", "group", "direct")] == [False, True, False]
    assert [policy.can_leave(k) for k in ("global", "group", "direct")] == [False, True, True]


def test_page_defaults_and_direction() -> None:
    assert policy.page(None, None, None) == policy.Page(None, None, policy.DEFAULT_PAGE_SIZE)
    assert not policy.page(10, None, 5).ascending
    assert policy.page(None, 10, 5).ascending
    assert policy.page(20, 10, 5) == policy.Page(20, 10, 5)


@pytest.mark.parametrize(
    ("before", "after", "limit", "code"),
    [
        (None, None, 0, "invalid_limit"),
        (None, None, policy.MAX_PAGE_SIZE + 1, "invalid_limit"),
        (-1, None, 10, "invalid_cursor"),
        (None, -5, 10, "invalid_cursor"),
        (10, 10, 10, "invalid_cursor"),
        (10, 20, 10, "invalid_cursor"),
    ],
)
def test_page_refuses_bad_cursors(
    before: int | None, after: int | None, limit: int, code: str
) -> None:
    with pytest.raises(AppError) as err:
        policy.page(before, after, limit)
    assert (err.value.status, err.value.code) == (400, code)


def test_next_owner() -> None:
    # The owner leaves: the earliest remaining member takes over.
    assert policy.next_owner([(1, "owner"), (2, "member"), (3, "member")], 1) == 2
    # A member leaves, or another owner stays: nobody is promoted.
    assert policy.next_owner([(1, "owner"), (2, "member")], 2) is None
    assert policy.next_owner([(1, "owner"), (2, "owner")], 1) is None
    # The last one leaves.
    assert policy.next_owner([(1, "owner")], 1) is None


def test_message_body_limits() -> None:
    assert SendMessage(body="  hi\n").body == "  hi\n"  # kept as typed
    assert len(SendMessage(body="x" * MAX_BODY_LENGTH).body) == MAX_BODY_LENGTH
    for bad in ("", " \n\t ", "x" * (MAX_BODY_LENGTH + 1)):
        with pytest.raises(ValidationError):
            SendMessage(body=bad)


def test_client_msg_id_limits_and_unknown_fields() -> None:
    assert SendMessage(body="a", client_msg_id="k-1").client_msg_id == "k-1"
    for bad in ("", "x" * 65, "has space", "ünï"):
        with pytest.raises(ValidationError):
            SendMessage(body="a", client_msg_id=bad)
    with pytest.raises(ValidationError):
        SendMessage.model_validate({"body": "a", "room_id": 3})
    with pytest.raises(ValidationError):
        RpcSend.model_validate({"room_id": 0, "body": "a"})
    with pytest.raises(ValidationError):
        RpcTyping.model_validate({"room_id": 1 << 63})


def test_room_names_are_trimmed_and_not_blank() -> None:
    assert CreateRoom(name="  team  ").name == "team"
    for bad in ("", "   ", "x" * 65):
        with pytest.raises(ValidationError):
            CreateRoom(name=bad)


def test_typing_limiter_allows_one_event_per_window_per_user_and_room() -> None:
    limiter = TypingLimiter(events=1, window_s=60)
    assert limiter.allow(1, 10)
    assert not limiter.allow(1, 10)
    assert limiter.allow(1, 11)  # another room
    assert limiter.allow(2, 10)  # another user


def test_user_ids_from_subjects() -> None:
    assert user_id_of("42") == 42
    assert user_id_of("") is None
    assert user_id_of("abc") is None
    assert user_id_of("9" * 19) is None  # beyond a bigint


async def test_online_status_asks_presence_for_each_users_online_key() -> None:
    store = MemoryPresenceStore()
    await store.add(online_key("7"), ClientInfo("7", "c1"))
    await store.add(online_key("8"), ClientInfo("8", "c2"))
    await store.remove(online_key("8"), "c2")
    status = OnlineStatus(store)
    assert await status.online([7, 8, 9, 7]) == {7}
    assert await status.online([]) == set()
    assert await OnlineStatus(None).online([7]) == set()
