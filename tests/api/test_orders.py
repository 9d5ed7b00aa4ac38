"""Orders over REST on real PostgreSQL, and live on the `orders` channel by capture."""

from __future__ import annotations

import httpx

from syncline.client import Publication, SynclineClient

from helpers.chat import api_client, expect, make_account, row_event, wait_for
from helpers.live_server import LiveServer


async def test_orders_need_a_signed_in_user(schema_url: str) -> None:
    async with api_client(schema_url) as http:
        await expect(await http.get("/api/orders"), 401, "unauthorized")
        body = {"customer_name": "a", "product_name": "b"}
        await expect(await http.post("/api/orders", json=body), 401, "unauthorized")
        await expect(await http.delete("/api/orders/1"), 401, "unauthorized")


async def test_order_crud(schema_url: str) -> None:
    ann = await make_account(schema_url, "ann")
    h = ann.headers
    async with api_client(schema_url) as http:
        created = await expect(
            await http.post(
                "/api/orders", json={"customer_name": " Ada ", "product_name": "Tea"}, headers=h
            ),
            201,
        )
        assert created["customer_name"] == "Ada"
        assert created["status"] == "pending"
        oid = created["id"]
        assert await expect(await http.get(f"/api/orders/{oid}", headers=h), 200) == created
        patched = await expect(
            await http.patch(f"/api/orders/{oid}", json={"status": "shipped"}, headers=h), 200
        )
        assert patched["status"] == "shipped"
        assert patched["product_name"] == "Tea"
        assert patched["updated_at"] > created["updated_at"]
        await expect(await http.delete(f"/api/orders/{oid}", headers=h), 204)
        await expect(await http.get(f"/api/orders/{oid}", headers=h), 404, "not_found")
        await expect(await http.delete(f"/api/orders/{oid}", headers=h), 404, "not_found")
        await expect(
            await http.patch(f"/api/orders/{oid}", json={"status": "delivered"}, headers=h),
            404,
            "not_found",
        )


async def test_order_input_is_checked(schema_url: str) -> None:
    ann = await make_account(schema_url, "ann")
    h = ann.headers
    async with api_client(schema_url) as http:
        for body in (
            {"customer_name": "a"},
            {"customer_name": "", "product_name": "b"},
            {"customer_name": "  ", "product_name": "b"},
            {"customer_name": "a" * 101, "product_name": "b"},
            {"customer_name": "a", "product_name": "b", "status": "lost"},
            {"customer_name": "a", "product_name": "b", "id": 5},
        ):
            await expect(await http.post("/api/orders", json=body, headers=h), 422, "invalid_input")
        raw = {**h, "Content-Type": "application/json"}
        await expect(
            await http.post("/api/orders", content=b"{", headers=raw), 422, "invalid_input"
        )
        created = await expect(
            await http.post(
                "/api/orders", json={"customer_name": "a", "product_name": "b"}, headers=h
            ),
            201,
        )
        url = f"/api/orders/{created['id']}"
        for body in ({"status": "lost"}, {"customer_name": ""}, {"note": "x"}):
            await expect(await http.patch(url, json=body, headers=h), 422, "invalid_input")
        for bad in ("0", "abc", str(1 << 64)):
            await expect(await http.get(f"/api/orders/{bad}", headers=h), 422, "invalid_input")
        for params in ({"limit": 0}, {"limit": 501}, {"offset": -1}, {"status": "lost"}):
            await expect(
                await http.get("/api/orders", params=params, headers=h), 422, "invalid_input"
            )


async def test_order_list_filters_and_pages(schema_url: str) -> None:
    ann = await make_account(schema_url, "ann")
    h = ann.headers
    async with api_client(schema_url) as http:
        ids = []
        for n, status in enumerate(["pending", "shipped", "pending", "delivered", "pending"]):
            body = {"customer_name": f"c{n}", "product_name": "p", "status": status}
            ids.append(
                (await expect(await http.post("/api/orders", json=body, headers=h), 201))["id"]
            )
        page = await expect(await http.get("/api/orders", headers=h), 200)
        assert page["total"] == 5
        assert [o["id"] for o in page["orders"]] == ids[::-1]  # newest first
        pending = await expect(
            await http.get("/api/orders", params={"status": "pending", "limit": 2}, headers=h), 200
        )
        assert pending["total"] == 3
        assert [o["id"] for o in pending["orders"]] == [ids[4], ids[2]]
        rest = await expect(
            await http.get(
                "/api/orders", params={"status": "pending", "limit": 2, "offset": 2}, headers=h
            ),
            200,
        )
        assert [o["id"] for o in rest["orders"]] == [ids[0]]


async def test_order_changes_reach_the_orders_channel(live_server: LiveServer) -> None:
    ann = await make_account(live_server.database_url, "ann")
    client = SynclineClient(live_server.ws_url, token=ann.token, timeout=5.0)
    try:
        await client.connect()
        sub = await client.subscribe("orders")
        events = sub.events()
        async with httpx.AsyncClient(base_url=live_server.http_url, headers=ann.headers) as http:
            body = {"customer_name": "Ada", "product_name": "Tea"}
            created = await expect(await http.post("/api/orders", json=body), 201)
            oid = created["id"]
            pub = await wait_for(events, row_event("orders", "insert", id=oid, status="pending"))
            assert isinstance(pub, Publication)
            assert pub.data["row"]["customer_name"] == "Ada"
            await expect(await http.patch(f"/api/orders/{oid}", json={"status": "shipped"}), 200)
            await wait_for(events, row_event("orders", "update", id=oid, status="shipped"))
            await expect(await http.delete(f"/api/orders/{oid}"), 204)
            await wait_for(events, row_event("orders", "delete", id=oid))
        # A write made straight in SQL (psql, another service) arrives the same way.
        await live_server.sql(
            "INSERT INTO orders (customer_name, product_name, status) VALUES (%s, %s, 'delivered')",
            ("Bob", "Coffee"),
        )
        await wait_for(
            events, row_event("orders", "insert", customer_name="Bob", status="delivered")
        )
    finally:
        await client.close()
