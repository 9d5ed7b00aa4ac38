"""Screenshots of the web UI for docs/screenshots: a live server, seeded data, headless Chromium.

Run: .venv/bin/python scripts/screenshots.py [--out docs/screenshots]. Starts an embedded
PostgreSQL in a temporary directory, the whole Syncline on free ports, registers a few users,
fills a conversation and the orders table, then photographs each screen (desktop and phone).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import psycopg
from playwright.async_api import Browser, Page, ViewportSize, async_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from syncline.db import migrate  # noqa: E402
from syncline.db.embedded import EmbeddedPostgres  # noqa: E402

from helpers.live_server import LiveServer, start_live_server, stop_live_server  # noqa: E402
from web.ui import CHROMIUM, CHROMIUM_ARGS  # noqa: E402  (the browser tests' launch settings)

PASSWORD = "Tq8-harbor-Lumen-42"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 780}


async def api(
    http: httpx.AsyncClient, method: str, path: str, token: str | None = None, **kw: Any
) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await http.request(method, path, headers=headers, **kw)
    if response.status_code >= 400:
        raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
    return response.json() if response.content else None


async def seed(server: LiveServer) -> dict[str, dict[str, Any]]:
    """Users, a conversation in the global room, a group and some orders."""
    people = {
        "alice": "Alice Martin",
        "bob": "Bob Chen",
        "carol": "Carol Diaz",
        "dan": "Dan Okafor",
    }
    pairs: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
        for username, name in people.items():
            pairs[username] = await api(
                http,
                "POST",
                "/api/auth/register",
                json={
                    "username": username,
                    "email": f"{username}@example.test",
                    "password": PASSWORD,
                    "display_name": name,
                },
            )
        token = {u: p["access_token"] for u, p in pairs.items()}
        rooms = await api(http, "GET", "/api/rooms", token["alice"])
        general = next(r for r in rooms if r["kind"] == "global")["id"]
        conversation = [
            ("bob", "Morning all! The new dashboard is live on staging."),
            ("carol", "Nice. Does it pick up the orders we import with SQL?"),
            ("bob", "Yes: every committed row change goes through the capture."),
            ("bob", "Try an UPDATE in psql and watch the row flash."),
            ("alice", "Just did. It flashed before I let go of Enter 😄"),
            ("dan", "Shipping the Hamburg batch now, statuses will change in a minute."),
            ("carol", "Perfect, I'll keep the dashboard open."),
        ]
        for who, body in conversation:
            await api(
                http, "POST", f"/api/rooms/{general}/messages", token[who], json={"body": body}
            )
        group = await api(http, "POST", "/api/rooms", token["alice"], json={"name": "Launch crew"})
        for who in ("bob", "carol"):
            user_id = pairs[who]["user"]["id"]
            await api(
                http,
                "POST",
                f"/api/rooms/{group['id']}/members",
                token["alice"],
                json={"user_id": user_id},
            )
        await api(
            http,
            "POST",
            f"/api/rooms/{group['id']}/messages",
            token["bob"],
            json={"body": "Launch checklist is in the wiki."},
        )
        await api(
            http,
            "POST",
            "/api/rooms/direct",
            token["alice"],
            json={"user_id": pairs["dan"]["user"]["id"]},
        )
        orders = [
            ("Hamburg Coffee Co.", "Espresso grinder", "delivered"),
            ("Nordlicht GmbH", "Standing desk", "shipped"),
            ("Acme Corp", "Ergonomic chair", "pending"),
            ("Blue Fin Sushi", "Chef knives (set of 3)", "shipped"),
            ("Café Lumière", "Milk frother", "pending"),
            ("Orbit Labs", "4K monitor", "pending"),
        ]
        for customer, product, status in orders:
            await api(
                http,
                "POST",
                "/api/orders",
                token["alice"],
                json={"customer_name": customer, "product_name": product, "status": status},
            )
        # Bob reads up to the latest message: Alice sees "Seen by Bob".
        page = await api(http, "GET", f"/api/rooms/{general}/messages", token["bob"])
        last = page["messages"][-1]["id"]
        await api(
            http, "POST", f"/api/rooms/{general}/read", token["bob"], json={"message_id": last}
        )
        pairs["_general"] = {"id": general}
    return pairs


async def signed_in_page(
    browser: Browser, server: LiveServer, pair: dict[str, Any], *, dark: bool = False
) -> Page:
    context = await browser.new_context(viewport=DESKTOP, color_scheme="dark" if dark else "light")
    page = await context.new_page()
    page.on("pageerror", lambda err: print(f"page error: {err}", file=sys.stderr))
    await page.goto(server.http_url + "/#/login")
    await page.get_by_test_id("login-username").fill(pair["user"]["username"])
    await page.get_by_test_id("login-password").fill(PASSWORD)
    await page.get_by_test_id("login-submit").click()
    await (
        page.get_by_test_id("connection-status")
        .and_(page.locator("[data-state=connected]"))
        .wait_for()
    )
    return page


async def shoot(browser: Browser, server: LiveServer, out: Path) -> None:
    pairs = await seed(server)
    general = pairs["_general"]["id"]

    context = await browser.new_context(viewport=DESKTOP, color_scheme="light")
    page = await context.new_page()
    await page.goto(server.http_url + "/#/login")
    await page.get_by_test_id("login-submit").wait_for()
    await page.screenshot(path=str(out / "login.png"))
    await page.get_by_test_id("register-link").click()
    await page.get_by_test_id("register-submit").wait_for()
    await page.screenshot(path=str(out / "register.png"))
    await context.close()

    bob = await signed_in_page(browser, server, pairs["bob"])
    alice = await signed_in_page(browser, server, pairs["alice"])
    await alice.goto(f"{server.http_url}/#/chat/{general}")
    await alice.get_by_test_id("message-item").last.wait_for()
    await bob.goto(f"{server.http_url}/#/chat/{general}")
    await bob.get_by_test_id("message-input").fill("Typing something")
    await alice.get_by_test_id("typing-indicator").filter(has_text="typing").wait_for()
    await alice.get_by_test_id("seen-by").first.wait_for()
    await alice.get_by_role("button", name="Members").click()
    await alice.screenshot(path=str(out / "chat.png"))
    await alice.get_by_role("button", name="Members").click()
    await alice.get_by_test_id("new-direct").click()
    await alice.get_by_test_id("user-search").fill("c")
    await alice.get_by_test_id("user-result").first.wait_for()
    await alice.screenshot(path=str(out / "new-conversation.png"))
    await alice.get_by_role("button", name="Close").click()

    dan = await signed_in_page(browser, server, pairs["dan"], dark=True)
    await dan.get_by_test_id("message-item").last.wait_for()
    await dan.get_by_text("3 online").wait_for()
    await dan.mouse.move(640, 10)
    await dan.wait_for_timeout(300)
    await dan.screenshot(path=str(out / "chat-dark.png"))
    await dan.context.close()

    await alice.goto(f"{server.http_url}/#/orders")
    await alice.get_by_test_id("order-row").first.wait_for()
    await alice.wait_for_timeout(1800)  # the rows' arrival flash fades
    async with await psycopg.AsyncConnection.connect(server.database_url) as conn:
        await conn.execute(
            "UPDATE orders SET status = 'delivered', updated_at = now()"
            " WHERE customer_name = 'Nordlicht GmbH'"
        )
        await conn.commit()
    await alice.locator("tr.flash").wait_for()
    await alice.wait_for_timeout(150)
    await alice.screenshot(path=str(out / "orders.png"))

    phone = await browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    mobile = await phone.new_page()
    await mobile.goto(server.http_url + "/#/login")
    await mobile.get_by_test_id("login-username").fill("carol")
    await mobile.get_by_test_id("login-password").fill(PASSWORD)
    await mobile.get_by_test_id("login-submit").click()
    await mobile.get_by_test_id("room-item").first.wait_for()
    await mobile.screenshot(path=str(out / "mobile-rooms.png"))
    await mobile.goto(f"{server.http_url}/#/chat/{general}")
    await mobile.get_by_test_id("message-item").last.wait_for()
    await mobile.wait_for_timeout(300)
    await mobile.screenshot(path=str(out / "mobile-chat.png"))
    await mobile.goto(f"{server.http_url}/#/orders")
    await mobile.get_by_test_id("order-row").first.wait_for()
    await mobile.wait_for_timeout(1800)  # the rows' arrival flash fades
    await mobile.screenshot(path=str(out / "mobile-orders.png"))
    await phone.close()
    await bob.context.close()
    await alice.context.close()


async def main(out: Path) -> None:
    base = Path(tempfile.mkdtemp(prefix="syncline-shots-"))
    pg = EmbeddedPostgres(base / "data")
    info = pg.start()
    server: LiveServer | None = None
    try:
        with psycopg.connect(info.url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE shots")
        url = info.url("shots")
        migrate.upgrade(url)
        server = await start_live_server(url)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            try:
                await shoot(browser, server, out)
            finally:
                await browser.close()
        print(f"screenshots in {out}")
    finally:
        if server is not None:
            await stop_live_server(server)
        pg.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    out_dir: Path = parser.parse_args().out
    out_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(out_dir))
