"""The live orders dashboard in real browsers: REST, UI and direct SQL writes all show up in
every open dashboard, and the changed row flashes."""

from __future__ import annotations

import re
import time

from playwright.async_api import Page, expect

from helpers.live_server import LiveServer
from web.ui import Pages, api, wait_connected


async def open_dashboard(page: Page) -> None:
    await page.get_by_role("link", name="Orders").click()
    await expect(page).to_have_url(re.compile(r"#/orders$"))
    await expect(page.get_by_test_id("orders-summary")).to_have_text(re.compile(r"shown of"))
    await wait_connected(page)


async def test_an_order_created_over_rest_appears_within_a_second_and_sql_writes_flash(
    pages: Pages, web_server: LiveServer
) -> None:
    ann, pair = await pages.signed_in("ann")
    await open_dashboard(ann)
    rows = ann.get_by_test_id("order-row")
    await expect(rows).to_have_count(0)

    started = time.monotonic()
    order = await api(
        web_server,
        "POST",
        "/api/orders",
        pair["access_token"],
        json={"customer_name": "Rest Customer", "product_name": "Lamp"},
    )
    row = rows.filter(has_text="Rest Customer")
    await expect(row).to_have_count(1, timeout=1000)
    assert time.monotonic() - started < 1.0
    await expect(row).to_have_attribute("data-status", "pending")

    # A write that bypasses the API entirely: captured from the database.
    await web_server.sql(
        "UPDATE orders SET status = 'shipped', updated_at = now() WHERE id = %s", (order["id"],)
    )
    await expect(row).to_have_attribute("data-status", "shipped")
    await expect(row).to_have_class(re.compile(r"\bflash\b"))
    await expect(row.get_by_test_id("order-row-status")).to_have_value("shipped")
    await expect(ann.locator(".stat-shipped .stat-value")).to_have_text("1")

    await web_server.sql(
        "INSERT INTO orders (customer_name, product_name, status) VALUES (%s, %s, 'pending')",
        ("Sql Customer", "Desk"),
    )
    await expect(rows.filter(has_text="Sql Customer")).to_have_count(1)
    # Newest first.
    await expect(rows.first).to_contain_text("Sql Customer")

    await web_server.sql("DELETE FROM orders WHERE id = %s", (order["id"],))
    await expect(row).to_have_count(0)
    await expect(ann.get_by_test_id("orders-summary")).to_have_text("1 shown of 1 order")


async def test_orders_created_changed_and_deleted_in_one_browser_show_in_another(
    pages: Pages,
) -> None:
    ann, _ = await pages.signed_in("ann")
    ben, _ = await pages.signed_in("ben")
    await open_dashboard(ann)
    await open_dashboard(ben)

    await ann.get_by_test_id("order-customer").fill("Ui Customer")
    await ann.get_by_test_id("order-product").fill("Chair")
    await ann.get_by_test_id("order-status").select_option("pending")
    await ann.get_by_test_id("order-create").click()
    await expect(ann.get_by_test_id("order-customer")).to_have_value("")
    mine = ann.get_by_test_id("order-row").filter(has_text="Ui Customer")
    theirs = ben.get_by_test_id("order-row").filter(has_text="Ui Customer")
    await expect(mine).to_have_count(1)
    await expect(theirs).to_have_count(1)

    await mine.get_by_test_id("order-row-status").select_option("delivered")
    await expect(theirs).to_have_attribute("data-status", "delivered")
    await expect(theirs).to_have_class(re.compile(r"\bflash\b"))

    await mine.get_by_test_id("order-delete").click()
    await ann.get_by_test_id("confirm-ok").click()
    await expect(theirs).to_have_count(0)
    await expect(mine).to_have_count(0)

    # Filtering by status asks the server and keeps following the live changes.
    await ben.get_by_test_id("orders-filter").select_option("shipped")
    await ann.get_by_test_id("order-customer").fill("Filtered Customer")
    await ann.get_by_test_id("order-product").fill("Bike")
    await ann.get_by_test_id("order-create").click()
    filtered = ben.get_by_test_id("order-row").filter(has_text="Filtered Customer")
    await expect(
        ann.get_by_test_id("order-row").filter(has_text="Filtered Customer")
    ).to_have_count(1)
    await expect(filtered).to_have_count(0)
    await (
        ann.get_by_test_id("order-row")
        .filter(has_text="Filtered Customer")
        .get_by_test_id("order-row-status")
        .select_option("shipped")
    )
    await expect(filtered).to_have_count(1)
