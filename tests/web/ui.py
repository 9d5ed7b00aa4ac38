"""What the browser tests do with the web UI: open pages, sign in, read the screen."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Browser, BrowserContext, Locator, Page, expect

from helpers.accounts import DEFAULT_PASSWORD, register_user
from helpers.live_server import LiveServer

CHROMIUM = "/usr/bin/chromium"
# The background-networking flags keep Chromium from dialling out at start (this machine's
# closed network refuses it, and the tests have no use for it); QUIC off for the same reason.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SESSION_KEY = "syncline.session"


@dataclass
class Pages:
    """The pages a test opened; a context per page, so each has its own localStorage."""

    browser: Browser
    server: LiveServer
    opened: list[tuple[str, Page]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    async def new(self, name: str, *, width: int = 1280, height: int = 800) -> Page:
        context = await self.browser.new_context(viewport={"width": width, "height": height})
        page = await context.new_page()
        page.on("pageerror", lambda err: self.errors.append(f"{name}: {err}"))
        page.on("console", lambda msg: self._console(name, msg.type, msg.text))
        self.opened.append((name, page))
        return page

    def _console(self, name: str, kind: str, text: str) -> None:
        self.console.append(f"{name} {kind}: {text}")
        # A CSP violation is reported only on the console: catch inline scripts or styles.
        if "Content Security Policy" in text or "Refused to" in text:
            self.errors.append(f"{name}: {text}")

    def assert_no_page_errors(self) -> None:
        assert not self.errors, "errors on the page:\n" + "\n".join(self.errors)

    async def screenshot_all(self, directory: Path) -> list[Path]:
        paths = []
        for name, page in self.opened:
            path = directory / f"{name}.png"
            try:
                await page.screenshot(path=str(path), full_page=True)
            except Exception as err:  # a crashed page: the others are still worth having
                print(f"no screenshot of {name}: {err}")
                continue
            paths.append(path)
        return paths

    async def close(self) -> None:
        for _, page in self.opened:
            await page.context.close()

    async def signed_in(
        self, name: str, *, transport: str | None = None, **size: int
    ) -> tuple[Page, dict[str, Any]]:
        """A new account (over the API) signed in through the login form; on the chat.

        `name` becomes the display name ("ann" → "Ann"); the username gets a random suffix, as
        accounts outlive a test in the module's database. `transport`: the page's
        ``?transport=`` (http_stream, sse) instead of WebSocket.
        """
        username = f"{name}_{secrets.token_hex(3)}"
        pair = await register_user(self.server.http_url, username, display_name=name.title())
        page = await self.new(name, **size)
        await login(page, self.server, username, transport=transport)
        await expect(page).to_have_url(re.compile(r"#/chat"))
        await wait_connected(page)
        return page, pair


async def login(
    page: Page,
    server: LiveServer,
    username: str,
    password: str = DEFAULT_PASSWORD,
    *,
    transport: str | None = None,
) -> None:
    query = f"?transport={transport}" if transport else ""
    await page.goto(f"{server.http_url}/{query}#/login")
    await page.get_by_test_id("login-username").fill(username)
    await page.get_by_test_id("login-password").fill(password)
    await page.get_by_test_id("login-submit").click()


async def wait_connected(page: Page, timeout: float = 10_000) -> None:
    await expect(page.get_by_test_id("connection-status")).to_have_attribute(
        "data-state", "connected", timeout=timeout
    )


async def stored_session(page: Page) -> dict[str, Any]:
    value: dict[str, Any] | None = await page.evaluate(
        "key => JSON.parse(localStorage.getItem(key))", SESSION_KEY
    )
    assert value is not None, "no session in localStorage"
    return value


def messages_with(page: Page, text: str) -> Locator:
    return page.get_by_test_id("message-item").filter(has_text=text)


async def api(
    server: LiveServer, method: str, path: str, token: str | None = None, **kwargs: Any
) -> Any:
    """A REST call as a user (or anonymous); the JSON reply (None for 204)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        response = await client.request(method, path, headers=headers, **kwargs)
    assert response.status_code < 400, f"{method} {path}: {response.status_code} {response.text}"
    return response.json() if response.content else None


async def offline_context(context: BrowserContext, offline: bool) -> None:
    await context.set_offline(offline)
