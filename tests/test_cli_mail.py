"""`syncline mail` against a real PostgreSQL: the outbox as text and JSON."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner, Result

from syncline.cli import app
from syncline.db import migrate

from helpers.accounts import auth_api, email_for

runner = CliRunner()


def invoke(*args: str, url: str) -> Result:
    return runner.invoke(app, ["mail", *args], env={"DATABASE_URL": url, "COLUMNS": "200"})


@pytest.fixture
def clean(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.chdir(tmp_path)


async def test_mail_lists_the_outbox_newest_first(clean: None, migrated_url: str) -> None:
    username = f"mail{secrets.token_hex(4)}"
    async with auth_api(migrated_url) as api:
        await api.register(username)
        await api.client.post(
            "/api/auth/password-reset/request", json={"email": email_for(username)}
        )
        reset_token = await api.mailed_token(email_for(username), "reset")
        async with api.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO mail_outbox (to_address, subject, body, sent_at)"
                " VALUES ('sent@example.test', 'Delivered', 'hi', now())"
            )
            await conn.execute(
                "INSERT INTO mail_outbox (to_address, subject, body, error)"
                " VALUES ('bounce@example.test', 'Bounced', 'hi', 'SMTPRecipientsRefused: 550')"
            )

    result = invoke("--to", email_for(username).upper(), url=migrated_url)
    assert result.exit_code == 0, result.output
    text = result.output
    assert text.index("Reset your Syncline password") < text.index("Confirm your email address")
    assert f"to {email_for(username)}" in text
    assert f"/#/reset?token={reset_token}" in text
    assert "not sent (no SMTP configured, or pending)" in text

    result = invoke("--limit", "2", url=migrated_url)
    assert result.exit_code == 0, result.output
    assert "not sent: SMTPRecipientsRefused: 550" in result.output
    assert "status:  sent " in result.output
    assert "Reset your Syncline" not in result.output

    result = invoke("--json", "--to", email_for(username), url=migrated_url)
    assert result.exit_code == 0, result.output
    mails = json.loads(result.output)
    assert [m["subject"] for m in mails] == [
        "Reset your Syncline password",
        "Confirm your email address for Syncline",
    ]
    assert set(mails[0]) == {"id", "to", "subject", "body", "created_at", "sent_at", "error"}
    assert mails[0]["to"] == email_for(username)
    assert reset_token in mails[0]["body"]
    assert mails[0]["sent_at"] is None and mails[0]["error"] is None


def test_mail_on_an_empty_outbox_and_bad_options(clean: None, fresh_database_url: str) -> None:
    migrate.upgrade(fresh_database_url)
    result = invoke("--to", "nobody@example.test", url=fresh_database_url)
    assert result.exit_code == 0, result.output
    assert "the mail outbox is empty" in result.output
    assert invoke("--limit", "0", url=fresh_database_url).exit_code == 2


def test_mail_to_an_address_with_none_counts_the_others(
    clean: None, fresh_database_url: str
) -> None:
    migrate.upgrade(fresh_database_url)
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO mail_outbox (to_address, subject, body)"
            " VALUES ('a@example.test', 's', 'b'), ('b@example.test', 's', 'b')"
        )
    result = invoke("--to", "nobody@example.test", url=fresh_database_url)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "no mail to nobody@example.test (2 in the outbox)"


def test_mail_before_migrations_says_what_to_do(clean: None, fresh_database_url: str) -> None:
    result = invoke(url=fresh_database_url)
    assert result.exit_code == 1
    assert "syncline migrate" in result.output
