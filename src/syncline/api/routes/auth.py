"""/api/auth: register, sign in, refresh, sign out, sessions, email verification, passwords."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from syncline.api.auth_deps import Auth, Client, CurrentUser
from syncline.api.errors import ApiError
from syncline.apps.auth.models import (
    ChangePasswordRequest,
    LoginRequest,
    PasswordReset,
    PasswordResetRequest,
    RefreshRequest,
    RegisterRequest,
    SessionOut,
    TokenPair,
    TokenRequest,
    UserSelf,
)
from syncline.apps.auth.service import Issued, UserRecord

router = APIRouter(prefix="/api/auth", tags=["auth"])


def user_self(user: UserRecord) -> UserSelf:
    return UserSelf(
        id=user.id,
        username=user.username,
        email=user.email,
        display_name=user.display_name,
        email_verified=user.email_verified_at is not None,
        created_at=user.created_at,
    )


def token_pair(issued: Issued) -> TokenPair:
    return TokenPair(
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        user=user_self(issued.user),
    )


@router.post("/register", status_code=201, summary="Create an account (and sign in)")
async def register(body: RegisterRequest, auth: Auth, client: Client) -> TokenPair:
    issued = await auth.register(
        body.username, body.email, body.password, body.display_name or None, client
    )
    return token_pair(issued)


@router.post("/login", summary="Sign in with username or email; a new session")
async def login(body: LoginRequest, auth: Auth, client: Client) -> TokenPair:
    return token_pair(await auth.login(body.username, body.password, client))


@router.post("/refresh", summary="Trade a refresh token for a new pair (rotation)")
async def refresh(body: RefreshRequest, auth: Auth, client: Client) -> TokenPair:
    return token_pair(await auth.refresh(body.refresh_token, client))


@router.post("/logout", status_code=204, summary="Sign out: revoke the current session")
async def logout(user: CurrentUser, auth: Auth) -> Response:
    await auth.logout(user.user_id, uuid.UUID(user.session_id))
    return Response(status_code=204)


@router.get("/sessions", summary="The caller's live sessions")
async def sessions(user: CurrentUser, auth: Auth) -> list[SessionOut]:
    current = uuid.UUID(user.session_id)
    return [
        SessionOut(
            id=s.id,
            created_at=s.created_at,
            last_used_at=s.last_used_at,
            user_agent=s.user_agent,
            ip=s.ip,
            current=s.id == current,
        )
        for s in await auth.sessions(user.user_id)
    ]


@router.delete("/sessions/{session_id}", status_code=204, summary="Revoke one of your sessions")
async def revoke_session(session_id: uuid.UUID, user: CurrentUser, auth: Auth) -> Response:
    if not await auth.revoke_session(user.user_id, session_id):
        raise ApiError(404, "not_found", "no such session")
    return Response(status_code=204)


@router.post("/verify-email/request", status_code=202, summary="Mail a verification link")
async def request_verification(user: CurrentUser, auth: Auth) -> Response:
    await auth.request_verification(user.user_id)
    return Response(status_code=202)


@router.post("/verify-email", summary="Confirm the address with the mailed token")
async def verify_email(body: TokenRequest, auth: Auth) -> UserSelf:
    return user_self(await auth.verify_email(body.token))


@router.post(
    "/password-reset/request",
    status_code=202,
    summary="Mail a password reset link (202 whether or not the address has an account)",
)
async def request_password_reset(
    body: PasswordResetRequest, auth: Auth, client: Client
) -> Response:
    await auth.request_password_reset(body.email, client)
    return Response(status_code=202)


@router.post("/password-reset", summary="Set a new password with the mailed token")
async def reset_password(body: PasswordReset, auth: Auth) -> UserSelf:
    return user_self(await auth.reset_password(body.token, body.new_password))


@router.post("/change-password", status_code=204, summary="Change the password; other sessions end")
async def change_password(body: ChangePasswordRequest, user: CurrentUser, auth: Auth) -> Response:
    await auth.change_password(
        user.user_id, uuid.UUID(user.session_id), body.current_password, body.new_password
    )
    return Response(status_code=204)
