"""Request and response shapes of the auth and users API (see docs/api.md)."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from syncline.apps.auth.refresh import MAX_OPAQUE_TOKEN_LENGTH
from syncline.apps.auth.tokens import ACCESS_TOKEN_TTL_S
from syncline.apps.inputs import Input
from syncline.apps.times import Time

USERNAME_PATTERN = r"^[A-Za-z0-9_.-]{3,32}$"
MAX_EMAIL_LENGTH = 254
MAX_DISPLAY_NAME_LENGTH = 64
# Strength rules (10..128 characters, ...) answer 400 weak_password with a clear message;
# this only bounds what is read at all.
MAX_PASSWORD_INPUT = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Deliberately loose (one @, a dot in the domain, no spaces or controls): the mailed link
# is the real check of an address.
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f.]+$")


def _no_controls(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError("is not an email address")
    return value


Username = Annotated[str, StringConstraints(pattern=USERNAME_PATTERN)]
Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=MAX_EMAIL_LENGTH),
    AfterValidator(_email),
]
DisplayName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=MAX_DISPLAY_NAME_LENGTH),
    AfterValidator(_no_controls),
]
Password = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PASSWORD_INPUT)]
OpaqueToken = Annotated[str, StringConstraints(min_length=1, max_length=MAX_OPAQUE_TOKEN_LENGTH)]


class RegisterRequest(Input):
    username: Username
    email: Email
    password: Password
    display_name: DisplayName | None = None


class LoginRequest(Input):
    username: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_EMAIL_LENGTH)
    ] = Field(description="username or email")
    password: Password


class RefreshRequest(Input):
    refresh_token: OpaqueToken


class TokenRequest(Input):
    token: OpaqueToken


class PasswordResetRequest(Input):
    email: Email


class PasswordReset(Input):
    token: OpaqueToken
    new_password: Password


class ChangePasswordRequest(Input):
    current_password: Password
    new_password: Password


class ProfileUpdate(Input):
    display_name: Annotated[DisplayName, StringConstraints(min_length=1)] | None = None
    email: Email | None = None
    # Required to change the address: a stolen access token must not be able to move the
    # account's mailbox (and so its password resets) elsewhere.
    current_password: Password | None = None


class UserSelf(BaseModel):
    id: int
    username: str
    email: str
    display_name: str
    email_verified: bool
    created_at: Time


class UserPublic(BaseModel):
    id: int
    username: str
    display_name: str
    online: bool
    last_seen_at: Time | None


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = ACCESS_TOKEN_TTL_S
    user: UserSelf


class SessionOut(BaseModel):
    id: uuid.UUID
    created_at: Time
    last_used_at: Time
    user_agent: str
    ip: str
    current: bool
