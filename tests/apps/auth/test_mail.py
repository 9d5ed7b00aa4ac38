"""Account mails: the outbox, delivery to a real SMTP server (aiosmtpd), texts and links."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from psycopg_pool import AsyncConnectionPool

from syncline.apps.auth import mail_texts
from syncline.apps.auth.mail import Mail, Mailer, build_message
from syncline.db.embedded import free_port
from syncline.settings import load_settings


@dataclass
class Inbox:
    """Receives what the SMTP server is sent."""

    messages: list[tuple[Envelope, Message]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append((envelope, message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, auth_require_tls=False)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
async def pool(migrated_url: str) -> AsyncIterator[AsyncConnectionPool]:
    async with AsyncConnectionPool(
        migrated_url, min_size=1, max_size=2, kwargs={"autocommit": True}
    ) as pool:
        yield pool


async def enqueue_and_deliver(pool: AsyncConnectionPool, mailer: Mailer, mail: Mail) -> int:
    async with pool.connection() as conn, conn.transaction():
        mail_id = await mailer.enqueue(conn, mail)
    mailer.deliver_soon(mail_id, mail)
    await mailer.drain()
    return mail_id


async def outbox_row(pool: AsyncConnectionPool, mail_id: int) -> tuple[Any, ...]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT to_address, subject, body, sent_at, error FROM mail_outbox WHERE id = %s",
            (mail_id,),
        )
        row = await cur.fetchone()
    assert row is not None
    return row


MAIL = Mail(to="ann@example.test", subject="Hello", body="line one\nline two\n")


async def test_without_smtp_the_mail_stays_in_the_outbox(pool: AsyncConnectionPool) -> None:
    mailer = Mailer(pool, load_settings(None))
    assert not mailer.smtp_configured
    mail_id = await enqueue_and_deliver(pool, mailer, MAIL)
    assert await outbox_row(pool, mail_id) == (MAIL.to, MAIL.subject, MAIL.body, None, None)


async def test_with_smtp_the_mail_is_sent_and_marked(
    pool: AsyncConnectionPool, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    settings = load_settings(
        None,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=False,
        smtp_from="Syncline <noreply@syncline.test>",
    )
    mailer = Mailer(pool, settings)
    mail_id = await enqueue_and_deliver(pool, mailer, MAIL)
    to, _, _, sent_at, error = await outbox_row(pool, mail_id)
    assert sent_at is not None and error is None
    [(envelope, message)] = inbox.messages
    assert envelope.mail_from == "noreply@syncline.test"
    assert envelope.rcpt_tos == [to]
    assert message["Subject"] == "Hello"
    assert message["From"] == "Syncline <noreply@syncline.test>"
    assert message.get_payload(decode=True) == b"line one\r\nline two\r\n"  # SMTP: CRLF


async def test_a_failed_send_records_the_error(
    pool: AsyncConnectionPool, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    # STARTTLS required, but this server offers none: refused, and said so in the outbox.
    settings = load_settings(None, smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=True)
    mail_id = await enqueue_and_deliver(pool, Mailer(pool, settings), MAIL)
    *_, sent_at, error = await outbox_row(pool, mail_id)
    assert sent_at is None
    assert "STARTTLS" in error
    assert inbox.messages == []
    # Nothing listening at all.
    closed = load_settings(None, smtp_host="127.0.0.1", smtp_port=free_port(), smtp_starttls=False)
    mail_id = await enqueue_and_deliver(pool, Mailer(pool, closed), MAIL)
    *_, sent_at, error = await outbox_row(pool, mail_id)
    assert sent_at is None and error


async def test_an_enqueued_mail_vanishes_with_a_rolled_back_transaction(
    pool: AsyncConnectionPool,
) -> None:
    mailer = Mailer(pool, load_settings(None))
    mail_id = 0

    async def fail_after_enqueue() -> None:
        nonlocal mail_id
        async with pool.connection() as conn, conn.transaction():
            mail_id = await mailer.enqueue(conn, MAIL)
            raise RuntimeError("the token insert failed")

    with pytest.raises(RuntimeError):
        await fail_after_enqueue()
    assert mail_id > 0
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM mail_outbox WHERE id = %s", (mail_id,))
        assert await cur.fetchone() == (0,)


def test_headers_refuse_line_breaks() -> None:
    with pytest.raises(ValueError, match=r"linefeed|newline|CR|LF"):
        build_message(Mail("ann@example.test\r\nBcc: all@example.test", "s", "b"), "a@b.test")
    message = build_message(MAIL, "noreply@syncline.test")
    assert message["Message-ID"].endswith("@syncline.test>")


@dataclass
class User:
    email: str = "ann@example.test"
    display_name: str = "Ann"
    username: str = "ann"


def test_texts_carry_the_ui_links() -> None:
    links = mail_texts.Links("https://chat.example.test")
    assert links.verify("a-b_c") == "https://chat.example.test/#/verify?token=a-b_c"
    assert links.reset("x/y+z") == "https://chat.example.test/#/reset?token=x%2Fy%2Bz"
    verify = mail_texts.verification(User(), links.verify("tok"), timedelta(hours=24))
    assert verify.to == "ann@example.test"
    assert "https://chat.example.test/#/verify?token=tok" in verify.body
    assert "24 hours" in verify.body
    reset = mail_texts.password_reset(User(), links.reset("tok"), timedelta(hours=1))
    assert "/#/reset?token=tok" in reset.body and "1 hour" in reset.body
    changed = mail_texts.email_changed(User(), "new@example.test")
    assert changed.to == "ann@example.test" and "new@example.test" in changed.body


async def test_drain_with_nothing_pending_returns(pool: AsyncConnectionPool) -> None:
    await asyncio.wait_for(Mailer(pool, load_settings(None)).drain(), 1)
