"""Capture against a real PostgreSQL, for each source: order, atomicity, payloads, crashes."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import psycopg

from syncline.db import migrate
from syncline.db.embedded import EmbeddedPostgres
from syncline.engine.memory import MemoryEngine

from helpers.capture_harness import Capture, Received, sql
from helpers.live_server import drop_slot


async def test_row_changes_arrive_in_commit_order_with_payloads(capture: Capture) -> None:
    url = capture.url
    await sql(
        url,
        "INSERT INTO orders (customer_name, product_name, secret_note) VALUES ('ann', 'a', 'x')",
        "INSERT INTO orders (customer_name, product_name) VALUES ('bob', 'b')",
    )
    await sql(url, "UPDATE orders SET status = 'shipped' WHERE id = 1")
    await sql(url, "DELETE FROM orders WHERE id = 2")
    await sql(url, "TRUNCATE orders")
    pubs = await capture.received.wait_for("orders", 5)
    assert [p["op"] for p in pubs] == ["insert", "insert", "update", "delete", "truncate"]
    first = pubs[0]
    assert set(first) >= {"table", "op", "row", "old", "lsn", "xid", "commit_time"}
    assert first["table"] == "orders"
    assert first["row"]["customer_name"] == "ann"
    # Only the rule's columns leave the database.
    assert "secret_note" not in first["row"]
    assert pubs[0]["xid"] == pubs[1]["xid"]  # one transaction
    assert pubs[2]["row"]["status"] == "shipped"
    assert pubs[3]["row"] is None
    assert pubs[3]["old"]["id"] == 2
    assert pubs[4]["row"] is None
    offsets = [offset for offset, _ in capture.received.pubs["orders"]]
    assert offsets == [1, 2, 3, 4, 5]


async def test_a_transaction_is_published_after_commit_and_rollback_never(
    capture: Capture,
) -> None:
    async with await psycopg.AsyncConnection.connect(capture.url) as conn:
        for name in ("r1", "r2"):
            await conn.execute(
                "INSERT INTO orders (customer_name, product_name) VALUES ('x', %s)", (name,)
            )
        await asyncio.sleep(0.4)
        assert capture.received.data("orders") == []
        await conn.rollback()
        for name in ("c1", "c2", "c3"):
            await conn.execute(
                "INSERT INTO orders (customer_name, product_name) VALUES ('x', %s)", (name,)
            )
        await asyncio.sleep(0.4)
        assert capture.received.data("orders") == []
        await conn.commit()
    pubs = await capture.received.wait_for("orders", 3)
    await asyncio.sleep(0.3)
    assert [p["row"]["product_name"] for p in capture.received.data("orders")] == ["c1", "c2", "c3"]
    assert len({p["xid"] for p in pubs}) == 1


async def test_transactions_committing_out_of_id_order_are_both_delivered(
    capture: Capture,
) -> None:
    async with (
        await psycopg.AsyncConnection.connect(capture.url) as first,
        await psycopg.AsyncConnection.connect(capture.url) as second,
    ):
        await first.execute("INSERT INTO orders (customer_name, product_name) VALUES ('a', 'low')")
        await second.execute(
            "INSERT INTO orders (customer_name, product_name) VALUES ('b', 'high')"
        )
        await second.commit()  # the higher id commits first
        await asyncio.sleep(0.3)
        await first.commit()
    pubs = await capture.received.wait_for("orders", 2)
    await asyncio.sleep(0.3)
    names = [p["row"]["product_name"] for p in capture.received.data("orders")]
    assert sorted(names) == ["high", "low"]
    assert len(names) == 2
    assert pubs


async def test_wide_rows_and_unchanged_toast_are_published_whole(capture: Capture) -> None:
    body = secrets.token_hex(12_000)  # 24 kB of incompressible text: stored out of line
    await sql(
        capture.url,
        "INSERT INTO messages (room_id, user_id, body) VALUES (7, 1, %s)",
        params=(body,),
    )
    await sql(capture.url, "UPDATE messages SET edited_at = now() WHERE room_id = 7")
    pubs = await capture.received.wait_for("room:7", 2)
    assert pubs[0]["row"]["body"] == body
    assert pubs[1]["op"] == "update"
    assert pubs[1]["row"]["body"] == body  # never null for an unchanged TOASTed value
    assert pubs[1]["row"]["edited_at"] is not None


async def test_a_row_moving_to_another_channel_leaves_one_and_enters_the_other(
    capture: Capture,
) -> None:
    await sql(capture.url, "INSERT INTO messages (room_id, user_id, body) VALUES (1, 1, 'hi')")
    await sql(capture.url, "UPDATE messages SET room_id = 2 WHERE room_id = 1")
    old_room = await capture.received.wait_for("room:1", 2)
    new_room = await capture.received.wait_for("room:2", 1)
    assert [p["op"] for p in old_room] == ["insert", "delete"]
    assert old_room[1]["old"]["room_id"] == 1
    assert new_room[0]["op"] == "insert"
    assert new_room[0]["row"]["room_id"] == 2


async def test_a_crash_before_acknowledging_publishes_every_change_exactly_once(
    capture: Capture,
) -> None:
    total, per_txn = 10_000, 100
    await capture.stop()
    capture.die_after = total // 3
    await capture.start()
    async with asyncio.timeout(60), await psycopg.AsyncConnection.connect(capture.url) as conn:
        for start in range(0, total, per_txn):
            await conn.execute(
                "INSERT INTO orders (customer_name, product_name)"
                " SELECT 'load', lpad(n::text, 6, '0') FROM generate_series(%s::int, %s::int) AS n",
                (start, start + per_txn - 1),
            )
            await conn.commit()
    # Crash in the middle: the process dies after appending some, before acknowledging them.
    await capture.received.wait_for("orders", total // 3, timeout=60)
    async with asyncio.timeout(20):
        await capture.stop()
    assert len(capture.received.data("orders")) < total
    capture.die_after = None
    # The channel log survives (as a Redis engine would); a new source re-reads from the
    # last acknowledged position and the log drops what it already has, by commit position.
    await capture.start()
    await capture.received.wait_for("orders", total, timeout=120)
    await asyncio.sleep(0.5)
    names = [p["row"]["product_name"] for p in capture.received.data("orders")]
    assert names == [f"{n:06d}" for n in range(total)]
    offsets = [offset for offset, _ in capture.received.pubs["orders"]]
    assert offsets == list(range(1, total + 1))


async def test_auto_falls_back_to_trigger_without_logical_wal(
    tmp_path: Path, app_schema: str
) -> None:
    server = EmbeddedPostgres(tmp_path / "replica-wal", wal_level="replica")
    info = server.start()
    try:
        url = info.url()
        migrate.upgrade(url)
        await sql(url, app_schema)
        received = Received()
        engine = MemoryEngine()
        engine.subscribe_fanout(received)
        cap = Capture(url, "auto", engine, received)
        await cap.start()
        try:
            assert cap.service is not None
            assert cap.service.mode == "trigger"
            await sql(url, "INSERT INTO orders (customer_name, product_name) VALUES ('a', 'b')")
            pubs = await received.wait_for("orders", 1)
            assert pubs[0]["op"] == "insert"
        finally:
            await cap.stop()
            await engine.close()
            await drop_slot(url, cap.slot)
    finally:
        server.stop()
