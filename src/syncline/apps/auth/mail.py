"""Account mails: every one is written to mail_outbox, then sent over SMTP when configured."""

from __future__ import annotations

import asyncio
import email.utils
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import aiosmtplib
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from syncline.logs import get_logger
from syncline.settings import Settings

log = get_logger(__name__)

SMTP_TIMEOUT_S = 30.0
# Parallel SMTP conversations; a burst of resets queues here instead of opening 500 sockets.
MAX_CONCURRENT_SENDS = 4
MAX_ERROR_LENGTH = 500


@dataclass(frozen=True, slots=True)
class Mail:
    """One plain-text mail."""

    to: str
    subject: str
    body: str


def build_message(mail: Mail, sender: str) -> EmailMessage:
    """The RFC 5322 message for a mail (headers refuse line breaks: no header injection)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = email.utils.make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(mail.body)
    return message


class Mailer:
    """Writes mails to the outbox inside the caller's transaction; delivers after commit.

    Writing inside the transaction means a mail exists exactly when the token it carries
    does. Delivery happens in the background, after the reply: an SMTP server taking seconds
    must not slow the request, nor reveal by timing whether an address has an account.
    """

    def __init__(self, pool: AsyncConnectionPool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings
        self._tasks: set[asyncio.Task[None]] = set()
        self._sends: asyncio.Semaphore | None = None

    @property
    def smtp_configured(self) -> bool:
        return bool(self._settings.smtp_host)

    async def enqueue(self, conn: AsyncConnection[Any], mail: Mail) -> int:
        """Store the mail in mail_outbox (in `conn`'s transaction); its id."""
        cur = await conn.execute(
            "INSERT INTO mail_outbox (to_address, subject, body) VALUES (%s, %s, %s) RETURNING id",
            (mail.to, mail.subject, mail.body),
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    def deliver_soon(self, mail_id: int, mail: Mail) -> None:
        """Send a committed outbox mail in the background (or log that it stays there)."""
        if not self.smtp_configured:
            # The token is not logged: logs travel further than the database. Operators
            # without SMTP read the mail with `syncline mail`.
            log.info(
                "mail kept in the outbox (no SMTP configured; see `syncline mail`)",
                mail_id=mail_id,
                to=mail.to,
                subject=mail.subject,
            )
            return
        task = asyncio.create_task(self._deliver(mail_id, mail), name=f"mail-{mail_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the deliveries under way (tests; a graceful stop)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _deliver(self, mail_id: int, mail: Mail) -> None:
        if self._sends is None:
            self._sends = asyncio.Semaphore(MAX_CONCURRENT_SENDS)
        error: str | None = None
        async with self._sends:
            try:
                await self._send(mail)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as err:
                error = f"{type(err).__name__}: {err}"[:MAX_ERROR_LENGTH]
                log.warning("mail not sent", mail_id=mail_id, to=mail.to, error=error)
        try:
            async with self._pool.connection() as conn:
                if error is None:
                    await conn.execute(
                        "UPDATE mail_outbox SET sent_at = now(), error = NULL WHERE id = %s",
                        (mail_id,),
                    )
                else:
                    await conn.execute(
                        "UPDATE mail_outbox SET error = %s WHERE id = %s", (error, mail_id)
                    )
        except Exception as err:  # the pool may be closing; the mail itself is done
            log.warning("cannot record a mail's delivery", mail_id=mail_id, error=str(err))

    async def _send(self, mail: Mail) -> None:
        settings = self._settings
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        await aiosmtplib.send(
            build_message(mail, settings.smtp_from),
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_user or None,
            password=password,
            start_tls=settings.smtp_starttls,
            timeout=SMTP_TIMEOUT_S,
        )
