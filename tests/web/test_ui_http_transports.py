"""The web UI forced onto the HTTP transports (``?transport=http_stream``, then ``sse``) in
Chromium: chatting and watching orders work as over WebSocket, and no WebSocket is opened."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from syncline.gateway.streams import StreamTransport

from helpers.live_server import LiveServer
from web.test_ui_orders import open_dashboard
from web.ui import Pages, api, messages_with

pytestmark = pytest.mark.parametrize("transport", ["http_stream", "sse"])


def assert_only(server: LiveServer, transport: str) -> None:
    """Every connection of the gateway is of ``transport``."""
    gateway = server.runtime.gateway
    assert gateway is not None
    kinds = {
        c.transport.kind if isinstance(c.transport, StreamTransport) else "websocket"
        for c in gateway.connections
    }
    assert kinds == {transport}


async def send(page: Page, text: str) -> None:
    await page.get_by_test_id("message-input").fill(text)
    await page.get_by_test_id("message-send").click()


async def test_two_users_chat(pages: Pages, web_server: LiveServer, transport: str) -> None:
    ann, ann_pair = await pages.signed_in("ann", transport=transport)
    ben, _ = await pages.signed_in("ben", transport=transport)
    await expect(ann.get_by_test_id("room-online")).to_have_text(re.compile(r"2 online"))
    assert_only(web_server, transport)

    # Typing goes out as an RPC or publish over /emulation, the message over REST; both come
    # back down the stream.
    await ann.get_by_test_id("message-input").press_sequentially("Hello Ben", delay=20)
    await expect(ben.get_by_test_id("typing-indicator")).to_have_text("Ann is typing…")
    await ann.get_by_test_id("message-send").click()
    mine = messages_with(ann, "Hello Ben")
    await expect(mine).to_have_attribute("data-state", "confirmed")
    await expect(messages_with(ben, "Hello Ben")).to_have_attribute(
        "data-author", ann_pair["user"]["username"]
    )
    await expect(mine.get_by_test_id("seen-by")).to_have_text("Seen by Ben")

    await send(ben, "Hi Ann!")
    await expect(messages_with(ann, "Hi Ann!")).to_have_count(1)
    await expect(messages_with(ben, "Hi Ann!")).to_have_attribute("data-state", "confirmed")

    await ben.context.close()
    pages.opened = [(n, p) for n, p in pages.opened if p is not ben]
    await expect(ann.get_by_test_id("room-online")).to_have_text(re.compile(r"1 online"))


async def test_orders_follow_rest_and_sql_writes(
    pages: Pages, web_server: LiveServer, transport: str
) -> None:
    ann, pair = await pages.signed_in("ann", transport=transport)
    await open_dashboard(ann)
    assert_only(web_server, transport)
    rows = ann.get_by_test_id("order-row")
    order = await api(
        web_server,
        "POST",
        "/api/orders",
        pair["access_token"],
        json={"customer_name": "Stream Customer", "product_name": "Lamp"},
    )
    row = rows.filter(has_text="Stream Customer")
    await expect(row).to_have_count(1)
    await web_server.sql(
        "UPDATE orders SET status = 'shipped', updated_at = now() WHERE id = %s", (order["id"],)
    )
    await expect(row).to_have_attribute("data-status", "shipped")
    await expect(row).to_have_class(re.compile(r"\bflash\b"))
    await web_server.sql("DELETE FROM orders WHERE id = %s", (order["id"],))
    await expect(row).to_have_count(0)
