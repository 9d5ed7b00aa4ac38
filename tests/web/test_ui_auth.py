"""Signing in through the browser: register, log in and out, wrong password, silent token
refresh, a revoked session, and the page's basics (CSP, connection indicator)."""

from __future__ import annotations

import re
import secrets
import time

import httpx
import jwt
import psycopg
from playwright.async_api import Page, Route, WebSocketRoute, expect

from helpers.accounts import DEFAULT_PASSWORD, register_user
from helpers.live_server import TEST_SECRET, LiveServer
from web.ui import SESSION_KEY, Pages, api, login, stored_session, wait_connected


async def test_the_page_is_served_with_its_csp_and_shows_the_login_form(
    pages: Pages, web_server: LiveServer
) -> None:
    async with httpx.AsyncClient(base_url=web_server.http_url) as http:
        index = await http.get("/")
        script = await http.get("/web/app.js")
        client = await http.get("/web/syncline-client.js")
    assert index.status_code == 200
    assert "default-src 'self'" in index.headers["content-security-policy"]
    assert '<script type="module" src="/web/app.js">' in index.text
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert "export class SynclineClient" in client.text

    page = await pages.new("anonymous")
    await page.goto(web_server.http_url + "/")
    await expect(page).to_have_url(re.compile(r"#/login$"))
    await expect(page.get_by_test_id("login-username")).to_be_focused()
    await expect(page.get_by_label("Password")).to_be_visible()
    await expect(page.get_by_test_id("register-link")).to_be_visible()
    # Signed out: no live connection.
    await expect(page.get_by_test_id("connection-status")).to_have_attribute(
        "data-state", "offline"
    )


async def test_register_log_out_and_log_in_again(pages: Pages, web_server: LiveServer) -> None:
    page = await pages.new("newcomer")
    await page.goto(web_server.http_url + "/#/login")
    await page.get_by_test_id("register-link").click()
    await expect(page).to_have_url(re.compile(r"#/register$"))
    await page.get_by_label("Username").fill("newcomer")
    await page.get_by_label("Email").fill("newcomer@example.test")
    await page.get_by_label("Display name (optional)").fill("Nia Newcomer")
    # The client checks the password rules before sending.
    await page.get_by_label("Password").fill("short1")
    await page.get_by_test_id("register-submit").click()
    await expect(page.locator("#register-password-error")).to_have_text(re.compile("10"))
    await page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    await page.get_by_test_id("register-submit").click()

    await expect(page).to_have_url(re.compile(r"#/chat/\d+$"))
    await wait_connected(page)
    await expect(page.get_by_test_id("room-item").filter(has_text="General")).to_be_visible()
    await expect(page.locator("#usermenu-name")).to_have_text("Nia Newcomer")

    refresh_token = (await stored_session(page))["refresh_token"]
    async with page.expect_response("**/api/auth/logout") as logout:
        await page.get_by_role("button", name="Log out").click()
    assert (await logout.value).status == 204
    await expect(page).to_have_url(re.compile(r"#/login$"))
    assert await page.evaluate("key => localStorage.getItem(key)", SESSION_KEY) is None
    # The server revoked the session: its refresh token is refused.
    async with httpx.AsyncClient(base_url=web_server.http_url) as http:
        refused = await http.post("/api/auth/refresh", json={"refresh_token": refresh_token})
    assert refused.status_code == 401
    await expect(page.get_by_test_id("connection-status")).to_have_attribute(
        "data-state", "offline"
    )

    await login(page, web_server, "newcomer@example.test")
    await expect(page).to_have_url(re.compile(r"#/chat/\d+$"))
    await wait_connected(page)


async def test_a_taken_username_is_shown_on_its_field(pages: Pages, web_server: LiveServer) -> None:
    await register_user(web_server.http_url, "taken")
    page = await pages.new("second")
    await page.goto(web_server.http_url + "/#/register")
    await page.get_by_label("Username").fill("taken")
    await page.get_by_label("Email").fill("other@example.test")
    await page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    await page.get_by_test_id("register-submit").click()
    await expect(page.locator("#register-username-error")).to_have_text("This username is taken.")
    await expect(page.get_by_label("Username")).to_have_attribute("aria-invalid", "true")
    await expect(page).to_have_url(re.compile(r"#/register$"))


