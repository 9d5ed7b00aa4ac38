"""The signed-in user of a request, from its `Authorization: Bearer` access token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from syncline.api.context import AppContext, get_context
from syncline.api.errors import ApiError
from syncline.apps.auth.tokens import AccessClaims, AccessTokenError, decode_access_token

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def current_user(
    request: Request, context: Annotated[AppContext, Depends(get_context)]
) -> AccessClaims:
    """The caller's claims; 401 with code unauthorized or token_expired otherwise."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "sign in first: no bearer token", _CHALLENGE)
    try:
        return decode_access_token(context.jwt_secret, token.strip())
    except AccessTokenError as err:
        code = "token_expired" if err.expired else "unauthorized"
        raise ApiError(401, code, str(err), _CHALLENGE) from None


CurrentUser = Annotated[AccessClaims, Depends(current_user)]
