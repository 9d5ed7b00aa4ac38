"""Access tokens: short-lived HS256 JWTs that are also the gateway's connection tokens."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from syncline.core.tokens import ALGORITHMS, MAX_TOKEN_LENGTH

ACCESS_TOKEN_TTL_S = 15 * 60
# Verified tokens kept (VerifiedTokens): each ~1 KB with its claims; one per signed-in client.
MAX_VERIFIED_TOKENS = 10_000


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


class VerifiedTokens:
    """Access tokens already verified, so that each request does not decode its token again.

    Measured on the chat's POST: PyJWT's decode (base64, JSON, HMAC, claim checks) was ~11 %
    of the process. A token's claims are a fact about the token string and the key, so a
    verified token's claims are kept until the token's own `exp`, when PyJWT would refuse it
    as expired; so is it here. Revocation is not this cache's concern: every request still
    asks the SessionGuard whether the token's session is live (its cache forgets everything on
    a revocation, here or on the control bus), so a revoked session's token is refused at
    once whatever this cache holds. Only verified tokens enter: garbage cannot fill it.
    Bounded, least recently used out first.
    """

    def __init__(
        self,
        secret: str,
        *,
        max_entries: int = MAX_VERIFIED_TOKENS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._max = max_entries
        self._clock = clock
        self._claims: OrderedDict[str, AccessClaims] = OrderedDict()

    def __len__(self) -> int:
        return len(self._claims)

    def claims(self, token: str) -> AccessClaims:
        """Like decode_access_token (same errors), from the cache while the token is valid."""
        cached = self._claims.get(token)
        if cached is not None:
            # PyJWT's own rule: expired when exp <= now.
            if cached.expires_at > self._clock():
                self._claims.move_to_end(token)
                return cached
            del self._claims[token]
            raise AccessTokenError("access token expired", expired=True)
        claims = decode_access_token(self._secret, token)
        self._claims[token] = claims
        if len(self._claims) > self._max:
            self._claims.popitem(last=False)
        return claims