async def test_a_wrong_password_shows_an_error(pages: Pages, web_server: LiveServer) -> None:
    await register_user(web_server.http_url, "wrongpw")
    page = await pages.new("wrongpw")
    await login(page, web_server, "wrongpw", "not-the-Password-1")
    error = page.get_by_test_id("login-error")
    await expect(error).to_have_text("Wrong username or password.")
    await expect(error).to_have_attribute("role", "alert")
    await expect(page).to_have_url(re.compile(r"#/login$"))
    assert await page.evaluate("key => localStorage.getItem(key)", SESSION_KEY) is None


async def set_access_token(page: Page, token: str) -> None:
    """Puts `token` in the page's stored session in place of its access token."""
    await page.evaluate(
        "([key, token]) => { const s = JSON.parse(localStorage.getItem(key));"
        " s.access_token = token; localStorage.setItem(key, JSON.stringify(s)); }",
        [SESSION_KEY, token],
    )


def expired_copy(token: str) -> str:
    """The same claims, signed properly, but expired a minute ago: what a laptop has after a
    night asleep."""
    claims = jwt.decode(token, TEST_SECRET, algorithms=["HS256"])
    return jwt.encode(
        claims | {"exp": int(time.time()) - 60, "iat": int(time.time()) - 960},
        TEST_SECRET,
        algorithm="HS256",
    )


async def test_an_expired_access_token_is_refreshed_silently(
    pages: Pages, web_server: LiveServer
) -> None:
    page, _ = await pages.signed_in("sleepy")
    before = await stored_session(page)
    claims = jwt.decode(before["access_token"], TEST_SECRET, algorithms=["HS256"])
    expired = expired_copy(before["access_token"])
    await set_access_token(page, expired)
    await page.reload()
    await wait_connected(page)
    await expect(page.get_by_test_id("room-item").first).to_be_visible()
    await expect(page).to_have_url(re.compile(r"#/chat/\d+$"))
    after = await stored_session(page)
    assert after["access_token"] != expired
    assert after["refresh_token"] != before["refresh_token"]  # rotated on use
    fresh = jwt.decode(after["access_token"], TEST_SECRET, algorithms=["HS256"])
    assert fresh["exp"] > time.time() + 600
    assert fresh["sub"] == claims["sub"]


async def test_a_refresh_whose_reply_is_lost_keeps_the_session(
    pages: Pages, web_server: LiveServer
) -> None:
    """The page reloads (or the network drops) after the server rotated the refresh token but
    before the page stored the new pair: the next try presents the old token again, which
    must not read as theft and sign the user out."""
    page, _ = await pages.signed_in("reloader")
    before = await stored_session(page)
    await set_access_token(page, expired_copy(before["access_token"]))
    reached_server: list[int] = []

    async def lose_the_reply(route: Route) -> None:
        response = await route.fetch()  # the server rotates...
        reached_server.append(response.status)
        await route.abort("connectionreset")  # ...and the page never hears of it

    await page.route("**/api/auth/refresh", lose_the_reply, times=1)
    await page.reload()
    await wait_connected(page)
    await expect(page.get_by_test_id("room-item").first).to_be_visible()
    assert reached_server == [200]
    after = await stored_session(page)
    assert after["refresh_token"] != before["refresh_token"]
    jwt.decode(after["access_token"], TEST_SECRET, algorithms=["HS256"])
    # The session goes on: the next refresh works with the pair the page holds now.
    async with httpx.AsyncClient(base_url=web_server.http_url) as http:
        onward = await http.post(
            "/api/auth/refresh", json={"refresh_token": after["refresh_token"]}
        )
    assert onward.status_code == 200, onward.text


async def test_a_token_the_server_refuses_is_refreshed_and_the_request_retried(
    pages: Pages, web_server: LiveServer
) -> None:
    """A token that looks fresh to the page (exp in an hour) but fails the server's check:
    the REST 401 and the WebSocket's refusal both lead to one refresh."""
    page, pair = await pages.signed_in("skewed")
    forged = jwt.encode(
        {"sub": str(pair["user"]["id"]), "exp": int(time.time()) + 3600},
        "not-the-server-secret-" + "y" * 32,
        algorithm="HS256",
    )
    await set_access_token(page, forged)
    await page.reload()
    await wait_connected(page)
    await expect(page.get_by_test_id("room-item").first).to_be_visible()
    after = await stored_session(page)
    assert after["access_token"] != forged
    jwt.decode(after["access_token"], TEST_SECRET, algorithms=["HS256"])


