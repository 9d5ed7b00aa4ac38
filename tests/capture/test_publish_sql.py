"""syncline.publish() in transactions, per capture source: ordered, exactly once, atomic."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from helpers.capture_harness import Capture, sql


async def test_publication_arrives_between_its_transactions_rows(capture: Capture) -> None:
    await sql(
        capture.url,
        "INSERT INTO orders (customer_name, product_name) VALUES ('ann', 'first')",
        """SELECT syncline.publish('orders', '{"note": "between", "n": [1, 2]}')""",
        "INSERT INTO orders (customer_name, product_name) VALUES ('ann', 'second')",
    )
    await sql(capture.url, """SELECT syncline.publish('orders', '"after"')""")
    pubs = await capture.received.wait_for("orders", 4)
    assert pubs[0]["row"]["product_name"] == "first"
    assert pubs[1] == {"note": "between", "n": [1, 2]}
    assert pubs[2]["row"]["product_name"] == "second"
    assert pubs[3] == "after"
    offsets = [offset for offset, _ in capture.received.pubs["orders"]]
    assert offsets == [1, 2, 3, 4]
    await asyncio.sleep(0.3)
    assert len(capture.received.pubs["orders"]) == 4  # exactly once


async def test_publication_to_a_channel_no_rule_names(capture: Capture) -> None:
    await sql(capture.url, """SELECT syncline.publish('room:7', '{"type": "notice"}')""")
    assert await capture.received.wait_for("room:7", 1) == [{"type": "notice"}]


async def test_rolled_back_transaction_publishes_nothing(capture: Capture) -> None:
    async with await psycopg.AsyncConnection.connect(capture.url) as conn:
        await conn.execute("INSERT INTO orders (customer_name, product_name) VALUES ('x', 'y')")
        await conn.execute("""SELECT syncline.publish('orders', '{"ghost": true}')""")
        await conn.rollback()
    await sql(capture.url, """SELECT syncline.publish('orders', '{"marker": 1}')""")
    assert await capture.received.wait_for("orders", 1) == [{"marker": 1}]
    await asyncio.sleep(0.3)
    assert capture.received.data("orders") == [{"marker": 1}]


@pytest.mark.parametrize(
    ("channel", "data", "message"),
    [
        ("orders", "repeat('x', 70000)", "the limit is 65536"),
        ("''", "'{}'", "channel must not be empty"),
        ("repeat('c', 300)", "'{}'", "the limit is 255"),
        ("'a b'", "'{}'", "must not contain spaces"),
        ("'orders'", "NULL", "must not be NULL"),
    ],
)
async def test_bad_publication_is_a_sql_error_and_publishes_nothing(
    capture: Capture, channel: str, data: str, message: str
) -> None:
    if data.startswith("repeat"):
        data = f"to_jsonb({data})"
        channel = "'orders'"
    async with await psycopg.AsyncConnection.connect(capture.url) as conn:
        await conn.execute("INSERT INTO orders (customer_name, product_name) VALUES ('x', 'y')")
        with pytest.raises(psycopg.Error) as caught:
            await conn.execute(f"SELECT syncline.publish({channel}, {data})")
        await conn.rollback()
    assert message in str(caught.value)
    assert caught.value.sqlstate in ("22023", "54000", "22004")
    await sql(capture.url, """SELECT syncline.publish('orders', '{"marker": 2}')""")
    assert await capture.received.wait_for("orders", 1) == [{"marker": 2}]
    await asyncio.sleep(0.2)
    assert capture.received.data("orders") == [{"marker": 2}]


async def test_publish_is_not_granted_to_public(capture: Capture) -> None:
    async with await psycopg.AsyncConnection.connect(capture.url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT has_function_privilege('public', 'syncline.publish(text, jsonb)', 'EXECUTE')"
        )
        row = await cur.fetchone()
    assert row == (False,)
