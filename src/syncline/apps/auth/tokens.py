"""Access tokens: short-lived HS256 JWTs that are also the gateway's connection tokens."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

from syncline.core.tokens import ALGORITHMS, MAX_TOKEN_LENGTH

ACCESS_TOKEN_TTL_S = 15 * 60


class AccessTokenError(Exception):
    """An access token that cannot be used; ``expired`` lets clients refresh instead."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """Who a valid access token speaks for."""

    user_id: int
    session_id: str
    username: str
    expires_at: int


def issue_access_token(
    secret: str,
    *,
    user_id: int,
    session_id: str,
    username: str,
    display_name: str,
    ttl_s: int = ACCESS_TOKEN_TTL_S,
    now: float | None = None,
) -> str:
    """Sign an access token; `info` is what presence shows of the user."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "sid": session_id,
        "iat": issued,
        "exp": issued + ttl_s,
        "info": {"username": username, "display_name": display_name},
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def decode_access_token(secret: str, token: str) -> AccessClaims:
    """The claims of a valid access token; raises AccessTokenError."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise AccessTokenError("token too long")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=ALGORITHMS,
            options={"require": ["sub", "exp", "sid"], "verify_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise AccessTokenError("access token expired", expired=True) from None
    except jwt.InvalidTokenError as err:
        raise AccessTokenError(f"invalid access token: {err}") from None
    sub, sid, info = claims.get("sub"), claims.get("sid"), claims.get("info")
    if not isinstance(sub, str) or not sub.isdigit() or not isinstance(sid, str):
        raise AccessTokenError("invalid access token: bad sub or sid")
    username = info.get("username", "") if isinstance(info, dict) else ""
    return AccessClaims(int(sub), sid, str(username), int(claims["exp"]))
