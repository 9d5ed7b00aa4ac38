"""The chat bench's accounts, registered and signed in before a k6 run rather than in its setup.

Registering or signing in hashes a password (argon2id, ~30 ms of the server's CPU each): done
in k6's setup it would count in the server's CPU time per request measured over the run.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from syncline.errors import SynclineError

PASSWORD = "k6-bench-password-1"  # bench/k6/chat.js's, so that its ladder can sign in again
# Access tokens live 15 minutes; sign in again well before that.
TOKEN_MAX_AGE_S = 10 * 60
ATTEMPTS = 20


def _post_json(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of a POST; 429 is retried after the server's Retry-After."""
    data = json.dumps(body).encode()
    for _ in range(ATTEMPTS):
        request = urllib.request.Request(  # noqa: S310  (the bench's own server URL)
            url, data=data, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            if error.code != 429:
                return error.code, {}
            time.sleep(float(error.headers.get("Retry-After") or 1))
        except OSError as error:
            raise SynclineError(f"cannot reach {url}: {error}") from None
    raise SynclineError(f"{url}: still rate limited after {ATTEMPTS} attempts")


class ChatAccounts:
    """`count` users of one run: registered on first use, signed in again when their tokens
    age; `file()` writes them where bench/k6/chat.js reads them (USERS_FILE)."""

    def __init__(self, base_url: str, count: int, path: Path) -> None:
        self.base_url = base_url.rstrip("/")
        self.path = path
        run = secrets.token_hex(4)
        self.usernames = [f"k6_{run}_{i}" for i in range(count)]
        self.tokens: list[str] = []
        self.signed_in_at = 0.0

    def _register(self, username: str) -> str:
        body = {
            "username": username,
            "email": f"{username}@bench.invalid",
            "password": PASSWORD,
            "display_name": username,
        }
        status, answer = _post_json(f"{self.base_url}/api/auth/register", body)
        if status == 409:
            return self._login(username)
        if status != 201:
            raise SynclineError(f"register {username}: the server answered {status}")
        return str(answer["access_token"])

    def _login(self, username: str) -> str:
        body = {"username": username, "password": PASSWORD}
        status, answer = _post_json(f"{self.base_url}/api/auth/login", body)
        if status != 200:
            raise SynclineError(f"sign in {username}: the server answered {status}")
        return str(answer["access_token"])

    def file(self) -> Path:
        """The users file with fresh tokens (registering the users the first time)."""
        if not self.tokens:
            self.tokens = [self._register(name) for name in self.usernames]
            self.signed_in_at = time.monotonic()
        elif time.monotonic() - self.signed_in_at > TOKEN_MAX_AGE_S:
            self.tokens = [self._login(name) for name in self.usernames]
            self.signed_in_at = time.monotonic()
        users = [
            {"username": name, "token": token}
            for name, token in zip(self.usernames, self.tokens, strict=True)
        ]
        self.path.write_text(json.dumps({"users": users}))
        return self.path
