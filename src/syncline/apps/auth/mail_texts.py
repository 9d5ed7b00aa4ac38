"""The texts of account mails and the links in them (the web UI's #/verify and #/reset routes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol
from urllib.parse import quote

from syncline.apps.auth.mail import Mail


class Addressee(Protocol):
    @property
    def email(self) -> str: ...
    @property
    def display_name(self) -> str: ...
    @property
    def username(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Links:
    """Links into the web UI under the server's public URL (never the request's Host header:
    a forged Host would send a victim's reset token to the forger's site)."""

    base: str

    def verify(self, token: str) -> str:
        return f"{self.base}/#/verify?token={quote(token, safe='')}"

    def reset(self, token: str) -> str:
        return f"{self.base}/#/reset?token={quote(token, safe='')}"


def _name(user: Addressee) -> str:
    return user.display_name or user.username


def _for(ttl: timedelta) -> str:
    hours = int(ttl.total_seconds() // 3600)
    return "1 hour" if hours == 1 else f"{hours} hours"


def verification(user: Addressee, link: str, ttl: timedelta) -> Mail:
    return Mail(
        to=user.email,
        subject="Confirm your email address for Syncline",
        body=(
            f"Hello {_name(user)},\n\n"
            f"please confirm that {user.email} is your address by opening this link:\n\n"
            f"{link}\n\n"
            f"The link works once, for {_for(ttl)}. If you did not sign up for Syncline,"
            " ignore this mail.\n"
        ),
    )


def password_reset(user: Addressee, link: str, ttl: timedelta) -> Mail:
    return Mail(
        to=user.email,
        subject="Reset your Syncline password",
        body=(
            f"Hello {_name(user)},\n\n"
            f"someone (hopefully you) asked to reset the password of the account"
            f" {user.username}. Choose a new password here:\n\n"
            f"{link}\n\n"
            f"The link works once, for {_for(ttl)}. Setting a new password signs out every"
            " session. If you did not ask for this, ignore this mail: your password stays.\n"
        ),
    )


def email_changed(user: Addressee, new_address: str) -> Mail:
    return Mail(
        to=user.email,
        subject="Your Syncline email address was changed",
        body=(
            f"Hello {_name(user)},\n\n"
            f"the email address of the account {user.username} was changed from"
            f" {user.email} to {new_address}.\n\n"
            "If you did not do this, sign in and change your password at once, then set your"
            " address back.\n"
        ),
    )
