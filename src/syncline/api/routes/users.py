"""/api/users: the caller's profile, user search and public profiles."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from syncline.api.auth_deps import Auth, CurrentUser
from syncline.api.context import Context
from syncline.api.routes.auth import user_self
from syncline.apps.auth.models import ProfileUpdate, UserPublic, UserSelf
from syncline.apps.auth.service import MAX_SEARCH_LIMIT, UserRecord
from syncline.apps.chat.presence import OnlineStatus
from syncline.apps.inputs import Text

router = APIRouter(prefix="/api/users", tags=["users"])

# Larger ids than PostgreSQL's bigint would be a 500 in the database, not a 404.
MAX_ID = 2**63 - 1


def user_public(user: UserRecord, online: set[int]) -> UserPublic:
    # Online: a connection to any node now; last_seen_at: sign-in, refresh, disconnect.
    return UserPublic(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        online=user.id in online,
        last_seen_at=user.last_seen_at,
    )


@router.get("/me", summary="The caller's account")
async def me(user: CurrentUser, auth: Auth) -> UserSelf:
    return user_self(await auth.get_user(user.user_id))


@router.patch("/me", summary="Change the display name or email (a new email is unverified)")
async def update_me(body: ProfileUpdate, user: CurrentUser, auth: Auth) -> UserSelf:
    return user_self(
        await auth.update_profile(
            user.user_id, body.display_name, body.email, body.current_password
        )
    )


@router.get("", summary="Find users by username prefix")
async def search(
    user: CurrentUser,
    auth: Auth,
    context: Context,
    q: Annotated[Text, Query(min_length=1, max_length=32)],
    limit: Annotated[int, Query(ge=1, le=MAX_SEARCH_LIMIT)] = 20,
) -> list[UserPublic]:
    found = await auth.search_users(q, limit)
    online = await OnlineStatus(context.presence).online([u.id for u in found])
    return [user_public(u, online) for u in found]


@router.get("/{user_id}", summary="A user's public profile")
async def profile(
    user_id: Annotated[int, Path(ge=1, le=MAX_ID)], user: CurrentUser, auth: Auth, context: Context
) -> UserPublic:
    found = await auth.get_user(user_id)
    return user_public(found, await OnlineStatus(context.presence).online([found.id]))