async def expect_returned_to_login(page: Page) -> None:
    """The page is on the login form, saying why, with no tokens kept and no live connection."""
    await expect(page).to_have_url(re.compile(r"#/login$"))
    await expect(page.get_by_test_id("login-error")).to_have_text(re.compile("session has ended"))
    assert await page.evaluate("key => localStorage.getItem(key)", SESSION_KEY) is None
    await expect(page.get_by_test_id("connection-status")).to_have_attribute(
        "data-state", "offline"
    )


async def test_a_session_revoked_elsewhere_returns_the_page_to_the_login_form(
    pages: Pages, web_server: LiveServer
) -> None:
    """Without the user doing anything: the server closes the page's socket (3500), and the
    reconnect's refresh is refused."""
    page, _ = await pages.signed_in("revoked")
    session = await stored_session(page)
    # The session is revoked elsewhere ("log out" from another device uses the same call).
    await api(web_server, "POST", "/api/auth/logout", session["access_token"])
    await expect_returned_to_login(page)


async def test_a_request_with_a_revoked_session_returns_the_page_to_the_login_form(
    pages: Pages, web_server: LiveServer
) -> None:
    """When the socket's close does not reach the page (a proxy that keeps it open), the next
    REST request's 401 and the refused refresh end the session."""

    async def keep_open(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        # A handler stops Playwright forwarding the server's close to the page.
        server.on_close(lambda code, reason: None)

    username = f"unaware_{secrets.token_hex(3)}"
    await register_user(web_server.http_url, username)
    page = await pages.new("unaware")
    await page.route_web_socket(re.compile(r".*/connection/websocket.*"), keep_open)
    await login(page, web_server, username)
    await wait_connected(page)
    session = await stored_session(page)
    await api(web_server, "POST", "/api/auth/logout", session["access_token"])
    await page.wait_for_timeout(500)  # the page would have reconnected and left by now
    await expect(page).to_have_url(re.compile(r"#/chat"))
    await page.get_by_role("link", name="Orders").click()
    await expect_returned_to_login(page)


async def mailed_link(server: LiveServer, to: str, route: str) -> str:
    """The newest mailed link to the UI's `route` (the outbox keeps every mail without SMTP)."""
    async with await psycopg.AsyncConnection.connect(server.database_url) as conn:
        cur = await conn.execute(
            "SELECT body FROM mail_outbox WHERE to_address = %s ORDER BY id DESC", (to,)
        )
        for (body,) in await cur.fetchall():
            match = re.search(rf"https?://\S+/#/{route}\?token=[A-Za-z0-9_%.-]+", body)
            if match:
                return match.group(0)
    raise AssertionError(f"no {route} mail to {to}")


async def test_the_mailed_links_verify_the_email_and_reset_the_password(
    pages: Pages, web_server: LiveServer
) -> None:
    await register_user(web_server.http_url, "forgetful")
    page = await pages.new("forgetful")

    verify = await mailed_link(web_server, "forgetful@example.test", "verify")
    await page.goto(verify)
    await expect(page.get_by_test_id("verify-status")).to_have_text(
        "Thanks! Your email address is verified."
    )

    await page.goto(web_server.http_url + "/#/login")
    await page.get_by_role("link", name="Forgot your password?").click()
    await page.get_by_label("Email").fill("forgetful@example.test")
    await page.get_by_role("button", name="Send the reset link").click()
    await expect(page.get_by_test_id("forgot-message")).to_have_text(re.compile("on its way"))

    reset = await mailed_link(web_server, "forgetful@example.test", "reset")
    await page.goto(reset)
    await page.get_by_label("New password", exact=True).fill("Brand-new-Secret-77")
    await page.get_by_role("button", name="Set the new password").click()
    await expect(page).to_have_url(re.compile(r"#/login$"))
    await login(page, web_server, "forgetful", "Brand-new-Secret-77")
    await expect(page).to_have_url(re.compile(r"#/chat/\d+$"))
    await wait_connected(page)

    # The link is single-use.
    await page.get_by_role("button", name="Log out").click()
    await expect(page).to_have_url(re.compile(r"#/login$"))
    await page.goto(reset)
    await page.get_by_label("New password", exact=True).fill("Another-Secret-88")
    await page.get_by_role("button", name="Set the new password").click()
    await expect(page.get_by_test_id("reset-message")).to_have_text(
        "This reset link is invalid or has expired."
    )
