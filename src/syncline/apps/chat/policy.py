"""The chat's pure rules: who may do what, direct-room keys, history cursors, unread caps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from syncline.apps.errors import AppError

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
# Unread counts are counted up to here; the UI shows "999+". Counting further would cost a
# scan of a long-unread room (the global one) on every room list, for a number nobody reads.
UNREAD_COUNT_CAP = 999

Role = Literal["owner", "member"]
Kind = Literal["global", "group", "direct"]


def direct_key(a: int, b: int) -> str:
    """The one key of the direct room of two users, whichever of them opens it."""
    if a == b:
        raise AppError(400, "invalid_peer", "a direct room needs another user")
    low, high = sorted((a, b))
    return f"{low}:{high}"


def can_edit(*, author_id: int, user_id: int) -> bool:
    """Only the author edits a message."""
    return author_id == user_id


def can_delete(*, author_id: int, user_id: int, role: Role, kind: Kind) -> bool:
    """The author deletes a message; the owner of a group room may delete any of its messages."""
    return author_id == user_id or (kind == "group" and role == "owner")


def can_rename(*, role: Role, kind: Kind) -> bool:
    """Only a group's owner renames it; the global and direct rooms have fixed names."""
    return kind == "group" and role == "owner"


def can_invite(kind: Kind) -> bool:
    """Members are added to group rooms only: everyone is in the global room, two in a direct."""
    return kind == "group"


def can_leave(kind: Kind) -> bool:
    """Everyone stays in the global room; group and direct rooms may be left."""
    return kind != "global"


@dataclass(frozen=True, slots=True)
class Page:
    """One history request: newest `limit` before `before`, or oldest `limit` after `after`."""

    before: int | None
    after: int | None
    limit: int

    @property
    def ascending(self) -> bool:
        """Reading forward from `after` (catching up) rather than back from the newest."""
        return self.after is not None


def page(before: int | None, after: int | None, limit: int | None) -> Page:
    """Validate a history cursor; both bounds together ask for the messages between them."""
    size = DEFAULT_PAGE_SIZE if limit is None else limit
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise AppError(400, "invalid_limit", f"limit must be 1 to {MAX_PAGE_SIZE}")
    for name, value in (("before", before), ("after", after)):
        if value is not None and value < 0:
            raise AppError(400, "invalid_cursor", f"{name} must be a message id (≥ 0)")
    if before is not None and after is not None and after >= before:
        raise AppError(400, "invalid_cursor", "after must be smaller than before")
    return Page(before, after, size)


def next_owner(members: list[tuple[int, Role]], leaving: int) -> int | None:
    """The member to promote to owner when `leaving` goes (members in join order): the first
    one left, or None when no promotion is needed (an owner stays, or nobody does)."""
    rest = [(uid, role) for uid, role in members if uid != leaving]
    if not rest or any(role == "owner" for _, role in rest):
        return None
    return rest[0][0]
