"""Accounts: registration, sign-in, rotating refresh tokens, mailed tokens, profiles."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection, errors
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from syncline.api.errors import ApiError
from syncline.apps.auth import mail_texts as mails
from syncline.apps.auth.live_sessions import LiveSessionCache
from syncline.apps.auth.mail import Mail, Mailer
from syncline.apps.auth.passwords import AsyncHasher, WeakPassword, check_password_strength
from syncline.apps.auth.passwords import needs_rehash as _needs_rehash
from syncline.apps.auth.ratelimit import RateLimited, RateLimiter, Rule
from syncline.apps.auth.refresh import (
    MAX_OPAQUE_TOKEN_LENGTH,
    REFRESH_TOKEN_TTL,
    RefreshOutcome,
    StoredRefresh,
    decide_refresh,
    new_token,
    token_hash,
)
from syncline.apps.auth.session_guard import SessionGuard
from syncline.apps.auth.tokens import VerifiedTokens, issue_access_token
from syncline.control.base import ControlBus
from syncline.core.control import MAX_SESSIONS_PER_COMMAND, SessionsRevoked
from syncline.logs import get_logger
from syncline.settings import Settings

log = get_logger(__name__)

VERIFY_TOKEN_TTL = timedelta(hours=24)
RESET_TOKEN_TTL = timedelta(hours=1)
# Signing in again and again (scripts, lost cookies) must not grow a user's sessions without
# bound: past this many, the least recently used are revoked.
MAX_ACTIVE_SESSIONS = 50
# Revoked and expired sessions stay this long, so a replayed token still reads "token_reused"
# or "session_revoked" rather than "invalid"; then they (and their tokens) are deleted.
DEAD_SESSION_RETENTION = timedelta(days=7)
MAX_USER_AGENT = 512
MAX_IP = 64
MAX_SEARCH_LIMIT = 50

_USER_COLUMNS = "id, username, email, display_name, email_verified_at, last_seen_at, created_at"

_LOGIN_BY_EMAIL = f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE lower(email) = lower(%s)"
_LOGIN_BY_USERNAME = (
    f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE lower(username) = lower(%s)"
)


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who is calling, as recorded on their sessions and counted by the rate limits."""

    ip: str
    user_agent: str


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    username: str
    email: str
    display_name: str
    email_verified_at: datetime | None
    last_seen_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Issued:
    """A new token pair and whose it is."""

    access_token: str
    refresh_token: str
    session_id: uuid.UUID
    user: UserRecord
    # Sessions revoked to make room for this one (past MAX_ACTIVE_SESSIONS).
    evicted: tuple[uuid.UUID, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime
    user_agent: str
    ip: str


_USER_FIELDS = tuple(f.name for f in dataclasses.fields(UserRecord))


def _user(row: dict[str, Any]) -> UserRecord:
    return UserRecord(**{name: row[name] for name in _USER_FIELDS})


def _weak(err: WeakPassword) -> ApiError:
    return ApiError(400, "weak_password", str(err))


def _taken(err: errors.UniqueViolation) -> ApiError:
    if err.diag.constraint_name == "users_username_key":
        return ApiError(409, "username_taken", "this username is taken")
    return ApiError(409, "email_taken", "an account with this email address exists")


class AuthService:
    """Every account operation, over the shared connection pool."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        settings: Settings,
        jwt_secret: str,
        link_base: str,
        *,
        limiter: RateLimiter | None = None,
        mailer: Mailer | None = None,
        hasher: AsyncHasher | None = None,
        guard: SessionGuard | None = None,
        control: ControlBus | None = None,
    ) -> None:
        self._pool = pool
        self._secret = jwt_secret
        self._reuse_grace = timedelta(seconds=settings.refresh_reuse_grace)
        self.tokens = VerifiedTokens(jwt_secret)
        self._links = mails.Links(link_base.rstrip("/"))
        self.limiter = limiter if limiter is not None else RateLimiter(settings)
        self.mailer = mailer if mailer is not None else Mailer(pool, settings)
        self._hasher = hasher if hasher is not None else AsyncHasher()
        self.guard = (
            guard
            if guard is not None
            else SessionGuard(pool, LiveSessionCache(settings.session_check_ttl))
        )
        self.live_sessions = self.guard.cache
        self._control = control

    async def close(self) -> None:
        """Release what outlives requests (the rate limits' Redis connections)."""
        await self.limiter.close()

    async def _revoked(
        self, user_id: int, sessions: list[uuid.UUID] | tuple[uuid.UUID, ...]
    ) -> None:
        """After a revocation committed: forget live answers here, and tell every process
        (theirs too, and their gateways close the sessions' connections)."""
        self.live_sessions.revoked()
        if self._control is None or not sessions:
            return
        ids = [str(s) for s in sessions]
        for start in range(0, len(ids), MAX_SESSIONS_PER_COMMAND):
            chunk = tuple(ids[start : start + MAX_SESSIONS_PER_COMMAND])
            await self._control.publish(SessionsRevoked(str(user_id), chunk))

    # -- registration and sign-in -------------------------------------------------------------

    async def register(
        self,
        username: str,
        email: str,
        password: str,
        display_name: str | None,
        client: ClientInfo,
    ) -> Issued:
        """A new account, member of the global room, signed in; a verification mail sent."""
        await self._limit(Rule.REGISTER_IP, client.ip)
        try:
            check_password_strength(password, username)
        except WeakPassword as err:
            raise _weak(err) from None
        # Hash before taking a connection: 30 ms of CPU must not hold one of the pool's few.
        password_hash = await self._hasher.hash(password)
        try:
            async with self._pool.connection() as conn, conn.transaction():
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(
                    "INSERT INTO users (username, email, password_hash, display_name,"
                    " last_seen_at) VALUES (%s, %s, %s, %s, now())"
                    f" RETURNING {_USER_COLUMNS}",
                    (username, email, password_hash, display_name or username),
                )
                row = await cur.fetchone()
                assert row is not None
                user = _user(row)
                await conn.execute(
                    "INSERT INTO room_members (room_id, user_id)"
                    " SELECT id, %s FROM rooms WHERE kind = 'global' ON CONFLICT DO NOTHING",
                    (user.id,),
                )
                issued = await self._start_session(conn, user, client)
                mail_id, mail = await self._verification_mail(conn, user)
        except errors.UniqueViolation as err:
            raise _taken(err) from None
        await self._revoked(user.id, issued.evicted)
        self.mailer.deliver_soon(mail_id, mail)
        log.info("account registered", user_id=user.id, username=user.username)
        return issued

    async def login(self, identifier: str, password: str, client: ClientInfo) -> Issued:
        """A new session for a username or email and its password."""
        await self._limit(Rule.LOGIN_IP, client.ip)
        by_email = "@" in identifier  # usernames have no @
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(_LOGIN_BY_EMAIL if by_email else _LOGIN_BY_USERNAME, (identifier,))
            row = await cur.fetchone()
        # Unknown names are counted too, under the name: the limit reveals nothing either way.
        account = f"user:{row['id']}" if row else f"name:{identifier.casefold()}"
        await self._limit(Rule.LOGIN_ACCOUNT, account)
        stored_hash: str | None = row["password_hash"] if row else None
        if row is None or not await self._hasher.verify(stored_hash, password):
            raise ApiError(401, "invalid_credentials", "wrong username or password")
        user = _user(row)
        new_hash = None
        if stored_hash is not None and _needs_rehash(stored_hash):
            new_hash = await self._hasher.hash(password)
        async with self._pool.connection() as conn, conn.transaction():
            if new_hash is not None:
                await conn.execute(
                    "UPDATE users SET password_hash = %s WHERE id = %s", (new_hash, user.id)
                )
            issued = await self._start_session(conn, user, client)
        if issued.evicted:
            await self._revoked(user.id, issued.evicted)
        return issued

    async def _start_session(
        self, conn: AsyncConnection[Any], user: UserRecord, client: ClientInfo
    ) -> Issued:
        session_id = uuid.uuid4()
        await conn.execute(
            "INSERT INTO auth_sessions (id, user_id, user_agent, ip, expires_at)"
            " VALUES (%s, %s, %s, %s, now() + %s)",
            (
                session_id,
                user.id,
                client.user_agent[:MAX_USER_AGENT],
                client.ip[:MAX_IP],
                REFRESH_TOKEN_TTL,
            ),
        )
        refresh = new_token()
        await conn.execute(
            "INSERT INTO refresh_tokens (token_hash, session_id) VALUES (%s, %s)",
            (token_hash(refresh), session_id),
        )
        await conn.execute("UPDATE users SET last_seen_at = now() WHERE id = %s", (user.id,))
        cur = await conn.execute(
            "UPDATE auth_sessions SET revoked_at = now() WHERE id IN ("
            " SELECT id FROM auth_sessions WHERE user_id = %s AND revoked_at IS NULL"
            " ORDER BY last_used_at DESC OFFSET %s) RETURNING id",
            (user.id, MAX_ACTIVE_SESSIONS),
        )
        evicted = tuple(row[0] for row in await cur.fetchall())
        await conn.execute(
            "DELETE FROM auth_sessions WHERE user_id = %s"
            " AND (revoked_at < now() - %s OR expires_at < now() - %s)",
            (user.id, DEAD_SESSION_RETENTION, DEAD_SESSION_RETENTION),
        )
        return Issued(self._access_token(user, session_id), refresh, session_id, user, evicted)

    def _access_token(self, user: UserRecord, session_id: uuid.UUID) -> str:
        return issue_access_token(
            self._secret,
            user_id=user.id,
            session_id=str(session_id),
            username=user.username,
            display_name=user.display_name,
        )

    # -- refresh-token rotation -----------------------------------------------------------------

    async def refresh(self, refresh_token: str, client: ClientInfo) -> Issued:
        """Rotate a refresh token: the old one is spent, a new pair issued.

        Presenting a spent token revokes its whole session (every token of the family),
        since either the owner or a thief holds a copy and we can't tell which.
        """
        if len(refresh_token) > MAX_OPAQUE_TOKEN_LENGTH:
            raise ApiError(401, "invalid_refresh_token", "unknown refresh token")
        digest = token_hash(refresh_token)
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            # Both rows locked: two refreshes with one token queue here, and the second
            # reads the rotation the first committed.
            await cur.execute(
                "SELECT t.session_id, t.rotated_at, t.created_at, s.user_id,"
                " s.revoked_at, s.expires_at, now() AS now"
                " FROM refresh_tokens t JOIN auth_sessions s ON s.id = t.session_id"
                " WHERE t.token_hash = %s FOR UPDATE OF t, s",
                (digest,),
            )
            row = await cur.fetchone()
            stored = (
                None
                if row is None
                else StoredRefresh(
                    rotated_at=row["rotated_at"],
                    created_at=row["created_at"],
                    session_revoked_at=row["revoked_at"],
                    session_expires_at=row["expires_at"],
                )
            )
            now = row["now"] if row is not None else datetime.now().astimezone()
            if row is not None and stored is not None and stored.rotated_at is not None:
                # Read after the locks above, so it sees what a refresh we waited for committed.
                successor = await self._live_token_created_at(conn, row["session_id"])
                stored = dataclasses.replace(stored, successor_created_at=successor)
            outcome = decide_refresh(stored, now, self._reuse_grace)
            if outcome is RefreshOutcome.ROTATE:
                assert row is not None
                return await self._rotate(conn, row, client)
            if outcome is RefreshOutcome.REISSUE:
                assert row is not None
                log.info(
                    "refresh token presented again just after its rotation: successor replaced",
                    session_id=str(row["session_id"]),
                    user_id=row["user_id"],
                    ip=client.ip,
                )
                return await self._rotate(conn, row, client)
            if outcome is RefreshOutcome.REUSED:
                assert row is not None
                await conn.execute(
                    "UPDATE auth_sessions SET revoked_at = now()"
                    " WHERE id = %s AND revoked_at IS NULL",
                    (row["session_id"],),
                )
                log.warning(
                    "refresh token reused: session revoked",
                    session_id=str(row["session_id"]),
                    user_id=row["user_id"],
                    ip=client.ip,
                )
        if outcome is RefreshOutcome.REUSED:
            assert row is not None
            await self._revoked(row["user_id"], (row["session_id"],))
        messages = {
            RefreshOutcome.UNKNOWN: "unknown refresh token",
            RefreshOutcome.REUSED: "this refresh token was already used; the session is revoked",
            RefreshOutcome.REVOKED: "the session was signed out or has expired",
        }
        raise ApiError(401, outcome.value, messages[outcome])

    @staticmethod
    async def _live_token_created_at(
        conn: AsyncConnection[Any], session_id: uuid.UUID
    ) -> datetime | None:
        cur = await conn.execute(
            "SELECT max(created_at) FROM refresh_tokens"
            " WHERE session_id = %s AND rotated_at IS NULL",
            (session_id,),
        )
        found = await cur.fetchone()
        return None if found is None else found[0]

    async def _rotate(
        self, conn: AsyncConnection[Any], row: dict[str, Any], client: ClientInfo
    ) -> Issued:
        session_id: uuid.UUID = row["session_id"]
        # A session has one live token: the one presented (ROTATE) or the successor whose
        # reply was lost (REISSUE). Spending it leaves the new one the only live token.
        await conn.execute(
            "UPDATE refresh_tokens SET rotated_at = now()"
            " WHERE session_id = %s AND rotated_at IS NULL",
            (session_id,),
        )
        refresh = new_token()
        await conn.execute(
            "INSERT INTO refresh_tokens (token_hash, session_id) VALUES (%s, %s)",
            (token_hash(refresh), session_id),
        )
        # Sliding expiry: a session used at least once a month stays signed in.
        await conn.execute(
            "UPDATE auth_sessions SET last_used_at = now(), expires_at = now() + %s,"
            " ip = %s, user_agent = %s WHERE id = %s",
            (
                REFRESH_TOKEN_TTL,
                client.ip[:MAX_IP],
                client.user_agent[:MAX_USER_AGENT],
                session_id,
            ),
        )
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            f"UPDATE users SET last_seen_at = now() WHERE id = %s RETURNING {_USER_COLUMNS}",
            (row["user_id"],),
        )
        user_row = await cur.fetchone()
        assert user_row is not None
        user = _user(user_row)
        return Issued(self._access_token(user, session_id), refresh, session_id, user)

    # -- sessions -------------------------------------------------------------------------------

    async def session_is_live(self, session_id: uuid.UUID, user_id: int) -> bool:
        """True while the session is neither revoked nor expired; cached briefly (see
        live_sessions) because every authenticated request asks."""
        return await self.guard.is_live(session_id, user_id)

    async def logout(self, user_id: int, session_id: uuid.UUID) -> None:
        """Revoke the caller's session (its access token stops working at once)."""
        await self.revoke_session(user_id, session_id)

    async def sessions(self, user_id: int) -> list[SessionRecord]:
        """The user's live sessions, most recently used first."""
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT id, created_at, last_used_at, user_agent, ip FROM auth_sessions"
                " WHERE user_id = %s AND revoked_at IS NULL AND expires_at > now()"
                " ORDER BY last_used_at DESC, created_at DESC LIMIT %s",
                (user_id, MAX_ACTIVE_SESSIONS),
            )
            rows = await cur.fetchall()
        return [SessionRecord(**row) for row in rows]

    async def revoke_session(self, user_id: int, session_id: uuid.UUID) -> bool:
        """Revoke one of the user's sessions; False if the user has no such session."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE auth_sessions SET revoked_at = coalesce(revoked_at, now())"
                " WHERE id = %s AND user_id = %s",
                (session_id, user_id),
            )
        await self._revoked(user_id, (session_id,) if cur.rowcount == 1 else ())
        return cur.rowcount == 1

    # -- passwords ------------------------------------------------------------------------------

    async def change_password(
        self, user_id: int, session_id: uuid.UUID, current: str, new: str
    ) -> None:
        """Set a new password; every other session of the user is revoked."""
        # The current password can be guessed through here with a stolen access token.
        await self._limit(Rule.LOGIN_ACCOUNT, f"user:{user_id}")
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT username, password_hash FROM users WHERE id = %s", (user_id,)
            )
            row = await cur.fetchone()
        if row is None:
            raise ApiError(401, "session_revoked", "the account no longer exists")
        username, stored_hash = row
        if not await self._hasher.verify(stored_hash, current):
            raise ApiError(403, "wrong_password", "the current password is wrong")
        try:
            check_password_strength(new, username)
        except WeakPassword as err:
            raise _weak(err) from None
        if new == current:
            raise ApiError(400, "weak_password", "the new password is the current one")
        new_hash = await self._hasher.hash(new)
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE users SET password_hash = %s, updated_at = now() WHERE id = %s",
                (new_hash, user_id),
            )
            cur = await conn.execute(
                "UPDATE auth_sessions SET revoked_at = now()"
                " WHERE user_id = %s AND id <> %s AND revoked_at IS NULL RETURNING id",
                (user_id, session_id),
            )
            others = [row[0] for row in await cur.fetchall()]
            await self._spend_email_tokens(conn, user_id, "reset_password")
        await self._revoked(user_id, others)
        log.info("password changed", user_id=user_id)

    async def request_password_reset(self, email: str, client: ClientInfo) -> None:
        """Mail a reset link if the address has an account; the same answer either way."""
        await self._limit(Rule.RESET_IP, client.ip)
        # Counted by address whether or not it has an account: a 429 reveals nothing.
        await self._limit(Rule.RESET_ACCOUNT, f"reset:{email.casefold()}")
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE lower(email) = lower(%s)", (email,)
            )
            row = await cur.fetchone()
            if row is None:
                return
            user = _user(row)
            token = await self._email_token(conn, user.id, "reset_password", RESET_TOKEN_TTL)
            mail = mails.password_reset(user, self._links.reset(token), RESET_TOKEN_TTL)
            mail_id = await self.mailer.enqueue(conn, mail)
        self.mailer.deliver_soon(mail_id, mail)

    async def reset_password(self, token: str, new_password: str) -> UserRecord:
        """Set the password from a mailed reset token; every session is revoked."""
        digest = token_hash(token)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT u.username FROM email_tokens t JOIN users u ON u.id = t.user_id"
                " WHERE t.token_hash = %s AND t.purpose = 'reset_password'"
                " AND t.used_at IS NULL AND t.expires_at > now()",
                (digest,),
            )
            row = await cur.fetchone()
        if row is None:
            raise _invalid_token()
        # Checked before the token is spent: a weak choice does not burn the link.
        try:
            check_password_strength(new_password, row[0])
        except WeakPassword as err:
            raise _weak(err) from None
        new_hash = await self._hasher.hash(new_password)
        async with self._pool.connection() as conn, conn.transaction():
            user_id = await self._spend_email_token(conn, digest, "reset_password")
            if user_id is None:  # spent by a concurrent request in the meantime
                raise _invalid_token()
            await self._spend_email_tokens(conn, user_id, "reset_password")
            users = conn.cursor(row_factory=dict_row)
            # Following the mailed link proves the address, so it counts as verified too.
            await users.execute(
                "UPDATE users SET password_hash = %s, updated_at = now(),"
                " email_verified_at = coalesce(email_verified_at, now())"
                f" WHERE id = %s RETURNING {_USER_COLUMNS}",
                (new_hash, user_id),
            )
            user_row = await users.fetchone()
            assert user_row is not None
            cur = await conn.execute(
                "UPDATE auth_sessions SET revoked_at = now()"
                " WHERE user_id = %s AND revoked_at IS NULL RETURNING id",
                (user_id,),
            )
            revoked = [row[0] for row in await cur.fetchall()]
        await self._revoked(user_id, revoked)
        log.info("password reset", user_id=user_id)
        return _user(user_row)

    # -- email verification ---------------------------------------------------------------------

    async def request_verification(self, user_id: int) -> None:
        """Mail a new verification link (nothing if the address is verified already)."""
        await self._limit(Rule.RESET_ACCOUNT, f"verify:{user_id}")
        async with self._pool.connection() as conn, conn.transaction():
            user = await self._user_in(conn, user_id)
            if user.email_verified_at is not None:
                return
            mail_id, mail = await self._verification_mail(conn, user)
        self.mailer.deliver_soon(mail_id, mail)

    async def verify_email(self, token: str) -> UserRecord:
        """Mark the address verified with a mailed token (single use)."""
        async with self._pool.connection() as conn, conn.transaction():
            user_id = await self._spend_email_token(conn, token_hash(token), "verify_email")
            if user_id is None:
                raise _invalid_token()
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "UPDATE users SET email_verified_at = coalesce(email_verified_at, now())"
                f" WHERE id = %s RETURNING {_USER_COLUMNS}",
                (user_id,),
            )
            row = await cur.fetchone()
            assert row is not None
        return _user(row)

    async def _verification_mail(
        self, conn: AsyncConnection[Any], user: UserRecord
    ) -> tuple[int, Mail]:
        token = await self._email_token(conn, user.id, "verify_email", VERIFY_TOKEN_TTL)
        mail = mails.verification(user, self._links.verify(token), VERIFY_TOKEN_TTL)
        return await self.mailer.enqueue(conn, mail), mail

    async def _email_token(
        self, conn: AsyncConnection[Any], user_id: int, purpose: str, ttl: timedelta
    ) -> str:
        token = new_token()
        await conn.execute(
            "INSERT INTO email_tokens (token_hash, user_id, purpose, expires_at)"
            " VALUES (%s, %s, %s, now() + %s)",
            (token_hash(token), user_id, purpose, ttl),
        )
        return token

    @staticmethod
    async def _spend_email_token(
        conn: AsyncConnection[Any], digest: bytes, purpose: str
    ) -> int | None:
        """Use a mailed token once; its user, or None if unknown, used or expired."""
        cur = await conn.execute(
            "UPDATE email_tokens SET used_at = now() WHERE token_hash = %s AND purpose = %s"
            " AND used_at IS NULL AND expires_at > now() RETURNING user_id",
            (digest, purpose),
        )
        row = await cur.fetchone()
        return int(row[0]) if row else None

    @staticmethod
    async def _spend_email_tokens(conn: AsyncConnection[Any], user_id: int, purpose: str) -> None:
        """Void every outstanding token of a kind (a newer password or address replaced them)."""
        await conn.execute(
            "UPDATE email_tokens SET used_at = now()"
            " WHERE user_id = %s AND purpose = %s AND used_at IS NULL",
            (user_id, purpose),
        )

    # -- profiles -------------------------------------------------------------------------------

    async def get_user(self, user_id: int) -> UserRecord:
        """A user by id; 404 not_found."""
        async with self._pool.connection() as conn:
            return await self._user_in(conn, user_id)

    async def _user_in(self, conn: AsyncConnection[Any], user_id: int) -> UserRecord:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = %s", (user_id,))
        row = await cur.fetchone()
        if row is None:
            raise ApiError(404, "not_found", "no such user")
        return _user(row)

    async def update_profile(
        self,
        user_id: int,
        display_name: str | None,
        email: str | None,
        current_password: str | None = None,
    ) -> UserRecord:
        """Change the display name and/or address; a new address needs the current password
        and must be verified again."""
        if email is not None:
            await self._confirm_password_for_email(user_id, email, current_password)
        to_deliver: list[tuple[int, Mail]] = []
        try:
            async with self._pool.connection() as conn, conn.transaction():
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(
                    f"SELECT {_USER_COLUMNS} FROM users WHERE id = %s FOR UPDATE", (user_id,)
                )
                row = await cur.fetchone()
                if row is None:
                    raise ApiError(404, "not_found", "no such user")
                before = _user(row)
                # Same address in other letter case (lower() is what the unique index folds):
                # stored as typed, still verified.
                new_address = email is not None and email.lower() != before.email.lower()
                await cur.execute(
                    "UPDATE users SET display_name = coalesce(%s, display_name),"
                    " email = coalesce(%s, email), updated_at = now(),"
                    " email_verified_at = CASE WHEN %s THEN NULL ELSE email_verified_at END"
                    f" WHERE id = %s RETURNING {_USER_COLUMNS}",
                    (display_name, email, new_address, user_id),
                )
                updated = await cur.fetchone()
                assert updated is not None
                user = _user(updated)
                if new_address:
                    # An old link must not verify the new address.
                    await self._spend_email_tokens(conn, user_id, "verify_email")
                    to_deliver.append(await self._verification_mail(conn, user))
                    notice = mails.email_changed(before, user.email)
                    to_deliver.append((await self.mailer.enqueue(conn, notice), notice))
        except errors.UniqueViolation as err:
            raise _taken(err) from None
        for mail_id, mail in to_deliver:
            self.mailer.deliver_soon(mail_id, mail)
        return user

    async def _confirm_password_for_email(
        self, user_id: int, email: str, current_password: str | None
    ) -> None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT email, password_hash FROM users WHERE id = %s", (user_id,)
            )
            row = await cur.fetchone()
        if row is None or row[0].lower() == email.lower():
            return  # no such user (handled by the update) or the same address
        if current_password is None:
            raise ApiError(
                400, "password_required", "changing the email address needs current_password"
            )
        # Guessing the password through here is limited like signing in.
        await self._limit(Rule.LOGIN_ACCOUNT, f"user:{user_id}")
        if not await self._hasher.verify(row[1], current_password):
            raise ApiError(403, "wrong_password", "the current password is wrong")

    async def search_users(self, prefix: str, limit: int) -> list[UserRecord]:
        """Users whose name starts with `prefix` (case-insensitive), by name."""
        pattern = _escape_like(prefix.casefold()) + "%"
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE lower(username) LIKE %s"
                " ORDER BY lower(username) LIMIT %s",
                (pattern, min(limit, MAX_SEARCH_LIMIT)),
            )
            rows = await cur.fetchall()
        return [_user(row) for row in rows]

    # -- helpers --------------------------------------------------------------------------------

    async def _limit(self, rule: Rule, key: str) -> None:
        try:
            await self.limiter.hit(rule, key)
        except RateLimited as err:
            raise ApiError(
                429, "rate_limited", str(err), {"Retry-After": str(err.retry_after)}
            ) from None


def _invalid_token() -> ApiError:
    return ApiError(400, "invalid_token", "this link is invalid, used or expired")


def _escape_like(text: str) -> str:
    """Match `text` literally in a LIKE pattern (usernames may contain _)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
