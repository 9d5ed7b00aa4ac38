"""The orders dashboard's status filter is a live shape: in Debian Chromium, orders enter and
leave "Pending" as their status changes in the database or on the page itself."""

from __future__ import annotations

import re

from playwright.async_api import expect

from helpers.live_server import LiveServer
from web.test_ui_orders import open_dashboard
from web.ui import Pages, wait_connected


async def _set_status(server: LiveServer, customer: str, status: str) -> None:
    await server.sql(
        "UPDATE orders SET status = %s, updated_at = now() WHERE customer_name = %s",
        (status, customer),
    )


async def test_pending_filter_follows_orders_entering_and_leaving(
    pages: Pages, web_server: LiveServer
) -> None:
    await web_server.sql(
        "INSERT INTO orders (customer_name, product_name, status) VALUES"
        " ('Early Pending', 'Tea', 'pending'), ('Early Shipped', 'Cup', 'shipped')"
    )
    ann, _ = await pages.signed_in("ann")
    await open_dashboard(ann)
    await ann.get_by_test_id("orders-filter").select_option("pending")
    rows = ann.get_by_test_id("order-row")
    await expect(rows.filter(has_text="Early Pending")).to_have_count(1)
    await expect(rows.filter(has_text="Early Shipped")).to_have_count(0)

    # Enters: an order shipped earlier is set back to pending by SQL.
    await web_server.sql(
        "UPDATE orders SET status = 'pending' WHERE customer_name = 'Early Shipped'"
    )
    entered = rows.filter(has_text="Early Shipped")
    await expect(entered).to_have_count(1)
    await expect(entered).to_have_attribute("data-status", "pending")
    # Leaves: the first one ships.
    await web_server.sql(
        "UPDATE orders SET status = 'shipped' WHERE customer_name = 'Early Pending'"
    )
    await expect(rows.filter(has_text="Early Pending")).to_have_count(0)
    # A new pending order arrives, a new shipped one does not.
    await web_server.sql(
        "INSERT INTO orders (customer_name, product_name, status) VALUES"
        " ('New Pending', 'Pot', 'pending'), ('New Shipped', 'Jar', 'shipped')"
    )
    await expect(rows.filter(has_text="New Pending")).to_have_count(1)
    await expect(rows.filter(has_text="New Shipped")).to_have_count(0)
    await expect(rows).to_have_count(2)
    await expect(ann.get_by_test_id("orders-summary")).to_have_text("2 shown of 2 orders")
    shapes = web_server.runtime.shapes
    assert shapes is not None and len(shapes.registry) == 1  # the page's filter is a shape

    # The connection drops; rows enter and leave meanwhile; back online, the shape recovers.
    await ann.context.set_offline(True)
    await expect(ann.get_by_test_id("connection-status")).to_have_attribute("data-state", "offline")
    await _set_status(web_server, "Early Pending", "pending")
    await _set_status(web_server, "New Pending", "shipped")
    await ann.context.set_offline(False)
    await wait_connected(ann)
    await expect(rows.filter(has_text="Early Pending")).to_have_count(1)
    await expect(rows.filter(has_text="New Pending")).to_have_count(0)
    await _set_status(web_server, "New Pending", "pending")
    await expect(rows.filter(has_text="New Pending")).to_have_count(1)
    await expect(rows).to_have_count(3)

    # Changing the status from the page itself: the row leaves the filter.
    await (
        rows.filter(has_text="New Pending")
        .get_by_test_id("order-row-status")
        .select_option("delivered")
    )
    await expect(rows.filter(has_text="New Pending")).to_have_count(0)
    # Back to every status: the REST list and the orders channel again.
    await ann.get_by_test_id("orders-filter").select_option("")
    await expect(ann.get_by_test_id("orders-summary")).to_have_text(re.compile(r"4 shown of 4"))
