"""The signed-in user of a request, from its `Authorization: Bearer` access token."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request

from syncline.api.context import AppContext
from syncline.api.errors import ApiError
from syncline.apps.auth.service import AuthService, ClientInfo
from syncline.apps.auth.tokens import AccessClaims, AccessTokenError

_CHALLENGE = {"WWW-Authenticate": "Bearer"}
MAX_USER_AGENT = 512


async def current_user(request: Request) -> AccessClaims:
    """The caller's claims; 401 unauthorized, token_expired or session_revoked otherwise.

    A valid signature is not enough: the token's session must still be live, so signing out
    or revoking a session takes effect at once, not when the token expires: in this process
    directly, in others through the control bus (a revocation made by hand in SQL is seen
    within `session_check_ttl`, how long live answers are cached).
    """
    auth: AuthService = request.app.state.auth
    return await authenticate(request.headers.get("authorization", ""), auth)


async def authenticate(header: str, auth: AuthService) -> AccessClaims:
    """The claims of an Authorization header's live bearer token; ApiError 401 otherwise (the
    fast chat routes call it without a Request). The token is verified once and its claims
    kept until it expires (auth.tokens); its session's liveness is asked every time."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "sign in first: no bearer token", _CHALLENGE)
    try:
        claims = auth.tokens.claims(token.strip())
    except AccessTokenError as err:
        code = "token_expired" if err.expired else "unauthorized"
        raise ApiError(401, code, str(err), _CHALLENGE) from None
    try:
        session_id = uuid.UUID(claims.session_id)
    except ValueError:
        raise ApiError(401, "unauthorized", "invalid access token: bad sid", _CHALLENGE) from None
    if not await auth.session_is_live(session_id, claims.user_id):
        raise ApiError(401, "session_revoked", "this session was signed out or revoked", _CHALLENGE)
    return claims


CurrentUser = Annotated[AccessClaims, Depends(current_user)]


def build_auth_service(context: AppContext) -> AuthService:
    """The app's one AuthService (its rate-limit counters live as long as the app)."""
    link_base = context.settings.public_url or context.http_url
    return AuthService(
        context.pool,
        context.settings,
        context.jwt_secret,
        link_base,
        guard=context.session_guard,
        control=context.control,
    )


async def get_auth(request: Request) -> AuthService:
    service: AuthService = request.app.state.auth
    return service


Auth = Annotated[AuthService, Depends(get_auth)]


async def client_info(request: Request) -> ClientInfo:
    """The caller's address and user agent.

    The address is the TCP peer's, or X-Forwarded-For's when the peer is one of the
    `trusted_proxies` (none by default). Behind a proxy that is not listed, every client
    shares the proxy's rate limits; with loopback trusted by default, any local process could
    choose the address it is counted under.
    """
    host = request.client.host if request.client else ""
    return ClientInfo(ip=host, user_agent=request.headers.get("user-agent", "")[:MAX_USER_AGENT])


Client = Annotated[ClientInfo, Depends(client_info)]
