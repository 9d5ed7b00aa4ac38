"""Connection and subscription JWTs (HS256), verified the way Centrifugo verifies them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
import orjson

from syncline.core.tokens import ALGORITHMS, MAX_TOKEN_LENGTH

# A session id is a UUID (36 characters); anything much longer is not one of ours.
MAX_SESSION_ID_LENGTH = 64


class TokenError(Exception):
    """A token that cannot be used; ``expired`` tells the SDK to fetch a new one."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True, slots=True)
class ConnectClaims:
    """What a connection token grants."""

    user: str
    expires_at: int | None  # Unix seconds; None: never
    info: bytes | None  # the `info` claim, encoded JSON (becomes conn_info)
    # The `sid` claim: the sign-in session the token belongs to ("" for tokens without one).
    session: str = ""


class SessionCheck(Protocol):
    """Whether a token's session is live (implemented by the auth application).

    A token with a `sid` claim is only as good as its session: the gateway asks at connect,
    refresh and before every command that reads or writes, and closes the connection when
    the answer is no. Answers may be cached briefly; a revocation reaches every process over
    the control bus at once.
    """

    async def token_session_expiry(self, user: str, session: str) -> int | None:
        """The session's expiry in Unix seconds, or None when it is revoked or unknown."""
        ...


@dataclass(frozen=True, slots=True)
class SubscribeClaims:
    """What a subscription token grants."""

    expires_at: int | None
    info: bytes | None  # becomes chan_info
    data: Any


class TokenVerifier:
    """Verifies tokens signed with the server's key."""

    def __init__(self, secret: str, *, clock: Any = time.time) -> None:
        self._secret = secret
        self._clock = clock

    def _decode(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenError("token too long")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=ALGORITHMS,
                options={"verify_aud": False},
                leeway=0,
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired", expired=True) from None
        except jwt.InvalidTokenError as err:
            raise TokenError(f"invalid token: {err}") from None
        # Centrifugo's rule: no `sub` (or an empty one) is the anonymous user "".
        claims.setdefault("sub", "")
        if not isinstance(claims["sub"], str):
            raise TokenError("invalid token: sub must be a string")
        return claims

    @staticmethod
    def _expiry(claims: dict[str, Any]) -> int | None:
        # Centrifugo: expire_at overrides exp for the connection's lifetime; 0 means never.
        if "expire_at" in claims:
            value = claims["expire_at"]
            if not isinstance(value, int):
                raise TokenError("invalid token: expire_at must be an integer")
            return value or None
        exp = claims.get("exp")
        return int(exp) if isinstance(exp, int | float) else None

    @staticmethod
    def _info(claims: dict[str, Any]) -> bytes | None:
        return orjson.dumps(claims["info"]) if "info" in claims else None

    def connection(self, token: str) -> ConnectClaims:
        """Claims of a connection token; raises TokenError."""
        claims = self._decode(token)
        if "channel" in claims:
            raise TokenError("invalid token: a subscription token cannot connect")
        sid = claims.get("sid", "")
        if not isinstance(sid, str) or len(sid) > MAX_SESSION_ID_LENGTH:
            raise TokenError("invalid token: sid must be a short string")
        return ConnectClaims(claims["sub"], self._expiry(claims), self._info(claims), sid)

    def subscription(self, token: str, *, channel: str, user: str, client: str) -> SubscribeClaims:
        """Claims of a subscription token for this channel, user and client; raises TokenError."""
        claims = self._decode(token)
        if claims.get("channel") != channel:
            raise TokenError("invalid token: channel mismatch")
        if claims["sub"] != user:
            raise TokenError("invalid token: user mismatch")
        if "client" in claims and claims["client"] != client:
            raise TokenError("invalid token: client mismatch")
        return SubscribeClaims(self._expiry(claims), self._info(claims), claims.get("data"))

    def ttl(self, expires_at: int | None) -> int:
        """Seconds left (at least 1) for a token that expires."""
        if expires_at is None:
            return 0
        return max(int(expires_at - self._clock()), 1)
